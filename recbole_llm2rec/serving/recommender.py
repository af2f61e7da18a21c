"""`Recommender`: recommendations from an exported bundle, and items added by title.

    rec = Recommender.load("bundle/")
    rec.recommend(["i101", "i103"], k=10)          # [(token, score), ...] best first
    rec.add_items(["new1"], ["A title"])            # embedded, adapted, recommendable at once
    rec.remove_items(["i101"])

Readers never lock: each request reads one `_Catalogue` snapshot (tokens, live rows, index)
and writers (serialised by a lock) publish a new snapshot in one assignment, so an answer sees
an add or a removal wholly or not at all. Item vectors live in an append-only buffer: a row,
once written, never changes, so older snapshots stay valid while newer rows are written.
"""
import threading

import torch

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.serving import index as index_mod
from recbole_llm2rec.serving.bundle import PAD, read_bundle
from recbole_llm2rec.serving.embedder import TitleEmbedder
from recbole_llm2rec.serving.model import (VectorTable, build_model, new_item_vectors)
from recbole_llm2rec.serving.validate import check_history, check_k, check_new_items, check_tokens

ON_UNKNOWN = ("error", "skip")


class _Catalogue:
    """One published state: `tokens` by row, `rows` {live token: row}, `n` rows in use,
    `alive` bool [n], the buffer `vectors` they read, the HNSW index (or None) with its
    selector of live rows, and `version` (counts publications)."""

    def __init__(self, tokens, rows, n, alive, vectors, hnsw, version):
        self.tokens, self.rows, self.n, self.alive = tokens, rows, n, alive
        self.vectors, self.hnsw, self.version = vectors, hnsw, version
        self.size = len(rows)
        self.selector = hnsw.selector(alive.numpy()) if hnsw is not None else (None, None)


class Recommender:
    """A trained sequential model serving top-k over its catalogue (see the module doc)."""

    def __init__(self, bundle, index=index_mod.AUTO, ef_search=index_mod.HNSW_EF_SEARCH):
        self.bundle, self.config = bundle, bundle.config
        self.model = build_model(bundle.config, bundle.weights)
        self.max_length = int(self.config["MAX_ITEM_LIST_LENGTH"])
        text_table = self.model.item_embedding
        self.text_table = text_table if hasattr(text_table, "new_item_rows") else None
        vectors = bundle.vectors.float().contiguous()
        self.model.item_embedding = VectorTable(vectors)  # the adapted rows, as exported
        self.embedder = TitleEmbedder(bundle.sidecar) if bundle.sidecar else None
        self.index_kind = index_mod.choose_kind(index, len(vectors) - 1)
        self.ef_search = ef_search  # HNSW: candidates kept while searching (recall vs speed)
        self._lock = threading.Lock()
        tokens = list(bundle.tokens)
        alive = torch.ones(len(tokens), dtype=torch.bool)
        alive[0] = False  # padding
        self._state = None
        self._publish(tokens, {t: r for r, t in enumerate(tokens) if r}, len(tokens), alive,
                      vectors, hnsw=None)

    @classmethod
    def load(cls, folder, index=index_mod.AUTO, ef_search=index_mod.HNSW_EF_SEARCH):
        """The recommender of the bundle in `folder` (checked against its manifest)."""
        return cls(read_bundle(folder), index=index, ef_search=ef_search)

    @property
    def size(self):
        """Items that can be recommended now."""
        return self._state.size

    def info(self):
        """Model, catalogue size, index and embedder (GET /health)."""
        state = self._state
        return {"model": self.config["model"], "dataset": self.config.get("dataset"),
                "item_repr": self.config.get("item_repr") if self.text_table else None,
                "catalogue": state.size, "version": state.version, "index": self.index_kind,
                "embedder": self.embedder.describe() if self.embedder else None}

    def recommend(self, history, k=10, exclude_seen=True, on_unknown="error"):
        """Top-`k` (token, score) lists for one history (a list of item tokens, oldest first)
        or a batch of them; histories longer than the model's length use their last items.
        Returns one list, or one list per history."""
        return self.recommend_with_version(history, k, exclude_seen, on_unknown)[0]

    def recommend_with_version(self, history, k=10, exclude_seen=True, on_unknown="error"):
        """`recommend`'s answer and the catalogue version it was computed on."""
        state = self._state
        histories, single = check_history(history)
        if on_unknown not in ON_UNKNOWN:
            raise InputError(f"must be one of {', '.join(ON_UNKNOWN)}", field="on_unknown",
                             value=on_unknown)
        check_k(k, state.size)
        if not isinstance(exclude_seen, bool):
            raise InputError("must be true or false", field="exclude_seen", value=exclude_seen)
        seqs = [self._rows_of(h, state, on_unknown, i if not single else None)
                for i, h in enumerate(histories)]
        queries = self.encode(seqs)
        banned = seqs if exclude_seen else [[] for _ in seqs]
        hnsw = state.hnsw
        scores, rows = index_mod.top_k(queries, state.vectors, state.n, state.alive, banned, k,
                                       hnsw, state.selector[0])
        answers = [[(state.tokens[r], float(s)) for r, s in zip(row.tolist(), score.tolist())
                    if r >= 0] for row, score in zip(rows, scores)]
        return (answers[0] if single else answers), state.version

    def encode(self, seqs):
        """The model's query vectors for row sequences (each non-empty, oldest first), from
        their last `max_length` rows. Returns [B, H]."""
        item_seq = torch.zeros(len(seqs), self.max_length, dtype=torch.long)  # as RecBole pads
        for i, s in enumerate(seqs):
            item_seq[i, :min(len(s), self.max_length)] = torch.as_tensor(s[-self.max_length:])
        lengths = torch.as_tensor([min(len(s), self.max_length) for s in seqs])
        with torch.inference_mode():
            return self.model.forward(item_seq, lengths)

    def _rows_of(self, history, state, on_unknown, position):
        rows = [state.rows.get(t) for t in history]
        unknown = [t for t, r in zip(history, rows) if r is None]
        field = "history" if position is None else f"history[{position}]"
        if unknown and on_unknown == "error":
            raise InputError(f"{len(unknown)} item(s) not in the catalogue (on_unknown='skip' "
                             f"leaves them out)", field=field, value=unknown[:20])
        rows = [r for r in rows if r is not None]
        if not rows:
            raise InputError("no known item in the history", field=field, value=history[:20])
        return rows

    def add_items(self, tokens, titles):
        """Embed `titles` as the bundle's `.feat` was made, pass them through the trained
        adapter (no ID part) and make the items `tokens` recommendable, all at once. Returns
        the catalogue size."""
        tokens, titles = check_new_items(tokens, titles)
        if self.text_table is None:
            raise InputError("the model has no text item table, so items cannot be added by "
                             "title", field="model", value=self.config["model"])
        if (self.config.get("adapter_type") or "linear") == "rat":
            raise InputError("the table is PCA-reduced (LLMEmb's RAT); adding items by title "
                             "is not supported for it yet", field="adapter_type", value="rat")
        if self.embedder is None:
            raise InputError("the bundle has no .feat sidecar, so titles cannot be embedded "
                             "as its table was", field="feat.json", value=None)
        self._check_absent(tokens, self._state)
        vectors = new_item_vectors(self.text_table, self.embedder.embed(titles))
        return self.append(tokens, vectors)

    def append(self, tokens, vectors):
        """Make items `tokens` with item vectors [n, H] recommendable in one publication (the
        end of `add_items`; benchmarks grow synthetic catalogues with it)."""
        with self._lock:
            state = self._state
            self._check_absent(tokens, state)
            n = state.n + len(tokens)
            buffer = state.vectors
            if n > len(buffer):  # grow: a new buffer; the old one stays valid for its readers
                buffer = torch.empty(max(n, len(buffer) * 3 // 2), buffer.shape[1])
                buffer[:state.n] = state.vectors[:state.n]
            buffer[state.n:n] = vectors
            self.model.item_embedding.weight = buffer
            rows = dict(state.rows)
            rows.update((t, state.n + i) for i, t in enumerate(tokens))
            alive = torch.cat([state.alive, torch.ones(len(tokens), dtype=torch.bool)])
            self._publish(state.tokens + list(tokens), rows, n, alive, buffer, state.hnsw)
            return self._state.size

    def remove_items(self, tokens):
        """Take items `tokens` out of the catalogue (and out of later histories) at once.
        Returns the catalogue size."""
        tokens = check_tokens(tokens, "items")
        with self._lock:
            state = self._state
            unknown = [t for t in tokens if t not in state.rows]
            if unknown:
                raise InputError(f"{len(unknown)} item(s) not in the catalogue", field="items",
                                 value=unknown[:20])
            alive = state.alive.clone()
            alive[[state.rows[t] for t in tokens]] = False
            rows = {t: r for t, r in state.rows.items() if alive[r]}
            self._publish(state.tokens, rows, state.n, alive, state.vectors, state.hnsw)
            return self._state.size

    def _check_absent(self, tokens, state):
        present = [t for t in tokens if t in state.rows]
        if present:
            raise InputError(f"{len(present)} item(s) already in the catalogue", field="items",
                             value=present[:20])

    def _publish(self, tokens, rows, n, alive, vectors, hnsw):
        """Build the HNSW index when it is due (none yet, or too many rows added since it was
        built), then publish the new snapshot."""
        if self.index_kind == index_mod.HNSW and (
                hnsw is None or n - hnsw.n > index_mod.REBUILD_FRACTION * hnsw.n):
            hnsw = index_mod.HNSWIndex(vectors[:n].numpy(), ef_search=self.ef_search)
        version = 0 if self._state is None else self._state.version + 1
        self._state = _Catalogue(tokens, rows, n, alive, vectors, hnsw, version)


__all__ = ["Recommender", "PAD"]
