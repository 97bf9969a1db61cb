"""Tests for the ``ttc`` command line (ttcompute.cli) and its config system (ttcompute.core.config).

Stages are run in-process through ``main`` so that errors are checked as a user sees them (return code and
one stderr line); only stage error paths run here, never a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ttcompute.cli import STAGES, main
from ttcompute.core.config import config_hash, config_to_dict, parse_stage_args, save_resolved_config
from ttcompute.core.shards import prepare_output, write_json, write_shard
from ttcompute.core.stage_help import shown_default
from ttcompute.data_gen.difficulty import DifficultyConfig
from ttcompute.data_gen.sample import SampleConfig
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.tasks.problem_config import ProblemConfig

SAMPLE_TYPES = (ProblemConfig, GeneratorConfig, SampleConfig)


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    # A stage that gets past its checks writes under its default output_dir: keep that out of the repo.
    monkeypatch.chdir(tmp_path)


REPO = Path(__file__).resolve().parents[1]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ttc: error: ")
    return lines[0]


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _help_entries(text: str) -> dict[str, str]:
    """``--flag`` -> its help entry with whitespace collapsed (argparse wraps entries over lines)."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"^  (--?[\w-]+)", line)
        if match:
            current = match.group(1)
            entries[current] = line
        elif current is not None and line.startswith("    "):
            entries[current] += " " + line
        else:
            current = None
    return {flag: " ".join(entry.split()) for flag, entry in entries.items()}


# --- usage and help ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], ["--help"], ["-h"], ["help"]])
def test_usage_lists_every_stage(argv, capsys):
    assert main(argv) == 0
    out = capsys.readouterr().out
    listed = dict(re.findall(r"^  (\S+)\s+(.+)$", out, flags=re.MULTILINE))
    assert "recipes" in listed  # `ttc recipes` is not a stage (no config to parse)
    del listed["recipes"]
    assert listed == {name: summary for name, (summary, _, _) in STAGES.items()}


def test_sample_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--help"])
    assert exit_info.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    fields = [f for dtype in SAMPLE_TYPES for f in dataclasses.fields(dtype) if f.init]
    for f in fields:
        entry = entries.get(f"--{f.name}")
        assert entry is not None, f"--{f.name} missing from ttc sample --help"
        if re.search(r"default\s*:", f.metadata.get("help", "")):
            continue  # the help says its default in words ("default: the template's own"), once
        default = " ".join(shown_default(_default(f)).split())
        assert f"(default: {default}" in entry, (f.name, entry)
    assert "--config" in entries


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_stage_help_lists_every_field(stage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([stage, "--help-all"])
    assert exit_info.value.code == 0
    entries = _help_entries(capsys.readouterr().out)
    _, specs, _ = STAGES[stage]
    for module, name in specs:
        for f in dataclasses.fields(getattr(importlib.import_module(module), name)):
            if f.init:
                assert f"--{f.name}" in entries, (stage, f.name)


def test_console_script_runs():
    ttc = Path(sys.executable).parent / "ttc"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([str(ttc), "--help"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    for stage in STAGES:
        assert f"  {stage} " in result.stdout


# --- errors, one line and return code 2 --------------------------------------------------------


def test_unknown_stage(capsys):
    assert main(["smaple", "--num_samples", "4"]) == 2
    line = _error_line(capsys)
    assert "'smaple'" in line
    assert "sample" in line  # the known stages are listed


def test_unknown_flag(capsys):
    assert main(["sample", "--num_smaples", "4"]) == 2
    assert "unknown option --num_smaples; did you mean --num_samples?" in _error_line(capsys)


def test_unknown_yaml_key_names_file_line_and_key(tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    config.write_text("num_samples: 4\ntemperature: 0.5\nnum_smaples: 8\nseed: 1\n")
    assert main(["sample", "--config", str(config)]) == 2
    line = _error_line(capsys)
    assert f"{config}:3:" in line
    assert "num_smaples" in line


@pytest.mark.parametrize(
    ("text", "line_number", "key"),
    [
        ("num_samples: lots\n", 1, "num_samples"),
        ("seed: 3\n# a comment\n\ntemperature: hot\n", 4, "temperature"),
        ("seed: 3\nuse_chat_template: maybe\n", 2, "use_chat_template"),
        ("seed: 3\nops: []\n", 2, "ops"),
    ],
)
def test_wrong_yaml_value_names_file_line_and_key(tmp_path, capsys, text, line_number, key):
    config = tmp_path / "recipe.yaml"
    config.write_text(text)
    assert main(["sample", "--config", str(config)]) == 2
    line = _error_line(capsys)
    assert f"{config}:{line_number}:" in line
    assert f"'{key}'" in line


def test_yaml_that_is_not_a_mapping(tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    config.write_text("- num_samples\n- 4\n")
    assert main(["sample", "--config", str(config)]) == 2
    assert f"{config}:1:" in _error_line(capsys)


def test_invalid_yaml_names_file_and_line(tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    config.write_text("seed: 3\nops: [+, -\n")
    assert main(["sample", "--config", str(config)]) == 2
    line = _error_line(capsys)
    assert str(config) in line and "invalid YAML" in line


def test_missing_config_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["difficulty", "--config", str(missing)]) == 2
    assert str(missing) in _error_line(capsys)


def test_config_flag_without_a_file(capsys):
    assert main(["difficulty", "--config"]) == 2
    assert "--config" in _error_line(capsys)


def test_post_init_error_from_a_flag(capsys):
    assert main(["sample", "--num_samples", "0"]) == 2
    line = _error_line(capsys)
    assert "num_samples" in line and "got 0" in line


def test_post_init_error_from_yaml_names_the_file(tmp_path, capsys):
    config = tmp_path / "recipe.yaml"
    config.write_text("num_bins: 0\n")
    assert main(["difficulty", "--config", str(config)]) == 2
    line = _error_line(capsys)
    assert "num_bins" in line and str(config) in line


# --- YAML and flags together -------------------------------------------------------------------


def test_flags_override_yaml(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text(
        "num_samples: 4\n"
        "ops: ['+']\n"
        "use_chat_template: true\n"
        "enable_prefix_caching: false\n"
        "temperature: 0.5\n"
        "max_ops: 3\n"
        "device: null\n"
        "output_dir: from_yaml\n"
    )
    problem, gen, sample = parse_stage_args(
        SAMPLE_TYPES,
        [
            "--config",
            str(config),
            "--ops",
            "*",
            "-",
            "--use_chat_template",
            "false",
            "--enable_prefix_caching",
            "--num_samples",
            "9",
        ],
        prog="ttc sample",
    )
    # Overridden on the command line:
    assert problem.ops == ["*", "-"]
    assert gen.use_chat_template is False
    assert gen.enable_prefix_caching is True
    assert sample.num_samples == 9
    # From YAML only:
    assert gen.temperature == 0.5
    assert problem.max_ops == 3
    assert sample.output_dir == "from_yaml"
    # Neither: defaults (a YAML null keeps the default).
    assert gen.device is None
    assert sample.seed == 0 and problem.min_ops == 1


def test_yaml_values_are_typed_like_flags(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("ops: ['-', '*']\nuse_chat_template: true\ntemperature: 1\nshard: 1/4\nseed: -3\n")
    problem, gen, sample = parse_stage_args(SAMPLE_TYPES, [f"--config={config}"], prog="ttc sample")
    assert problem.ops == ["-", "*"]
    assert gen.use_chat_template is True
    assert gen.temperature == 1.0 and isinstance(gen.temperature, float)
    assert sample.shard == "1/4"
    assert sample.seed == -3


def test_boolean_negation_flag_overrides_yaml(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("enable_prefix_caching: true\n")
    _, gen, _ = parse_stage_args(
        SAMPLE_TYPES, ["--config", str(config), "--no_enable_prefix_caching"], prog="ttc sample"
    )
    assert gen.enable_prefix_caching is False


def test_resolved_config_round_trips(tmp_path):
    configs = parse_stage_args(
        SAMPLE_TYPES,
        [
            "--ops",
            "*",
            "-",
            "--min_ops",
            "2",
            "--model_name_or_path",
            "./some/model",
            "--prompt_template",
            "Q: {question}\nA:",
            "--temperature",
            "0",
            "--use_chat_template",
            "--no_enable_prefix_caching",
            "--device",
            "cpu",
            "--num_samples",
            "3",
            "--seed",
            "-5",
            "--shard",
            "1/2",
            "--output_dir",
            "somewhere",
        ],
        prog="ttc sample",
    )
    path = save_resolved_config(tmp_path / "run", "sample", *configs)
    assert path == tmp_path / "run" / "ttc_config.yaml"
    reloaded = parse_stage_args(SAMPLE_TYPES, ["--config", str(path)], prog="ttc sample")
    assert reloaded == configs
    assert config_to_dict(*reloaded) == config_to_dict(*configs)
    assert reloaded[1].prompt_template == "Q: {question}\nA:"


def test_resolved_difficulty_config_round_trips(tmp_path):
    config = DifficultyConfig(samples_dir="a b/c", output_dir="out", num_bins=7, bin_edges_file="edges.json")
    path = save_resolved_config(tmp_path, "difficulty", config)
    assert parse_stage_args((DifficultyConfig,), ["--config", str(path)], prog="ttc difficulty") == (config,)


def test_resolved_config_with_a_dash_value_round_trips(tmp_path):
    configs = (ProblemConfig(), GeneratorConfig(prompt_template="-{question}"), SampleConfig())
    path = save_resolved_config(tmp_path, "sample", *configs)
    assert parse_stage_args(SAMPLE_TYPES, ["--config", str(path)], prog="ttc sample") == configs


# --- config_hash -------------------------------------------------------------------------------


def test_config_hash_ignores_ignored_keys_only():
    base = config_to_dict(ProblemConfig(), GeneratorConfig(model_name_or_path="./m"), SampleConfig())
    ignore = {"output_dir", "overwrite", "shard"}
    digest = config_hash(base, ignore=ignore)
    # Independent computation of the documented recipe.
    kept = {k: v for k, v in base.items() if k not in ignore}
    assert digest == hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]

    same = {**base, "output_dir": "elsewhere", "overwrite": True, "shard": "3/4"}
    assert config_hash(same, ignore=ignore) == digest
    assert config_hash(dict(reversed(list(base.items()))), ignore=ignore) == digest
    for key, value in [
        ("seed", 1),
        ("num_samples", 17),
        ("ops", ["+"]),
        ("temperature", 0.7),
        ("model_name_or_path", "./n"),
    ]:
        assert config_hash({**base, key: value}, ignore=ignore) != digest, key
    # Without the ignore set the output_dir does count.
    assert config_hash(same) != config_hash(base)


# --- stage error paths that must not damage an output directory --------------------------------


def test_sample_with_a_missing_model_directory(tmp_path, capsys):
    assert (
        main(
            [
                "sample",
                "--model_name_or_path",
                "./does/not/exist",
                "--output_dir",
                str(tmp_path / "out"),
                "--num_problems",
                "4",
            ]
        )
        == 2
    )
    assert "./does/not/exist" in _error_line(capsys)


def _foreign_sample_dir(path: Path) -> dict[str, bytes]:
    """An output dir written by another sample config; returns its files' bytes."""
    prepare_output(path, "sample", "feedfacefeedface", 1, overwrite=False)
    write_shard(path, 0, [{"problem_id": "arith-0-0", "correct": [True, False], "num_tokens": [3, 4]}])
    save_resolved_config(
        path,
        "sample",
        ProblemConfig(num_problems=1),
        GeneratorConfig(model_name_or_path="./other"),
        SampleConfig(),
    )
    write_json(path / "stats.json", {"stage": "sample", "num_problems": 1})
    return {p.name: p.read_bytes() for p in path.iterdir()}


@pytest.mark.parametrize("model", ["real", "./does/not/exist"])
def test_sample_refuses_another_configs_output_dir(tmp_path, capsys, random_policy_dir, model):
    out = tmp_path / "samples"
    before = _foreign_sample_dir(out)
    model_path = str(random_policy_dir) if model == "real" else model
    code = main(
        [
            "sample",
            "--model_name_or_path",
            model_path,
            "--output_dir",
            str(out),
            "--num_problems",
            "4",
            "--num_samples",
            "1",
        ]
    )
    assert code == 2
    line = _error_line(capsys)
    if model == "real":
        assert str(out) in line and "--overwrite" in line
    else:  # the model is loaded first, so its error comes before the directory is looked at
        assert model in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sample_refuses_shards_without_a_manifest(tmp_path, capsys, random_policy_dir):
    out = tmp_path / "samples"
    out.mkdir()
    write_shard(out, 0, [{"problem_id": "x", "correct": [True]}])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code = main(
        [
            "sample",
            "--model_name_or_path",
            str(random_policy_dir),
            "--output_dir",
            str(out),
            "--num_problems",
            "4",
        ]
    )
    assert code == 2
    assert "manifest" in _error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_failed_model_load_leaves_no_manifest(tmp_path, capsys, random_policy_dir):
    out = tmp_path / "samples"
    args = ["sample", "--output_dir", str(out), "--num_problems", "4", "--num_samples", "1"]
    assert main([*args, "--model_name_or_path", "./does/not/exist"]) == 2
    _error_line(capsys)
    assert not (out / "manifest.json").exists()


def test_missing_relative_model_path_is_a_one_line_error(tmp_path, capsys):
    code = main(
        [
            "sample",
            "--model_name_or_path",
            "runs/no_such_policy",
            "--output_dir",
            str(tmp_path / "o"),
            "--num_problems",
            "4",
        ]
    )
    assert code == 2
    assert "runs/no_such_policy" in _error_line(capsys)


def test_difficulty_on_a_missing_samples_dir(tmp_path, capsys):
    out = tmp_path / "difficulty"
    assert main(["difficulty", "--samples_dir", str(tmp_path / "nothing"), "--output_dir", str(out)]) == 2
    assert str(tmp_path / "nothing") in _error_line(capsys)
    assert not out.exists()


def test_a_trainer_saved_config_parses_back():
    """`ttc <stage> --config <output>/ttc_config.yaml` must rerun: no empty list (which has no flag
    form) and no masked token placeholder is written, so none is read back."""
    from ttcompute.core.config import config_to_dict, parse_stage_args
    from ttcompute.tasks.problem_config import ProblemConfig
    from ttcompute.trainers.policy_config import PolicyConfig

    saved = (
        Path(__file__).resolve().parents[1] / "ttcompute" / "checkpoints" / "policy_small" / "ttc_config.yaml"
    )
    problem_args, config = parse_stage_args(
        (ProblemConfig, PolicyConfig), ["--config", str(saved)], prog="ttc train-policy"
    )
    assert config.hub_token is None and config.debug in ([], "", None)
    saved_values = config_to_dict(config)
    assert saved_values["hub_token"] is None and saved_values["debug"] is None


def test_deepspeed_is_requested_by_the_flag_or_the_config_file(tmp_path):
    from ttcompute.cli import deepspeed_requested_by

    recipe = str(REPO / "configs" / "math" / "prm.yaml")  # deepspeed: configs/deepspeed/zero2.json
    plain = tmp_path / "plain.yaml"
    plain.write_text("learning_rate: 0.001\n")
    assert deepspeed_requested_by(["--config", recipe])
    assert deepspeed_requested_by([f"--config={recipe}", "--max_steps", "2"])
    assert not deepspeed_requested_by(["--config", recipe, "--deepspeed", ""])  # the flag wins
    assert deepspeed_requested_by(["--config", str(plain), "--deepspeed", "zero2.json"])
    assert not deepspeed_requested_by(["--config", str(plain)])
    assert not deepspeed_requested_by(["--config", str(tmp_path / "missing.yaml")])
    assert not deepspeed_requested_by(["--max_steps", "2"])


# config file under configs/ -> the stage that reads it (configs/math/: tests/test_math_recipe.py)
ARITHMETIC_CONFIGS = {
    "sample.yaml": "sample",
    "difficulty.yaml": "difficulty",
    "label.yaml": "label",
    "convert_labels.yaml": "convert-labels",
    "policy_small.yaml": "train-policy",
    "policy_large.yaml": "train-policy",
    "prm.yaml": "train-prm",
    "revisions.yaml": "revisions",
    "reviser_copy.yaml": "train-reviser",
    "reviser.yaml": "train-reviser",
    "search.yaml": "search",
    "search_revisions.yaml": "search",
    "demo.yaml": "demo",
}
# what a config's header says to pass on the command line
REQUIRED_FLAGS = {"search.yaml": ["--prm", "runs/prm"]}


def parse_shipped(name: str) -> tuple:
    """``ttc <stage> --config configs/<name>`` with the flags its header asks for, as the CLI parses it."""
    _, specs, _ = STAGES[ARITHMETIC_CONFIGS[name]]
    types = tuple(getattr(importlib.import_module(module), cls) for module, cls in specs)
    argv = ["--config", str(REPO / "configs" / name), *REQUIRED_FLAGS.get(name, [])]
    return parse_stage_args(types, argv, prog=f"ttc {ARITHMETIC_CONFIGS[name]}")


def test_every_shipped_config_is_covered():
    assert sorted(p.name for p in (REPO / "configs").glob("*.yaml")) == sorted(ARITHMETIC_CONFIGS)


@pytest.mark.parametrize("name", sorted(ARITHMETIC_CONFIGS))
def test_shipped_config_parses_with_its_stage(name, monkeypatch):
    # An unknown key, a value of the wrong type or a rejected combination raises here; relative
    # paths in the configs (DeepSpeed JSONs, checkpoints) are from the repository root, where ttc runs.
    monkeypatch.chdir(REPO)
    assert len(parse_shipped(name)) == len(STAGES[ARITHMETIC_CONFIGS[name]][1])


def test_revision_search_config_samples_revisions_cooler_than_first_attempts(monkeypatch):
    # configs/search_revisions.yaml is the searching half of the shipped reviser recipe: chains start
    # at temperature 1 and revise at 0.5 (README "Which reviser keeps improving?").
    monkeypatch.chdir(REPO)
    _, generator, search = parse_shipped("search_revisions.yaml")
    assert search.methods == ["revisions"] and search.reviser == "runs/reviser"
    assert generator.temperature == 1.0 and search.revision_temperature == 0.5
