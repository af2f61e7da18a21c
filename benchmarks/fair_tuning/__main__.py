"""python -m benchmarks.fair_tuning --config <yaml> [--datasets D ...] [--variants V ...] [--report]

Runs each (dataset, variant) search of the config in order through `recbole_llm2rec.tune`,
resuming a search whose folder exists and skipping one that finished; after each search it
saves the trials table and a run record in benchmarks/results/<name>/ and rewrites
benchmarks/results/<name>.md.
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from benchmarks.fair_tuning.spec import ROOT, load_fair_tuning
from recbole_llm2rec.errors import InputError, cli_main
from recbole_llm2rec.feat import atomic_write_text

PROG = "python -m benchmarks.fair_tuning"
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def record_path(spec, dataset, variant, ext):
    """benchmarks/results/<name>/<dataset>.<variant>.<ext> (the run record or trials table)."""
    return os.path.join(RESULTS, spec.name, f"{dataset}.{variant}.{ext}")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def run_search(spec, dataset, variant, command):
    """One variant's search, new or resumed; then its trials table and run record."""
    import torch

    from benchmarks.machine import machine
    from recbole_llm2rec import tune

    output = spec.output(dataset, variant)
    resumed = os.path.isfile(os.path.join(output, "search.json"))
    argv = (["--output", output, "--resume", "--best-config", spec.tuned(dataset, variant)]
            if resumed else spec.search_args(dataset, variant))
    started, load_start, t0 = now(), os.getloadavg()[0], time.time()
    tune.main(argv)
    torch.set_num_threads(max(1, int(spec.cpus)))  # machine() reports a trial's threads
    path = record_path(spec, dataset, variant, "json")
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
    record["finished"] = record["sessions"][-1]["finished"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    shutil.copyfile(os.path.join(output, "results.csv"), path[:-len("json")] + "csv")
    atomic_write_text(path, lambda fh: json.dump(record, fh, indent=2))


def main(argv=None):
    p = argparse.ArgumentParser(prog=PROG, description="Run a fair-tuning config.")
    p.add_argument("--config", required=True, help="e.g. benchmarks/configs/fair_tuning_2k.yaml")
    p.add_argument("--datasets", nargs="+", default=None, help="only these of the config's")
    p.add_argument("--variants", nargs="+", default=None, help="only these of the config's")
    p.add_argument("--report", action="store_true", help="only rewrite the results table")
    args = p.parse_args(argv)
    spec = load_fair_tuning(args.config)
    for key, chosen, known in (("datasets", args.datasets, spec.datasets),
                               ("variants", args.variants, list(spec.variants))):
        extra = sorted(set(chosen or []) - set(known))
        if extra:
            raise InputError(f"not among the config's {key}", path=args.config, field=key,
                             value=extra)
    if not args.report:
        command = f"{PROG} " + shlex.join(sys.argv[1:] if argv is None else argv)
        for dataset in args.datasets or spec.datasets:
            for variant in args.variants or spec.variants:
                if os.path.isfile(record_path(spec, dataset, variant, "json")):
                    print(f"done: {dataset} {variant}", flush=True)
                    continue
                print(f"searching: {dataset} {variant}", flush=True)
                run_search(spec, dataset, variant, command)
                # the table is written by a fresh process: it reads every record so far
                subprocess.run([sys.executable, "-m", "benchmarks.fair_tuning", "--config",
                                args.config, "--report"], cwd=os.getcwd(), check=False)
        return None
    from benchmarks.fair_tuning.report import write_report

    print(write_report(spec))


if __name__ == "__main__":
    cli_main(main, PROG, sys.argv[1:])
