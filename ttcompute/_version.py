"""The package version: one source, read by pyproject (setuptools dynamic) and ``ttcompute.__version__``."""

__version__ = "0.1.0"
