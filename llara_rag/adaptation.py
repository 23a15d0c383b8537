"""Deprecated name of :mod:`llara_rag.training`, kept for one release so existing imports keep working.

The package was renamed because it holds both stages, the label-free ``adapt`` and the supervised
``finetune``; its submodules moved with it (``adaptation.contrastive`` is now ``training.supervised``).
"""

import warnings

from llara_rag.training import (
    AdaptationArguments,
    AdaptationResult,
    ContrastiveArguments,
    FinetuneResult,
    adapt,
    finetune,
)

warnings.warn(
    "llara_rag.adaptation is now llara_rag.training; import adapt/finetune and their arguments from there.",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "AdaptationArguments",
    "AdaptationResult",
    "ContrastiveArguments",
    "FinetuneResult",
    "adapt",
    "finetune",
]
