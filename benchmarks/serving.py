"""Serving benchmark: exact vs HNSW top-k on real bundles and a synthetic 1,000,000-item
catalogue, the cost of adding 1,000 items by title, and the HTTP endpoint under 16 clients.

    OMP_NUM_THREADS=1 python -m benchmarks.serving \\
        --bundle Games=saved/bench/Games.bundle --bundle Beauty=saved/bench/Beauty.bundle \\
        --data_path dataset/ --new_titles dataset/Toys/Toys.item --synthetic 1000000

For each bundle: queries are the model's vectors of real histories (each user's items but the
last, from `<data_path>/<name>/<name>.inter`, time order); recall@10 of HNSW (default settings)
against exact search; search-only queries/s at batch 1 and 256; build time and memory (exact:
the float32 vectors; HNSW: its copy of the vectors + graph links, `HNSWIndex.nbytes`); the cost of
`add_items` for 1,000 titles of `--new_titles` (embedding with the bundle's embedder
included). The synthetic catalogue is the first bundle plus rows drawn around its item
vectors (a random real row + Gaussian noise of `--noise` times the vectors' per-dimension std), grown
through `Recommender.append`; the same queries. One thread throughout (torch and faiss).
Appends to benchmarks/results/serving.md.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

from benchmarks.machine import machine
from benchmarks.serving_load import load, running_server
from recbole_llm2rec.serving import index as ix
from recbole_llm2rec.serving.recommender import Recommender

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(ROOT, "benchmarks", "results", "serving.md")


def histories(inter_path, n, rec, seed=0):
    """Up to `n` users' histories (all items but the last, time order) of tokens `rec` knows."""
    rows = {}
    with open(inter_path, encoding="utf-8") as fh:
        fh.readline()
        for line in fh:
            user, item, when = line.rstrip("\n").split("\t")[:3]
            rows.setdefault(user, []).append((float(when), item))
    users = sorted(rows)
    picked = np.random.default_rng(seed).permutation(len(users))[:n]
    out = []
    for i in picked:
        seq = [t for _, t in sorted(rows[users[i]], key=lambda r: r[0])][:-1]
        seq = [t for t in seq if t in rec._state.rows]
        if seq:
            out.append(seq)
    return out


def search_rate(fn, queries, batch, budget_s=20.0):
    """Queries/s of `fn(batch_of_queries)` over `queries`, for at most `budget_s` seconds."""
    done, start = 0, time.perf_counter()
    while done < len(queries) and time.perf_counter() - start < budget_s:
        fn(queries[done:done + batch])
        done += len(queries[done:done + batch])
    return done / (time.perf_counter() - start)


def measure(name, rec, queries, index, build_s, mem_mb, lines, exact_too=True):
    """One table row per index over `rec`'s current catalogue."""
    state = rec._state
    none = [[] for _ in range(len(queries))]

    def exact(q):
        return ix.top_k(q, state.vectors, state.n, state.alive, none[:len(q)], 10)

    sel, _bits = index.selector(state.alive.numpy())

    def approx(q):
        return ix.top_k(q, state.vectors, state.n, state.alive, none[:len(q)], 10, index, sel)

    truth = exact(queries)[1]
    found = approx(queries)[1]
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 10
                      for a, b in zip(found, truth)])
    exact_mb = state.n * state.vectors.shape[1] * 4 / 2 ** 20
    rows = [("exact (torch matmul)", exact, 0.0, exact_mb, 1.0)] if exact_too else []
    for kind, fn, build, mem, rec10 in rows + [(f"HNSW (M={ix.HNSW_M}, efConstruction="
                                         f"{ix.HNSW_EF_CONSTRUCTION}, efSearch="
                                         f"{index.ef_search})", approx, build_s, mem_mb,
                                         recall)]:
        q1 = search_rate(fn, queries[:300], 1)
        q256 = search_rate(fn, queries, 256)
        lines.append(f"| {name} | {state.size:,} | {kind} | {rec10:.4f} | {q1:,.0f} | "
                     f"{q256:,.0f} | {build:.1f} | {mem:,.0f} |")
        print(lines[-1], flush=True)


def build_hnsw(rec):
    state = rec._state
    start = time.perf_counter()
    hnsw = ix.HNSWIndex(state.vectors[:state.n].numpy())
    return hnsw, time.perf_counter() - start, hnsw.nbytes() / 2 ** 20


def add_cost(name, rec, titles, lines, tag):
    """Seconds to add 1,000 items by title (embedding included), and the embedding alone."""
    tokens = [f"{tag}-new-{i}" for i in range(len(titles))]
    rec.embedder.embed(titles[:1])  # the embedder loads once, before the clock starts
    start = time.perf_counter()
    rows = rec.embedder.embed(titles)
    embed_s = time.perf_counter() - start
    start = time.perf_counter()
    rec.add_items(tokens, titles)
    total = time.perf_counter() - start
    lines.append(f"| {name} | {rec.size - len(titles):,} | {rec.index_kind} | {len(titles):,} | "
                 f"{total:.1f} | {embed_s:.1f} | {rows.shape[1]} |")
    print(lines[-1], flush=True)
    rec.remove_items(tokens)


def synthetic_rows(real, extra, kind, noise=0.2, seed=0):
    """`extra` rows [extra, d] around `real` [n, d]: a random real row + Gaussian noise of
    `noise` times the per-dimension std ("noise"), or a random convex mix of two ("mix")."""
    rng = np.random.default_rng(seed)
    rows = real[rng.integers(0, len(real), extra)]
    if kind == "noise":
        scale = noise * real.std(0, ddof=1)
        return rows + rng.standard_normal(rows.shape, dtype=np.float32) * scale
    share = rng.random((extra, 1), dtype=np.float32)
    return share * rows + (1 - share) * real[rng.integers(0, len(real), extra)]


def new_titles(path, n):
    with open(path, encoding="utf-8") as fh:
        fh.readline()
        return [line.rstrip("\n").split("\t")[1] for _, line in zip(range(n), fh)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", action="append", required=True, help="NAME=folder")
    p.add_argument("--data_path", default="dataset/")
    p.add_argument("--new_titles", required=True, help=".item file whose titles are added")
    p.add_argument("--synthetic", type=int, default=1_000_000)
    p.add_argument("--synthetic_kind", choices=("noise", "mix"), default="noise",
                   help="noise: a real row + Gaussian noise of --noise times the vectors' "
                        "per-dimension std; mix: a random convex mix of two real rows (what "
                        "the linear adapter makes of the same mix of their text rows)")
    p.add_argument("--noise", type=float, default=0.2)
    p.add_argument("--skip_real", action="store_true",
                   help="only the synthetic catalogue (the bundles still give the queries)")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--http_requests", type=int, default=500)
    p.add_argument("--results", default=RESULTS, help="markdown file appended to")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    import faiss

    faiss.omp_set_num_threads(1)
    titles = new_titles(args.new_titles, 1000)
    search, adds, http, recs = [], [], [], []
    for spec in args.bundle:
        name, folder = spec.split("=", 1)
        rec = Recommender.load(folder, index="exact")
        hist = histories(os.path.join(args.data_path, name, f"{name}.inter"), args.queries, rec)
        queries = rec.encode([[rec._state.rows[t] for t in h] for h in hist])
        recs.append((name, folder, rec, queries, hist))
        if not args.skip_real:
            hnsw, build_s, mem = build_hnsw(rec)
            measure(name, rec, queries, hnsw, build_s, mem, search)
            add_cost(name, rec, titles, adds, name)
    for name, folder, _, _, hist in [] if args.skip_real else recs:
        with running_server(folder) as url:
            stats = load(url, hist, requests=args.http_requests, clients=16)
        http.append(f"| {name} | {stats['requests']} | 16 | {len(stats['errors'])} | "
                    f"{stats['p50_ms']:.1f} | {stats['p99_ms']:.1f} | {stats['qps']:.0f} |")
        print(http[-1], flush=True)
    if args.synthetic:
        name, folder, rec, queries, _ = recs[0]
        rec = Recommender.load(folder, index="hnsw")
        real = rec._state.vectors[1:rec._state.n]
        extra = args.synthetic - (rec._state.n - 1)
        rows = synthetic_rows(real.numpy(), extra, args.synthetic_kind, args.noise)
        label = (f"synthetic ({name} + {args.noise:g} std noise)"
                 if args.synthetic_kind == "noise" else f"synthetic ({name}, mixes of two items)")
        start = time.perf_counter()
        rec.append([f"syn-{i}" for i in range(extra)], torch.from_numpy(rows))  # builds HNSW
        build_s = time.perf_counter() - start
        mem = rec._state.hnsw.nbytes() / 2 ** 20
        measure(label, rec, queries, rec._state.hnsw, build_s, mem,
                search)
        for ef in (512, 1024):  # what a larger efSearch buys (same index)
            rec._state.hnsw.ef_search = ef
            measure(label, rec, queries,
                    rec._state.hnsw, build_s, mem, search, exact_too=False)
        rec._state.hnsw.ef_search = ix.HNSW_EF_SEARCH
        add_cost(label, rec, titles, adds, "syn")
    write(args, search, adds, http)


def write(args, search, adds, http):
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cmd = "OMP_NUM_THREADS=1 python -m benchmarks.serving " + " ".join(
        sys.argv[1:])
    text = [f"## Serving, {stamp}", "", f"Command: `{cmd}`  ", f"Machine: {machine()}", "",
            "### Top-10 search (search only, one thread; recall@10 against exact search)", "",
            "| catalogue | items | index | recall@10 | queries/s, batch 1 | queries/s, batch 256 "
            "| build (s) | memory (MiB) |", "|---|---:|---|---:|---:|---:|---:|---:|", *search, "",
            "### Adding 1,000 items by title (`add_items`, embedding included)", "",
            "| catalogue | items before | index | added | total (s) | embedding (s) | "
            "embedding width |", "|---|---:|---|---:|---:|---:|---:|", *adds, "",
            "### HTTP endpoint (`python -m recbole_llm2rec.serve`, one thread, loopback)", "",
            "| bundle | requests | clients | errors | p50 (ms) | p99 (ms) | requests/s |",
            "|---|---:|---:|---:|---:|---:|---:|", *http, ""]
    if not http:  # --skip_real
        text = text[:text.index("### HTTP endpoint (`python -m recbole_llm2rec.serve`, one "
                                "thread, loopback)")]
    with open(args.results, "a", encoding="utf-8") as fh:
        fh.write("\n".join(text) + "\n")
    print(f"-> {args.results}")


if __name__ == "__main__":
    main()
