"""Time `pretrain.extract` on whole datasets and record the figures in benchmarks/results/extract.md.

    nice -n 5 python -m benchmarks.extract_speed --model models/SmolLM2-135M-Instruct \
        --data_path dataset/ --dataset Games Beauty --name smollm2

Takes the same flags as `python -m pretrain.extract`, runs the datasets one after another and
appends a table row (items, tokens, embedding seconds, tokens/s, items/s) and the machine it ran
on as soon as each dataset is done, so a long run that is stopped keeps its finished figures.

    nice -n 19 python -m benchmarks.extract_speed --versus_plain \
        --model models/SmolLM2-135M-Instruct --data_path dataset/ --dataset Games --items 1000

times `pretrain.extract`'s batching (`embed_texts`: each distinct title once, longest first, in
batches of at most --batch_tokens padded tokens) against the reference's plain loop (batches of
16 in file order, each padded to its longest) on the first --items titles, with the same model
object, dtype, thread count (--threads, default 1) and `torch.inference_mode`, and measures the
machine's fp32 matmul FLOP/s in the same run (section "Versus a plain loop" of the results file).
"""
import os
import shlex
import sys
import time

from benchmarks.machine import machine
from pretrain.extract import BATCH_TOKENS, main, token_batches
from recbole_llm2rec.feat import atomic_write_text

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "extract.md")
HEADER = """# Item-title extraction speed (`pretrain.extract`)

Written by `benchmarks/extract_speed.py`; one row per dataset and run. `seconds` covers
tokenizing and embedding all titles (model loading excluded); tokens are the titles'
tokens without padding; batch is titles per batch in rows before 2026-12-02, padded tokens per
batch (`--batch_tokens`) since.

| date (UTC) | model | dataset | attention / pooling | device, dtype | batch | items | tokens | seconds | tokens/s | items/s |
|---|---|---|---|---|---:|---:|---:|---:|---:|---:|
"""


def record(argv, runs, stamp):
    """Append the rows of `runs` and the command line to the results file (atomically)."""
    batch = argv[argv.index("--batch_tokens") + 1] if "--batch_tokens" in argv else BATCH_TOKENS
    batch = f"{batch} tokens"
    model = argv[argv.index("--model") + 1]
    rows = "".join(
        f"| {stamp} | {model} | {r['dataset']} | {r['attention']} / {r['pooling']} | "
        f"{r['device']}, {r['dtype']} | {batch} | {r['items']} | {r['tokens']} | "
        f"{r['seconds']:.1f} | {r['tokens'] / r['seconds']:.0f} | {r['items'] / r['seconds']:.1f} |\n"
        for r in runs)
    old = open(RESULTS, encoding="utf-8").read() if os.path.isfile(RESULTS) else HEADER
    head, sep, tail = old.partition("\n## Runs\n")
    runs_part, notes_sep, notes = (tail if sep else "").partition("\n## Notes\n")
    runs_part = runs_part.rstrip("\n") + ("\n" if runs_part.strip() else "") + (
        f"- {stamp}: `python -m benchmarks.extract_speed {shlex.join(argv)}` on {machine()}\n")
    text = (head.rstrip("\n") + "\n" + rows + "\n## Runs\n" + runs_part
            + (notes_sep + notes if notes_sep else ""))
    atomic_write_text(RESULTS, lambda fh: fh.write(text))


def main_benchmark(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--dataset" not in argv:  # --help, or no dataset: pretrain.extract's parser answers
        return main(argv)
    at = argv.index("--dataset") + 1
    end = next((i for i in range(at, len(argv)) if argv[i].startswith("--")), len(argv))
    runs = []
    for dataset in argv[at:end]:
        one = argv[:at] + [dataset] + argv[end:]
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        runs += main(one)
        record(one, runs[-1:], stamp)
    return runs


# ---- extraction vs a plain loop (issue 11, item 5) -------------------------------------------

VERSUS_HEADER = "\n## Versus a plain loop\n"


def matmul_flops(seconds=3.0, n=1024):
    """This machine's fp32 matmul FLOP/s with torch's current threads: the best of repeated
    n x n @ n x n products over about `seconds` of CPU time (CPU time, not wall time, so that
    other jobs on a shared machine do not count)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best, end = 0.0, time.process_time() + seconds
    while time.process_time() < end:
        start = time.process_time()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / max(time.process_time() - start, 1e-9))
    return best


def forward_flops(model, lengths):
    """FLOPs of an encoder forward over sequences of `lengths` tokens: 2 per weight of every
    linear layer per token, plus 4 x hidden per layer per (query, key) pair (the attention
    scores and their weighted sum)."""
    import torch

    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    return sum(2 * linear * n + 4 * layers * hidden * n * n for n in lengths)


def plain_loop(model, tokenizer, texts, batch_size=16, max_length=512):
    """The reference's extraction: batches of `batch_size` in file order, each padded to its
    longest title, mean pooling. Returns (float32 [N, H], FLOPs computed, padding included)."""
    import numpy as np
    import torch

    from pretrain.encoder_pooling import pool

    rows, flops = [], 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           use_cache=False).last_hidden_state
            rows.append(pool(hidden, batch["attention_mask"], "mean").numpy())
            flops += forward_flops(model, [hidden.shape[1]] * hidden.shape[0])
    return np.concatenate(rows), flops


def token_batch_flops(model, lengths, batch_tokens):
    """FLOPs `pretrain.extract.embed_texts` computes for distinct titles of `lengths` tokens:
    its `token_batches`, each padded to its first (longest) title."""
    return sum(forward_flops(model, [lengths[b[0]]] * len(b))
               for b in token_batches(lengths, batch_tokens))


def versus_plain(argv):
    """Items/s of `pretrain.extract`'s batching vs the plain loop on the first --items titles of
    one dataset, same model object, dtype, threads and inference mode, runs alternated
    (A B ... B A) so that a load change hits both; plus the machine's fp32 matmul FLOP/s,
    measured before and after, and the fraction of it each reaches. Appends to extract.md."""
    import argparse

    import numpy as np
    import torch

    from pretrain.extract import embed_texts, item_texts, load_encoder

    p = argparse.ArgumentParser(prog="python -m benchmarks.extract_speed --versus_plain")
    p.add_argument("--versus_plain", action="store_true")
    p.add_argument("--model", required=True)
    p.add_argument("--data_path", default="dataset/")
    p.add_argument("--dataset", required=True)
    p.add_argument("--items", type=int, default=1000, help="the first N titles in file order")
    p.add_argument("--batch_tokens", type=int, nargs="+", default=[BATCH_TOKENS],
                   help=f"pretrain.extract batch budgets to time (its default: {BATCH_TOKENS})")
    p.add_argument("--plain_batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=2, help="passes of each way, alternated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--max_length", type=int, default=512)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # the tokenizer's work stays in this thread
    _, texts = item_texts(args.data_path, args.dataset)
    texts = texts[:args.items]
    model, tokenizer, info = load_encoder(args.model, dtype=args.dtype, device="cpu")
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True,
                                             max_length=args.max_length)["input_ids"]]
    distinct = dict(zip(texts, lengths))  # embed_texts embeds each distinct title once
    useful = forward_flops(model, lengths)
    embed_texts(model, tokenizer, texts[:4], "mean", 4, args.max_length, desc="warm-up")
    peak_before = matmul_flops()
    ways = [("pretrain.extract, token batches", f"{b} tokens") for b in args.batch_tokens]
    ways.append(("plain loop, file order", f"{args.plain_batch} titles"))
    seconds, walls, outputs, computed = {w: [] for w in ways}, {w: [] for w in ways}, {}, {}
    for r in range(args.repeats):
        for way in (ways if r % 2 == 0 else ways[::-1]):
            label, batch = way
            size = int(batch.split()[0])
            start, wall = time.process_time(), time.perf_counter()
            if label.startswith("plain"):
                outputs[way], computed[way] = plain_loop(model, tokenizer, texts, size,
                                                         args.max_length)
            else:
                outputs[way], _ = embed_texts(model, tokenizer, texts, "mean", size,
                                              args.max_length, desc=f"extract, {batch}")
                computed[way] = token_batch_flops(model, list(distinct.values()), size)
            seconds[way].append(time.process_time() - start)
            walls[way].append(time.perf_counter() - wall)
            print(f"{label}, batch {batch}: {seconds[way][-1]:.1f} CPU s, {walls[way][-1]:.1f} "
                  f"wall s", flush=True)
    peak_after = matmul_flops()
    peak = (peak_before + peak_after) / 2
    plain = ways[-1]
    plain_rate = len(texts) / np.mean(seconds[plain])
    lines = [f"| way | batch | CPU s (mean of {args.repeats}) | wall s | items/s (CPU) | "
             f"vs plain loop | FLOPs computed / useful | useful GFLOP/s | of matmul peak | "
             f"min cosine vs plain | max abs diff / max abs value |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ratios = []
    for way in ways:
        mean = float(np.mean(seconds[way]))
        rate = len(texts) / mean
        a, b = outputs[way], outputs[plain]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        lines.append(f"| {way[0]} | {way[1]} | {mean:.1f} | {np.mean(walls[way]):.1f} | "
                     f"{rate:.1f} | {rate / plain_rate:.2f}x | {computed[way] / useful:.2f} | "
                     f"{useful / mean / 1e9:.2f} | {useful / mean / peak:.1%} | "
                     f"{cosine.min():.6f} | {np.abs(a - b).max() / np.abs(b).max():.1e} |")
        ratios += [rate / plain_rate] if way != plain else []
    best = max(ratios)
    verdict = (f"Target (>= 2x the plain loop's items/s, in CPU seconds): "
               f"{'met' if best >= 2 else 'not met'}, best {best:.2f}x.")
    stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    block = (f"\n### {stamp}: {args.dataset}, first {len(texts)} titles in file order, "
             f"{info['backbone']}\n\n"
             f"{len(texts)} titles ({len(distinct)} distinct), {sum(lengths)} tokens (mean "
             f"{np.mean(lengths):.1f}, max {max(lengths)}); {info['dtype']}, "
             f"{info.get('attention')} attention ({info.get('attn_implementation')}), mean "
             f"pooling, torch.inference_mode, "
             f"{args.threads} thread(s), same model object for every way. Machine fp32 matmul "
             f"(1024 x 1024, best of ~3 CPU s): {peak_before / 1e9:.1f} GFLOP/s before, "
             f"{peak_after / 1e9:.1f} after (the fraction uses their mean). Rates use the "
             f"process's CPU seconds (the machine is shared; wall seconds shown too), which "
             f"include tokenization and pooling, after one warm-up batch; \"useful\" FLOPs "
             f"count real tokens of every title ({useful / 1e9:.1f} GFLOP in all), \"computed\" "
             f"adds the padding (and pretrain.extract skips repeated titles).\n\n"
             + "\n".join(lines) + "\n\n" + verdict + "\n\n"
             f"- `python -m benchmarks.extract_speed {shlex.join(argv)}` on {machine()}\n")
    old = open(RESULTS, encoding="utf-8").read() if os.path.isfile(RESULTS) else HEADER
    text = old if VERSUS_HEADER in old else old.rstrip("\n") + "\n" + VERSUS_HEADER
    text = text.rstrip("\n") + "\n" + block
    atomic_write_text(RESULTS, lambda fh: fh.write(text))
    print(block)


if __name__ == "__main__":
    if "--versus_plain" in sys.argv[1:]:
        versus_plain(sys.argv[1:])
    else:
        main_benchmark()
