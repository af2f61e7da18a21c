"""Time `pretrain.extract` on whole datasets and record the figures in benchmarks/results/extract.md.

    nice -n 5 python benchmarks/extract_speed.py --model models/SmolLM2-135M-Instruct \
        --data_path dataset/ --dataset Games Beauty --name smollm2

Takes the same flags as `python -m pretrain.extract`, runs the datasets one after another and
appends a table row (items, tokens, embedding seconds, tokens/s, items/s) and the machine it ran
on as soon as each dataset is done, so a long run that is stopped keeps its finished figures.
"""
import os
import shlex
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from machine import machine  # noqa: E402
from pretrain.extract import main  # noqa: E402
from recbole_llm2rec.feat import atomic_write_text  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "extract.md")
HEADER = """# Item-title extraction speed (`pretrain.extract`)

Written by `benchmarks/extract_speed.py`; one row per dataset and run. `seconds` covers
tokenizing and embedding all titles (model loading excluded); tokens are the titles'
tokens without padding.

| date (UTC) | model | dataset | attention / pooling | device, dtype | batch | items | tokens | seconds | tokens/s | items/s |
|---|---|---|---|---|---:|---:|---:|---:|---:|---:|
"""


def record(argv, runs, stamp):
    """Append the rows of `runs` and the command line to the results file (atomically)."""
    batch = argv[argv.index("--batch_size") + 1] if "--batch_size" in argv else "32"
    model = argv[argv.index("--model") + 1]
    rows = "".join(
        f"| {stamp} | {model} | {r['dataset']} | {r['attention']} / {r['pooling']} | "
        f"{r['device']}, {r['dtype']} | {batch} | {r['items']} | {r['tokens']} | "
        f"{r['seconds']:.1f} | {r['tokens'] / r['seconds']:.0f} | {r['items'] / r['seconds']:.1f} |\n"
        for r in runs)
    old = open(RESULTS, encoding="utf-8").read() if os.path.isfile(RESULTS) else HEADER
    head, sep, tail = old.partition("\n## Runs\n")
    runs_part, notes_sep, notes = (tail if sep else "").partition("\n## Notes\n")
    runs_part = runs_part.rstrip("\n") + ("\n" if runs_part.strip() else "") + (
        f"- {stamp}: `python benchmarks/extract_speed.py {shlex.join(argv)}` on {machine()}\n")
    text = (head.rstrip("\n") + "\n" + rows + "\n## Runs\n" + runs_part
            + (notes_sep + notes if notes_sep else ""))
    atomic_write_text(RESULTS, lambda fh: fh.write(text))


def main_benchmark(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--dataset" not in argv:  # --help, or no dataset: pretrain.extract's parser answers
        return main(argv)
    at = argv.index("--dataset") + 1
    end = next((i for i in range(at, len(argv)) if argv[i].startswith("--")), len(argv))
    runs = []
    for dataset in argv[at:end]:
        one = argv[:at] + [dataset] + argv[end:]
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        runs += main(one)
        record(one, runs[-1:], stamp)
    return runs


if __name__ == "__main__":
    main_benchmark()
