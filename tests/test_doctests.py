"""Every docstring example in the package runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ttcompute

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(ttcompute.__path__, "ttcompute.")
    if not name.endswith("vllm_backend")  # imports vllm (GPU extra)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
