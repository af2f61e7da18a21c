"""The fair-tuning results table (benchmarks/results/<name>.md), from the committed records:
`<name>/<dataset>.<variant>.csv` (the tuner's trials table) and `.json` (commands, sessions).
The winner of each variant is the tuner's own choice (`recbole_llm2rec.tune.report.best_config`:
the completed trial with the best validation metric)."""
import json
import os

import pandas as pd

from benchmarks.experiments.rows import row_key, row_label
from benchmarks.experiments.tables import read_records
from recbole_llm2rec.feat import atomic_write_text
from recbole_llm2rec.props import default
from recbole_llm2rec.tune.report import best_config, markdown_table
from recbole_llm2rec.tune.space import load_space

METRIC = "valid/recall@20"
TEST = ["test/recall@10", "test/ndcg@10", "test/recall@20", "test/ndcg@20"]


def _records(spec, dataset, variant):
    """(trials table, run record) of one variant's search, or (None, None) if not finished."""
    csv, record = spec.record(dataset, variant, "csv"), spec.record(dataset, variant, "json")
    if not (os.path.isfile(csv) and os.path.isfile(record)):
        return None, None
    with open(record, encoding="utf-8") as fh:
        return pd.read_csv(csv, keep_default_na=False, na_values=[""]), json.load(fh)


def _fmt(value, digits=4):
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def _summary_row(spec, dataset, variant, table, record, space_keys):
    v = spec.variants[variant]
    fixed = ", ".join(f"{k}={val}" for k, val in v["set"].items()) or "-"
    counts = table["status"].value_counts()
    trials = " / ".join(str(counts.get(s, 0)) for s in ("completed", "stopped", "error"))
    _, best = best_config(table, space_keys, {})
    wall = sum(s["wall_s"] for s in record["sessions"]) / 60
    cells = [variant, v["model"], fixed, trials]
    if best is None:
        return cells + ["no trial completed"] + [""] * (len(space_keys) + len(TEST) + 4)
    cells += [best["trial"], *(f"{best[k]:.4g}" for k in space_keys),
              f"{int(best['epochs'])} ({int(best['best_epoch'])})"
              if "best_epoch" in best else f"{int(best['epochs'])}",
              _fmt(best[METRIC]), *(_fmt(best.get(k)) for k in TEST), f"{wall:.0f}",
              f"`{spec.tuned(dataset, variant)}`"]
    return cells


def _sessions(record):
    return "; ".join(f"{s['started']} to {s['finished']} ({s['wall_s'] / 60:.0f} min"
                     f"{', resumed' if s['resumed'] else ''}), load average {s['load_start']:.1f}"
                     f" at the start, {s['load_end']:.1f} at the end; {s['machine']}"
                     for s in record["sessions"])


def best_epochs(runs_dir):
    """{row label: {dataset: [best epochs, by seed]}} of the run files in `runs_dir`."""
    found = {}
    for r in sorted(read_records(runs_dir), key=lambda r: r["seed"]):
        if r.get("best_epoch"):
            label = row_label(row_key(r))
            found.setdefault(label, {}).setdefault(r["dataset"], []).append(r["best_epoch"])
    return found


def grace_paragraph(spec):
    """Markdown lines on the grace period, with the best epochs of the default runs in
    `spec.grace_evidence` as their run files record them (none without evidence)."""
    if not spec.grace_evidence:
        return []
    found = best_epochs(os.path.join(spec.results_dir, spec.grace_evidence))
    if not found:
        return []
    latest = max(e for by_dataset in found.values() for es in by_dataset.values() for e in es)
    listed = "; ".join(f"{label} " + ", ".join(
        f"{'/'.join(map(str, es))} on {d}" for d, es in by_dataset.items())
        for label, by_dataset in found.items())
    above = ("above the latest of those best epochs" if spec.grace_period > latest else
             f"NOT above the latest of those best epochs ({latest})")
    return [f"**Grace period.** With default settings the best epochs (seeds separated by /) of "
            f"the runs in `{spec.grace_evidence}/` are: {listed}; a smaller learning rate delays "
            f"them further. A grace period of {spec.grace_period} epochs, {above}, lets every "
            f"trial run at least that long before ASHA may cut it, so a slow-starting text trial "
            f"is compared with its peers only after a default text run would have peaked; ASHA "
            f"only cuts trials still running past it and below their peers at that epoch (early "
            f"stopping usually ends SASRec trials first).", ""]


def report_text(spec):
    """The Markdown of the whole comparison: summary per dataset, each variant's trials, how."""
    space = load_space(spec.space)
    space_keys = list(space)
    space_text = "; ".join(f"`{k}` ~ {d} {a}" for k, (d, a) in space.items())
    fixed = ", ".join(f"`{k}={v}`" for k, v in spec.recbole.items())
    config = spec.path
    lines = [
        "# Fair tuning: the same Ray Tune search for SASRec and each TextSASRec variant",
        "",
        f"Written by `python -m benchmarks.fair_tuning --config {config}` (resumable; "
        f"`--report` rewrites this file) from the records in `{spec.name}/` (per search: the "
        f"tuner's trials table `.csv` and the commands and sessions `.json`).",
        "",
        f"**Protocol (the same for every variant).** Space `{spec.space}`: {space_text}. "
        f"{spec.num_samples} random trials per variant with search seed {spec.search_seed}, so "
        f"every variant trains the same sampled values. ASHA on validation Recall@20 with grace "
        f"period {spec.grace_period} epochs (one evaluation per epoch) and reduction factor "
        f"{spec.reduction_factor}; {spec.cpus:g} CPU (torch thread) per trial. Fixed over "
        f"`props/` for every trial: {fixed}, `data_path={spec.data_path}`; early stopping after "
        f"{default('stopping_step')} epochs without improvement of validation Recall@20, the best epoch's model tested; "
        f"RecBole's seed is the props default (2020) in every trial. Each variant's winner is the "
        f"completed trial with the best **validation** Recall@20; test metrics are shown, never "
        f"used to choose. Its config is written to `props/tuned/` (header: how it was chosen).",
        "",
        *grace_paragraph(spec),
        "Columns: `trials` completed / stopped by ASHA / failed; `epochs (best)` epochs trained "
        "and the best validation epoch of the winner; `search min`: wall minutes of the search "
        "(all its sessions), which on this shared machine measure the load more than the model.",
    ]
    pending = []
    for dataset in spec.datasets:
        head = ["variant", "model", "fixed", "trials", "winner", *space_keys, "epochs (best)",
                "valid recall@20", *(k.replace("/", " ") for k in TEST), "search min",
                "tuned config"]
        rows, details = [], []
        for variant in spec.variants:
            table, record = _records(spec, dataset, variant)
            if table is None:
                pending.append((dataset, variant))
                continue
            rows.append(_summary_row(spec, dataset, variant, table, record, space_keys))
            details += [f"### {dataset} · {variant}", "",
                        f"Command: `{record['tune_command']}` (run by `{record['command']}`).",
                        "", f"Sessions: {_sessions(record)}.", "",
                        markdown_table(table).rstrip(), ""]
        lines += ["", f"## {dataset}", ""]
        if rows:
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
        else:
            lines.append("No search finished yet.")
        lines += [""] + details
    if pending:
        lines += ["## Not finished", "",
                  "These searches have no record yet (not started, or interrupted: rerunning the "
                  "same command resumes an interrupted search from its folder in "
                  f"`saved/tune/{spec.name}/`, rerunning only its unfinished trials):", ""]
        lines += [f"- {d} · {v}: `python -m benchmarks.fair_tuning --config {config} "
                  f"--datasets {d} --variants {v}`" for d, v in pending]
    notes = os.path.join(spec.results_dir, f"{spec.name}.notes.md")
    if os.path.isfile(notes):  # hand-written: what ran and what did not, and why
        with open(notes, encoding="utf-8") as fh:
            lines += ["", fh.read().rstrip()]
    return "\n".join(lines).rstrip() + "\n"


def write_report(spec):
    """Write <results_dir>/<name>.md. Returns its path."""
    text = report_text(spec)
    atomic_write_text(spec.report, lambda fh: fh.write(text))
    return spec.report
