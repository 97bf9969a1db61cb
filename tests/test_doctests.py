"""Every docstring example in the package runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ttcompute

# Every module, vllm_backend included: it imports vllm only inside the functions that need it.
MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(ttcompute.__path__, "ttcompute."))


def test_the_vllm_backend_module_imports_without_vllm():
    import sys

    importlib.import_module("ttcompute.models.vllm_backend")
    assert "vllm" not in sys.modules


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
