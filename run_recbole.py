"""Train and test one model: the plugin's (TextSASRec, TextGRU4Rec) or any RecBole built-in.

    python run_recbole.py --model=TextSASRec --dataset=ml-100k
    python run_recbole.py --model=SASRec --dataset=Games --data_path=dataset/
    python run_recbole.py --model=TextSASRec --dataset=Games --config_files="a.yaml b.yaml" --text_emb=llm2rec

Any other `--key=value` is a RecBole property override (highest precedence).
"""
import argparse
import sys


def parse_overrides(args):
    """RecBole-style `--key=value` arguments. Returns {key: value string}."""
    overrides = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
            raise SystemExit(f"run_recbole.py: unrecognised argument {arg!r}; "
                             f"properties are given as --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = value
    return overrides


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", default="TextSASRec", help="model name")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", default="", help="space-separated yaml files")
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)

    from recbole_llm2rec import MODELS
    from recbole_llm2rec.quick_start import build_config, run

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
    main(sys.argv[1:])
