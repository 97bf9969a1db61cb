"""``ttc train-policy``: pretrain the built-in task's tiny base policy on reference solutions.

Read top to bottom: tokenize (prompt masked, loss on the solution) -> collate (right padding) -> the
causal-LM loss the model computes itself. Everything else (checkpoints, resume, DeepSpeed, W&B) is
``transformers.Trainer``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase, Trainer

from ttcompute.core.budget import pretraining_flops
from ttcompute.core.config import save_resolved_config
from ttcompute.core.errors import InputError, option
from ttcompute.core.prompts import PromptContract
from ttcompute.models.generation import build_prompt
from ttcompute.models.generation_config import GeneratorConfig
from ttcompute.models.hf_backend import TransformersBackend
from ttcompute.models.sampling import pass_at_1_by, sample_rows
from ttcompute.models.tiny import build_char_tokenizer, build_tiny_llama, count_parameters, tiny_llama_config
from ttcompute.tasks.problem import Problem
from ttcompute.tasks.problem_config import ProblemConfig
from ttcompute.trainers.launch import check_deepspeed_active, distributed_setup, launch_command
from ttcompute.trainers.policy_config import PolicyConfig
from ttcompute.trainers.training_run import TrainingRun, resume_point, train_and_save, write_log_and_push

logger = logging.getLogger(__name__)


class CompletionCollator:
    """Right-pads ``input_ids``/``labels`` of a batch; padding is masked out of attention and loss."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            length = len(f["input_ids"])
            input_ids[row, :length] = torch.tensor(f["input_ids"])
            labels[row, :length] = torch.tensor(f["labels"])
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


class ShuffledLengthGroupedSampler(torch.utils.data.Sampler):
    """Batches of similar length (little padding) in a random order.

    transformers' ``LengthGroupedSampler`` sorts each group of 50 batches by length and serves them in
    that order, so the optimiser sees long problems for several steps, then shorter ones; on the tiny
    policy that slowed learning about twofold (held-out pass@1 0.12 vs 0.33 at equal steps). Here
    the batches of every group are shuffled across the whole epoch instead.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group_batches: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        span = self.batch_size * self.group
        batches = []
        for start in range(0, len(order), span):
            group = sorted(order[start : start + span], key=lambda i: self.lengths[i])
            batches += [group[i : i + self.batch_size] for i in range(0, len(group), self.batch_size)]
        full = [b for b in batches if len(b) == self.batch_size]
        partial = [b for b in batches if len(b) < self.batch_size]  # last, so batch boundaries stay aligned
        for b in torch.randperm(len(full), generator=generator).tolist():
            yield from full[b]
        for batch in partial:
            yield from batch


TOKENIZED_FEATURES = datasets.Features(
    {
        "input_ids": datasets.Sequence(datasets.Value("int64")),
        "labels": datasets.Sequence(datasets.Value("int64")),
        "length": datasets.Value("int64"),
    }
)


class PolicyTrainer(Trainer):
    """Causal-LM pretraining on (prompt, completion) pairs with the loss on the completion only.

    Args:
        train_dataset: A dataset with ``prompt`` and ``completion`` text columns.
        processing_class: The tokenizer; its EOS ends every completion so the policy learns to stop.
    """

    def __init__(
        self, model, args: PolicyConfig, train_dataset: datasets.Dataset, processing_class, **kwargs
    ):
        tokenized = train_dataset.map(
            self.tokenize,
            fn_kwargs={"tokenizer": processing_class},
            remove_columns=train_dataset.column_names,
            # Fixed, or `map` keeps the type an input column of the same name had (a bool `labels`).
            features=TOKENIZED_FEATURES,
            desc="Tokenizing",
        )
        self._lengths = tokenized["length"]
        super().__init__(
            model=model,
            args=args,
            train_dataset=tokenized,
            data_collator=CompletionCollator(processing_class.pad_token_id),
            processing_class=processing_class,
            **kwargs,
        )

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "group_by_length":
            return super()._get_train_sampler(train_dataset)
        # Lengths are taken before Trainer drops the columns the model does not take.
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return ShuffledLengthGroupedSampler(self._lengths, batch, seed=self.args.seed)

    @staticmethod
    def tokenize(example: dict[str, str], tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        """Token ids of prompt + completion + EOS, with labels -100 on the prompt.

        >>> from ttcompute.models.tiny import build_char_tokenizer
        >>> out = PolicyTrainer.tokenize({"prompt": "Q\\n", "completion": "7"}, build_char_tokenizer())
        >>> out["input_ids"], out["labels"]
        ([1, 54, 4, 28, 2], [-100, -100, -100, 28, 2])
        """
        prompt_ids = tokenizer(example["prompt"])["input_ids"]
        completion_ids = tokenizer(example["completion"], add_special_tokens=False)["input_ids"]
        completion_ids = completion_ids + [tokenizer.eos_token_id]
        return {
            "input_ids": prompt_ids + completion_ids,
            "labels": [-100] * len(prompt_ids) + completion_ids,
            "length": len(prompt_ids) + len(completion_ids),
        }


def policy_dataset(problems: list[Problem], prompt_template: str) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {
            "prompt": [build_prompt(p.question, PromptContract(prompt_template)) for p in problems],
            "completion": [p.solution for p in problems],
        }
    )


def train_policy(problem_args: ProblemConfig, config: PolicyConfig) -> dict[str, Any]:
    """Pretrain (or resume) a tiny policy, save it as safetensors, then measure held-out pass@1.

    Returns the training log (also written to ``<output_dir>/training_log.json``), which records
    the parameter count and D_pretrain (tokens processed) that the FLOPs-matched analysis reads.
    """
    # Refused before the output directory is touched: a rejected command leaves no ttc_config.yaml.
    if problem_args.task != "arithmetic":
        raise InputError(
            f"ttc train-policy: {option('task')} {problem_args.task}: train-policy pretrains the built-in "
            f"arithmetic policy; use {option('task')} arithmetic"
        )
    if config.eval_num_problems > 0 and problem_args.problem_seed == config.eval_problem_seed:
        raise InputError(
            f"ttc train-policy: {option('problem_seed')} (training) and {option('eval_problem_seed')} "
            f"(held-out) are both {config.eval_problem_seed}: the held-out problems would be the training "
            "problems; they must differ"
        )
    problems = problem_args.load()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved_config(out, "train-policy", problem_args, config)

    resume_from = resume_point(config, logger)
    tokenizer = AutoTokenizer.from_pretrained(resume_from) if resume_from else build_char_tokenizer()
    model_config = tiny_llama_config(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = build_tiny_llama(model_config, seed=config.model_init_seed)
    num_params = count_parameters(model)
    logger.info(
        "Tiny Llama with %d parameters; generating %d training problems",
        num_params,
        problem_args.num_problems,
    )

    train_dataset = policy_dataset(problems, config.prompt_template)
    # Checkpoints pickle their TrainingArguments (training_args.bin) unmasked, and train-policy never
    # pushes to the Hub: a token has no use here and must not reach disk.
    config.hub_token = None
    trainer = PolicyTrainer(model=model, args=config, train_dataset=train_dataset, processing_class=tokenizer)
    check_deepspeed_active(trainer)
    # Our own tiny Llama: no adapter to merge, no card, never pushed; its tokenizer is saved beside it.
    run = TrainingRun("train-policy", trainer, resume_from, num_params, model_card=False, save_tokenizer=True)
    result, _, start = train_and_save(run)
    tokens_seen = int(trainer.state.num_input_tokens_seen)

    log: dict[str, Any] = {
        "command": launch_command("train-policy"),
        "num_parameters": num_params,
        "num_train_tokens": tokens_seen,
        "pretraining_flops": pretraining_flops(num_params, tokens_seen),
        "global_steps": trainer.state.global_step,
        "distributed": distributed_setup(trainer),
        "train_loss": result.training_loss,
        "train_runtime_s": round(time.time() - start, 1),
        "device": str(trainer.args.device),
        "torch_threads": torch.get_num_threads(),
        "log_history": trainer.state.log_history,
    }
    if config.eval_num_problems > 0 and trainer.is_world_process_zero():
        log["heldout"] = evaluate_heldout(str(out), problem_args, config)
        logger.info(
            "Held-out pass@1 %.3f; by number of operations %s",
            log["heldout"]["pass_at_1"],
            log["heldout"]["pass_at_1_by_num_ops"],
        )
    write_log_and_push(run, log)
    return log


def evaluate_heldout(checkpoint: str, problem_args: ProblemConfig, config: PolicyConfig) -> dict[str, Any]:
    """pass@1 at temperature 1 on held-out problems, overall and by number of operations."""
    heldout = replace(
        problem_args, num_problems=config.eval_num_problems, problem_seed=config.eval_problem_seed
    ).load()
    backend = TransformersBackend(checkpoint, device="cpu" if config.use_cpu else None)
    gen_args = GeneratorConfig(
        model_name_or_path=checkpoint, temperature=1.0, prompt_template=config.prompt_template
    )
    rows = sample_rows(backend, heldout, gen_args, n=config.eval_samples_per_problem, seed=config.seed)
    overall, by_ops = pass_at_1_by(rows, key="num_ops")
    return {
        "num_problems": len(heldout),
        "samples_per_problem": config.eval_samples_per_problem,
        "problem_seed": config.eval_problem_seed,
        "pass_at_1": overall,
        "pass_at_1_by_num_ops": by_ops,
        "tokens_generated": sum(sum(r["num_tokens"]) for r in rows),
    }
