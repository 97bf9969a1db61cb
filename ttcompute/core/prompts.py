"""The prompt contract: how a question becomes the exact prompt a model was trained or sampled on.

A stage that builds prompts (``ttc sample``, ``ttc revisions``, ``ttc search``) records the contract
it used in its manifest (``info.prompt_contract``); a stage that reads that output (``ttc label``,
``ttc train-prm``, ``ttc train-reviser``, ``ttc orm-data``) takes the contract from there instead of
from its own flags, records it again in what it writes, and a checkpoint carries it in its config
(``config.ttc_prm``, ``config.ttc_reviser``) and model card. A flag is then only an assertion: one
that contradicts the record is a one-line error naming both values. Data with no record (a file, a
Hub dataset, a public checkpoint) takes the flags, or the defaults.

The contract is three fields (rendering them needs the model's tokenizer, so it is done in
:func:`ttcompute.models.generation.build_prompt`):

- ``prompt_template``: a format string over ``{question}``;
- ``use_chat_template``: the template's text is the user turn of the tokenizer's chat template
  (generation prompt added), or, off, the prompt itself;
- ``system_prompt``: the system turn with the chat template; None leaves the template's default
  (Qwen2.5-Math-Instruct's asks for ``\\boxed{}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ttcompute.core.errors import InputError, option
from ttcompute.core.shards import read_manifest, read_resolved_config

DEFAULT_TEMPLATE = "{question}\n"


@dataclass(frozen=True)
class PromptContract:
    """How a question becomes a prompt (see the module docstring)."""

    prompt_template: str = DEFAULT_TEMPLATE
    use_chat_template: bool = False
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.prompt_template, str) or "{question}" not in self.prompt_template:
            raise ValueError(f"prompt_template must contain {{question}}, got {self.prompt_template!r}")
        if self.system_prompt is not None and not self.use_chat_template:
            raise ValueError("a system_prompt needs use_chat_template (a raw template writes its own)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], where: str) -> PromptContract:
        """The contract in a record (a manifest's ``prompt_contract``, a checkpoint's ``ttc_prm``):
        its three keys (absent ones at their defaults), other keys ignored.

        Raises:
            InputError: a value of the wrong type, or a template without ``{question}``.
        """
        values = {f.name: record[f.name] for f in fields(cls) if f.name in record}
        chat = values.get("use_chat_template", False)
        if not isinstance(chat, bool):
            raise InputError(f"{where}: use_chat_template must be true or false, got {chat!r}")
        system = values.get("system_prompt")
        if system is not None and not isinstance(system, str):
            raise InputError(f"{where}: system_prompt must be text, got {system!r}")
        try:
            return cls(**values)
        except ValueError as err:
            raise InputError(f"{where}: {err}") from None

    def describe(self) -> str:
        """One line for logs and errors.

        >>> PromptContract().describe()
        "template '{question}\\\\n', chat template off"
        """
        text = f"template {self.prompt_template!r}, chat template {'on' if self.use_chat_template else 'off'}"
        return text + (f", system prompt {self.system_prompt!r}" if self.system_prompt is not None else "")


DEFAULT_CONTRACT = PromptContract()


def contract_from_flags(
    recorded: PromptContract | None,
    given: Mapping[str, Any],
    recorded_in: str,
    stage: str,
    default: PromptContract | None = None,
) -> PromptContract:
    """The contract a stage uses: the recorded one, with every given flag (None = not given) checked
    against it; without a record, the given flags over ``default``.

    >>> contract_from_flags(None, {"use_chat_template": True, "prompt_template": None}, "x", "ttc s")
    PromptContract(prompt_template='{question}\\n', use_chat_template=True, system_prompt=None)

    Raises:
        InputError: a given flag differs from the record (one line naming both values).
    """
    given = {name: value for name, value in given.items() if value is not None}
    if recorded is None:
        try:
            return PromptContract(**{**(default or DEFAULT_CONTRACT).to_dict(), **given})
        except ValueError as err:
            raise InputError(f"{stage}: {err}") from None
    for name, value in given.items():
        kept = getattr(recorded, name)
        if value != kept:
            raise InputError(
                f"{stage}: {option(name)} {value!r} contradicts the prompt contract recorded in {recorded_in} "
                f"({name} {kept!r}); drop the flag or pass that value"
            )
    return recorded


def read_contract(output_dir: str | Path) -> PromptContract | None:
    """The prompt contract a ttc output recorded in its manifest; None for anything else (a file, a Hub
    dataset, an output written before contracts were recorded -- but a ``ttc sample`` output of then
    still says it by its resolved options)."""
    if not (Path(output_dir) / "manifest.json").is_file():
        return None
    manifest = read_manifest(output_dir)
    record = manifest["info"].get("prompt_contract")
    if record is None:
        options = read_resolved_config(output_dir)
        if manifest.get("stage") == "sample" and "prompt_template" in options:
            return PromptContract.from_record(options, f"{output_dir}/ttc_config.yaml")
        return None
    if not isinstance(record, Mapping):
        raise InputError(f"{output_dir}/manifest.json: info.prompt_contract is not a mapping")
    return PromptContract.from_record(record, f"{output_dir}/manifest.json")


def read_contracts(data: str) -> tuple[PromptContract | None, str]:
    """The one contract of comma-separated ttc outputs (all that record one must agree) and where it
    was read (for messages); ``(None, data)`` when none records one.

    Raises:
        InputError: two outputs record different contracts.
    """
    found = [(part, read_contract(part)) for part in (p.strip() for p in data.split(",")) if part]
    known = [(part, contract) for part, contract in found if contract is not None]
    if not known:
        return None, data
    first_part, first = known[0]
    for part, contract in known[1:]:
        if contract != first:
            raise InputError(
                f"{first_part} and {part} were built with different prompts ({first.describe()} vs "
                f"{contract.describe()})"
            )
    return first, first_part


# The three options that give a prompt contract (PromptOptions' fields, PromptContract's).
CONTRACT_OPTIONS = ("prompt_template", "use_chat_template", "system_prompt")


def contract_options() -> str:
    """How an error names the three prompt-contract options (flags under ``ttc``, else arguments)."""
    return ", ".join(option(name) for name in CONTRACT_OPTIONS)


def recorded_contract(
    record: Mapping[str, Any],
    given: PromptContract | None,
    where: str,
    flags: str | None = None,
) -> PromptContract:
    """The prompt contract a checkpoint records (``ttc_prm``, ``ttc_reviser``, ``likelihood_prm.json``),
    checked against ``given``; ``given`` when it records none (``flags``: how to give one).

    Raises:
        InputError: neither records nor gives one, or the two differ (one line, both named).
    """
    if "prompt_template" not in record:
        if given is None:
            flags = flags or option("prompt_contract", ("prm_prompt_template", "prm_use_chat_template"))
            raise InputError(
                f"{where} records no prompt contract (no prompt_template): give the prompt it reads ({flags})"
            )
        return given
    recorded = PromptContract.from_record(record, where)
    if given is not None and given != recorded:
        raise InputError(
            f"{where} records the prompt contract ({recorded.describe()}); the one given "
            f"({given.describe()}) contradicts it"
        )
    return recorded


@dataclass
class PRMPromptOptions:
    """The prompt contract of a PRM checkpoint that does not record one (a mixin of the configs of
    the stages that load a PRM: ``search``, ``eval-prm``, ``difficulty``). Unset, the checkpoint's
    record is used; given for a checkpoint that records one, they must agree with it.

    ``prm_step_separator``: the text that ends each step for a ``ttcompute``-format PRM, overriding the
    checkpoint's ``ttc_prm.step_separator`` (and letting one without that metadata load); the public
    formats fix their own and ignore it (logged)."""

    prm_prompt_template: str | None = field(
        default=None, metadata={"help": "PRM without a recorded prompt: its template over {question}"}
    )
    prm_use_chat_template: bool | None = field(
        default=None, metadata={"help": "PRM without a recorded prompt: its prompt is a chat user turn"}
    )
    prm_step_separator: str | None = field(
        default=None,
        metadata={"help": "ttcompute-format PRM: the text ending each step (default: its ttc_prm record)"},
    )

    def prm_prompt_contract(self) -> PromptContract | None:
        """The contract these options give (None when neither is set)."""
        if self.prm_prompt_template is None and self.prm_use_chat_template is None:
            return None
        try:
            return PromptContract(
                self.prm_prompt_template or DEFAULT_TEMPLATE, bool(self.prm_use_chat_template)
            )
        except ValueError as err:
            raise InputError(f"{option('prm_prompt_template')}: {err}") from None


@dataclass
class PromptOptions:
    """How the data's questions became its prompts (a mixin of the configs of the stages that read a
    recorded contract: ``revisions``, ``train-prm``, ``train-reviser``). Unset (None), each option is
    read from the ttc output the data is; given, it must agree with that record; data without a
    record (a file, a Hub dataset) takes the options over the defaults."""

    prompt_template: str | None = field(
        default=None, metadata={"help": "question -> prompt over {question}; default: the data's record"}
    )
    use_chat_template: bool | None = field(
        default=None,
        metadata={"help": "template's text as the chat template's user turn; default: the data's"},
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "the chat template's system turn; default: the data's record"}
    )

    def given_contract(self) -> dict[str, Any]:
        """The three contract options as given (None: not given)."""
        return {name: getattr(self, name) for name in CONTRACT_OPTIONS}

    def resolve_prompt_contract(
        self, data: str, stage: str, default: PromptContract | None = None
    ) -> PromptContract:
        """The contract of ``data`` (comma-separated ttc outputs) checked against these options, which
        are then set to it (so the resolved config, the checkpoint and the card say what was used);
        without a record, the options over ``default`` (``"{question}\\n"``, no chat template).

        Raises:
            InputError: an option contradicts the record (one line naming both), or the records of
                two outputs differ.
        """
        recorded, where = read_contracts(data)
        contract = contract_from_flags(recorded, self.given_contract(), where, stage, default)
        self.prompt_template = contract.prompt_template
        self.use_chat_template = contract.use_chat_template
        self.system_prompt = contract.system_prompt
        return contract
