"""The prompt options that train-prm and train-reviser share: the prompt contract of their data.

Unset (None), each is read from the ttc output the data is (its manifest's ``prompt_contract``,
:mod:`ttcompute.core.prompts`); given, it must agree with that record. Data without a record (a
file, a Hub dataset) takes the flags over the defaults. Light, like every config module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ttcompute.core.prompts import PromptContract, contract_from_flags, read_contracts


@dataclass
class PromptOptions:
    """How the data's questions became its prompts (a mixin of a trainer config's dataclass)."""

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
        given = {
            "prompt_template": self.prompt_template,
            "use_chat_template": self.use_chat_template,
            "system_prompt": self.system_prompt,
        }
        contract = contract_from_flags(recorded, given, where, stage, default)
        self.prompt_template = contract.prompt_template
        self.use_chat_template = contract.use_chat_template
        self.system_prompt = contract.system_prompt
        return contract
