"""Bidirectional Llama (also SmolLM2): llm2vec 0.2.3's classes are right as they are.

Its `LlamaBiModel` overrides `_update_causal_mask` with a padding-only mask for eager and
sdpa, and its attention modules set `is_causal = False` for flash_attention_2.
"""
from llm2vec.models.bidirectional_llama import LlamaBiForMNTP, LlamaBiModel

__all__ = ["LlamaBiModel", "LlamaBiForMNTP"]
