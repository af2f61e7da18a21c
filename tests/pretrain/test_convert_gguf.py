"""pretrain.convert_gguf: a tiny GGUF written here converts back to the exact HF model."""
import json
import os

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from pretrain.convert_gguf import GGUFError, convert, main, unpermute_rope  # noqa: E402

TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}"


def llama_cpp_permute(weight, n_head):
    """llama.cpp's layout of Llama q/k rows: each head's [2, d/2] halves interleaved [d/2, 2]."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def gguf_name(hf_name, arch, n_layers):
    """The gguf tensor name of an HF parameter name, from llama.cpp's own name map (the gguf
    package's `TensorNameMap`), not from the converter's tables: a swap there shows."""
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layers)
    return names.get_name(hf_name, try_suffixes=(".weight", ".bias"))


def write_gguf(path, model, tokenizer, pre="gpt-2"):
    """Write `model` (F32) and its BPE tokenizer as llama.cpp would: Llama q/k rows permuted."""
    cfg, arch = model.config, model.config.model_type
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    bpe = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(bpe["vocab"], key=bpe["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in tokenizer.all_special_tokens else 1 for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in bpe["merges"]])
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(TEMPLATE)
    for name, param in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        array = param.detach().numpy().astype(np.float32)
        if arch == "llama" and ".q_proj." in name:
            array = llama_cpp_permute(array, cfg.num_attention_heads)
        elif arch == "llama" and ".k_proj." in name:
            array = llama_cpp_permute(array, cfg.num_key_value_heads)
        writer.add_tensor(gguf_name(name, arch, cfg.num_hidden_layers), array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def tiny_model(folder):
    """(model in eval mode, tokenizer) of a tiny checkpoint folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def distinct_values(model):
    """Give every tensor its own random values (norm weights start all ones and biases all
    zeros: a swapped mapping between them would go unseen). Returns `model`."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1 + 1)
    return model


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_round_trip_is_exact(tmp_path, make_tiny_model, arch):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # Untied head and Qwen2's q/k/v biases: every kind of tensor is mapped.
    original, tok = tiny_model(make_tiny_model(arch, tie_word_embeddings=False))
    distinct_values(original)
    src = write_gguf(tmp_path / "tiny.gguf", original, tok)
    out = main(["--gguf", src, "--out", str(tmp_path / "hf")])
    config = AutoConfig.from_pretrained(out)
    for key in ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings",
                "rms_norm_eps", "rope_theta", "vocab_size", "tie_word_embeddings", "eos_token_id"):
        assert getattr(config, key) == getattr(original.config, key), key
    converted = AutoModelForCausalLM.from_pretrained(out).eval()
    want, got = original.state_dict(), converted.state_dict()
    assert set(want) == set(got)
    # Each converted tensor equals its own source, and only that one (values are all distinct).
    for name in want:
        matches = [k for k in want if want[k].shape == got[name].shape
                   and torch.equal(want[k], got[name])]
        assert matches == [name], (name, matches)
    if arch == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in want
    ids = tok(["The Legend of Zelda: Breath of the Wild"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(original(ids).logits, converted(ids).logits)
    # The tokenizer is rebuilt from the GGUF vocabulary: same ids, no BOS added, template kept.
    new_tok = AutoTokenizer.from_pretrained(out)
    text = "Minecraft (Xbox 360) 4.5 stars & free shipping! Zelda"
    assert new_tok(text).input_ids == tok(text).input_ids
    assert new_tok.decode(new_tok(text).input_ids) == text
    assert (new_tok.eos_token, new_tok.pad_token) == (tok.eos_token, tok.eos_token)
    assert new_tok.bos_token is None
    assert new_tok.chat_template == TEMPLATE


def test_unpermuted_qk_give_llama_cpp_attention_scores(tmp_path, tiny_llama_dir):
    """llama.cpp rotates adjacent pairs of the GGUF rows; HF rotates (i, i + d/2) of its rows.
    The converted q/k under HF rope must give the scores llama.cpp gets from the GGUF."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    model, tok = tiny_model(tiny_llama_dir)
    src = write_gguf(tmp_path / "tiny.gguf", model, tok)
    tensors = {t.name: np.array(t.data) for t in gguf.GGUFReader(src).tensors}
    out = convert(src, str(tmp_path / "hf"))
    from transformers import AutoModelForCausalLM

    attn = AutoModelForCausalLM.from_pretrained(out).model.layers[0].self_attn
    cfg = model.config
    d, theta = cfg.hidden_size // cfg.num_attention_heads, cfg.rope_theta
    x = torch.randn(5, cfg.hidden_size)
    pos = torch.arange(5)

    def gguf_rope(w, n_head):  # llama.cpp "norm" rope on rows in GGUF order: [T, heads, d]
        h = (x @ torch.from_numpy(w).T).view(5, n_head, d // 2, 2)
        angle = pos[:, None, None] * theta ** (-2 * torch.arange(d // 2) / d)[None, None, :]
        a, b = h[..., 0], h[..., 1]
        return torch.stack([a * angle.cos() - b * angle.sin(),
                            a * angle.sin() + b * angle.cos()], -1).view(5, n_head, d)

    q_cpp = gguf_rope(tensors["blk.0.attn_q.weight"], cfg.num_attention_heads)
    k_cpp = gguf_rope(tensors["blk.0.attn_k.weight"], cfg.num_key_value_heads)
    def hf_scores(q_weight, k_weight):  # HF rope (rotate_half) on rows in HF order: [heads, T, T]
        q = (x @ q_weight.T).view(1, 5, -1, d).transpose(1, 2)
        k = (x @ k_weight.T).view(1, 5, -1, d).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, *attn.rotary_emb(x[None], pos[None]))
        group = q.shape[1] // k.shape[1]
        return q[0] @ k[0].repeat_interleave(group, 0).transpose(1, 2)

    group = cfg.num_attention_heads // cfg.num_key_value_heads
    cpp = torch.einsum("thd,shd->hts", q_cpp, k_cpp.repeat_interleave(group, 1))
    with torch.no_grad():
        assert torch.allclose(hf_scores(attn.q_proj.weight, attn.k_proj.weight), cpp, atol=1e-4)
        # Left in llama.cpp's order, the same weights would give other scores.
        raw = [torch.from_numpy(tensors[f"blk.0.attn_{n}.weight"]) for n in "qk"]
        assert not torch.allclose(hf_scores(*raw), cpp, atol=1e-2)
    assert torch.equal(torch.from_numpy(unpermute_rope(raw[0].numpy(), cfg.num_attention_heads)),
                       attn.q_proj.weight.detach())


def test_bad_inputs(tmp_path, tiny_qwen2_dir):
    with pytest.raises(GGUFError, match="no such GGUF file"):
        convert(str(tmp_path / "missing.gguf"), str(tmp_path / "out"))
    writer = gguf.GGUFWriter(str(tmp_path / "gemma.gguf"), "gemma")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GGUFError, match="architecture 'gemma' is not supported"):
        convert(str(tmp_path / "gemma.gguf"), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out") and not os.path.exists(tmp_path / "out.partial")
    model, tok = tiny_model(tiny_qwen2_dir)
    src = write_gguf(tmp_path / "bpe.gguf", model, tok, pre="chameleon")
    with pytest.raises(GGUFError, match="tokenizer.ggml.pre='chameleon' is not supported"):
        convert(src, str(tmp_path / "out"))
    (tmp_path / "exists").mkdir()
    with pytest.raises(GGUFError, match="already exists"):
        convert(src, str(tmp_path / "exists"))


@pytest.mark.slow
def test_smollm2_converts_and_answers(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = convert("smollm2", str(tmp_path / "smollm2"))
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    text = "Super Mario Odyssey - Nintendo Switch, 2017 (café edition)"
    assert tok.decode(tok(text).input_ids) == text and tok(text).input_ids[0] != tok.bos_token_id
    question = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tok.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(gen[0, enc.input_ids.shape[1]:])
    assert "Paris" in answer, answer
