"""Upload a trainer's final output folder to the Hub, once (not its intermediate checkpoints)."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# Checkpoints, temporary files and the pickled arguments stay local.
IGNORE_PATTERNS = ["checkpoint-*", "_*", ".*", "training_args.bin"]


def push_folder(out: Path, config, commit_message: str) -> str:
    """Upload ``out`` (the final checkpoint and its model card) to ``config.hub_model_id`` (default:
    the folder's name) and return the repo id.

    The token comes from ``--hub_token``, ``HF_TOKEN`` or the standard login; it is never written to
    a file.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=config.hub_token)
    repo_id = config.hub_model_id or out.name
    repo_id = api.create_repo(repo_id, private=config.hub_private_repo, exist_ok=True).repo_id
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(out),
        commit_message=commit_message,
        ignore_patterns=IGNORE_PATTERNS,
        revision=config.hub_revision,
    )
    logger.info("Pushed %s to the Hub as %s", out, repo_id)
    return repo_id
