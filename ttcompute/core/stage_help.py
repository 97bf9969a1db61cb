"""How ``ttc <stage> --help`` reads: the stage's own options first, grouped by the class that declares
them; the options a library class declares (``TrainingArguments``, ``SFTConfig``) named at the end and
described only under ``--help-all``.

A trainer config inherits some 110 ``TrainingArguments`` fields; described with the rest they made
``ttc train-prm --help`` 650 lines with the PRM's own options last. They are transformers' options,
documented there; ``--help`` still names each, so that ``--help | grep`` finds every option.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
from enum import Enum
from typing import Any

# A help text that already says its default ("default: the search's") gets no "(default: None)" after it.
_SAYS_DEFAULT = re.compile(r"\bdefault\s*:", re.IGNORECASE)
_TYPE_METAVARS = {"int": "INT", "float": "FLOAT", "str": "STR", "string_to_bool": "BOOL"}


def shown_default(value: Any) -> str:
    r"""A default as ``--help`` shows it: a string that would print blank or invisible as its repr, a
    list as it is typed after its flag.

    >>> shown_default("\n\n"), shown_default(""), shown_default(" ки"), shown_default("cosine")
    ("'\\n\\n'", "''", "' ки'", 'cosine')
    >>> shown_default(["best_of_n", "beam_search"]), shown_default([1, 4])
    ('best_of_n beam_search', '1 4')
    """
    if isinstance(value, (list, tuple)) and value:
        return " ".join(shown_default(item) for item in value)
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, str) and (not value or value != value.strip() or not value.isprintable()):
        return repr(value)
    return str(value)


class StageHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown once and legibly; metavars by type (``STR``), not the option name upper-cased;
    an option's hyphenated alias (``--step-separator``) left out, said once in the epilog."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 30, width=None):
        super().__init__(prog, indent_increment, max_help_position, width)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        names = set(action.option_strings)
        kept = [name for name in action.option_strings if not _is_hyphen_alias(name, names)]
        if kept != action.option_strings:
            action = copy.copy(action)
            action.option_strings = kept
        return super()._format_action_invocation(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        # nargs=0: flags (--help, --no_X) whose "default" is nothing a user sets.
        if action.default is argparse.SUPPRESS or action.nargs == 0 or not action.option_strings:
            return text
        if "%(default)" in text or _SAYS_DEFAULT.search(text):
            return text
        return f"{text} (default: {shown_default(action.default).replace('%', '%%')})"

    def _format_args(self, action: argparse.Action, default_metavar: str) -> str:
        # "{best_of_n,beam_search,...} [{best_of_n,beam_search,...} ...]" said its choices twice.
        if action.nargs == argparse.ONE_OR_MORE:
            (metavar,) = self._metavar_formatter(action, default_metavar)(1)
            return f"{metavar} [...]"
        return super()._format_args(action, default_metavar)

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return _TYPE_METAVARS.get(getattr(action.type, "__name__", ""), "VALUE")


def _is_hyphen_alias(name: str, names: set[str]) -> bool:
    return name.startswith("--") and "-" in name[2:] and "--" + name[2:].replace("-", "_") in names


class HelpAllAction(argparse.Action):
    """``--help-all``: the help with the library options too."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str | None = None):
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: D102 - argparse hook
        parser.show_all = True
        parser.print_help()
        parser.exit()


def declaring_class(dtype: type, name: str) -> type:
    """The most derived class in ``dtype``'s MRO that declares field ``name`` (a redeclared field,
    e.g. a ``TrainingArguments`` default that a config changes, belongs to the config)."""
    for cls in dtype.__mro__:
        if name in vars(cls).get("__annotations__", {}):
            return cls
    return dtype


def is_ours(cls: type) -> bool:
    """Whether ``cls`` is ttcompute's (its options are the stage's) rather than a library's."""
    return cls.__module__ == "ttcompute" or cls.__module__.startswith("ttcompute.")


def field_groups(dtype: type) -> list[tuple[type, list[dataclasses.Field]]]:
    """``dtype``'s init fields by declaring class: ``dtype`` first, then its bases in MRO order; within
    a class, in the order it declares them (a redeclared field would otherwise sit where its base put it)."""
    groups: dict[type, list[dataclasses.Field]] = {}
    for f in dataclasses.fields(dtype):
        if f.init:
            groups.setdefault(declaring_class(dtype, f.name), []).append(f)
    ordered = sorted(groups.items(), key=lambda item: dtype.__mro__.index(item[0]))
    return [(cls, sorted(fields, key=_declaration_order(cls))) for cls, fields in ordered]


def _declaration_order(cls: type):
    names = list(vars(cls).get("__annotations__", {}))
    return lambda f: names.index(f.name) if f.name in names else len(names)


def group_title(cls: type) -> str:
    """``PRMConfig``; a library class as ``transformers.TrainingArguments (inherited)``."""
    if is_ours(cls):
        return cls.__name__
    return f"{cls.__module__.split('.')[0]}.{cls.__name__} (inherited)"
