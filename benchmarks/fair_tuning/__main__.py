"""python -m benchmarks.fair_tuning --config <yaml> [--datasets D ...] [--variants V ...]
[--refresh | --report]

Runs each (dataset, variant) search of the config in order through `recbole_llm2rec.tune`,
resuming a search whose folder exists and skipping one that finished (it has a record); after
each search it saves the trials table and a run record in <results_dir>/<name>/ and rewrites
the table <results_dir>/<name>.md.
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import sys
import time

from benchmarks.fair_tuning.report import write_report
from benchmarks.fair_tuning.spec import load_fair_tuning
from recbole_llm2rec.errors import InputError, cli_main
from recbole_llm2rec.feat import atomic_write_text

PROG = "python -m benchmarks.fair_tuning"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def run_search(spec, dataset, variant, command, refresh=False):
    """One variant's search, new or resumed, then its trials table and run record. `refresh`:
    a finished search is reopened only to rewrite its tables and tuned yaml (no new session)."""
    import torch

    from benchmarks.machine import machine
    from recbole_llm2rec import tune

    output = spec.output(dataset, variant)
    resumed = os.path.isfile(os.path.join(output, "search.json"))
    argv = (["--output", output, "--resume", "--best-config", spec.tuned(dataset, variant)]
            if resumed else spec.search_args(dataset, variant))
    started, load_start, t0 = now(), os.getloadavg()[0], time.time()
    tune.main(argv)
    path = spec.record(dataset, variant, "json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(os.path.join(output, "results.csv"), spec.record(dataset, variant, "csv"))
    if refresh:
        return
    torch.set_num_threads(max(1, int(spec.cpus)))  # machine() names a trial's threads
    record = {"dataset": dataset, "variant": variant, **spec.variants[variant],
              "tune_command": "python -m recbole_llm2rec.tune " + shlex.join(
                  spec.search_args(dataset, variant)),
              "command": command, "sessions": []}
    if os.path.isfile(path):  # a resumed search keeps the record of its earlier sessions
        with open(path, encoding="utf-8") as fh:
            record["sessions"] = json.load(fh).get("sessions", [])
    record["sessions"].append({
        "started": started, "finished": now(), "wall_s": round(time.time() - t0, 1),
        "resumed": resumed, "load_start": load_start, "load_end": os.getloadavg()[0],
        "machine": machine()})
    atomic_write_text(path, lambda fh: json.dump(record, fh, indent=2))


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description="Run a fair-tuning config.")
    p.add_argument("--config", required=True, help="e.g. benchmarks/configs/fair_tuning_2k.yaml")
    p.add_argument("--datasets", nargs="+", default=None, help="only these of the config's")
    p.add_argument("--variants", nargs="+", default=None, help="only these of the config's")
    p.add_argument("--refresh", action="store_true",
                   help="reopen finished searches to rewrite their tables and tuned yaml with "
                        "the current code (no training)")
    p.add_argument("--report", action="store_true", help="only rewrite the results table")
    args = p.parse_args(argv)
    spec = load_fair_tuning(args.config)
    for key, chosen, known in (("datasets", args.datasets, spec.datasets),
                               ("variants", args.variants, list(spec.variants))):
        extra = sorted(set(chosen or []) - set(known))
        if extra:
            raise InputError(f"not among the config's {key}", path=args.config, field=key,
                             value=extra)
    command = f"{PROG} " + shlex.join(sys.argv[1:] if argv is None else argv)
    for dataset in [] if args.report else args.datasets or spec.datasets:
        for variant in args.variants or spec.variants:
            finished = os.path.isfile(spec.record(dataset, variant, "json"))
            if finished != args.refresh:
                continue
            print(f"{'refreshing' if finished else 'searching'}: {dataset} {variant}", flush=True)
            run_search(spec, dataset, variant, command, refresh=finished)
            write_report(spec)
    print(write_report(spec))


if __name__ == "__main__":
    cli_main(main, PROG, sys.argv[1:])
