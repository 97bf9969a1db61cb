"""The shipped recipes: installed with the package, found by ``--config`` from any directory, listed
and copied out by ``ttc recipes``; the clone's ``configs/`` is the same folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from ttcompute.core import recipes
from ttcompute.core.errors import InputError


def test_the_recipes_are_every_config_file_of_the_package_folder():
    on_disk = sorted(
        p.relative_to(REPO / "ttcompute" / "recipes").as_posix()
        for p in (REPO / "ttcompute" / "recipes").rglob("*")
        if p.suffix in (".yaml", ".json")
    )
    assert recipes.names() == on_disk
    assert {"demo.yaml", "prm.yaml", "math/prm.yaml", "deepspeed/zero3.json", "accelerate/zero2.yaml"} <= set(
        on_disk
    )
    assert (REPO / "configs").resolve() == recipes.RECIPES_DIR  # the clone's spelling, same files


def test_the_wheel_would_ship_them():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli, from the dev extra
        import tomli as tomllib

    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = data["ttcompute"]
    assert "recipes/**/*.yaml" in patterns and "recipes/**/*.json" in patterns


@pytest.mark.parametrize(
    "spelled", ["math/prm.yaml", "math/prm", "configs/math/prm.yaml", "./configs/math/prm.yaml"]
)
def test_a_recipe_is_found_by_any_of_its_spellings(spelled):
    assert recipes.find(spelled) == recipes.RECIPES_DIR / "math" / "prm.yaml"


def test_a_local_file_wins_over_the_recipe_and_an_unknown_name_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert recipes.resolve_config("prm.yaml") == recipes.RECIPES_DIR / "prm.yaml"
    Path("prm.yaml").write_text("max_length: 64\n")
    assert recipes.resolve_config("prm.yaml") == Path("prm.yaml")
    with pytest.raises(InputError, match=r"^nope.yaml: no such config file, and no shipped recipe"):
        recipes.resolve_config("nope.yaml")


def test_a_recipe_runs_from_an_empty_directory_with_its_shipped_files(tmp_path, monkeypatch):
    from ttcompute.core.config import parse_stage_args
    from ttcompute.trainers.prm_config import PRMConfig

    monkeypatch.chdir(tmp_path)
    (config,) = parse_stage_args(
        (PRMConfig,), ["--config", "prm.yaml", "--output_dir", "out"], prog="ttc train-prm"
    )
    assert Path(config.model_name_or_path) == REPO / "ttcompute" / "checkpoints" / "policy_small"
    (config,) = parse_stage_args(
        (PRMConfig,), ["--config", "configs/math/prm.yaml", "--bf16", "false"], prog="ttc train-prm"
    )
    assert Path(config.deepspeed) == recipes.RECIPES_DIR / "deepspeed" / "zero2.json"
    assert config.model_name_or_path == "Qwen/Qwen2.5-Math-1.5B-Instruct"  # a Hub id stays one
    # An output folder spelled like a recipe without its suffix stays the folder asked for.
    (config,) = parse_stage_args(
        (PRMConfig,), ["--config", "prm.yaml", "--output_dir", "configs/prm"], prog="ttc train-prm"
    )
    assert config.output_dir == "configs/prm"
    # A path that exists here is taken as given, even one spelled like a shipped file.
    Path("configs/deepspeed").mkdir(parents=True)
    Path("configs/deepspeed/zero2.json").write_text(
        (recipes.RECIPES_DIR / "deepspeed" / "zero2.json").read_text()
    )
    (config,) = parse_stage_args(
        (PRMConfig,), ["--config", "configs/math/prm.yaml", "--bf16", "false"], prog="ttc train-prm"
    )
    assert config.deepspeed == "configs/deepspeed/zero2.json"


def _ttc(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "ttcompute.cli", *args], capture_output=True, text=True, cwd=cwd
    )


def test_ttc_recipes_lists_shows_and_copies_without_overwriting(tmp_path):
    listed = _ttc("recipes", cwd=tmp_path)
    assert listed.returncode == 0
    assert "math/prm.yaml" in listed.stdout and "ttc train-prm" in listed.stdout
    shown = _ttc("recipes", "show", "prm.yaml", cwd=tmp_path)
    assert shown.stdout == (recipes.RECIPES_DIR / "prm.yaml").read_text()

    copied = _ttc("recipes", "copy", "math", "prm.yaml", "--to", "mine", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    written = sorted(p.relative_to(tmp_path / "mine").as_posix() for p in (tmp_path / "mine").rglob("*.yaml"))
    assert written == sorted(["prm.yaml"] + [n for n in recipes.names() if n.startswith("math/")])

    # One clash: an error naming it, and nothing else written (the other files are not touched).
    (tmp_path / "mine" / "prm.yaml").write_text("mine\n")
    (tmp_path / "mine" / "math" / "sample.yaml").unlink()
    again = _ttc("recipes", "copy", "all", "--to", "mine", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "exists; not overwriting it" in again.stderr
    assert (tmp_path / "mine" / "prm.yaml").read_text() == "mine\n"
    assert not (tmp_path / "mine" / "math" / "sample.yaml").exists()
    assert not (tmp_path / "mine" / "demo.yaml").exists()

    unknown = _ttc("recipes", "copy", "nope", "--to", "other", cwd=tmp_path)
    assert unknown.returncode == 2 and "nope: no such recipe" in unknown.stderr
    assert not (tmp_path / "other").exists()
