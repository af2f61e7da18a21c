"""Analyses of a trained checkpoint, no retraining:

    python -m recbole_llm2rec.evaluation saved/SASRec-<date>.pth [--analyses popularity shuffle]
        [--seed 0] [--out report.json]

Reloads the checkpoint with `recbole_llm2rec.quick_start.load_data_and_model`, runs
`evaluate_test` on its test split and prints the report as JSON. A dataset written by
`cold_start.write_cold_start_dataset` (its `<name>.cold.json` beside the atomic files) also gets
its warm/cold split.
"""
import argparse
import json
import os
import sys

from recbole_llm2rec.errors import InputError, cli_main
from recbole_llm2rec.evaluation.analyses import ANALYSES, evaluate_test
from recbole_llm2rec.feat import atomic_write_text


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m recbole_llm2rec.evaluation",
                                description="Test-set analyses of a trained RecBole checkpoint.")
    p.add_argument("checkpoint", help="a .pth file written by this plugin's trainers")
    p.add_argument("--analyses", nargs="*", default=list(ANALYSES), choices=ANALYSES)
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles and negatives")
    p.add_argument("--out", default=None, help="also write the report to this JSON file")
    args = p.parse_args(argv)
    if not os.path.isfile(args.checkpoint):
        raise InputError("checkpoint not found", path=args.checkpoint)
    from recbole_llm2rec.evaluation import cold_start
    from recbole_llm2rec.quick_start import load_data_and_model

    config, model, dataset, train_data, _, test_data = load_data_and_model(args.checkpoint)
    manifest = cold_start.manifest_of(config)
    cold = manifest and cold_start.cold_item_ids(dataset, manifest["cold_items"])
    report = evaluate_test(model, dataset, train_data, test_data, args.analyses,
                           cold_items=cold, seed=args.seed)
    text = json.dumps(report, indent=1)
    if args.out:
        atomic_write_text(args.out, lambda fh: fh.write(text + "\n"))
    print(text)


if __name__ == "__main__":
    cli_main(main, "python -m recbole_llm2rec.evaluation", sys.argv[1:])
