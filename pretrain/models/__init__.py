"""Decoder-only backbones with bidirectional attention, and the one loader for all stages.

`BIDIRECTIONAL` is the single registry: HF config class -> (base model class, MNTP class).
A new architecture is one `bidirectional_<arch>.py` file plus one entry here.
"""
import importlib.util
from collections import namedtuple

import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, LlamaConfig, Qwen2Config

from recbole_llm2rec.errors import InputError

from .bidirectional_llama import LlamaBiForMNTP, LlamaBiModel
from .bidirectional_qwen2 import Qwen2BiForMNTP, Qwen2BiModel

BiClasses = namedtuple("BiClasses", ["model", "mntp"])

BIDIRECTIONAL = {
    Qwen2Config: BiClasses(Qwen2BiModel, Qwen2BiForMNTP),
    LlamaConfig: BiClasses(LlamaBiModel, LlamaBiForMNTP),
}


class BackboneError(InputError):
    """A backbone cannot be loaded as asked (e.g. no bidirectional class for its architecture)."""


def supported_architectures():
    """Model types (config.model_type) that have bidirectional classes, sorted."""
    return sorted(cls.model_type for cls in BIDIRECTIONAL)


def bidirectional_classes(config, where="model"):
    """The registry entry for `config`; raises BackboneError naming the supported types."""
    classes = BIDIRECTIONAL.get(type(config))
    if classes is None:
        raise BackboneError(
            f"no bidirectional version of architecture {config.model_type!r}; "
            f"supported: {', '.join(supported_architectures())} (or use causal attention)",
            path=where)
    return classes


def default_attn_implementation():
    """'flash_attention_2' when flash-attn is importable and CUDA is up, else 'sdpa'."""
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_backbone(path, bidirectional=True, attn_implementation=None, torch_dtype=None,
                  lm_head=False, config_overrides=None, **kw):
    """Load a decoder-only LLM from `path`: the base model, or with `lm_head` the LM-head model
    (bidirectional: `...BiForMNTP`; causal: `AutoModelForCausalLM`). `config_overrides` set
    config attributes before the model is built (e.g. attention_dropout); extra kwargs go to
    `from_pretrained`."""
    config = AutoConfig.from_pretrained(path, **(config_overrides or {}))
    kw.update(attn_implementation=attn_implementation or default_attn_implementation())
    if torch_dtype is not None:
        kw["torch_dtype"] = torch_dtype
    if bidirectional:
        classes = bidirectional_classes(config, where=str(path))
        cls = classes.mntp if lm_head else classes.model
        return cls.from_pretrained(path, config=config, **kw)
    auto = AutoModelForCausalLM if lm_head else AutoModel
    return auto.from_pretrained(path, config=config, **kw)
