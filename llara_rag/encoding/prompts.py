"""The LLaRA prompt templates and special tokens, as data.

A passage is encoded with the EBAE prompt (summarise the passage itself) and a query with the EBAR
prompt (predict the passage that follows); the embedding is read at the eight special tokens that end
each prompt. Both the encoder and the adaptation objective build their inputs from this one place, so
what is trained is exactly what is served.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

SPECIAL_TOKENS: tuple[str, ...] = tuple(f"<s{i}>" for i in range(1, 17))
SUMMARIZE_TOKENS: tuple[str, ...] = SPECIAL_TOKENS[:8]
PREDICT_TOKENS: tuple[str, ...] = SPECIAL_TOKENS[8:]
N_POOLED = 8

Side = Literal["passage", "query"]


class LLaRAPrompts(BaseModel):
    """The text around the input: ``prefix + TEXT + suffix + <8 special tokens>``."""

    model_config = ConfigDict(frozen=True)

    prefix: str = '"'
    passage_suffix: str = '", summarize the above passage within eight words: '
    query_suffix: str = '", predict the following passage within eight words: '


DEFAULT_PROMPTS = LLaRAPrompts()
