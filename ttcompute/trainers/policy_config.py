"""Config of ``ttc train-policy``: pretraining the built-in task's tiny base policy."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ttcompute.trainers.launch import CPUDeepSpeedMixin


@dataclass
class PolicyConfig(CPUDeepSpeedMixin, TrainingArguments):
    r"""Configuration for :class:`~ttcompute.trainers.policy_trainer.PolicyTrainer`.

    Only the knobs specific to pretraining the tiny policy are listed; everything else is
    [`~transformers.TrainingArguments`]. The problems come from the ``ProblemConfig`` options
    (``--problem_seed``, ``--num_problems``, ``--max_ops`` ...), which should differ in seed from
    every held-out set.

    Parameters that control the model:
        hidden_size (`int`, defaults to `64`): Width of the tiny Llama.
        num_hidden_layers (`int`, defaults to `2`): Depth.
        num_attention_heads (`int`, defaults to `4`): Attention heads (also key/value heads).
        intermediate_size (`int` or `None`, defaults to `None`): MLP width; `None` means 4 x hidden_size.
        max_position_embeddings (`int`, defaults to `512`): Longest sequence.
        model_init_seed (`int`, defaults to `0`): Seed of the weight initialisation.

    Parameters that control the data:
        prompt_template (`str`, defaults to `"{question}\n"`): How a question becomes the prompt; the
            loss is on the solution only (the prompt is given at inference).

    Parameters that control the run:
        overwrite_output_dir (`bool`, defaults to `False`): Start from scratch even if ``output_dir`` holds
            checkpoints (by default training resumes from the last one).

    Parameters that control the held-out evaluation run after training:
        eval_num_problems (`int`, defaults to `400`): Held-out problems (0 disables the evaluation).
        eval_problem_seed (`int`, defaults to `999`): Their seed (must differ from the training seed).
        eval_samples_per_problem (`int`, defaults to `4`): Samples at temperature 1 per problem; pass@1 is
            the mean correctness of all samples, reported overall and by number of operations.
    """

    hidden_size: int = field(default=64, metadata={"help": "width of the tiny Llama"})
    num_hidden_layers: int = field(default=2, metadata={"help": "depth of the tiny Llama"})
    num_attention_heads: int = field(default=4, metadata={"help": "attention heads"})
    intermediate_size: int | None = field(default=None, metadata={"help": "MLP width (default 4 x hidden)"})
    max_position_embeddings: int = field(default=512, metadata={"help": "longest sequence"})
    model_init_seed: int = field(default=0, metadata={"help": "seed of the weight initialisation"})
    prompt_template: str = field(default="{question}\n", metadata={"help": "prompt format over {question}"})
    eval_num_problems: int = field(default=400, metadata={"help": "held-out problems for pass@1 (0 = skip)"})
    eval_problem_seed: int = field(default=999, metadata={"help": "seed of the held-out problems"})
    eval_samples_per_problem: int = field(default=4, metadata={"help": "samples per held-out problem"})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "ignore checkpoints in output_dir"})

    # Defaults that suit a tiny model on a CPU (override any of them on the command line).
    learning_rate: float = field(default=3e-3, metadata={"help": "peak learning rate"})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "learning-rate schedule"})
    warmup_steps: float = field(default=100, metadata={"help": "linear warm-up steps"})
    adam_beta2: float = field(default=0.98, metadata={"help": "Adam beta2"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "batch size per device"})
    logging_steps: float = field(default=50, metadata={"help": "log every N steps"})
    save_steps: float = field(default=500, metadata={"help": "checkpoint every N steps (resume point)"})
    save_total_limit: int | None = field(default=2, metadata={"help": "checkpoints kept"})
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "batch similar lengths"}
    )
    # Typed `str` (TrainingArguments says `str | bool`, which HfArgumentParser reads as a bool flag).
    include_num_input_tokens_seen: str = field(
        default="non_padding", metadata={"help": "count D_pretrain (non-padding tokens)"}
    )
    report_to: None | str | list[str] = field(default="none", metadata={"help": "none | wandb | tensorboard"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.eval_num_problems < 0 or self.eval_samples_per_problem < 1:
            raise ValueError("eval_num_problems must be >= 0 and eval_samples_per_problem >= 1")
