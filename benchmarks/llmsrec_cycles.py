"""LLMSRec variants on the cycles data of the learning test (`tests/cycles.py`: 200 items on
random cycles of 10, 400 users, a tiny random Llama, its SASRec teacher): what each default
buys, measured with the test's own run and figures.

    python -m benchmarks.llmsrec_cycles default no_distill reference_distill in_batch_off

Each variant is `cycles.learn` with the overrides in VARIANTS; its figures go to
`benchmarks/results/llmsrec_cycles/<variant>.json` (skipped when present, so a killed run
resumes) and the table to `benchmarks/results/llmsrec_cycles.md`.
"""
import argparse
import json
import os
import shlex
import sys
import tempfile
import time

from benchmarks.machine import machine
from recbole_llm2rec.feat import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUNS = os.path.join(ROOT, "benchmarks", "results", "llmsrec_cycles")
REPORT = os.path.join(ROOT, "benchmarks", "results", "llmsrec_cycles.md")
VARIANTS = {
    "default": {},
    "in_batch_off": {"llmsrec_negatives": "sampled"},
    "reference_distill": {"llmsrec_distill_reduction": "mean"},
    "no_distill": {"llmsrec_distill_weight": 0.0},
    "log_uniformity": {"llmsrec_uniformity_log": True},
    "reference_all": {"llmsrec_distill_reduction": "mean", "llmsrec_uniformity_log": True,
                      "llmsrec_negatives": "sampled"},
}
COLUMNS = ("recall@10", "shuffled_recall@10", "pop_recall@10", "random_recall@10",
           "retrieval_loss", "log_candidates", "held_out_cosine", "held_out_own_teacher_rank")


def write_report():
    lines = ["# LLMSRec on the cycles data: what each setting does", "",
             "Written by `python -m benchmarks.llmsrec_cycles`: the learning test's run "
             "(`tests/cycles.py`: 200 items on random cycles of 10, 400 users walking them, "
             "history 10, tiny random Llama with weights of std 0.2, SASRec teacher, LLMSRec 8 "
             "epochs at lr 3e-3, batch 64 rows, seed 2020) with one setting changed. Test "
             "Recall@10 (full ranking), the same with shuffled test histories, Pop and a random "
             "ranking on the same data; the mean retrieval loss over the training data after "
             "training against log(number of candidates); on 200 held-out walks: mean "
             "cos(f_user, f_CF-user(teacher)) and the mean rank of each user's own teacher "
             "vector among the 200 (random: 100.5).", "",
             "| variant | overrides | " + " | ".join(COLUMNS) + " | wall s |",
             "|---|---|" + "---:|" * (len(COLUMNS) + 1)]
    for name in VARIANTS:
        path = os.path.join(RUNS, f"{name}.json")
        if os.path.isfile(path):
            r = json.load(open(path, encoding="utf-8"))
            lines.append(f"| {name} | `{json.dumps(VARIANTS[name])}` | "
                         + " | ".join(f"{r[c]:.4f}" for c in COLUMNS) + f" | {r['wall_s']} |")
    run = [n for n in VARIANTS if os.path.isfile(os.path.join(RUNS, f"{n}.json"))]
    lines += ["", "Command (the variants in the table; the others in VARIANTS were not run):", "",
              "    python -m benchmarks.llmsrec_cycles " + " ".join(run)]
    atomic_write_text(REPORT, lambda fh: fh.write("\n".join(lines) + "\n"))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args(argv)
    import torch

    from tests.cycles import learn  # the learning test's run (run from the checkout's root)

    torch.set_num_threads(1)
    os.makedirs(RUNS, exist_ok=True)
    for name in args.variants:
        path = os.path.join(RUNS, f"{name}.json")
        if os.path.isfile(path):
            continue
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            figures = learn(os.path.join(tmp, "data"), os.path.join(tmp, "saved"),
                            os.path.join(tmp, "llama"), **VARIANTS[name])
        figures.pop("run")
        record = {**figures, "variant": name, "overrides": VARIANTS[name],
                  "wall_s": round(time.time() - start), "machine": machine(),
                  "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "command": "python -m benchmarks.llmsrec_cycles " + shlex.join(sys.argv[1:])}
        atomic_write_text(path, lambda fh: json.dump(record, fh, indent=1))
        write_report()
        print(name, {k: record[k] for k in COLUMNS}, flush=True)
    write_report()


if __name__ == "__main__":
    main()
