"""The layering ARCHITECTURE.md states, checked on the source: who may import whom, and where.

Layers, bottom up: ``core`` -> ``tasks`` -> ``models`` -> the stage packages (``data_gen``,
``trainers``, ``eval``) -> the orchestration modules at the package root (``cli``, ``demo``,
``merge``). A module imports only its own layer and the ones below; the three stage packages never
import each other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ttcompute"
LAYER = {"core": 0, "tasks": 1, "models": 2, "data_gen": 3, "trainers": 3, "eval": 3}
ROOT_LAYER = 4  # cli.py, demo.py, merge.py and their configs
# Third-party modules a function may import lazily, each for the reason at its import: optional extras
# (vllm is CUDA-only, deepspeed and wandb are extras) that a run without them must never need.
LAZY_THIRD_PARTY = {"vllm", "deepspeed", "wandb"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "checkpoints" not in p.parts)


def _package_of(path: Path) -> str | None:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else None


def _imports(path: Path) -> list[tuple[ast.stmt, str, bool]]:
    """(statement, imported module, inside a function) for every import of ``path``."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                out.extend((child, alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append((child, child.module, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER.get(parts[1], ROOT_LAYER) if len(parts) > 1 else ROOT_LAYER


def test_no_module_imports_a_layer_above_it_or_another_stage_package():
    wrong = []
    for path in _modules():
        package = _package_of(path)
        own = LAYER.get(package, ROOT_LAYER) if package else ROOT_LAYER
        for node, module, _ in _imports(path):
            if not module.startswith("ttcompute."):
                continue
            target_package = module.split(".")[1]
            target = _layer(module)
            sideways = own == target == 3 and target_package != package
            if target > own or sideways:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_imports_sit_at_the_top_of_modules_but_for_the_optional_extras_and_the_cli():
    inner = []
    for path in _modules():
        for node, module, in_function in _imports(path):
            if not in_function or module.split(".")[0] in LAZY_THIRD_PARTY:
                continue
            if path.name == "cli.py":  # `ttc --help` must not import transformers, datasets or torch
                continue
            inner.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {module} in a function")
    assert not inner, "\n".join(inner)


def test_the_layer_rules_above_catch_a_stage_importing_another(tmp_path, monkeypatch):
    # The checks must be able to fail: a data_gen module importing eval is reported.
    fake = tmp_path / "ttcompute"
    (fake / "data_gen").mkdir(parents=True)
    (fake / "data_gen" / "x.py").write_text("from ttcompute.eval.select import run_select\n")
    (fake / "core").mkdir()
    (fake / "core" / "y.py").write_text("def f():\n    from ttcompute.models.prm import PRM\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="data_gen/x.py:1 imports ttcompute.eval.select"):
        test_no_module_imports_a_layer_above_it_or_another_stage_package()
    with pytest.raises(AssertionError, match="core/y.py:2 imports ttcompute.models.prm in a function"):
        test_imports_sit_at_the_top_of_modules_but_for_the_optional_extras_and_the_cli()


def test_the_cli_reads_stage_configs_without_importing_torch():
    # Every stage's config is in a light *_config module; the trainers' configs are TrainingArguments
    # subclasses (which bring torch by themselves), the rest must not.
    code = (
        "import importlib, sys\n"
        "from ttcompute.cli import STAGES\n"
        "for _, specs, _ in STAGES.values():\n"
        "    for module, name in specs:\n"
        "        if '.trainers.' not in module:\n"
        "            getattr(importlib.import_module(module), name)\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_architecture_md_names_every_module():
    # ARCHITECTURE.md is the map of the package: a module it does not name is one a reader cannot find.
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    unnamed = [
        str(p.relative_to(PACKAGE.parent))
        for p in _modules()
        if p.name != "__init__.py" and p.name not in text
    ]
    assert not unnamed, f"ARCHITECTURE.md does not name {unnamed}"
