"""Screen HNSW settings for top-10 by inner product: recall@10 against exact search on a real
bundle's catalogue, optionally grown to `--items` rows around its item vectors (the same
synthetic catalogues as benchmarks/serving.py), for faiss HNSW over raw inner products (`ip`)
or over the usual inner-product-to-nearest-neighbour lift (`l2`: each row gets
sqrt(R^2 - |x|^2), R the largest norm; queries get 0, scaled to norm R with `--scale_queries`).
Prints one line per (variant, efSearch); one thread throughout.

    OMP_NUM_THREADS=1 python -m benchmarks.hnsw_screen --bundle saved/bench/Games.bundle \\
        --inter dataset/Games/Games.inter --items 200000 --kind noise \\
        --variant ip:48:100 --variant l2:48:100 --ef 128 256 512 1024
"""
import argparse
import time

import numpy as np
import torch

from benchmarks.serving import histories, synthetic_rows
from recbole_llm2rec.serving.recommender import Recommender


def catalogue(real, items, kind):
    """`real` [n, d] grown to `items` rows by `synthetic_rows` (seed 0)."""
    rows = synthetic_rows(real, max(items - len(real), 0), kind)
    return np.ascontiguousarray(np.concatenate([real, rows]), dtype=np.float32)


def build(x, metric, m, ef_construction):
    """(faiss index, the rows as added) for one variant."""
    import faiss

    if metric == "ip":
        index, data = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT), x
    else:
        sq = (x ** 2).sum(1)
        index = faiss.IndexHNSWFlat(x.shape[1] + 1, m)
        data = np.hstack([x, np.sqrt(np.maximum(sq.max() - sq, 0))[:, None]])
    index.hnsw.efConstruction = ef_construction
    index.add(np.ascontiguousarray(data, dtype=np.float32))
    return index


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", required=True)
    p.add_argument("--inter", required=True, help="the bundle's .inter file (query histories)")
    p.add_argument("--items", type=int, default=0, help="grow the catalogue to this many rows")
    p.add_argument("--kind", choices=("noise", "mix"), default="noise")
    p.add_argument("--variant", action="append", required=True, help="ip|l2:M:efConstruction")
    p.add_argument("--ef", type=int, nargs="+", default=[128, 256, 512, 1024])
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--scale_queries", action="store_true", help="l2: queries scaled to norm R")
    args = p.parse_args(argv)
    import faiss

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    rec = Recommender.load(args.bundle, index="exact")
    hist = histories(args.inter, 2000, rec)
    q = rec.encode([[rec._state.rows[t] for t in h] for h in hist]).numpy()[:args.queries]
    real = rec._state.vectors[1:rec._state.n].numpy()
    x = catalogue(real, args.items, args.kind)
    truth = torch.topk(torch.from_numpy(q) @ torch.from_numpy(x).T, 10, dim=1).indices.numpy()
    for variant in args.variant:
        metric, m, efc = variant.split(":")
        start = time.time()
        index = build(x, metric, int(m), int(efc))
        build_s = time.time() - start
        qq = q
        if metric == "l2":
            if args.scale_queries:
                qq = q * (np.sqrt((x ** 2).sum(1).max()) / np.linalg.norm(q, axis=1, keepdims=True))
            qq = np.hstack([qq, np.zeros((len(q), 1), np.float32)])
        qq = np.ascontiguousarray(qq, dtype=np.float32)
        for ef in args.ef:
            params = faiss.SearchParametersHNSW()
            params.efSearch = ef
            start = time.time()
            _, found = index.search(qq, 10, params=params)
            rate = len(qq) / (time.time() - start)
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
            print(f"{args.kind} items={len(x)} {metric} M={m} efC={efc} build={build_s:.0f}s "
                  f"efSearch={ef} recall@10={recall:.4f} queries/s={rate:.0f}", flush=True)


if __name__ == "__main__":
    main()
