"""Embed every item title of a dataset with an LLM (or a BERT-like encoder) into its `.feat` file.

    python -m pretrain.extract --model PATH_OR_ALIAS --data_path dataset/ --dataset Games \\
        --name llm2rec

Decoder-only LLMs run with bidirectional attention by default (`--attention causal` for the
paper's "Causal" ablation, usually with `--pooling last`); encoders keep their own attention.
`--pooling auto` pools as the model declares it (`pretrain.encoder_pooling`); `--normalize`
L2-normalises the rows. Both are recorded in the `.feat` sidecar.
"""
import argparse
import importlib.util
import inspect
import os
import re
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from pretrain import ranks
from pretrain.common import dataset_file, item_prompts, read_item_titles
from pretrain.encoder_pooling import POOLING, declared_pooling, pool
from recbole_llm2rec.errors import InputError, cli_main
from recbole_llm2rec.feat import (PACKAGED_EMBEDDERS, FeatError, dataset_feat_path, missing_feat,
                                  write_feat)
from recbole_llm2rec.model_folder import check_model_folder

ALIASES = PACKAGED_EMBEDDERS  # alias -> (python package, model folder inside it, pip package)
AUTO_POOLING = "auto"  # as the model declares it (pretrain.encoder_pooling)
ATTENTION = ("bidirectional", "causal")
PROMPTS = ("llmemb",)  # item texts other than the plain title (--prompt)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BATCH_TOKENS = 512  # padded tokens per forward pass (see token_batches)


class ModelError(InputError):
    """A model path or alias is unusable for extraction."""


def package_folder(package, inner, pip_name):
    """Folder `inner` inside an installed (not imported) package; ModelError if not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package not installed; run: pip install {pip_name}", field="package",
                         value=package)
    return os.path.join(list(spec.submodule_search_locations)[0], inner)


def resolve_model(name_or_path):
    """Local folder for an alias (e.g. 'minilm') or a checked model folder; hub ids pass through."""
    if name_or_path in ALIASES:
        return package_folder(*ALIASES[name_or_path])
    if os.path.isdir(name_or_path):
        return check_model_folder(name_or_path, ModelError)
    first = name_or_path.split("/")[0]
    if re.fullmatch(r"[\w.-]+/[\w.-]+", name_or_path) and not os.path.isdir(first):
        return name_or_path  # a hub id, resolved (or refused offline) by transformers
    raise ModelError(f"no such model folder (aliases: {', '.join(ALIASES)})", name_or_path)


def is_decoder_only(config):
    """True for causal-LM architectures (Qwen2, Llama, GPT2, ...), False for BERT-like encoders."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    # BERT-likes also have a causal-LM head class, but only encoders have a masked-LM one.
    return (config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES)


def default_device():
    """This process's GPU (`cuda:<LOCAL_RANK>` under torchrun) when available, else cpu."""
    return str(ranks.device())


def load_encoder(model, attention=None, dtype="auto", device=None, attn_implementation=None):
    """Load (model in eval mode, tokenizer, info dict) for extraction; tokenizer first, so a bad
    folder fails before any weights are read."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from pretrain.models import default_attn_implementation, load_backbone
    from pretrain.provenance import fingerprint

    path = resolve_model(model)
    device = device or default_device()
    if dtype == "auto":
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ModelError(f"must be auto or one of {', '.join(DTYPES)}", field="dtype",
                         value=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"  # real tokens keep positions 0..n-1, as when alone
    config = AutoConfig.from_pretrained(path)
    info = dict(backbone=model, model_type=config.model_type, dtype=dtype)
    if os.path.isdir(path):  # content of the weights, so a pipeline rerun sees them change
        info["model_fingerprint"] = fingerprint(path)
    if is_decoder_only(config):
        attention = attention or "bidirectional"
        attn_implementation = attn_implementation or default_attn_implementation()
        net = load_backbone(path, bidirectional=attention == "bidirectional",
                            attn_implementation=attn_implementation, torch_dtype=DTYPES[dtype])
        info.update(attention=attention, attn_implementation=attn_implementation)
    else:
        if attention == "causal":
            raise ModelError(f"{config.model_type!r} is an encoder; --attention causal only "
                             f"applies to decoder-only LLMs", path, field="attention",
                             value=attention)
        net = AutoModel.from_pretrained(path, config=config, torch_dtype=DTYPES[dtype])
        info.update(attention="encoder")
    return net.to(device).eval(), tokenizer, info


def token_batches(lengths, batch_tokens):
    """Split items of token counts `lengths` into batches of at most `batch_tokens` padded tokens.

    Items go longest first (equal lengths keep their input order); a batch takes the next items
    while its size times its first (longest) length stays within `batch_tokens`, so short titles
    share big batches and long ones small batches; an item longer than the budget goes alone.
    Returns lists of indices into `lengths`, each index exactly once."""
    batches = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def embed_texts(model, tokenizer, texts, pooling="mean", batch_tokens=BATCH_TOKENS,
                max_length=512, desc="embed", normalize=False):
    """Embed `texts` (N strings) in `token_batches` of at most `batch_tokens` padded tokens,
    each distinct text once, under a progress bar; `normalize` scales each row to unit L2 norm.
    Under torchrun each process embeds every world-th text of the length-sorted list (its
    batches stay length-sorted) and rank 0 gathers the rows.
    Returns (float32 [N, H] in the order of `texts`, number of real tokens of the N texts);
    the array is None on the other ranks."""
    if pooling not in POOLING:
        raise ModelError(f"must be one of {', '.join(POOLING)}", field="pooling", value=pooling)
    distinct = list(dict.fromkeys(texts))  # a row depends on its text alone, not its batch
    encoded = tokenizer(distinct, truncation=True, max_length=max_length)
    features = [{k: encoded[k][i] for k in encoded.keys()} for i in range(len(distinct))]
    lengths = [len(f["input_ids"]) for f in features]
    mine = ranks.share(sorted(range(len(distinct)), key=lambda i: -lengths[i]))
    accepted = set(inspect.signature(model.forward).parameters)
    device = next(model.parameters()).device
    rows = np.zeros((len(mine), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode(), tqdm(total=len(distinct), desc=desc, unit="item",
                                      disable=not ranks.is_main_process()) as bar:
        for idx in token_batches([lengths[i] for i in mine], batch_tokens):
            batch = tokenizer.pad([features[mine[j]] for j in idx], return_tensors="pt")
            inputs = {k: v.to(device) for k, v in batch.items() if k in accepted}
            if "use_cache" in accepted:
                inputs["use_cache"] = False  # no KV cache for a single forward pass
            hidden = model(**inputs).last_hidden_state
            pooled = pool(hidden, inputs["attention_mask"], pooling)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            rows[idx] = pooled.cpu().numpy()
            bar.update(len(idx) * ranks.world_size())
    row = {text: i for i, text in enumerate(distinct)}
    where = [row[text] for text in texts]
    n_tokens = sum(lengths[i] for i in where)
    shares = ranks.gather_to_main((mine, rows))
    if shares is None:
        return None, n_tokens
    out = np.zeros((len(distinct), model.config.hidden_size), dtype=np.float32)
    for indices, part in shares:
        out[indices] = part
    return out[where], n_tokens


def output_path(data_path, dataset, name):
    """The `.feat` path of embedder `name`, beside the dataset's `.item` file."""
    return dataset_feat_path(data_path, dataset, name)


def resolve_pooling(model, pooling, normalize):
    """(pooling, normalize, extra sidecar keys): `auto` becomes the pooling (and normalisation)
    that the model declares, and the sidecar says so; other values pass through."""
    if pooling == AUTO_POOLING:
        from transformers import AutoConfig

        path = resolve_model(model)
        pooling, declared_norm, source = declared_pooling(
            path, AutoConfig.from_pretrained(path).model_type)
        return pooling, normalize or declared_norm, dict(pooling_option=AUTO_POOLING,
                                                         pooling_declared_by=source)
    if pooling not in POOLING:
        raise ModelError(f"must be one of {', '.join(POOLING + (AUTO_POOLING,))}",
                         field="pooling", value=pooling)
    return pooling, normalize, {}


def item_texts(data_path, dataset, title_field="title", prompt=None):
    """(item tokens, texts to embed) of a dataset: the titles, or with `prompt="llmemb"` LLMEmb's
    attribute prompts (`pretrain.common.item_prompt`, as SCFT trains on)."""
    item_path = dataset_file(data_path, dataset, "item")
    if prompt is None:
        return read_item_titles(item_path, title_field)
    if prompt == "llmemb":
        return item_prompts(item_path, title_field)
    raise ModelError(f"must be one of {', '.join(PROMPTS)} (or unset: the title)", field="prompt",
                     value=prompt)


def extract(model, data_path, datasets, name, title_field="title", pooling="mean", attention=None,
            batch_tokens=BATCH_TOKENS, max_length=512, device=None, dtype="auto",
            attn_implementation=None, overwrite=False, normalize=False, prompt=None):
    """Write `<Dataset>.<name>.feat` for each dataset, loading the model once; its sidecar's
    `extraction` records how long the embedding took (see `timing`).
    Returns one dict per dataset: path, items, tokens, seconds (embedding time), and the meta."""
    pooling, normalize, declared = resolve_pooling(model, pooling, normalize)
    jobs = []
    for dataset in datasets:  # check every input before loading any weights
        out = output_path(data_path, dataset, name)
        if os.path.exists(out) and not overwrite:
            raise FeatError("already exists; pass --overwrite to replace it", out)
        tokens, titles = item_texts(data_path, dataset, title_field, prompt)
        jobs.append((dataset, out, tokens, titles))
    ranks.barrier()  # every process has checked before rank 0 writes any file
    net, tokenizer, info = load_encoder(model, attention, dtype, device, attn_implementation)
    meta = dict(info, stage="extract", pooling=pooling, max_length=max_length,
                title_field=title_field, prompt=prompt, normalized=bool(normalize), **declared)
    results = []
    for dataset, out, tokens, titles in jobs:
        start, cpu = time.perf_counter(), time.process_time()
        emb, n_tokens = embed_texts(net, tokenizer, titles, pooling, batch_tokens, max_length,
                                    desc=f"extract {dataset}", normalize=normalize)
        seconds = time.perf_counter() - start
        device_name = str(next(net.parameters()).device)
        took = timing(seconds, time.process_time() - cpu, len(tokens), n_tokens, device_name,
                      batch_tokens)
        if ranks.is_main_process():  # the one writer; the others' rows were gathered to it
            write_feat(out, tokens, emb, dict(meta, dataset=dataset, extraction=took,
                                              processes=ranks.world_size()))
            print(f"{dataset}: {len(tokens)} items, {n_tokens} tokens in {seconds:.1f} s "
                  f"({n_tokens / max(seconds, 1e-9):.0f} tokens/s) -> {out}")
        ranks.barrier()  # the file exists when any process returns
        results.append(dict(dataset=dataset, path=out, items=len(tokens), tokens=n_tokens,
                            seconds=seconds, device=device_name, **meta))
    return results


def timing(seconds, cpu_seconds, items, tokens, device, batch_tokens):
    """The sidecar's `extraction` record: wall and process CPU seconds of embedding `items`
    titles of `tokens` real tokens (tokenising, batching and pooling included, model loading
    not), on `device` with torch's thread count, in batches of `batch_tokens`, and when."""
    return dict(seconds=round(seconds, 3), cpu_seconds=round(cpu_seconds, 3), items=items,
                tokens=tokens, device=device, threads=torch.get_num_threads(),
                batch_tokens=batch_tokens,
                finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))


def ensure_feat(data_path, dataset, name):
    """Path of `<Dataset>.<name>.feat`; built when missing if `name` is a packaged embedder
    (`ALIASES`, e.g. props/overall.yaml's default `text_emb`)."""
    out = output_path(data_path, dataset, name)
    if os.path.isfile(out):
        return out
    if name not in ALIASES:
        raise missing_feat(data_path, dataset, name)
    extract(name, data_path, [dataset], name)
    return out


def build_parser():
    p = argparse.ArgumentParser(prog="python -m pretrain.extract",
                                description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True,
                   help=f"model folder, hub id or alias ({', '.join(ALIASES)})")
    p.add_argument("--data_path", default="dataset/",
                   help="folder holding <Dataset>/<Dataset>.item")
    p.add_argument("--dataset", required=True, nargs="+", help="one or more dataset names")
    p.add_argument("--name", required=True, help="embedder name: writes <Dataset>.<name>.feat")
    p.add_argument("--title_field", default="title", help="text column of the .item file")
    p.add_argument("--prompt", choices=PROMPTS, default=None,
                   help="embed LLMEmb's attribute prompt instead of the title")
    p.add_argument("--pooling", choices=POOLING + (AUTO_POOLING,), default="mean",
                   help="mean (default), last, cls (first token), or auto: as the model "
                        "declares it (sentence-transformers modules.json, else cls for "
                        "BERT-style encoders, mean otherwise)")
    p.add_argument("--normalize", action="store_true",
                   help="L2-normalise each row (auto pooling also follows a declared "
                        "Normalize module)")
    p.add_argument("--attention", choices=ATTENTION, default=None,
                   help="decoder-only LLMs: default bidirectional; encoders keep their own")
    p.add_argument("--attn_implementation", choices=("eager", "sdpa", "flash_attention_2"),
                   default=None, help="default: flash_attention_2 on CUDA if installed, else sdpa")
    p.add_argument("--batch_tokens", type=int, default=BATCH_TOKENS,
                   help="padded tokens per forward pass: titles go longest first, and each "
                        "batch takes as many as fit (short titles in big batches)")
    p.add_argument("--max_length", type=int, default=512, help="max tokens per title")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=("auto",) + tuple(DTYPES), default="auto",
                   help="auto: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--overwrite", action="store_true", help="replace existing .feat files")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.batch_tokens < 1 or args.max_length < 1:
        bad = "batch_tokens" if args.batch_tokens < 1 else "max_length"
        raise ModelError("must be positive", field=bad, value=getattr(args, bad))
    return extract(args.model, args.data_path, args.dataset, args.name, args.title_field,
                   args.pooling, args.attention, args.batch_tokens, args.max_length, args.device,
                   args.dtype, args.attn_implementation, args.overwrite, args.normalize,
                   args.prompt)


if __name__ == "__main__":
    cli_main(main, "python -m pretrain.extract", sys.argv[1:])
