"""The search folder: the settings that define a search (`search.json`, `space.yaml`), created
for a new search and read back, checked, for `--resume`."""
import json
import os

from recbole_llm2rec.feat import atomic_write_text
from recbole_llm2rec.tune import integrity
from recbole_llm2rec.tune.errors import TuneError

SEARCH_FILE = "search.json"
SPACE_FILE = "space.yaml"
# The settings saved in search.json, with the types --resume accepts
SETTINGS = {
    "model": str, "dataset": str, "space": str, "config_files": list, "overrides": dict,
    "num_samples": int, "search_alg": str, "seed": (int, type(None)), "grace_period": int,
    "reduction_factor": int,
}


def search_settings(args, overrides):
    """The settings that define a search (saved in the folder, compared on --resume)."""
    return {
        "model": args.model,
        "dataset": args.dataset,
        "space": os.path.abspath(args.space),
        "config_files": [os.path.abspath(f) for f in args.config_files.split()],
        "overrides": overrides,
        "num_samples": args.num_samples,
        "search_alg": args.search_alg,
        "seed": args.seed,
        "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor,
    }


def read_search(output):
    """The settings saved in output/search.json; TuneError naming the file and the key that is
    missing or of the wrong type."""
    path = os.path.join(output, SEARCH_FILE)
    if not os.path.isfile(path):
        raise TuneError("--resume: no search to resume here (file missing)", path=path)
    try:
        with open(path, encoding="utf-8") as fh:
            search = json.load(fh)
    except json.JSONDecodeError as err:
        raise TuneError(f"not valid JSON ({err.msg})", path=path, line=err.lineno) from None
    except UnicodeDecodeError as err:
        raise TuneError(f"not UTF-8 text ({err.reason})", path=path) from None
    if not isinstance(search, dict):
        raise TuneError("expected an object of search settings", path=path)
    for key, kind in SETTINGS.items():
        if key not in search:
            raise TuneError("missing (the file is damaged; start a new search)", path=path,
                            field=key)
        value = search[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise TuneError("wrong type (the file is damaged; start a new search)", path=path,
                            field=key, value=value)
    if not all(isinstance(f, str) for f in search["config_files"]) or not all(
            isinstance(v, str) for v in search["overrides"].values()):
        raise TuneError("expected strings (the file is damaged; start a new search)", path=path,
                        field="config_files/overrides")
    return search


def open_output(args, overrides):
    """Create (check it is free) or reopen the search folder. Returns (folder, settings)."""
    if args.output is None:
        if not (args.model and args.dataset):
            raise TuneError("give --output, or --model and --dataset")
        args.output = os.path.join("saved", "tune", f"{args.model}-{args.dataset}")
    output = os.path.abspath(args.output)
    if args.resume:
        search = read_search(output)
        for key in ("model", "dataset"):
            given = getattr(args, key)
            if given is not None and given != search[key]:
                raise TuneError(f"--resume: differs from the search in {output} "
                                f"({search[key]!r}); leave it out", field=f"--{key}",
                                value=given)
        integrity.verify(output)
        return output, search
    for key in ("model", "dataset", "space"):
        if not getattr(args, key):
            raise TuneError("required (unless --resume)", field=f"--{key}")
    if args.num_samples < 1:
        raise TuneError("must be >= 1", field="--num-samples", value=args.num_samples)
    if os.path.exists(output) and os.listdir(output):
        raise TuneError(f"{output} already holds a search; pass --resume to continue it or "
                        f"choose another --output")
    return output, search_settings(args, overrides)


def space_file(output, search, resume):
    """The space a search uses: its copy in the folder when resuming."""
    return os.path.join(output, SPACE_FILE) if resume else search["space"]


def save_search(output, search):
    """Write output/space.yaml (a copy of the space) and output/search.json."""
    with open(search["space"], encoding="utf-8") as fh:
        space = fh.read()
    atomic_write_text(os.path.join(output, SPACE_FILE), lambda out: out.write(space))
    saved = {k: search[k] for k in SETTINGS}
    atomic_write_text(os.path.join(output, SEARCH_FILE),
                      lambda fh: json.dump(saved, fh, indent=2))
