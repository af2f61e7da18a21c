"""A frozen causal LM from a local Hugging Face folder, for models that inject their own input
vectors (LLMSRec): checked folder, loaded weights without gradients, tokenizer with extra
special tokens, optional gradient checkpointing."""
import importlib.util

import torch

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.model_folder import check_model_folder


def check_llm_folder(path):
    """InputError unless `path` is a local HF folder with a config, weights and a tokenizer."""
    if not path:
        raise InputError("LLMSRec needs a local LLM: pass --llm_path=<HF model folder>",
                         field="llm_path")
    check_model_folder(path, weights=True, not_found="LLM folder not found")


def load_llm(path, device, special_tokens):
    """(frozen base LM in eval mode, tokenizer with `special_tokens` added, one token each; the
    LM's embedding table is not resized) from a checked local HF folder. bf16 on CUDA
    (flash-attention 2 if installed, else sdpa), float32 with sdpa on CPU."""
    from transformers import AutoModel, AutoTokenizer

    cuda = str(device).startswith("cuda")
    attn = "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    llm = AutoModel.from_pretrained(path, torch_dtype=torch.bfloat16 if cuda else torch.float32,
                                    attn_implementation=attn)
    llm.to(device).eval()
    for p in llm.parameters():
        p.requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.add_special_tokens({"additional_special_tokens": list(special_tokens)},
                                 replace_additional_special_tokens=False)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return llm, tokenizer


def enable_checkpointing(llm, path):
    """Gradient checkpointing of the frozen LM's layers: their activations are recomputed in the
    backward pass instead of kept. Non-reentrant (`use_reentrant=False`), so the gradient reaches
    the input embeddings although no LM parameter requires one."""
    if not llm.supports_gradient_checkpointing:
        raise InputError(f"{type(llm).__name__} does not support gradient checkpointing; set "
                         f"llmsrec_gradient_checkpointing: False", path=path,
                         field="llmsrec_gradient_checkpointing", value=True)
    llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def hidden_states(llm, embeds, mask, checkpointing):
    """The LM's last hidden states [B, T, d] for input embeddings `embeds` [B, T, d]. HF
    checkpoints the layers only while the base model's own `training` flag is set; setting
    that one flag (not .train()) keeps every dropout of the frozen LM in eval mode."""
    llm.training = checkpointing and torch.is_grad_enabled()
    try:
        return llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False).last_hidden_state
    finally:
        llm.training = False
