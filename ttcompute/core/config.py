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
from typing import Any, get_type_hints

import yaml
from transformers import HfArgumentParser

from ttcompute.core.argv import did_you_mean, redact_argv
from ttcompute.core.errors import InputError
from ttcompute.core.recipes import log_once, resolve_config, shipped_path
from ttcompute.core.recorded_paths import RECORDED_PATHS, record_options, resolve_options
from ttcompute.core.stage_help import HelpAllAction, StageHelpFormatter, field_groups, group_title, is_ours

# Options whose values are credentials (TrainingArguments' ``hub_token``). They may be given as flags,
# but the preferred sources are HF_TOKEN / WANDB_API_KEY and the standard logins.
SECRET_OPTIONS = ("hub_token",)


class StageArgumentParser(HfArgumentParser):
    """HfArgumentParser whose errors are :class:`InputError` (one line, non-zero exit) not usage dumps.

    Options are never abbreviated (``--search_di`` once ran as ``--search_dir``): an unknown one is an
    error that suggests the nearest. ``--help`` shows the last dataclass first (a stage's own config
    comes last in ``cli.STAGES``), one group per declaring class, and the options that a library class
    declares (``TrainingArguments``) by name only, described under ``--help-all``; see
    :mod:`ttcompute.core.stage_help`.
    """

    def __init__(self, dataclass_types, prog: str, description: str | None = None) -> None:
        self.show_all = False
        self._dtype_rank = {dtype: i for i, dtype in enumerate(dataclass_types)}
        super().__init__(
            dataclass_types,
            prog=prog,
            description=description,
            usage="%(prog)s [--config FILE.yaml] [--option value ...]",
            epilog="Every option is also spelt with hyphens (--an-option) and is a key of the --config file.",
            formatter_class=StageHelpFormatter,
            allow_abbrev=False,
        )
        self.add_argument(
            "--help-all", action=HelpAllAction, help="show this help with the inherited library options too"
        )
        self.add_argument(
            "--config", type=str, default=None, help="YAML file of option values; flags override it"
        )

    def _add_dataclass_arguments(self, dtype) -> None:
        # HfArgumentParser puts a dataclass's fields in one group in MRO field order, TrainingArguments'
        # 130 first: one group per declaring class instead (HfArgumentParser resolves the types the same way).
        type_hints = get_type_hints(dtype)
        for cls, fields in field_groups(dtype):
            group = self.add_argument_group(group_title(cls))
            group.inherited = not is_ours(cls)
            group.dtype_rank = self._dtype_rank.get(dtype, 0)
            for f in fields:
                f.type = type_hints[f.name]
                self._parse_dataclass_field(group, f)

    def format_help(self) -> str:  # noqa: D102 - argparse's, with groups reordered and library ones folded
        formatter = self._get_formatter()
        formatter.add_usage(self.usage, self._actions, self._mutually_exclusive_groups)
        formatter.add_text(self.description)
        for group in sorted(self._action_groups, key=_help_order):
            formatter.start_section(group.title)
            if getattr(group, "inherited", False) and not self.show_all:
                # Named, so that `--help | grep` finds every option; described under --help-all.
                names = [action.option_strings[0] for action in group._group_actions]
                formatter.add_text(f"`{self.prog} --help-all` describes these: {' '.join(names)}")
            else:
                formatter.add_text(group.description)
                formatter.add_arguments(group._group_actions)
            formatter.end_section()
        formatter.add_text(self.epilog)
        return formatter.format_help()

    def parse_args(self, args=None, namespace=None):  # noqa: D102 - argparse's, with did-you-mean
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self._unknown_arguments(extras))
        return namespace

    def option_names(self) -> list[str]:
        """Each option's long spelling (``--step_separator``; HfArgumentParser puts it before the alias)."""
        names = (
            next((o for o in action.option_strings if o.startswith("--")), None) for action in self._actions
        )
        return [name for name in names if name is not None]

    def _unknown_arguments(self, extras: list[str]) -> str:
        flags = [arg.split("=", 1)[0] for arg in extras if arg.startswith("-")]
        if not flags:
            return f"unexpected argument {extras[0]!r} (options are given as --name value)"
        return f"unknown option {flags[0]}{did_you_mean(flags[0], self.option_names())}"

    def error(self, message: str):  # noqa: D102 - argparse hook
        raise InputError(f"{self.prog}: {message}")


def _help_order(group) -> tuple[bool, bool, int]:
    # Stable sort: the parser's own options (--config), then ours with the stage's config (the last
    # dataclass) first, then the libraries'.
    return (
        hasattr(group, "dtype_rank"),
        getattr(group, "inherited", False),
        -getattr(group, "dtype_rank", 0),
    )


def _yaml_with_lines(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The mapping at the top of a YAML file and the (1-based) line of each key."""
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
        # A file where the command runs, else the shipped recipe of that name (a pip install has no clone).
        config_path = resolve_config(config_path)
        values, lines = _yaml_with_lines(config_path)
        if RECORDED_PATHS in values:  # a ttc_config.yaml: its recorded paths are relative to it
            values = resolve_options(values, config_path)
        for key, value in values.items():
            if key not in known:
                hint = did_you_mean(key, known)
                raise InputError(
                    f"{config_path}:{lines.get(key, 1)}: unknown key '{key}' for {prog}{hint} (see {prog} --help)"
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
    _resolve_shipped_paths(namespace)
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


def _resolve_shipped_paths(namespace) -> None:
    """The recipes name shipped files by their path in a clone (``ttcompute/checkpoints/policy_small``,
    ``configs/deepspeed/zero2.json``); where no such path exists (a pip install, another directory),
    such a value means the installed file. A path that exists is always taken as given."""
    for key, value in vars(namespace).items():
        if isinstance(value, str) and value and not Path(value).exists():
            shipped = shipped_path(value)
            if shipped is not None:
                log_once(f"{key}: {value} is not here; using the installed {shipped}")
                setattr(namespace, key, str(shipped))


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
    # Input paths relative to this file (core/recorded_paths.py): it reads the same from anywhere.
    values = record_options(config_to_dict(*configs), path.parent)
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
