"""Train and test one model: the plugin's (TextSASRec, TextGRU4Rec) or any RecBole built-in.

    python run_recbole.py --model=TextSASRec --dataset=ml-100k
    python run_recbole.py --model=SASRec --dataset=Games --data_path=dataset/
    python run_recbole.py --model=TextSASRec --dataset=Games --config_files="a.yaml b.yaml" --text_emb=llm2rec

Any other `--key=value` is a RecBole property override (highest precedence).
"""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", default="TextSASRec", help="model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", default="", help="space-separated yaml files")
    args, rest = parser.parse_known_args(argv)

    from recbole_llm2rec import MODELS
    from recbole_llm2rec.quick_start import build_config, parse_overrides, run

    try:
        overrides = parse_overrides(rest)
    except ValueError as err:
        parser.error(str(err))

    config_files = args.config_files.split()
    if args.model in MODELS:
        # the embedded default: build the default embedder's .feat on first use
        from pretrain.extract import ensure_feat

        config, _ = build_config(args.model, args.dataset, config_files, overrides=overrides)
        ensure_feat(config["data_path"], config["dataset"], config["text_emb"])
    result = run(args.model, args.dataset, config_files, overrides=overrides)
    metrics = "  ".join(f"{k}: {v:.4f}" for k, v in result["test_result"].items())
    print(f"{args.model} on {args.dataset} test: {metrics}")
    return result


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ValueError, FileNotFoundError) as err:  # bad input: one clear line, no traceback
        sys.exit(f"run_recbole.py: error: {err}")
