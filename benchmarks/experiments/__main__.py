"""python -m benchmarks.experiments --config <yaml> [--parallel N | --address ADDR] [--report]"""
import argparse
import dataclasses
import json
import os
import shlex
import sys

from benchmarks.experiments import execute
from benchmarks.experiments.spec import NO_VARIANT, load_experiment, only
from benchmarks.experiments.tables import write_tables
from recbole_llm2rec.errors import cli_main


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.experiments",
                                description="Run an experiment config and write its tables.")
    p.add_argument("--config", required=True, help="experiment yaml (benchmarks/configs/)")
    p.add_argument("--parallel", type=int, default=1,
                   help="runs at a time, as Ray tasks of 1 CPU each (default: 1, in-process)")
    p.add_argument("--address", default=None, help="Ray cluster address to run the runs on")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="run only these of the config's seeds now (the tables show every run)")
    p.add_argument("--embedders", nargs="+", default=None,
                   help="run only these of the config's embedders now (e.g. those whose "
                        ".feat files exist); ID-only models still run")
    p.add_argument("--variants", nargs="+", default=None,
                   help="run only these of the config's variants now ('-' for the runs "
                        "without a variant, e.g. ID-only models)")
    p.add_argument("--models", nargs="+", default=None,
                   help="run only these of the config's models now")
    p.add_argument("--datasets", nargs="+", default=None,
                   help="run only these of the config's datasets now")
    p.add_argument("--report", action="store_true", help="only rewrite the tables")
    p.add_argument("--keep_pictures", action="store_true",
                   help="with --report: leave the pictures and their notes as they are (e.g. "
                        "without the datasets' .feat sidecars, read by the extraction figure)")
    p.add_argument("--list", action="store_true", help="list the runs and whether each is done")
    p.add_argument("--reanalyse", action="store_true",
                   help="recompute the analyses of finished runs from their checkpoints "
                        "(no training), e.g. after adding one to the config")
    args = p.parse_args(argv)
    exp = todo = load_experiment(args.config)
    if args.seeds is not None:
        todo = dataclasses.replace(todo, seeds=only(args.seeds, exp.seeds, "seeds", args.config))
    if args.embedders is not None:
        todo = dataclasses.replace(todo, embedders=only(args.embedders, exp.embedders,
                                                        "embedders", args.config))
    if args.variants is not None:
        todo = dataclasses.replace(todo, only_variants=only(
            args.variants, [*exp.variants, NO_VARIANT], "variants", args.config))
    if args.models is not None:
        todo = dataclasses.replace(todo, models=only(args.models, exp.models, "models",
                                                     args.config))
    if args.datasets is not None:
        chosen = only(args.datasets, exp.datasets, "datasets", args.config)
        todo = dataclasses.replace(todo, blocks={block: [d for d in datasets if d in chosen]
                                                 for block, datasets in exp.blocks.items()})
    if args.list:
        waiting = set(execute.pending(todo))
        for run in todo.runs():
            print(("pending  " if run in waiting else "done     ") + run.file_name)
        return
    if args.reanalyse:
        for run in todo.runs():
            path = os.path.join(exp.runs_dir, run.file_name)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as fh:
                    record = execute.reanalyse(exp, run, json.load(fh))
                print(("reanalysed " if record else "no checkpoint: ") + run.file_name, flush=True)
                if record:
                    execute.save(exp, run, record)
    elif not args.report:
        def done(run, path):
            print(f"finished {run.file_name}", flush=True)
            write_tables(exp)

        command = "python -m benchmarks.experiments " + shlex.join(
            sys.argv[1:] if argv is None else argv)
        execute.run_all(todo, parallel=args.parallel, address=args.address, on_done=done,
                        command=command)
    print(write_tables(exp, pictures=not args.keep_pictures))


if __name__ == "__main__":
    cli_main(main, "python -m benchmarks.experiments", sys.argv[1:])
