"""Top-k by inner product over the served item vectors: exact, or approximate with faiss HNSW.

Exact search is a torch matmul over every row, in blocks, with scores identical to the
model's `full_sort_predict`. (IVF was tried first: on these models' item vectors, whose norms
vary widely, it stayed below 0.99 recall@10 unless it scanned half the cells.) The
approximate index is a faiss `IndexHNSWFlat` (inner product) over the rows that existed when it
was built; it is never changed after that (readers use it without locks): rows added later are
searched exactly beside it, removed rows are filtered out by a faiss ID selector, and the
recommender rebuilds it once the rows added since exceed `REBUILD_FRACTION` of it.
"""
import numpy as np
import torch

from recbole_llm2rec.errors import InputError

EXACT, HNSW, AUTO = "exact", "hnsw", "auto"
KINDS = (AUTO, EXACT, HNSW)
AUTO_HNSW_FROM = 200_000  # catalogue size from which `auto` builds HNSW (benchmarks/results/serving.md)
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 48, 100, 256  # recall@10 >= 0.99 on Games, Beauty
REBUILD_FRACTION = 0.1
SCORES_PER_BLOCK = 1 << 24  # floats of one exact score block (64 MiB)


def choose_kind(kind, n_items):
    """The index kind to build for `n_items` items: `kind`, or by size for `auto`."""
    if kind not in KINDS:
        raise InputError(f"must be one of {', '.join(KINDS)}", field="index", value=kind)
    if kind == AUTO:
        return HNSW if n_items >= AUTO_HNSW_FROM else EXACT
    return kind


class HNSWIndex:
    """faiss HNSW (inner product) over `vectors` [n, d] (float32), built once, searched by many
    threads at once. Faiss ids are row numbers."""

    def __init__(self, vectors, m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION,
                 ef_search=HNSW_EF_SEARCH):
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(vectors)
        self.n, self.ef_search = len(vectors), ef_search

    def nbytes(self):
        """Bytes the index holds: its copy of the vectors and the graph's links and levels."""
        hnsw = self.index.hnsw
        return (self.index.ntotal * self.index.d * 4 + hnsw.neighbors.size() * 4
                + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8)

    def selector(self, alive):
        """A faiss selector of the rows of `alive` (bool [>= n]) that are True, with the array
        it reads (keep both alive together)."""
        import faiss

        bits = np.packbits(np.asarray(alive[:self.n], dtype=bool), bitorder="little")
        return faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bits)), bits

    def search(self, queries, k, selector):
        """(scores [B, k], rows [B, k]) of the `k` best rows `selector` lets through; missing
        places have row -1 and score -inf."""
        import faiss

        params = faiss.SearchParametersHNSW()
        params.sel = selector
        params.efSearch = max(self.ef_search, k)
        scores, rows = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k,
                                         params=params)
        scores[rows < 0] = -np.inf
        return torch.from_numpy(scores), torch.from_numpy(rows)


def exact_scores(queries, vectors):
    """Inner products of `queries` [B, d] with `vectors` [n, d]. Returns [B, n]."""
    return queries @ vectors.T


def top_k(queries, vectors, n, alive, banned, k, hnsw=None, selector=None):
    """The `k` best rows of `vectors[:n]` for each query [B, d] by inner product, among rows
    that are `alive` (bool tensor [n]) and not in the query's `banned` rows (list of B lists).
    Rows below `hnsw.n` are searched in `hnsw` (through `selector`), the others exactly.
    Returns (scores [B, k'], rows [B, k']) sorted best first, -inf/-1 where fewer remain."""
    parts, start = [], 0
    extra = max((len(b) for b in banned), default=0)
    if hnsw is not None:
        scores, rows = hnsw.search(queries.numpy(), min(k + extra, hnsw.n), selector)
        for i, b in enumerate(banned):
            if b:
                scores[i][torch.isin(rows[i], torch.as_tensor(b, dtype=rows.dtype))] = -np.inf
        parts.append((scores, rows))
        start = hnsw.n
    if start < n:
        parts.append(_exact_block(queries, vectors, start, n, alive, banned, k))
    scores = torch.cat([p[0] for p in parts], dim=1)
    rows = torch.cat([p[1].long() for p in parts], dim=1)
    best, at = torch.topk(scores, min(k, scores.shape[1]), dim=1)
    rows = torch.gather(rows, 1, at)
    rows[torch.isinf(best)] = -1
    return best, rows


def _exact_block(queries, vectors, start, end, alive, banned, k):
    """Exact top-k of rows [start, end), in blocks of queries of at most SCORES_PER_BLOCK
    scores. Returns (scores [B, k'], rows [B, k'])."""
    width = end - start
    step = max(1, SCORES_PER_BLOCK // max(width, 1))
    dead = ~alive[start:end]
    out_scores, out_rows = [], []
    for lo in range(0, len(queries), step):
        scores = exact_scores(queries[lo:lo + step], vectors[start:end])
        scores[:, dead] = -np.inf
        for i, b in enumerate(banned[lo:lo + step]):
            inside = [r - start for r in b if start <= r < end]
            if inside:
                scores[i, inside] = -np.inf
        best, at = torch.topk(scores, min(k, width), dim=1)
        out_scores.append(best)
        out_rows.append(at + start)
    return torch.cat(out_scores), torch.cat(out_rows)
