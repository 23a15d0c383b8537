"""Training an adapter: label-free on a user's documents (`adapt`), supervised on labelled pairs (`finetune`)."""

from llara_rag.training.contrastive import ContrastiveArguments
from llara_rag.training.supervised import FinetuneResult, finetune
from llara_rag.training.unsupervised import AdaptationArguments, AdaptationResult, adapt

__all__ = [
    "AdaptationArguments",
    "AdaptationResult",
    "ContrastiveArguments",
    "FinetuneResult",
    "adapt",
    "finetune",
]
