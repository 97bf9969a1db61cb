"""The data options that train-prm and train-reviser share: which split to read and what to evaluate on.

Kept apart from :mod:`ttcompute.trainers.training_data` (which needs ``datasets``) so that the configs, which
the CLI imports to parse a command line, stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DatasetOptions:
    """The split and held-out options of a trainer config (a mixin of its dataclass); the
    ``dataset_name`` option itself is the config's, whose help says what shape the data has."""

    dataset_split: str = field(default="train", metadata={"help": "split of a Hub/dataset dir"})
    eval_dataset_name: str | None = field(default=None, metadata={"help": "evaluation data (same shape)"})
    eval_fraction: float = field(default=0.05, metadata={"help": "problems held out for evaluation"})
