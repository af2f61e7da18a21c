"""`python -m dataset_atomic <source> ...`: convert, validate, and print a statistics table."""
import argparse
import os
import sys

from dataset_atomic import amazon2023, atomic, llm2rec_csv, llm2rec_downstream, ml100k, sample
from dataset_atomic.validate import format_problem, stats_table, validate
from recbole_llm2rec.errors import cli_main

SHOWN_PROBLEMS = 20


def build_parser():
    """The argument parser, one sub-command per source."""
    parser = argparse.ArgumentParser(prog="python -m dataset_atomic", description=__doc__)
    sub = parser.add_subparsers(dest="source", required=True)

    p = sub.add_parser("amazon2023", help="Amazon Reviews 2023 <Category>.jsonl[.gz] + meta_<Category>.jsonl[.gz]")
    p.add_argument("reviews", help="reviews file, e.g. Video_Games.jsonl.gz")
    p.add_argument("meta", help="item metadata file, e.g. meta_Video_Games.jsonl.gz")
    p.add_argument("--name", required=True, help="dataset name, e.g. Games")
    p.add_argument("--k", type=int, default=5, help="iterative k-core for users and items (1: off)")
    p.add_argument("--start", help="keep reviews from this UTC day on (YYYY-MM-DD)")
    p.add_argument("--end", help="keep reviews before this UTC day (YYYY-MM-DD)")
    p.add_argument("--max_title_words", type=int, help="drop items whose title has more words")
    p.add_argument("--keep_duplicates", action="store_true",
                   help="keep repeated reviews of the same item by a user (default: keep the earliest)")
    p.add_argument("--chunk_lines", type=int, default=200_000, help="reviews per sorted run in memory")
    p.add_argument("--text_fields", nargs="*", default=[],
                   help="meta attributes added as .item text columns, e.g. store categories features")
    _output_args(p)

    p = sub.add_parser("llm2rec-csv", help="LLM2Rec/DecodingMatters split CSV files (give all splits)")
    p.add_argument("csv", nargs="+", help="train/valid/test CSV files of one dataset")
    p.add_argument("--name", required=True)
    p.add_argument("--timestamp_unit", default="auto", choices=["auto", "s", "ms"])
    _output_args(p)

    p = sub.add_parser("llm2rec-downstream", help="LLM2Rec reference item_titles.json + data.txt folder")
    p.add_argument("folder", help="folder with item_titles.json and the sequence file")
    p.add_argument("--name", required=True)
    p.add_argument("--sequences", default="data.txt", help="sequence file inside the folder")
    _output_args(p)

    _output_args(sub.add_parser("ml100k", help="ml-100k from RecBole's installed example data"),
                 overwrite=False)

    p = sub.add_parser("sample", help="a random subset of the users of an atomic dataset")
    p.add_argument("folder", help="<folder>/<folder name>.inter and .item")
    p.add_argument("--users", type=int, required=True, help="number of users to keep")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice")
    p.add_argument("--name", required=True, help="name of the new dataset, e.g. Games2k")
    _output_args(p)

    p = sub.add_parser("atomic", help="validate atomic files; with --out, link them into a data folder")
    p.add_argument("folder", help="<folder>/<folder name>.inter and .item")
    p.add_argument("--copy", action="store_true", help="copy instead of symlinking (with --out)")

    p.add_argument("--out", help="data folder that receives <folder name>/ (default: validate only)")
    return parser


def _output_args(p, overwrite=True):
    p.add_argument("--out", default="dataset", help="data folder that receives <name>/ (default: dataset)")
    if overwrite:
        p.add_argument("--overwrite", action="store_true", help="replace existing dataset files")


def convert(args):
    """Run the chosen converter. Returns (dataset folder, name, counts dict or None)."""
    if args.source == "amazon2023":
        folder, counts = amazon2023.convert(
            args.reviews, args.meta, args.out, args.name, k=args.k, start=args.start, end=args.end,
            max_title_words=args.max_title_words, keep_duplicates=args.keep_duplicates,
            overwrite=args.overwrite, chunk_lines=args.chunk_lines, text_fields=args.text_fields)
    elif args.source == "llm2rec-csv":
        folder, counts = llm2rec_csv.convert(args.csv, args.out, args.name, args.timestamp_unit,
                                             overwrite=args.overwrite)
    elif args.source == "llm2rec-downstream":
        folder, counts = llm2rec_downstream.convert(args.folder, args.out, args.name,
                                                    args.sequences, overwrite=args.overwrite)
    elif args.source == "sample":
        folder, counts = sample.convert(args.folder, args.out, args.name, args.users, args.seed,
                                        overwrite=args.overwrite)
    elif args.source == "ml100k":
        folder, counts = ml100k.convert(args.out), None
    else:
        folder, counts = args.folder, None
        if args.out:
            folder = atomic.place(args.folder, args.out, copy=args.copy)
    return folder, os.path.basename(os.path.abspath(folder)), counts


def main(argv=None):
    """Entry point. Returns 0 when the dataset has no problems (warnings are printed, each line
    starting with `warning: `), 1 when it has; bad input raises
    ConvertError (one line and exit status 2 through `cli_main`)."""
    args = build_parser().parse_args(argv)
    folder, name, counts = convert(args)
    report = validate(folder, name)
    if counts:
        print("conversion: " + ", ".join(f"{k}={v:,}" for k, v in sorted(counts.items())))
    for problem in report.problems[:SHOWN_PROBLEMS]:
        print(format_problem(problem))
    if len(report.problems) > SHOWN_PROBLEMS:
        print(f"... and {len(report.problems) - SHOWN_PROBLEMS} more problems")
    for warning in report.warnings:
        print(f"warning: {format_problem(warning)}")
    print(f"{folder}: {len(report.problems)} problem(s)")
    print(stats_table([(name, report.stats)]))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "python -m dataset_atomic", sys.argv[1:]))
