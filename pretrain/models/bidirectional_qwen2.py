"""Bidirectional Qwen2: llm2vec's Qwen2 classes with a padding-only attention mask.

llm2vec 0.2.3 turns `is_causal` off in Qwen2's attention modules, which only the
flash_attention_2 path reads; under eager and sdpa, Qwen2Model still builds a causal mask
(or lets sdpa run with `is_causal=True`). Overriding `_update_causal_mask` fixes both.
"""
import torch
from llm2vec.models import bidirectional_qwen2 as l2v
from torch import nn
from transformers.models.qwen2.modeling_qwen2 import Qwen2PreTrainedModel


def padding_only_mask(attention_mask, inputs_embeds, attn_implementation):
    """Additive mask [B, 1, L, S] that hides padded keys only (None/2D mask for FA2)."""
    if attn_implementation == "flash_attention_2":
        # FA2 unpads from the 2D mask and reads is_causal (False) for the rest.
        if attention_mask is not None and (attention_mask == 0).any():
            return attention_mask
        return None
    if attention_mask is not None and attention_mask.dim() == 4:
        return attention_mask
    batch, length = inputs_embeds.shape[:2]
    dtype, device = inputs_embeds.dtype, inputs_embeds.device
    if attention_mask is None:
        # A zero mask (not None) keeps sdpa from switching is_causal on.
        return torch.zeros(batch, 1, length, length, dtype=dtype, device=device)
    hidden = attention_mask[:, None, None, :].to(device) == 0
    mask = torch.zeros(batch, 1, length, attention_mask.shape[-1], dtype=dtype, device=device)
    return mask.masked_fill(hidden, torch.finfo(dtype).min)


class Qwen2BiModel(l2v.Qwen2BiModel):
    """Qwen2 encoder with full (bidirectional) attention; padded keys stay masked."""

    def _update_causal_mask(self, attention_mask, input_tensor, cache_position,
                            past_key_values, output_attentions):
        return padding_only_mask(attention_mask, input_tensor, self.config._attn_implementation)


class Qwen2BiForMNTP(l2v.Qwen2BiForMNTP):
    """Causal-LM head over a bidirectional Qwen2 (masked next-token prediction)."""

    def __init__(self, config):
        Qwen2PreTrainedModel.__init__(self, config)
        self.model = Qwen2BiModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
