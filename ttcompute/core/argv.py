"""The command line itself: the arguments a launcher adds, and secrets blanked out of it.

Light on purpose (no transformers, no yaml): ``ttc`` reads its argv with these before it knows which
stage runs, and ``ttc --help`` must stay instant.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

REDACTED = "<redacted>"


def redact_argv(argv: list[str], secrets: Iterable[str]) -> list[str]:
    """``argv`` with every argument that is a secret, or ends in ``=secret``, redacted.

    Matched by value, not by flag name, so ``--hub_token=X`` and ``--hub-token X`` are both covered
    (and so would be any other spelling that reaches a parser); whole values only, so a short token
    cannot garble other arguments that happen to contain it.

    >>> redact_argv(["ttc", "train-prm", "--hub_token", "hf_x", "--seed", "3"], ["hf_x"])
    ['ttc', 'train-prm', '--hub_token', '<redacted>', '--seed', '3']
    >>> redact_argv(["--hub_token=hf_x", "--output_dir=runs/hf_x"], ["hf_x"])
    ['--hub_token=<redacted>', '--output_dir=runs/hf_x']
    """
    secrets = set(secrets)

    def redact(arg: str) -> str:
        if arg in secrets:
            return REDACTED
        flag, equals, value = arg.partition("=")
        return f"{flag}={REDACTED}" if equals and flag.startswith("-") and value in secrets else arg

    return [redact(arg) for arg in argv]


def launcher_rank_args(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without the ``--local_rank N`` a launcher adds, and that rank (None: none given)."""
    out, rank, skip = [], None, False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in ("--local_rank", "--local-rank"):
            if "=" in arg:
                rank = arg.split("=", 1)[1]
            else:
                skip = True
                rank = argv[i + 1] if i + 1 < len(argv) else None
            continue
        out.append(arg)
    return out, rank


def strip_launcher_args(argv: list[str]) -> list[str]:
    """Drop the ``--local_rank=N`` that the ``deepspeed`` launcher puts before the stage name.

    The rank also arrives in the ``LOCAL_RANK`` environment variable, which is what training reads
    (`main` sets it from the argument when the launcher did not).

    >>> strip_launcher_args(["--local_rank=1", "train-prm", "--seed", "3"])
    ['train-prm', '--seed', '3']
    """
    return launcher_rank_args(argv)[0]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean X?"`` for the closest of ``known`` to a mistyped ``name``, else ``""``.

    Hyphens and underscores are one to us (``--step-separator`` is ``--step_separator``), so a name is
    compared with its hyphens read as underscores.

    >>> did_you_mean("--search_di", ["--search_dir", "--seed"])
    '; did you mean --search_dir?'
    >>> did_you_mean("--num-smaples", ["--num_samples"])
    '; did you mean --num_samples?'
    >>> did_you_mean("--zzz", ["--search_dir"])
    ''
    """
    dashes = len(name) - len(name.lstrip("-"))
    normalized = name[:dashes] + name[dashes:].replace("-", "_")
    close = difflib.get_close_matches(normalized, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""
