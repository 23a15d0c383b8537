"""Deprecated name of :mod:`llara_rag.training`, kept for one release so existing imports keep working.

The package was renamed because it holds both stages, the label-free ``adapt`` and the supervised
``finetune``; its submodules moved with it (``adaptation.contrastive`` is now ``training.contrastive``).
"""

import warnings

from llara_rag.training import *  # the whole public API, under its old name
from llara_rag.training import __all__  # noqa: F401

warnings.warn(
    "llara_rag.adaptation is now llara_rag.training; import adapt/finetune and their arguments from there.",
    DeprecationWarning,
    stacklevel=2,
)
