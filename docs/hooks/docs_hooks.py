"""mkdocs hooks of the docs site (``hooks:`` in mkdocs.yml).

* ``reference/cli.md`` is generated at build time from the config dataclasses of ``ttcompute.cli.STAGES``
  (each field's type, default, help and choices), so the CLI reference cannot go stale. The help
  *formatting* of ``ttc <stage> --help`` is argparse's business; this reads the dataclasses directly.
* Code fences carry test markers for ``tests/test_docs.py`` (```` ```bash skip  # needs a GPU ````);
  they are dropped before rendering, so the site shows a plain ``bash`` block.

``tests/test_docs.py`` imports this file too (``cli_reference_markdown``).
"""

from __future__ import annotations

import dataclasses
import html
import importlib
import json
import re
from typing import Any

CLI_PAGE = "reference/cli.md"
# Where the fields a trainer config inherits are documented.
BASE_DOCS = {
    "TrainingArguments": "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments",
    "SFTConfig": "https://huggingface.co/docs/trl/sft_trainer#trl.SFTConfig",
}
# A fence's info string: language, then the test marker and its reason (see tests/test_docs.py).
FENCE_MARKER = re.compile(
    r"^(?P<indent>[ \t>]*)(?P<fence>`{3,}|~{3,})(?P<lang>[\w#.+-]+)[ \t]+(?:skip|slow)\b.*$", re.M
)


def strip_fence_markers(markdown: str) -> str:
    """```` ```bash skip  # reason ```` -> ```` ```bash ````."""
    return FENCE_MARKER.sub(r"\g<indent>\g<fence>\g<lang>", markdown)


def _code(text: str) -> str:
    """``text`` as one inline code span, whatever backticks it holds."""
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or ticks != "`" else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value: Any = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if isinstance(value, str):
        return _code(json.dumps(value, ensure_ascii=False))  # "\n\n" shows as "\n\n", not two newlines
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float, str)) for v in value):
        return _code(" ".join(str(v) for v in value)) if value else _code("[]")
    return _code(repr(value))


def _prose(text: str) -> str:
    """Help text as Markdown: no raw HTML, no accidental emphasis; code spans left as written."""
    parts = re.split(r"(`[^`]*`)", " ".join(text.split()))
    return "".join(
        part if part.startswith("`") else re.sub(r"([*_\\])", r"\\\1", html.escape(part, quote=False))
        for part in parts
    )


def _field_line(field: dataclasses.Field) -> str:
    type_name = (
        field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    )
    line = f"- **{_code('--' + field.name)}** ({_code(str(type_name))}, default {_default(field)})"
    help_text = field.metadata.get("help")
    if help_text:
        line += f": {_prose(help_text)}"
    choices = field.metadata.get("choices")
    if choices:
        line += f". Choices: {', '.join(_code(str(c)) for c in choices)}"
    return line


def _library_base(cls: type) -> type | None:
    """The transformers/TRL config a trainer config extends (TrainingArguments, SFTConfig), if any."""
    for base in cls.__mro__[1:]:
        if base.__module__.split(".")[0] in ("transformers", "trl") and dataclasses.is_dataclass(base):
            return base
    return None


def _resolved_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _config_section(cls: type, anchor: str) -> list[str]:
    lines = [f"### {cls.__name__} {{#{anchor}}}", ""]
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc and not doc.startswith(cls.__name__ + "("):
        lines += [_prose(doc), ""]
    fields = dataclasses.fields(cls)
    base = _library_base(cls)
    if base is None:
        lines += [_field_line(f) for f in fields]
        return [*lines, ""]
    base_fields = {f.name: f for f in dataclasses.fields(base)}
    own = [f for f in fields if f.name not in base_fields]
    changed = [
        f
        for f in fields
        if f.name in base_fields
        and repr(_resolved_default(f)) != repr(_resolved_default(base_fields[f.name]))
    ]
    lines += [_field_line(f) for f in own]
    if changed:
        lines += ["", f"Defaults changed from {base.__name__}'s:", ""]
        lines += [_field_line(f) for f in changed]
    names = [b.__name__ for b in base.__mro__ if b.__name__ in BASE_DOCS]
    links = " and ".join(f"[{n}]({BASE_DOCS[n]})" for n in names) or base.__name__
    lines += [
        "",
        f"Every other option is a field of {links} (`--deepspeed`, `--report_to`, `--push_to_hub`, "
        f"`--hub_model_id`, `--learning_rate` ...), also a flag and a YAML key.",
        "",
    ]
    return lines


def cli_reference_markdown() -> str:
    """The CLI reference page, from ``ttcompute.cli.STAGES`` and the stages' config dataclasses."""
    from ttcompute.cli import GENERATOR, PROBLEMS, STAGES

    shared = {PROBLEMS: "shared-problems", GENERATOR: "shared-generator"}
    lines = [
        "# CLI reference",
        "",
        "Generated from the stages' config dataclasses when the site is built. Every option is a "
        "command-line flag and a key of the YAML file given to `--config` (flags win); `ttc <stage> --help` "
        "prints the same options. `ttc recipes` lists the shipped YAML recipes, `ttc --version` the "
        "version. Booleans take a value: `--use_peft true`. Lists take several values: `--budgets 1 4 16`.",
        "",
        "| stage | what it does | option groups |",
        "|---|---|---|",
    ]
    for stage, (summary, specs, _) in STAGES.items():
        groups = ", ".join(
            f"[{cls}](#{shared.get((mod, cls), stage + '-' + cls.lower())})" for mod, cls in specs
        )
        lines.append(f"| [`ttc {stage}`](#ttc-{stage}) | {_prose(summary)} | {groups} |")
    lines += ["", "## Option groups shared by several stages", ""]
    for (module, name), anchor in shared.items():
        users = ", ".join(f"`{s}`" for s, (_, specs, _) in STAGES.items() if (module, name) in specs)
        lines += _config_section(getattr(importlib.import_module(module), name), anchor)
        lines[-1:-1] = ["", f"Used by {users}."]
    for stage, (summary, specs, _) in STAGES.items():
        lines += [f"## `ttc {stage}` {{#ttc-{stage}}}", "", _prose(summary) + ".", ""]
        for module, name in specs:
            if (module, name) in shared:
                lines += [f"The [{name}](#{shared[(module, name)]}) options.", ""]
            else:
                cls = getattr(importlib.import_module(module), name)
                lines += _config_section(cls, f"{stage}-{name.lower()}")
    return "\n".join(lines) + "\n"


# -- mkdocs events -------------------------------------------------------------------------------


def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, CLI_PAGE, content=cli_reference_markdown()))
    return files


def on_page_markdown(markdown, page, config, files):
    return strip_fence_markers(markdown)
