"""W&B tracking and Hub pushes for the long generating stages (``sample``, ``label``, ``revisions``,
``search``): the GPU-hours of a run, logged as the trainers' runs are.

:class:`TrackingOptions` and :class:`HubDatasetOptions` are mixins of those stages' configs (light:
``wandb`` is imported only when asked for, ``huggingface_hub`` only to push). Neither changes what a
stage computes, so neither is part of its identity (:data:`TRACKING_OPTIONS`, left out of the hash).

With ``--report_to wandb`` a stage opens one run (``job_type`` = the stage, the resolved options as
its config) and logs, after every shard, the shards done and what the shard spent (rows, tokens, FLOPs:
the stage's ``shard_metrics``); when the output is complete, the stage's stats (``stats.json``) become
the run's summary. ``WANDB_MODE=offline`` works as for the trainers.

With ``--push_to_hub true`` a finished ``label`` or ``revisions`` output is uploaded as a Hub dataset
(``--hub_dataset_id``, default: the directory's name), with a dataset card (``README.md``): what
made it (policy, rollouts, label rule, prompt contract) and ``configs:`` metadata, so that
``datasets.load_dataset(<id>)`` reads its shards. The token comes from ``HF_TOKEN`` or the login,
never from a flag, and is written nowhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import huggingface_hub
import yaml

from ttcompute.core.errors import InputError

logger = logging.getLogger(__name__)

REPORT_TO = ("none", "wandb")
TRACKING_OPTIONS = frozenset(
    {"report_to", "wandb_project", "wandb_run_name", "push_to_hub", "hub_dataset_id", "hub_private_repo"}
)
# What a pushed dataset holds: the shards and what explains them; never a temporary file.
DATASET_FILES = ["shard-*.parquet", "manifest.json", "stats.json", "ttc_config.yaml", "README.md"]


@dataclass
class TrackingOptions:
    """``--report_to wandb`` for a generating stage (a mixin of its config)."""

    report_to: str = field(default="none", metadata={"help": "none | wandb: log progress and stats"})
    wandb_project: str | None = field(default=None, metadata={"help": "W&B project (default: ttcompute)"})
    wandb_run_name: str | None = field(default=None, metadata={"help": "W&B run name (default: W&B's)"})

    def __post_init__(self) -> None:
        if self.report_to not in REPORT_TO:
            raise ValueError(f"report_to must be one of {REPORT_TO}, got {self.report_to!r}")


@dataclass
class HubDatasetOptions:
    """``--push_to_hub`` for a stage whose output is a training dataset (a mixin of its config)."""

    push_to_hub: bool = field(default=False, metadata={"help": "upload the finished dataset to the Hub"})
    hub_dataset_id: str | None = field(
        default=None, metadata={"help": "Hub dataset repo (default: the output directory's name)"}
    )
    hub_private_repo: bool | None = field(default=None, metadata={"help": "create the repo private"})


class StageTracker:
    """One W&B run for one stage invocation; does nothing with ``report_to`` none."""

    def __init__(self, stage: str, options: Any, config: Mapping[str, Any], output_dir: str) -> None:
        self.run = None
        if getattr(options, "report_to", "none") != "wandb":
            return
        # Function-level: wandb is an optional extra, imported only when a run asks for it.
        try:
            import wandb
        except ImportError:
            raise InputError(
                "--report_to wandb needs the wandb extra: pip install 'ttcompute[wandb]'"
            ) from None
        self.run = wandb.init(
            project=options.wandb_project or "ttcompute",
            name=options.wandb_run_name,
            job_type=stage,
            config=dict(config),
            dir=output_dir,
            reinit="finish_previous",
        )

    def log(self, values: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.log(dict(values))

    def finish(self, stats: Mapping[str, Any] | None) -> None:
        if self.run is None:
            return
        if stats is not None:
            self.run.summary.update(flatten(stats))
        self.run.finish()
        self.run = None


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested stats as W&B summary keys.

    >>> flatten({"compute": {"policy_tokens": 3}, "pass_at_1": 0.5})
    {'compute/policy_tokens': 3, 'pass_at_1': 0.5}
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


def dataset_card(stage: str, output_dir: str | Path, repo_id: str, facts: Mapping[str, Any]) -> str:
    """The README of a pushed stage output: ``configs:`` metadata over its shards, what made it, its stats."""
    out = Path(output_dir)
    stats = json.loads((out / "stats.json").read_text()) if (out / "stats.json").is_file() else {}
    header = {
        "tags": ["ttcompute", stage],
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "shard-*.parquet"}]}
        ],
    }
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"Written by `ttc {stage}` (ttcompute). Load it with `datasets.load_dataset({repo_id!r}, split='train')`.",
        "",
        "## How it was made",
        "",
    ]
    lines += [f"- **{name}:** `{value}`" for name, value in facts.items()]
    lines += ["", "## Stats (`stats.json`)", "", "```json", json.dumps(stats, indent=2), "```", ""]
    lines += ["The resolved options of the run are in `ttc_config.yaml` (rerun with `--config`).", ""]
    return "\n".join(lines)


def push_dataset(
    stage: str, output_dir: str | Path, options: HubDatasetOptions, facts: Mapping[str, Any]
) -> str:
    """Write the dataset card into ``output_dir`` and upload the finished output; returns the repo id."""
    out = Path(output_dir)
    # Looked up on the module when called, so that a replaced `HfApi` (an offline test) is the one used.
    api = huggingface_hub.HfApi()
    repo_id = options.hub_dataset_id or out.resolve().name
    repo_id = api.create_repo(
        repo_id, repo_type="dataset", private=options.hub_private_repo, exist_ok=True
    ).repo_id
    (out / "README.md").write_text(dataset_card(stage, out, repo_id, facts))
    api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(out),
        allow_patterns=DATASET_FILES,
        commit_message=f"ttc {stage}",
    )
    logger.info("Pushed %s to the Hub as the dataset %s", out, repo_id)
    return repo_id
