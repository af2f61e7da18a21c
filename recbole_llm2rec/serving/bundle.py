"""The exported bundle: a folder that holds everything a trained model needs to recommend.

    manifest.json          format, model, and the sha256 and size of every other file
    config.json            the run's final settings (plain values)
    weights.safetensors    the model's state_dict
    items.safetensors      `vectors` [n_items, hidden]: the adapted item vectors (row 0: padding)
    items.json             item tokens in row order (row 0 is "[PAD]") and their titles
    feat.json              the `.feat` sidecar: embedder, pooling, max length, prompt (text models)

Nothing in it is a pickle: JSON and safetensors only. `read_bundle` checks every file against
the manifest first, so a changed or truncated file is refused in one line.
"""
import json
import os

from recbole_llm2rec.atomic import atomic_write_bytes, atomic_write_text, file_sha256
from recbole_llm2rec.errors import InputError

FORMAT = "recbole_llm2rec.bundle/1"
MANIFEST = "manifest.json"
FILES = ("config.json", "weights.safetensors", "items.safetensors", "items.json")
SIDECAR = "feat.json"
PAD = "[PAD]"


class Bundle:
    """What `read_bundle` returns: manifest, config (dict), weights {name: tensor}, vectors
    [n_items, hidden] tensor, tokens (row order), titles (list, or None), sidecar (dict or
    None) and the folder."""

    def __init__(self, folder, manifest, config, weights, vectors, tokens, titles, sidecar):
        self.folder, self.manifest, self.config = folder, manifest, config
        self.weights, self.vectors = weights, vectors
        self.tokens, self.titles, self.sidecar = tokens, titles, sidecar


def write_bundle(out, config, state_dict, vectors, tokens, titles=None, sidecar=None,
                 source=None):
    """Write a bundle into the new or empty folder `out`; each file is written atomically and
    the manifest last, so a bundle without a manifest is an unfinished one."""
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise InputError("already exists and is not an empty folder; choose a new --out",
                         path=out)
    if len(tokens) != len(vectors) or tokens[0] != PAD:
        raise InputError(f"{len(tokens)} tokens for {len(vectors)} item vectors (row 0 must "
                         f"be {PAD!r})", field="tokens")
    os.makedirs(out, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state_dict.items()}
    _write_json(os.path.join(out, "config.json"), config)
    _save_atomic(tensors, os.path.join(out, "weights.safetensors"))
    _save_atomic({"vectors": vectors.detach().cpu().float().contiguous()},
                 os.path.join(out, "items.safetensors"))
    _write_json(os.path.join(out, "items.json"), {"tokens": list(tokens), "titles": titles})
    names = list(FILES)
    if sidecar is not None:
        _write_json(os.path.join(out, SIDECAR), sidecar)
        names.append(SIDECAR)
    manifest = {"format": FORMAT, "model": config["model"], "dataset": config.get("dataset"),
                "item_repr": config.get("item_repr"), "n_items": len(tokens) - 1,
                "source": source,
                "files": {n: {"sha256": file_sha256(os.path.join(out, n)),
                              "bytes": os.path.getsize(os.path.join(out, n))} for n in names}}
    _write_json(os.path.join(out, MANIFEST), manifest)
    return out


def read_bundle(folder):
    """The bundle in `folder`, every file checked against the manifest. Returns a Bundle."""
    manifest = check_bundle(folder)
    from safetensors.torch import load_file

    def path(name):
        return os.path.join(folder, name)

    items = _read_json(path("items.json"))
    vectors = load_file(path("items.safetensors"))["vectors"]
    tokens, titles = items.get("tokens"), items.get("titles")
    if not isinstance(tokens, list) or len(tokens) != len(vectors):
        raise InputError(f"{len(tokens or [])} tokens for {len(vectors)} item vectors",
                         path=path("items.json"), field="tokens")
    sidecar = _read_json(path(SIDECAR)) if SIDECAR in manifest["files"] else None
    return Bundle(folder, manifest, _read_json(path("config.json")),
                  load_file(path("weights.safetensors")), vectors, tokens, titles, sidecar)


def check_bundle(folder):
    """Raise InputError (one line) unless every file the manifest of `folder` lists is there
    with its recorded size and sha256. Returns the manifest."""
    if not os.path.isdir(folder):
        raise InputError("bundle folder not found", path=folder)
    manifest_path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(manifest_path):
        raise InputError("no manifest.json: not a bundle written by python -m "
                         "recbole_llm2rec.export (or an unfinished one)", path=folder)
    manifest = _read_json(manifest_path)
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise InputError(f"not a bundle manifest (format {manifest.get('format')!r}, expected "
                         f"{FORMAT!r})", path=manifest_path)
    for name in FILES:
        if name not in manifest["files"]:
            raise InputError("the manifest does not list this file", path=manifest_path,
                             field="files", value=name)
    for name, record in manifest["files"].items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise InputError("file of the bundle is missing", path=path)
        size = os.path.getsize(path)
        if size != record.get("bytes"):
            raise InputError(f"{size} bytes, the manifest says {record.get('bytes')}: the file "
                             f"was changed or truncated", path=path)
        if file_sha256(path) != record.get("sha256"):
            raise InputError("sha256 differs from the manifest's: the file was changed",
                             path=path)
    return manifest


def _write_json(path, value):
    atomic_write_text(path, lambda fh: json.dump(value, fh, indent=1, ensure_ascii=False))


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError) as err:
        raise InputError(f"not readable JSON ({str(err).splitlines()[0][:80]})",
                         path=path) from None


def _save_atomic(tensors, path):
    """`tensors` as safetensors, written to a temp file beside `path` and renamed over it."""
    from safetensors.torch import save

    atomic_write_bytes(path, lambda fh: fh.write(save(tensors)))
