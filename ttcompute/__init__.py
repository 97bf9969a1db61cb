"""ttcompute: train verifiers (PRMs) and revisers, then spend test-time compute on them optimally.

The Python API, in TRL's shape::

    from ttcompute import PRMConfig, PRMTrainer, load_prm

    trainer = PRMTrainer(model=model, args=PRMConfig(output_dir="my-prm"), train_dataset=rows,
                         processing_class=tokenizer)
    trainer.train()
    trainer.save_model()          # records its step separator and prompt contract
    prm = load_prm("my-prm")      # no other argument needed

Every name below is imported on first use, so ``import ttcompute`` stays light (no torch, no
transformers) and ``ttc --help`` instant. The command line (``ttc <stage>``) runs the same code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ttcompute._version import __version__

# name -> module that defines it. Grouped as the docs' API reference is.
_EXPORTS: dict[str, str] = {
    # Trainers (TRL-shaped: a config dataclass + a transformers.Trainer subclass) and their stages
    "PRMConfig": "ttcompute.trainers.prm_config",
    "PRMTrainer": "ttcompute.trainers.prm_trainer",
    "train_prm": "ttcompute.trainers.prm_trainer",
    "RevisionConfig": "ttcompute.trainers.revision_config",
    "RevisionTrainer": "ttcompute.trainers.revision_trainer",
    "train_reviser": "ttcompute.trainers.revision_trainer",
    "PolicyConfig": "ttcompute.trainers.policy_config",
    "PolicyTrainer": "ttcompute.trainers.policy_trainer",
    # Verifiers
    "PRM": "ttcompute.models.prm",
    "load_prm": "ttcompute.models.prm_formats",
    "PRM_FORMATS": "ttcompute.models.prm_formats",
    "score_solutions": "ttcompute.models.prm",
    "ttc_prm_metadata": "ttcompute.models.prm",
    "PromptContract": "ttcompute.core.prompts",
    # Generation
    "load_backend": "ttcompute.models.backends",
    "SamplingParams": "ttcompute.models.generation",
    "Completion": "ttcompute.models.generation",
    # Search and selection
    "StepSearchConfig": "ttcompute.eval.search.step_search",
    "SearchOutcome": "ttcompute.eval.search.step_search",
    "beam_search": "ttcompute.eval.search.beam_search",
    "lookahead_search": "ttcompute.eval.search.lookahead",
    "dvts": "ttcompute.eval.search.dvts",
    "sample_best_of_n": "ttcompute.eval.search.best_of_n",
    "revision_chains": "ttcompute.eval.search.revision_chains",
    "majority_vote": "ttcompute.core.selection",
    "weighted_best_of_n": "ttcompute.core.selection",
    "hierarchical_best_of_n": "ttcompute.core.selection",
    "StoppingRule": "ttcompute.core.stopping",
    # Grading
    "extract_answer": "ttcompute.core.grading",
    "is_equivalent": "ttcompute.core.grading",
    "grade": "ttcompute.core.grading",
    # Problems and data
    "Problem": "ttcompute.tasks.problem",
    "load_problems": "ttcompute.tasks.sources",
    "generate_problems": "ttcompute.tasks.arithmetic",
    "arithmetic_stepwise_rows": "ttcompute.tasks.arithmetic",
    "shipped_policy": "ttcompute.models.shipped",
    # Stages and errors
    "run_stage": "ttcompute.cli",
    "InputError": "ttcompute.core.errors",
}
# Exported under another name than the one its module gives it.
_RENAMED = {"arithmetic_stepwise_rows": "stepwise_rows"}

# Written out (not built from _EXPORTS) so that linters and IDEs read it; a test keeps the two equal.
__all__ = [
    "__version__",
    "PRMConfig",
    "PRMTrainer",
    "train_prm",
    "RevisionConfig",
    "RevisionTrainer",
    "train_reviser",
    "PolicyConfig",
    "PolicyTrainer",
    "PRM",
    "load_prm",
    "PRM_FORMATS",
    "score_solutions",
    "ttc_prm_metadata",
    "PromptContract",
    "load_backend",
    "SamplingParams",
    "Completion",
    "StepSearchConfig",
    "SearchOutcome",
    "beam_search",
    "lookahead_search",
    "dvts",
    "sample_best_of_n",
    "revision_chains",
    "majority_vote",
    "weighted_best_of_n",
    "hierarchical_best_of_n",
    "StoppingRule",
    "extract_answer",
    "is_equivalent",
    "grade",
    "Problem",
    "load_problems",
    "generate_problems",
    "arithmetic_stepwise_rows",
    "shipped_policy",
    "run_stage",
    "InputError",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ttcompute' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see; nothing is imported at run time
    from ttcompute.cli import run_stage
    from ttcompute.core.errors import InputError
    from ttcompute.core.grading import extract_answer, grade, is_equivalent
    from ttcompute.core.prompts import PromptContract
    from ttcompute.core.selection import hierarchical_best_of_n, majority_vote, weighted_best_of_n
    from ttcompute.core.stopping import StoppingRule
    from ttcompute.eval.search.beam_search import beam_search
    from ttcompute.eval.search.best_of_n import sample_best_of_n
    from ttcompute.eval.search.dvts import dvts
    from ttcompute.eval.search.lookahead import lookahead_search
    from ttcompute.eval.search.revision_chains import revision_chains
    from ttcompute.eval.search.step_search import SearchOutcome, StepSearchConfig
    from ttcompute.models.backends import load_backend
    from ttcompute.models.generation import Completion, SamplingParams
    from ttcompute.models.prm import PRM, score_solutions, ttc_prm_metadata
    from ttcompute.models.prm_formats import PRM_FORMATS, load_prm
    from ttcompute.models.shipped import shipped_policy
    from ttcompute.tasks.arithmetic import generate_problems
    from ttcompute.tasks.arithmetic import stepwise_rows as arithmetic_stepwise_rows
    from ttcompute.tasks.problem import Problem
    from ttcompute.tasks.sources import load_problems
    from ttcompute.trainers.policy_config import PolicyConfig
    from ttcompute.trainers.policy_trainer import PolicyTrainer
    from ttcompute.trainers.prm_config import PRMConfig
    from ttcompute.trainers.prm_trainer import PRMTrainer, train_prm
    from ttcompute.trainers.revision_config import RevisionConfig
    from ttcompute.trainers.revision_trainer import RevisionTrainer, train_reviser
