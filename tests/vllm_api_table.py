"""Write ``tests/data/vllm_api.json``: the parts of vLLM's API that ``models/vllm_backend.py`` touches,
read from vLLM's published source distributions (one per version), never from our own calls.

    python tests/vllm_api_table.py vllm-0.8.0.tar.gz vllm-0.34.0.tar.gz

The sdists come from PyPI (``https://pypi.org/pypi/vllm/<version>/json`` names them with their
sha256). The source is parsed, not imported: vLLM imports CUDA kernels and cannot load here.
``tests/fake_vllm.py`` builds its signatures from the table, so the fake accepts exactly the names the
real classes accept, at each version pyproject allows.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import tarfile
from pathlib import Path

TABLE = Path(__file__).parent / "data" / "vllm_api.json"


def _read(tar: tarfile.TarFile, root: str, candidates: list[str]) -> tuple[str, ast.Module]:
    for relative in candidates:
        try:
            member = tar.getmember(f"{root}/{relative}")
        except KeyError:
            continue
        return relative, ast.parse(tar.extractfile(member).read())
    raise SystemExit(f"{tar.name}: none of {candidates} in the sdist")


def _class(module: ast.Module, name: str) -> ast.ClassDef:
    found = [n for n in module.body if isinstance(n, ast.ClassDef) and n.name == name]
    if not found:
        raise SystemExit(f"no class {name}")
    return found[-1]


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    # The implementation follows its @overload stubs: the last definition is the one that runs.
    defs = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name]
    if not defs:
        raise SystemExit(f"no method {cls.name}.{name}")
    return defs[-1]


def _signature(function: ast.FunctionDef) -> dict:
    """Parameters (without self) with their kind and whether they have a default."""
    a = function.args
    positional = a.posonlyargs + a.args
    defaults_from = len(positional) - len(a.defaults)
    params = []
    for i, arg in enumerate(positional):
        kind = "POSITIONAL_ONLY" if arg in a.posonlyargs else "POSITIONAL_OR_KEYWORD"
        params.append({"name": arg.arg, "kind": kind, "required": i < defaults_from})
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append({"name": arg.arg, "kind": "KEYWORD_ONLY", "required": default is None})
    params = [p for p in params if p["name"] != "self"]
    return {
        "params": params,
        "var_positional": a.vararg.arg if a.vararg else None,
        "var_keyword": a.kwarg.arg if a.kwarg else None,
    }


def _is_classvar(annotation: ast.expr) -> bool:
    return "ClassVar" in ast.unparse(annotation)


def _fields(cls: ast.ClassDef) -> list[dict]:
    """Annotated class-level fields in order (dataclass, msgspec.Struct, TypedDict), ClassVars left out."""
    fields = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if _is_classvar(node.annotation):
                continue
            annotation = ast.unparse(node.annotation)
            fields.append(
                {
                    "name": node.target.id,
                    "required": node.value is None and not annotation.startswith("NotRequired"),
                }
            )
    return fields


def _defaults(cls: ast.ClassDef) -> dict:
    """Class-level defaults that are literals (the rest are left to the fake's None)."""
    defaults = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            try:
                defaults[node.target.id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return defaults


class _Substitute(ast.NodeTransformer):
    def __init__(self, names: dict[str, ast.expr]) -> None:
        self.names = names

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.names.get(node.id, node)


def _raise_rules(module: ast.Module, body: list[ast.stmt], helpers: dict[str, ast.FunctionDef]) -> list[dict]:
    """Each ``if <condition>: raise E(message)`` of a validation method, as source text, in order.

    A call to a module-level helper (0.34's ``_verify_num_sequences(self.n, "n")``) contributes the
    helper's rules with its parameters replaced by the call's arguments.
    """
    rules = []
    for node in body:
        if isinstance(node, ast.If) and node.body and isinstance(node.body[0], ast.Raise):
            exc = node.body[0].exc
            call = exc if isinstance(exc, ast.Call) else None
            rules.append(
                {
                    "when": ast.unparse(node.test),
                    "error": ast.unparse(call.func if call else exc),
                    "message": ast.unparse(call.args[0]) if call and call.args else "",
                }
            )
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id in helpers:
                helper = helpers[func.id]
                names = {a.arg: v for a, v in zip(helper.args.args, node.value.args)}
                substituted = [
                    _Substitute(names).visit(ast.parse(ast.unparse(s)).body[0]) for s in helper.body
                ]
                rules += _raise_rules(module, substituted, helpers)
    return rules


def _sampling_rules(module: ast.Module) -> dict:
    cls = _class(module, "SamplingParams")
    helpers = {n.name: n for n in module.body if isinstance(n, ast.FunctionDef)}
    constants = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return {
        "verify_args": _raise_rules(module, _method(cls, "_verify_args").body, helpers),
        "verify_greedy_sampling": _raise_rules(module, _method(cls, "_verify_greedy_sampling").body, helpers),
        "constants": {
            k: v for k, v in constants.items() if k.startswith("_") and isinstance(v, (int, float))
        },
    }


def _assigned_attributes(function: ast.FunctionDef) -> list[str]:
    names = set()
    for node in ast.walk(function):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                names.add(target.attr)
    return sorted(names)


def _model_config_attributes(module: ast.Module) -> list[str]:
    cls = _class(module, "ModelConfig")
    names = {f["name"] for f in _fields(cls)}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name in ("__init__", "__post_init__"):
            names |= set(_assigned_attributes(node))
            if node.name == "__init__":
                names |= {p["name"] for p in _signature(node)["params"]}
    return sorted(names)


def extract(sdist: Path) -> tuple[str, dict]:
    with tarfile.open(sdist) as tar:
        root = tar.getnames()[0].split("/")[0]
        version = root.removeprefix("vllm-")
        _, llm_module = _read(tar, root, ["vllm/entrypoints/llm.py"])
        _, args_module = _read(tar, root, ["vllm/engine/arg_utils.py"])
        _, sampling_module = _read(tar, root, ["vllm/sampling_params.py"])
        inputs_path, inputs_module = _read(tar, root, ["vllm/inputs/llm.py", "vllm/inputs/data.py"])
        _, outputs_module = _read(tar, root, ["vllm/outputs.py"])
        _, engine_module = _read(tar, root, ["vllm/v1/engine/llm_engine.py"])
        _, config_module = _read(tar, root, ["vllm/config/model.py", "vllm/config.py"])

    llm = _class(llm_module, "LLM")
    prompt = _class(inputs_module, "TokensPrompt")
    prompt_fields = _fields(prompt)
    for base in prompt.bases:  # TypedDict bases (0.34's _PromptOptions) contribute their keys
        if isinstance(base, ast.Name) and base.id != "TypedDict":
            prompt_fields = _fields(_class(inputs_module, base.id)) + prompt_fields
    table = {
        "LLM.__init__": _signature(_method(llm, "__init__")),
        "LLM.attributes": _assigned_attributes(_method(llm, "__init__")),
        "LLM.generate": _signature(_method(llm, "generate")),
        "LLM.get_tokenizer": _signature(_method(llm, "get_tokenizer")),
        "EngineArgs": [f["name"] for f in _fields(_class(args_module, "EngineArgs"))],
        "SamplingParams": [f["name"] for f in _fields(_class(sampling_module, "SamplingParams"))],
        "SamplingParams.defaults": _defaults(_class(sampling_module, "SamplingParams")),
        "SamplingParams.rules": _sampling_rules(sampling_module),
        "TokensPrompt": {
            "required": [f["name"] for f in prompt_fields if f["required"]],
            "optional": [f["name"] for f in prompt_fields if not f["required"]],
            "module": inputs_path,
        },
        "RequestOutput.__init__": _signature(_method(_class(outputs_module, "RequestOutput"), "__init__")),
        "CompletionOutput": [f["name"] for f in _fields(_class(outputs_module, "CompletionOutput"))],
        "V1 LLMEngine.attributes": _assigned_attributes(
            _method(_class(engine_module, "LLMEngine"), "__init__")
        ),
        "ModelConfig.attributes": _model_config_attributes(config_module),
    }
    return version, table


def main(sdists: list[str]) -> None:
    source, versions = {}, {}
    for path in map(Path, sdists):
        version, table = extract(path)
        source[version] = {"sdist": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        versions[version] = table
    TABLE.write_text(json.dumps({"source": source, "versions": versions}, indent=1) + "\n")
    print(f"wrote {TABLE} for vLLM {', '.join(versions)}")


if __name__ == "__main__":
    main(sys.argv[1:])
