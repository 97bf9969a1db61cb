"""Deprecated APIs in our own calls fail the suite (pyproject's ``filterwarnings``).

transformers 5.24 renamed the models' ``past_key_values`` argument to ``cache`` and removes the old
name in 5.40, which pyproject's bounds admit; our backend and PRM engine pass ``cache``. These tests
show that the suite's warning filters catch the real library's warning, so a call that brings the
old name back fails every test that runs it.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, DynamicCache


def test_the_old_cache_argument_fails_the_suite(random_policy_dir):
    model = AutoModelForCausalLM.from_pretrained(random_policy_dir).eval()
    ids = torch.tensor([[1, 5, 6]])
    with torch.no_grad():
        model(input_ids=ids, cache=DynamicCache(), use_cache=True)  # the current name: no warning
        with pytest.raises(FutureWarning, match="past_key_values"):
            model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True)


def test_a_deprecation_raised_in_our_modules_fails_the_suite():
    import warnings

    import ttcompute.core.steps as module

    with pytest.raises(DeprecationWarning):
        # Attributed to a ttcompute module, as a deprecation our code raised itself would be.
        warnings.warn_explicit("old", DeprecationWarning, module.__file__, 1, module=module.__name__)
