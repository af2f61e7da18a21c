"""What a resumed search may unpickle: only files this tuner wrote, checked by their sha256.

Resuming unpickles files of the search folder: Ray's experiment state (`ray/tuner.pkl`,
`ray/experiment_state-*.json`, which embeds cloudpickled values, the searcher's state) and
RecBole's dataset cache (`dataset_cache/*.pth`). The tuner records the sha256 of each such
file in `manifest.json` when it writes it (the dataset cache once, Ray's state every time Ray
saves it), and `verify` refuses a folder holding one that is unrecorded or changed.
"""
import json
import os

from recbole_llm2rec.atomic import file_sha256
from recbole_llm2rec.feat import atomic_write_text
from recbole_llm2rec.tune.errors import TuneError

MANIFEST = "manifest.json"
RAY_DIR = "ray"
CACHE_DIR = "dataset_cache"


def _files(output, folder):
    """Paths (relative to output, '/'-separated) of the files directly in output/folder; dot
    files (Ray's half-written temporaries) are never read and are left out."""
    path = os.path.join(output, folder)
    if not os.path.isdir(path):
        return []
    return sorted(f"{folder}/{name}" for name in os.listdir(path)
                  if not name.startswith(".") and os.path.isfile(os.path.join(path, name)))


def guarded_files(output):
    """The files of a search folder that resuming may unpickle (relative paths)."""
    return _files(output, RAY_DIR) + _files(output, CACHE_DIR)


def read_manifest(output):
    """{relative path: sha256} recorded for the search folder ({} when there is none yet)."""
    path = os.path.join(output, MANIFEST)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (ValueError, UnicodeDecodeError) as err:
        raise TuneError(f"not a valid manifest ({err})", path=path) from None
    if not isinstance(manifest, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in manifest.items()):
        raise TuneError("not a valid manifest (expected {file: sha256})", path=path)
    return manifest


def record(output, folder):
    """Record the sha256 of every file now in output/folder (RAY_DIR or CACHE_DIR), forgetting
    the ones of that folder that are gone."""
    manifest = {k: v for k, v in read_manifest(output).items()
                if not k.startswith(folder + "/")}
    for rel in _files(output, folder):
        manifest[rel] = file_sha256(os.path.join(output, rel))
    atomic_write_text(os.path.join(output, MANIFEST),
                      lambda fh: json.dump(manifest, fh, indent=1, sort_keys=True))


def verify(output):
    """TuneError (naming the file) unless every file resuming may unpickle is recorded in the
    manifest with its current sha256."""
    manifest = read_manifest(output)
    for rel in guarded_files(output):
        path = os.path.join(output, rel)
        if rel not in manifest:
            raise TuneError(f"not recorded in {MANIFEST} when the search wrote its files; "
                            f"refusing to unpickle it (remove it, or start a new search)",
                            path=path)
        if file_sha256(path) != manifest[rel]:
            raise TuneError(f"changed since the search wrote it (sha256 differs from "
                            f"{MANIFEST}); refusing to unpickle it", path=path)


class ManifestRecorder:
    """Ray Tune callback: records Ray's state files each time Ray saves them.

    Ray saves its experiment state, then the searcher's, then asks each callback for its state
    (`get_state`): that is the moment to hash what it just wrote. Keeps no state of its own.
    """

    def __init__(self, output):
        self.output = output

    def get_state(self):
        record(self.output, RAY_DIR)
        return None
