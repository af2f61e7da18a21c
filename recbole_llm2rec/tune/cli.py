"""`python -m recbole_llm2rec.tune`: options, then check everything, then search."""
import argparse
import sys

from recbole_llm2rec.tune.driver import make_searcher, search_and_report
from recbole_llm2rec.tune.errors import TuneError
from recbole_llm2rec.tune.folder import open_output, save_search, space_file
from recbole_llm2rec.tune.preflight import prepare
from recbole_llm2rec.tune.space import load_space
from recbole_llm2rec.tune.trial import TRIAL_KEYS

PROG = "python -m recbole_llm2rec.tune"
USAGE = """Ray Tune hyper-parameter search over RecBole runs of any model the runner supports.

    python -m recbole_llm2rec.tune --model TextSASRec --dataset Games \\
        --space props/tune/TextSASRec.yaml --num-samples 8 --epochs=5

Each trial is one `quick_start.run` with the sampled values layered over the usual props
(props -> --config_files -> sampled values -> `--key=value` overrides). ASHA stops trials early
on the validation metric (RecBole's `valid_metric`); test metrics are only recorded.
Writes into --output: `results.csv`, `results.md`, `best_config.yaml`, Ray's experiment
folder `ray/` (resumable with --resume), `dataset_cache/` (the dataset, built once) and
`manifest.json` (the sha256 of each file --resume may unpickle).
"""


def build_parser():
    p = argparse.ArgumentParser(prog=PROG, description=USAGE.split("\n")[0],
                                epilog="Any other --key=value is a RecBole property override.")
    p.add_argument("--model", help="model name: TextSASRec, TextGRU4Rec or a RecBole model")
    p.add_argument("--dataset", help="dataset name (a folder in data_path)")
    p.add_argument("--space", help="search-space yaml, e.g. props/tune/TextSASRec.yaml")
    p.add_argument("--config_files", default="", help="space-separated extra RecBole yaml files")
    p.add_argument("--num-samples", type=int, default=8, help="number of trials (default 8)")
    p.add_argument("--cpus", type=float, default=None,
                   help="CPUs per trial (default: the cluster's CPUs split over the trials)")
    p.add_argument("--gpus", type=float, default=None,
                   help="GPUs per trial (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--address", default=None,
                   help="join a running Ray cluster: 'auto' or 'ray://host:10001' "
                        "(default: start Ray on this machine)")
    p.add_argument("--search-alg", default="random",
                   help="random (default) or a Ray Tune searcher name: optuna, hyperopt, ...")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the search algorithm, for a reproducible search (default: none)")
    p.add_argument("--grace-period", type=int, default=1,
                   help="ASHA: evaluations every trial gets before it can be stopped (default 1)")
    p.add_argument("--reduction-factor", type=int, default=2,
                   help="ASHA: keep 1 of this many trials at each rung (default 2)")
    p.add_argument("--output", default=None,
                   help="search folder (default: saved/tune/<model>-<dataset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted search in --output")
    p.add_argument("--best-config", default=None,
                   help="where to write the best trial's RecBole yaml, e.g. "
                        "props/tuned/SASRec-Games2k.yaml (default: <output>/best_config.yaml)")
    return p


def parse_overrides(args):
    """RecBole-style `--key=value` arguments, minus the keys the tuner sets. Returns {key: str}."""
    from recbole_llm2rec.quick_start import parse_overrides as parse_key_values

    overrides = parse_key_values(args)
    for key in overrides:
        if key in TRIAL_KEYS:
            raise TuneError("set by the tuner for each trial; leave it out", field=f"--{key}",
                            value=overrides[key])
    return overrides


def main(argv=None):
    """Run (or resume) a search; writes the results table and best config. Returns the table.
    Bad input raises TuneError (an InputError) before Ray starts; `__main__` prints it in one
    line."""
    args, rest = build_parser().parse_known_args(argv)
    overrides = parse_overrides(rest)
    output, search = open_output(args, overrides)
    if args.resume and (rest or args.space or args.config_files):
        print("--resume: using the settings saved in the search folder", file=sys.stderr)
    search["space_parsed"] = load_space(space_file(output, search, args.resume))
    make_searcher(search["search_alg"], None, None)
    job = prepare(search, output)
    if not args.resume:
        save_search(output, search)
    return search_and_report(args, search, job, output)
