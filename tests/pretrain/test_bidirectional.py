"""Bidirectional backbones: later tokens reach earlier ones, padding stays masked."""
import pytest
import torch
from transformers import MistralConfig

from pretrain.models import (BackboneError, LlamaBiModel, Qwen2BiForMNTP, Qwen2BiModel,
                             bidirectional_classes, default_attn_implementation, load_backbone)
from pretrain.models.bidirectional_qwen2 import padding_only_mask

ATTN = ("eager", "sdpa")


def hidden(model, ids, mask=None):
    """Last hidden state [B, L, H] in eval mode."""
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


def later_token_effect(model, ids):
    """Max change of the first token's state when only the last token changes."""
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 7) % model.config.vocab_size
    ones = torch.ones_like(ids)
    return (hidden(model, ids, ones)[0, 0] - hidden(model, changed, ones)[0, 0]).abs().max().item()


@pytest.mark.parametrize("attn", ATTN)
def test_later_token_changes_earlier_state(tiny_llm_dir, tiny_tokenizer, attn):
    ids = tiny_tokenizer(["Super Mario Odyssey - Nintendo Switch"], return_tensors="pt").input_ids
    bi = load_backbone(tiny_llm_dir, bidirectional=True, attn_implementation=attn).eval()
    causal = load_backbone(tiny_llm_dir, bidirectional=False, attn_implementation=attn).eval()
    assert bi.config._attn_implementation == attn
    assert later_token_effect(bi, ids) > 1e-3
    assert later_token_effect(causal, ids) == 0.0
    # Same weights, other attention: from layer 2 on even the last token's state differs.
    ones = torch.ones_like(ids)
    assert not torch.allclose(hidden(bi, ids, ones)[0, -1], hidden(causal, ids, ones)[0, -1],
                              atol=1e-4)


@pytest.mark.parametrize("attn", ATTN)
def test_left_padding_matches_alone(tiny_llm_dir, tiny_tokenizer, attn):
    model = load_backbone(tiny_llm_dir, attn_implementation=attn).eval()
    short, long = "LEGO City", "Turtle Beach Ear Force Recon 50 Gaming Headset for PC"
    tiny_tokenizer.padding_side = "left"
    try:
        batch = tiny_tokenizer([long, short], padding=True, return_tensors="pt")
    finally:
        tiny_tokenizer.padding_side = "right"
    alone = tiny_tokenizer([short], return_tensors="pt")
    n = alone.input_ids.shape[1]
    assert batch.attention_mask[1].sum() == n < batch.input_ids.shape[1]
    padded_states = hidden(model, batch.input_ids, batch.attention_mask)[1, -n:]
    alone_states = hidden(model, alone.input_ids, alone.attention_mask)[0]
    assert torch.allclose(padded_states, alone_states, atol=1e-5)
    # Without the mask the padding would leak in: the check above is not vacuous.
    unmasked = hidden(model, batch.input_ids, torch.ones_like(batch.input_ids))[1, -n:]
    assert not torch.allclose(unmasked, alone_states, atol=1e-3)


def test_mntp_head_is_bidirectional(tiny_qwen2_dir, tiny_tokenizer):
    mntp = load_backbone(tiny_qwen2_dir, lm_head=True, attn_implementation="sdpa").eval()
    assert isinstance(mntp, Qwen2BiForMNTP) and isinstance(mntp.model, Qwen2BiModel)
    ids = tiny_tokenizer(["PlayStation 4 Slim 1TB Console"], return_tensors="pt").input_ids
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 7) % mntp.config.vocab_size
    with torch.no_grad():
        a, b = mntp(input_ids=ids).logits, mntp(input_ids=changed).logits
    assert a.shape == (1, ids.shape[1], mntp.config.vocab_size)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4
    # The checkpoint's LM head (tied to the embeddings) was loaded, not left random.
    assert torch.equal(mntp.lm_head.weight, mntp.model.embed_tokens.weight)


def test_llama_uses_llm2vec_class(tiny_llama_dir):
    model = load_backbone(tiny_llama_dir, attn_implementation="eager")
    assert isinstance(model, LlamaBiModel)
    assert all(not layer.self_attn.is_causal for layer in model.layers)


def test_flash_attention_mask_keeps_padding_only():
    embeds = torch.zeros(2, 3, 4)
    assert padding_only_mask(torch.ones(2, 3), embeds, "flash_attention_2") is None
    padded = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert padding_only_mask(padded, embeds, "flash_attention_2") is padded
    mask = padding_only_mask(padded, embeds, "sdpa")
    assert mask.shape == (2, 1, 3, 3)
    assert (mask[0, 0, :, 0] < -1e30).all() and (mask[0, 0, :, 1:] == 0).all()
    assert (mask[1] == 0).all()


def test_unknown_architecture_is_rejected(tmp_path):
    MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2).save_pretrained(tmp_path)
    with pytest.raises(BackboneError, match=r"'mistral'.*supported: llama, qwen2"):
        load_backbone(tmp_path)
    with pytest.raises(BackboneError, match="mistral"):
        bidirectional_classes(MistralConfig())


def test_default_attn_implementation_on_cpu():
    expected = "flash_attention_2" if torch.cuda.is_available() else "sdpa"
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        expected = "sdpa"
    assert default_attn_implementation() == expected
