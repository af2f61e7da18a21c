"""The `.feat` item-embedding file: the contract between `pretrain/` and the RecBole models.

A `.feat` file is a RecBole atomic file in the dataset's folder, named
`<dataset>.<name>.feat` (e.g. `Games.llm2rec.feat`), with the header
`item_id:token<TAB>item_emb:float_seq` and one row per item: the item's token, a tab,
and its embedding as space-separated floats. Rows are keyed by token, never by position.
A sidecar `<file>.json` records how the embeddings were made (backbone, pooling, ...).
"""
import json
import os
import tempfile

import numpy as np

ID_FIELD = "item_id:token"
EMB_FIELD = "item_emb:float_seq"


class FeatError(ValueError):
    """A `.feat` file, or its match against a dataset, is invalid."""


def feat_path(data_dir, dataset, name):
    """Path of the `.feat` file of embedder `name` for `dataset` inside `data_dir`."""
    return os.path.join(data_dir, f"{dataset}.{name}.feat")


def atomic_write_text(path, write_fn):
    """Call `write_fn(fh)` on a temp file beside `path`, then rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            write_fn(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_feat(path, tokens, embeddings, meta=None):
    """Write `embeddings` [N, D] for item `tokens` (N strings) atomically, plus `<path>.json`."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    tokens = [str(t) for t in tokens]
    if embeddings.ndim != 2 or embeddings.shape[0] != len(tokens):
        raise FeatError(f"{path}: need one embedding row per token, got {len(tokens)} tokens "
                        f"and an array of shape {tuple(embeddings.shape)}")
    if len(set(tokens)) != len(tokens):
        raise FeatError(f"{path}: duplicate item tokens")
    for tok in tokens:
        if not tok or any(c in tok for c in "\t\n\r"):
            raise FeatError(f"{path}: item token {tok!r} is empty or contains a tab/newline")
    if not np.isfinite(embeddings).all():
        row = int(np.where(~np.isfinite(embeddings).all(axis=1))[0][0])
        raise FeatError(f"{path}: embedding of item {tokens[row]!r} has NaN/inf values")
    row_fmt = " ".join(["%.9g"] * embeddings.shape[1])

    def write(fh):
        fh.write(f"{ID_FIELD}\t{EMB_FIELD}\n")
        for tok, row in zip(tokens, embeddings.tolist()):
            fh.write(tok + "\t" + row_fmt % tuple(row) + "\n")

    atomic_write_text(path, write)
    info = dict(meta or {})
    info.update(num_items=len(tokens), dim=int(embeddings.shape[1]))
    atomic_write_text(path + ".json", lambda fh: json.dump(info, fh, indent=2, sort_keys=True))


def read_feat(path):
    """Read a `.feat` file. Returns (tokens list, float32 array [N, D])."""
    if not os.path.isfile(path):
        raise FeatError(f"{path}: embedding file not found")
    tokens, rows, seen = [], [], {}
    dim = None
    with open(path, encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if ID_FIELD not in header or EMB_FIELD not in header:
            raise FeatError(f"{path}: header must have fields {ID_FIELD!r} and {EMB_FIELD!r}, "
                            f"got {header!r}")
        id_col, emb_col = header.index(ID_FIELD), header.index(EMB_FIELD)
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) != len(header):
                raise FeatError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, "
                                f"got {len(cols)}")
            tok = cols[id_col]
            if tok in seen:
                raise FeatError(f"{path}:{lineno}: item {tok!r} already given on line {seen[tok]}")
            try:
                vec = np.array(cols[emb_col].split(), dtype=np.float32)
            except ValueError:
                bad = next(v for v in cols[emb_col].split() if not _is_float(v))
                raise FeatError(f"{path}:{lineno}: item {tok!r}: {bad!r} is not a number") from None
            if dim is None:
                dim = len(vec)
            if len(vec) != dim or dim == 0:
                raise FeatError(f"{path}:{lineno}: item {tok!r} has {len(vec)} values, "
                                f"expected {dim} (the dimension of the first row)")
            if not np.isfinite(vec).all():
                raise FeatError(f"{path}:{lineno}: item {tok!r} has NaN/inf values")
            seen[tok] = lineno
            tokens.append(tok)
            rows.append(vec)
    if not rows:
        raise FeatError(f"{path}: no embedding rows")
    return tokens, np.stack(rows)


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def align_embeddings(path, tokens, embeddings, id_tokens, on_missing="error"):
    """Rows of `embeddings` reordered to a dataset's internal ids. Returns float32 [len(id_tokens), D].

    `id_tokens` is RecBole's `field2id_token[item_id]` (index 0 is `[PAD]`, whose row is zeros).
    Items of the dataset absent from the file raise, or get zeros with on_missing="zeros".
    """
    if on_missing not in ("error", "zeros"):
        raise FeatError(f"missing_item_emb must be 'error' or 'zeros', got {on_missing!r}")
    index = {tok: i for i, tok in enumerate(tokens)}
    out = np.zeros((len(id_tokens), embeddings.shape[1]), dtype=np.float32)
    missing = []
    for internal_id, tok in enumerate(id_tokens):
        if internal_id == 0 and tok == "[PAD]":
            continue
        row = index.get(str(tok))
        if row is None:
            missing.append(str(tok))
        else:
            out[internal_id] = embeddings[row]
    if missing and on_missing == "error":
        shown = ", ".join(repr(t) for t in missing[:5])
        raise FeatError(f"{path}: {len(missing)} of {len(id_tokens) - 1} dataset items have no "
                        f"embedding (e.g. {shown}); re-extract, or set missing_item_emb: zeros")
    return out


def load_aligned(path, id_tokens, expected_dim=None, on_missing="error"):
    """Read `path` and align it to `id_tokens`. Returns float32 [len(id_tokens), D]."""
    tokens, embeddings = read_feat(path)
    if expected_dim is not None and embeddings.shape[1] != expected_dim:
        raise FeatError(f"{path}: embeddings have dimension {embeddings.shape[1]}, "
                        f"config expects {expected_dim}")
    return align_embeddings(path, tokens, embeddings, id_tokens, on_missing)
