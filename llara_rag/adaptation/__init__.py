"""Adapting a backbone to a user's documents: corpus records, the LLaRA objective, the training stack."""

from llara_rag.adaptation.contrastive import ContrastiveArguments, FinetuneResult, finetune
from llara_rag.adaptation.unsupervised import AdaptationArguments, AdaptationResult, adapt

__all__ = [
    "AdaptationArguments",
    "AdaptationResult",
    "ContrastiveArguments",
    "FinetuneResult",
    "adapt",
    "finetune",
]
