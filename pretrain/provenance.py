"""What a stage's output was made from, so that a rerun redoes exactly what is out of date.

A stage writes `provenance.json` into its folder when it starts and into `final/`:

    stage              the stage's name
    input_model        the model folder it started from (for the reader; not compared)
    input_fingerprint  content hash of that folder's files (weights, config, tokenizer)
    data               {dataset: content hash of its .inter and .item files}
    settings           the resolved settings that can change the result
                       (`stage_config.result_settings`: not paths, save or logging settings)

A rerun builds the record it would write and compares it with the one on disk: equal means the
stage is done (or resumes from its checkpoints); any difference moves the stage's folder aside
to `<stage>.old-<UTC time>/` (nothing is deleted) and the stage is redone. Since each record
holds its input's fingerprint, a redone stage makes every later stage out of date in turn.
"""
import hashlib
import json
import os
import time

from pretrain.common import dataset_file
from pretrain.stage_config import result_settings
from recbole_llm2rec.atomic import file_sha256

PROVENANCE = "provenance.json"
# Bookkeeping files of a model folder that do not change the model it loads as.
NOT_CONTENT = {PROVENANCE, "trainer_state.json", "training_args.bin", "README.md"}

_digests = {}  # (path, size, mtime_ns) -> sha256 hex: each file is read once per process


def file_digest(path):
    """sha256 hex of the file at `path`, streamed; cached by (path, size, mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        _digests[key] = file_sha256(path)
    return _digests[key]


def fingerprint(folder):
    """Content hash of a model folder: the names and bytes of its top-level files, bookkeeping
    (`NOT_CONTENT`, hidden and `*.tmp` files) left out. Returns 'sha256:<hex>'."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if (name in NOT_CONTENT or name.startswith(".") or name.endswith(".tmp")
                or not os.path.isfile(path)):
            continue
        digest.update(f"{name}\0{file_digest(path)}\n".encode())
    return "sha256:" + digest.hexdigest()


def data_fingerprints(data_path, datasets):
    """{dataset: content hash of its .inter and .item files}; a missing file counts as empty
    (the stage's own reader reports it)."""
    out = {}
    for name in datasets:
        digest = hashlib.sha256()
        for suffix in ("inter", "item"):
            path = dataset_file(data_path, name, suffix)
            digest.update(f"{suffix}\0{file_digest(path) if os.path.isfile(path) else ''}\n"
                          .encode())
        out[name] = "sha256:" + digest.hexdigest()
    return out


def stage_record(cfg, stage, input_model):
    """The provenance a run of `stage` with settings `cfg` from `input_model` would write."""
    record = dict(stage=stage, input_model=input_model, input_fingerprint=fingerprint(input_model),
                  data=data_fingerprints(cfg.data_path, cfg.datasets),
                  settings=result_settings(cfg))
    return json.loads(json.dumps(record))  # the form it has once read back from disk


def read(folder):
    """The record in `folder/provenance.json`, or None when absent or unreadable."""
    try:
        with open(os.path.join(folder, PROVENANCE), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write(folder, record):
    """Write `record` as `folder/provenance.json` (atomically), with the time it was made."""
    from recbole_llm2rec.feat import atomic_write_text

    record = dict(record, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    atomic_write_text(os.path.join(folder, PROVENANCE),
                      lambda fh: json.dump(record, fh, indent=2, sort_keys=True))


def short(value):
    """A fingerprint shortened for messages."""
    return str(value).split(":")[-1][:12]


def differences(old, new):
    """Why the record on disk `old` (None: there is none) does not describe `new`.
    Returns a list of short reasons; empty when they match."""
    if old is None:
        return [f"no {PROVENANCE} (made before provenance was recorded)"]
    why = []
    if old.get("stage") != new["stage"]:
        why.append(f"stage {old.get('stage')!r} -> {new['stage']!r}")
    if old.get("input_fingerprint") != new["input_fingerprint"]:
        why.append(f"input model {new['input_model']} changed "
                   f"({short(old.get('input_fingerprint'))} -> {short(new['input_fingerprint'])})")
    old_data, new_data = old.get("data") or {}, new["data"]
    why += [f"data {name} changed" for name in sorted(set(old_data) & set(new_data))
            if old_data[name] != new_data[name]]
    old_set, new_set = old.get("settings") or {}, new["settings"]
    why += [f"{key} {old_set.get(key)!r} -> {new_set.get(key)!r}"
            for key in sorted(set(old_set) | set(new_set)) if old_set.get(key) != new_set.get(key)]
    return why


def move_aside(path, companions=()):
    """Rename `path` (and `path + suffix` for each suffix in `companions`) to the first free
    `<path>.old-<UTC time>[-n]`. Returns the new path; nothing is deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, n = f"{path}.old-{stamp}", 1
    while any(os.path.exists(target + s) for s in ("", *companions)):
        n += 1
        target = f"{path}.old-{stamp}-{n}"
    for suffix in ("", *companions):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return target
