"""The names ``--prm_format`` takes, for the configs of the stages that load a PRM.

Declared here, light, and read by :mod:`ttcompute.models.prm_formats` (the loaders, which import torch
and transformers): a config module must stay light so that ``ttc <stage> --help`` is quick.
"""

from __future__ import annotations

# The formats load_prm reads (see models/prm_formats.py).
PRM_FORMATS = ("ttcompute", "math-shepherd", "qwen-prm", "rlhflow", "skywork", "ttcompute-likelihood")
# "auto": what the checkpoint says it is, then one of the formats.
PRM_FORMAT_CHOICES = ("auto", *PRM_FORMATS)
