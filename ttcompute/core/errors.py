"""The one exception type the CLI turns into a one-line error message, and how errors name options."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

# Set while `ttc` runs a stage: an error then names an option as its flag, else as a Python argument.
_COMMAND_LINE = contextvars.ContextVar("ttcompute_command_line", default=False)


class InputError(ValueError):
    """Bad user input: a missing file, a malformed row, an unknown key or stage.

    The message names the file, line and field where known; ``ttc`` prints it on one line and exits
    non-zero instead of showing a traceback.
    """


@contextmanager
def command_line() -> Iterator[None]:
    """Errors raised inside name options as ``ttc`` flags (``--prm_format``)."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)


def option(python: str, cli: str | tuple[str, ...] | None = None) -> str:
    """How an error tells the user to set an option: the flag(s) under ``ttc``, the Python argument
    otherwise (a Python user who passed ``prm_format=`` should not be told about ``--prm_format``).

    >>> option("prompt_contract", ("prm_prompt_template", "prm_use_chat_template"))
    'prompt_contract='
    >>> with command_line():
    ...     option("prompt_contract", ("prm_prompt_template", "prm_use_chat_template"))
    '--prm_prompt_template, --prm_use_chat_template'
    """
    if not _COMMAND_LINE.get():
        return f"{python}="
    names = (cli,) if isinstance(cli, str) else (cli or (python,))
    return ", ".join(f"--{name}" for name in names)
