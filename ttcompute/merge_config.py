"""Options of ``ttc merge``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MergeConfig:
    """Options of ``ttc merge``.

    Attributes:
        inputs: Output directories of the workers (glob patterns allowed, e.g. ``'runs/samples_*'``).
        output_dir: Where the merged output goes (a new directory, or an earlier partial merge).
        overwrite: Replace an ``output_dir`` that holds another run.
    """

    inputs: list[str] = field(default_factory=list, metadata={"help": "worker output directories (globs ok)"})
    output_dir: str = field(default="runs/merged", metadata={"help": "where the merged output goes"})
    overwrite: bool = field(default=False, metadata={"help": "replace output of a different run"})
