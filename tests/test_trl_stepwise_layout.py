"""TRL's own stepwise datasets (``trl-lib/math_shepherd``, ``trl-lib/prm800k``) train a PRM as they are.

Their layout (the dataset card and its parquet schema): one ``default`` config, splits ``train`` and
``test`` under ``data/``, columns ``prompt`` (the problem text), ``completions`` (the steps) and
``labels`` (a bool per step) -- no ``question`` column. A PRM trained on them saw each prompt verbatim,
so it records the template ``"{question}"``: scoring a problem's text rebuilds exactly that prompt.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import trainer_config

from ttcompute.core.errors import InputError
from ttcompute.core.prompts import PromptContract
from ttcompute.models.generation import build_prompt
from ttcompute.trainers.prm_config import PRMConfig
from ttcompute.trainers.prm_trainer import train_prm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trl_stepwise_dir(root: Path) -> Path:
    rows = [
        {
            "prompt": f"Start at {i}. Add 3. Multiply by 2.",
            "completions": [f"{i} + 3 = {i + 3}", f"{i + 3} * 2 = {2 * (i + 3) + i % 2}"],
            "labels": [True, i % 2 == 0],
        }
        for i in range(8)
    ]
    schema = pa.schema(
        [("prompt", pa.string()), ("completions", pa.list_(pa.string())), ("labels", pa.list_(pa.bool_()))]
    )
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:6], schema), root / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[6:], schema), root / "data" / "test-00000-of-00001.parquet")
    meta = {
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": "train", "path": "data/train-*"},
                    {"split": "test", "path": "data/test-*"},
                ],
            }
        ]
    }
    (root / "README.md").write_text("---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n")
    return root


def test_a_trl_stepwise_dataset_trains_a_prm_that_records_the_prompt_it_saw(tmp_path, random_policy_dir):
    data = trl_stepwise_dir(tmp_path / "math_shepherd")
    out = tmp_path / "prm"
    train_prm(trainer_config(PRMConfig, out, random_policy_dir, data, eval_fraction=0.0))
    record = json.loads((out / "config.json").read_text())["ttc_prm"]
    contract = PromptContract.from_record(record, "ttc_prm")
    assert contract == PromptContract("{question}")
    prompt = "Start at 1. Add 3. Multiply by 2."
    assert build_prompt(prompt, contract) == prompt  # the question given to the PRM is the prompt


def test_a_template_the_prompts_do_not_follow_is_refused(tmp_path, random_policy_dir):
    data = trl_stepwise_dir(tmp_path / "math_shepherd")
    out = tmp_path / "prm"
    config = trainer_config(PRMConfig, out, random_policy_dir, data, prompt_template="Q: {question}\n")
    with pytest.raises(
        InputError, match=r"row 0: prompt 'Start at 0.*is not prompt_template= 'Q: \{question\}\\n'"
    ):
        train_prm(config)
    assert not out.exists()
