"""Train and test one model: the plugin's (TextSASRec, TextGRU4Rec) or any RecBole built-in.

    python run_recbole.py --model=TextSASRec --dataset=ml-100k
    python run_recbole.py --model=SASRec --dataset=Games --data_path=dataset/
    python run_recbole.py --model=TextSASRec --dataset=Games --config_files="a.yaml b.yaml" --text_emb=llm2rec
    python run_recbole.py --model=TextSASRec --dataset=Games --nproc=2   # 2 processes (DDP)

Any other `--key=value` is a RecBole property override (highest precedence). This entry script
also bootstraps the embedded default: ml-100k converted from RecBole's package, and the default
embedder's `.feat` (props/overall.yaml's `text_emb`), built on first use (the
`recbole_llm2rec` package itself never does).
"""
import argparse
import os
import sys

from recbole_llm2rec.errors import cli_main

PROG = "run_recbole.py"


def bootstrap(model, config):
    """Build what the run needs and can be made here: ml-100k's atomic files (from RecBole's
    package) and, for models that read a `.feat` (`uses_text_emb`), a packaged embedder's.
    Returns the data check's warnings (`check_data`)."""
    from dataset_atomic import ml100k
    from pretrain.extract import ensure_feat
    from recbole_llm2rec import MODELS
    from recbole_llm2rec.quick_start import check_data, check_data_path

    if config["dataset"] == ml100k.NAME:
        root = os.path.dirname(config["data_path"])
        check_data_path(root)
        ml100k.convert(root)
    warnings = check_data(config)  # bad data is reported before minutes of embedding
    if getattr(MODELS.get(model), "uses_text_emb", False):
        ensure_feat(config["data_path"], config["dataset"], config["text_emb"])
    return warnings


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", default="TextSASRec", help="model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", default="", help="space-separated yaml files")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes on this machine (one per GPU; gloo on CPUs)")
    parser.add_argument("--world_size", type=int, default=-1,
                        help="processes on all machines (default: nproc)")
    parser.add_argument("--ip", default="localhost", help="address of rank 0's machine")
    parser.add_argument("--port", type=int, default=None,
                        help="free port on rank 0's machine (default: one picked here)")
    parser.add_argument("--group_offset", type=int, default=0,
                        help="rank of this machine's first process")
    args, rest = parser.parse_known_args(argv)

    from recbole_llm2rec.quick_start import build_config, launch, parse_overrides, run_config

    try:
        overrides = parse_overrides(rest)
    except ValueError as err:
        parser.error(str(err))

    config_files = args.config_files.split()
    config, model_class = build_config(args.model, args.dataset, config_files,
                                       overrides=overrides)
    warnings = bootstrap(args.model, config)
    if args.nproc > 1 or args.world_size > 0:
        result = launch(dict(model=args.model, dataset=args.dataset,
                             config_file_list=config_files, overrides=overrides),
                        config, args.nproc, args.world_size, args.ip, args.port,
                        args.group_offset)
        if result is None:  # another machine's ranks: rank 0 prints the result
            return None
    else:
        result = run_config(config, model_class, warnings)
    metrics = "  ".join(f"{k}: {v:.4f}" for k, v in result["test_result"].items())
    print(f"{args.model} on {args.dataset} test: {metrics}")
    return result


if __name__ == "__main__":
    cli_main(main, PROG, sys.argv[1:])
