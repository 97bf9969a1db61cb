"""Upload a trainer's final output folder to the Hub, once (not its intermediate checkpoints)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from transformers import TrainingArguments

logger = logging.getLogger(__name__)

# Checkpoints, temporary files and the pickled arguments stay local.
IGNORE_PATTERNS = ["checkpoint-*", "_*", ".*", "training_args.bin"]


@dataclass(frozen=True)
class HubUpload:
    """The Hub options of a trainer's config (``--push_to_hub``, ``--hub_model_id`` ...), kept apart
    from the config for the single push at the end of training."""

    push_to_hub: bool
    hub_model_id: str | None
    hub_token: str | None
    hub_private_repo: bool | None
    hub_revision: str | None

    @classmethod
    def of(cls, config: TrainingArguments) -> HubUpload:
        """The Hub options of ``config``, which keeps them."""
        return cls(
            push_to_hub=config.push_to_hub,
            hub_model_id=config.hub_model_id,
            hub_token=config.hub_token,
            hub_private_repo=config.hub_private_repo,
            hub_revision=config.hub_revision,
        )

    @classmethod
    def take_from(cls, config: TrainingArguments) -> HubUpload:
        """The Hub options of ``config``, taken off it before its Trainer is built: from then on the
        config says ``push_to_hub`` False and ``hub_token`` None."""
        upload = cls.of(config)
        # We push once, at the end, the merged checkpoint and its card; the Trainer's own pushes would
        # upload every intermediate checkpoint (and, with LoRA, only the unmerged adapter).
        config.push_to_hub = False
        # Checkpoints pickle their arguments (training_args.bin): keep the token out of them.
        config.hub_token = None
        return upload


def push_folder(out: Path, upload: HubUpload, commit_message: str) -> str:
    """Upload ``out`` (the final checkpoint and its model card) to ``upload.hub_model_id`` (default:
    the folder's name) and return the repo id.

    The token comes from ``--hub_token``, ``HF_TOKEN`` or the standard login; it is never written to
    a file.
    """
    # Looked up on the module when called, so that a replaced `HfApi` (an offline test) is the one used.
    api = huggingface_hub.HfApi(token=upload.hub_token)
    repo_id = upload.hub_model_id or out.name
    repo_id = api.create_repo(repo_id, private=upload.hub_private_repo, exist_ok=True).repo_id
    if upload.hub_revision:
        # The Hub refuses a commit to a branch that does not exist (transformers' push_to_hub makes it too).
        api.create_branch(repo_id, branch=upload.hub_revision, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(out),
        commit_message=commit_message,
        ignore_patterns=list(IGNORE_PATTERNS),  # the real call extends the list it is given
        revision=upload.hub_revision,
    )
    logger.info("Pushed %s to the Hub as %s", out, repo_id)
    return repo_id
