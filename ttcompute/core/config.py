"""``--config FILE.yaml`` plus command-line overrides for any set of config dataclasses.

One config system: ``HfArgumentParser`` (every dataclass field is a flag), with YAML values applied
first and command-line flags after them, so the command line wins. Unlike a bare ``set_defaults``,
YAML values go through the same type conversion as flags, and a key that no dataclass has, or a value
of the wrong type, is reported with the YAML file and line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from ttcompute.core.argv import redact_argv
from ttcompute.core.errors import InputError

# Options whose values are credentials (TrainingArguments' ``hub_token``). They may be given as flags,
# but the preferred sources are HF_TOKEN / WANDB_API_KEY and the standard logins.
SECRET_OPTIONS = ("hub_token",)


class StageArgumentParser(HfArgumentParser):
    """HfArgumentParser whose errors are :class:`InputError` (one line, non-zero exit) not usage dumps."""

    def __init__(self, dataclass_types, prog: str, description: str | None = None) -> None:
        super().__init__(dataclass_types, prog=prog, description=description)
        self.add_argument(
            "--config", type=str, default=None, help="YAML file of option values (flags override it)"
        )

    def error(self, message: str):  # noqa: D102 - argparse hook
        raise InputError(f"{self.prog}: {message}")


def _yaml_with_lines(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The mapping at the top of a YAML file and the (1-based) line of each key."""
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    text = path.read_text()
    try:
        node = yaml.compose(text)
        values = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise InputError(f"{where}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if values is None:
        return {}, {}
    if not isinstance(values, dict):
        raise InputError(f"{path}:1: a config file must be a mapping of option: value")
    lines = {key_node.value: key_node.start_mark.line + 1 for key_node, _ in node.value}
    return values, lines


def _as_flags(key: str, value: Any) -> list[str]:
    # `--key=value` so that values starting with "-" are not read as flags.
    if isinstance(value, bool):
        return [f"--{key}={str(value).lower()}"]
    if isinstance(value, (list, tuple)):
        return [f"--{key}", *[str(v) for v in value]]
    return [f"--{key}={value}"]


def parse_stage_args(dataclass_types: tuple[type, ...], args: list[str], prog: str) -> tuple[Any, ...]:
    """Instantiate ``dataclass_types`` from ``--config FILE.yaml`` and flags (flags win).

    Raises:
        InputError: unknown key or flag, a value of the wrong type, a missing or malformed YAML file,
            or a dataclass ``__post_init__`` that rejects the values (the message says which).
    """
    parser = StageArgumentParser(dataclass_types, prog=prog)
    known = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init}
    config_path = None
    if "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise InputError(f"{prog}: --config needs a file")
        config_path = Path(args[at + 1])
        args = args[:at] + args[at + 2 :]
    else:
        for i, arg in enumerate(args):
            if arg.startswith("--config="):
                config_path = Path(arg.split("=", 1)[1])
                args = args[:i] + args[i + 1 :]
                break

    yaml_flags: list[str] = []
    dict_defaults: dict[str, Any] = {}
    if config_path is not None:
        values, lines = _yaml_with_lines(config_path)
        for key, value in values.items():
            if key not in known:
                raise InputError(
                    f"{config_path}:{lines.get(key, 1)}: unknown key '{key}' for {prog} (see {prog} --help)"
                )
            if value is None:
                continue
            if isinstance(value, dict):  # e.g. a DeepSpeed config inline: not expressible as a flag
                dict_defaults[key] = value
                continue
            try:
                parser.parse_args(_as_flags(key, value))
            except InputError as err:
                raise InputError(
                    f"{config_path}:{lines.get(key, 1)}: key '{key}': {_strip_prog(err, prog)}"
                ) from None
            yaml_flags += _as_flags(key, value)
    if dict_defaults:
        parser.set_defaults(**dict_defaults)

    namespace = parser.parse_args(yaml_flags + list(args))
    outputs = []
    for dtype in dataclass_types:
        names = {f.name for f in dataclasses.fields(dtype) if f.init}
        kwargs = {k: v for k, v in vars(namespace).items() if k in names}
        try:
            outputs.append(dtype(**kwargs))
        except ValueError as err:
            where = f"{config_path}: " if config_path else ""
            raise InputError(f"{prog}: {where}{err}".strip()) from None
    # A token given as a flag sits in sys.argv, which the trainers record (training_log.json's
    # `command`) and W&B saves as run metadata: blank it out as soon as the config holds it.
    secrets = secret_values(*outputs)
    if secrets:
        sys.argv[:] = redact_argv(sys.argv, secrets)
    return tuple(outputs)


def secret_values(*configs: Any) -> list[str]:
    """The non-empty :data:`SECRET_OPTIONS` values that ``configs`` hold."""
    values = (getattr(config, name, None) for config in configs for name in SECRET_OPTIONS)
    return [value for value in values if isinstance(value, str) and value]


def _strip_prog(err: Exception, prog: str) -> str:
    return re.sub(rf"^{re.escape(prog)}: ", "", str(err))


def config_to_dict(*configs: Any) -> dict[str, Any]:
    """Flatten config dataclasses into one JSON-able dict (secrets masked by TrainingArguments)."""
    out: dict[str, Any] = {}
    for config in configs:
        values = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
        # TrainingArguments masks every *_token field as "<FIELD_NAME>"; written back to a config
        # file that placeholder would be read as a real token on a rerun. An empty list (debug: [],
        # report_to: []) has no flag form, so a rerun would fail on it. Both mean "unset": null.
        values = {k: None if v == f"<{k.upper()}>" or v == [] else v for k, v in values.items()}
        out.update({k: _jsonable(v) for k, v in values.items()})
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def save_resolved_config(output_dir: str | Path, stage: str, *configs: Any) -> Path:
    """Write every option's resolved value to ``<output_dir>/ttc_config.yaml`` (re-runnable with --config)."""
    path = Path(output_dir) / "ttc_config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    values = config_to_dict(*configs)
    header = f"# Resolved config of `ttc {stage}`; rerun with: ttc {stage} --config {path.name}\n"
    # One temporary name per process: every rank of a distributed launch writes the same file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + yaml.safe_dump(values, sort_keys=True))
    tmp.replace(path)
    return path


def config_hash(values: dict[str, Any], ignore: set[str] = frozenset()) -> str:
    """Stable hash of the options that determine a stage's outputs."""
    kept = {k: v for k, v in sorted(values.items()) if k not in ignore}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]
