"""The experiment's tables from its run files: Markdown in the paper's layout and a long CSV.

Rows are (model, text_emb, variant), grouped by sequential model (SASRec with TextSASRec, ...);
columns are each block's datasets x metrics, cells mean ± sample std over seeds. A non-baseline
row's cell adds its relative improvement over the best baseline row of the same sequential model
on that dataset and metric. The epochs cell is mean epochs run / mean best epoch, flagged when a
run stopped at the epoch cap (it may not have converged).
"""
import csv
import glob
import io
import json
import os

from benchmarks.experiments.execute import RECBOLE_SOURCE, test_metrics
from benchmarks.experiments.figures import write_figures
from benchmarks.experiments.rows import family, mean_std, ordered_rows, row_key, row_label
from benchmarks.experiments.spec import NO_VARIANT, ROOT
from recbole_llm2rec.feat import atomic_write_text

METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
SHORT = {"recall@10": "R@10", "ndcg@10": "N@10", "recall@20": "R@20", "ndcg@20": "N@20"}
MODES = ("full", "shuffled", "uni100")


def load_records(exp):
    """Every run file of the experiment (also runs added by hand), with defaults filled in for
    files written before a field existed."""
    return read_records(exp.runs_dir, int(exp.recbole["epochs"]))


def read_records(runs_dir, epoch_cap=None):
    """Every run file in `runs_dir` (see `load_records`); `epoch_cap` for files without one."""
    records = []
    for path in sorted(glob.glob(os.path.join(runs_dir, "*.json"))):
        with open(path, encoding="utf-8") as fh:
            r = json.load(fh)
        r.setdefault("variant", NO_VARIANT)
        r.setdefault("overrides", {})
        r.setdefault("analyses", {})
        if "all" in r["analyses"].get("full", {}):  # written when `test` held RecBole's
            r.update(test_metrics(r["analyses"]))
        r.setdefault("test_source", RECBOLE_SOURCE)
        r.setdefault("epoch_cap", epoch_cap)
        if r.get("best_epoch") is None and r.get("valid_curve"):
            r["best_epoch"] = 1 + r["valid_curve"].index(max(r["valid_curve"]))
        records.append(r)
    return records


def get(record, *path):
    """record[path[0]][path[1]]... or None."""
    for p in path:
        if not isinstance(record, dict) or p not in record:
            return None
        record = record[p]
    return record


def epochs_cell(runs, n_seeds):
    epochs, _ = mean_std([r["epochs_run"] for r in runs])
    best, _ = mean_std([r.get("best_epoch") for r in runs])
    capped = sum(r["epochs_run"] >= r["epoch_cap"] for r in runs)
    cell = f"{epochs:.0f} / {best:.0f}" if best is not None else f"{epochs:.0f}"
    if capped:
        cell += f" (cap {runs[0]['epoch_cap']}: {capped}/{len(runs)})"
    if len(runs) != n_seeds:
        cell += f", n={len(runs)}"
    return cell


def table(exp, records, datasets, columns, improvements=False, epochs=False, random=None):
    """Markdown lines of one table. `columns` are (label, getter(record)) pairs; `random`
    (label, getter) adds a row of the expected metrics of a random ranking."""
    cells = {}
    for r in records:
        cells.setdefault((row_key(r), r["dataset"]), []).append(r)
    rows = [k for k in ordered_rows(exp, records) if any((k, d) in cells for d in datasets)]
    head = ["Model"] + [f"{d} {label}" for d in datasets for label, _ in columns]
    head += [f"{d} epochs / best" for d in datasets] if epochs else []
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for key in rows:
        out = [row_label(key)]
        baselines = [b for b in exp.baselines if family(b[0]) == family(key[0]) and b != key]
        for d in datasets:
            for _, getter in columns:
                mu, sd = mean_std([getter(r) for r in cells.get((key, d), [])])
                if mu is None:
                    out.append("")
                    continue
                text = f"{mu:.4f} ± {sd:.4f}"
                if improvements and key not in exp.baselines:
                    best = max((m for m in (mean_std([getter(r) for r in cells.get((b, d), [])])[0]
                                            for b in baselines) if m), default=None)
                    if best:
                        text += f" ({100 * (mu - best) / best:+.1f}%)"
                out.append(text)
        if epochs:
            out += [epochs_cell(cells[(key, d)], len(exp.seeds)) if (key, d) in cells else ""
                    for d in datasets]
        lines.append("| " + " | ".join(out) + " |")
    if random is not None and any(random[1](r, columns[0][0]) is not None for r in records):
        values = []
        for d in datasets:
            some = [r for r in records if r["dataset"] == d and random[1](r, columns[0][0])]
            values += [f"{random[1](some[0], label):.4f}" if some else "" for label, _ in columns]
        lines.append("| " + " | ".join([random[0]] + values + [""] * (len(datasets) if epochs
                                                                       else 0)) + " |")
    return lines


def metric_columns(*path):
    return [(SHORT[m], lambda r, m=m: get(r, *path, m)) for m in METRICS]


def _random(mode):
    return ("Random ranking (expected)",
            lambda r, label: get(r, "analyses", "random", mode,
                                 next(m for m in METRICS if SHORT[m] == label.split()[-1])))


def sections(exp, records):
    """(title, explanation, columns, options) of every table the records allow."""
    has = lambda *path: any(get(r, "analyses", *path) for r in records)  # noqa: E731
    old = sum(r["test_source"] == RECBOLE_SOURCE for r in records)
    out = [("Test metrics (full ranking)", "Test metrics of the best validation checkpoint, "
            "from each run file's `test` (`recbole_llm2rec.evaluation`: full ranking, items of "
            "equal score averaged over their tied ranks, full precision; rounded here)"
            + (f"; {old} of the {len(records)} runs were recorded before it and hold RecBole's "
               f"(ties broken arbitrarily, rounded to 4 decimals)" if old else "")
            + "; (±x%): relative improvement over the best baseline row of the same sequential "
            "model.", metric_columns("test"), {"improvements": True, "epochs": True,
                                                "random": _random("full")})]
    if has("full", "cold"):
        cols = [(f"{g} {SHORT[m]}", lambda r, g=g, m=m: get(r, "analyses", "full", g, m))
                for g in ("warm", "cold") for m in METRICS]
        sizes = next(r["analyses"]["full"] for r in records if get(r, "analyses", "full", "cold"))
        out.append(("Cold-start items", "Test cases whose target is a withheld (cold) item vs "
                    f"the others (warm), full ranking over all items ({sizes['warm']['n']} warm "
                    f"and {sizes['cold']['n']} cold test cases in the first run's data).", cols,
                    {"random": _random("full")}))
    for mode, groups, title in (("full", ("popular", "unpopular"), "Popularity groups"),
                                ("full", ("frequent", "rare"), "Frequent and rare items")):
        if has(mode, groups[0]):
            cols = [(f"{g} {SHORT[m]}", lambda r, g=g, m=m: get(r, "analyses", mode, g, m))
                    for g in groups for m in ("recall@10", "ndcg@10")]
            out.append((title, "Full-ranking test metrics of the cases whose target is in each "
                        "group of items by training count.", cols, {"random": _random("full")}))
    if has("shuffled", "all"):
        cols = [(f"{mode} {SHORT[m]}", lambda r, mode=mode, m=m: all_cases(r, mode, m))
                for mode in ("full", "shuffled") for m in ("recall@10", "ndcg@10")]
        cols.append(("change R@10 (%)",
                     lambda r: _change(all_cases(r, "full", "recall@10"),
                                       all_cases(r, "shuffled", "recall@10"))))
        out.append(("Shuffled histories", "Test metrics with every test history randomly "
                    "permuted (items only, seeded per user) next to the original order; change: "
                    "100 x (shuffled - original) / original per run.", cols, {}))
    if has("uni100", "all"):
        cols = [(f"uni100 {SHORT[m]}", lambda r, m=m: get(r, "analyses", "uni100", "all", m))
                for m in METRICS]
        out.append(("Sampled ranking (uni100)", "The target among 100 items the user never "
                    "interacted with (compare with papers using 100 negatives).", cols,
                    {"random": _random("uni100")}))
    return out


def all_cases(record, mode, metric):
    """`metric` of all test cases in `mode` ("full": the record's `test`)."""
    return get(record, "test", metric) if mode == "full" else get(record, "analyses", mode,
                                                                    "all", metric)


def _change(before, after):
    """Relative change in percent (None when it has no meaning)."""
    return None if not before or after is None else 100 * (after - before) / before


def flat(record):
    """{column: value} of a record's numbers for the CSV."""
    values = {f"test.{m}": get(record, "test", m) for m in METRICS}
    for mode in MODES:
        for group, metrics in (get(record, "analyses", mode) or {}).items():
            values.update({f"{mode}.{group}.{m}": v for m, v in metrics.items()})
    return values


def write_csv(exp, records, path):
    rows, blocks = [], {d: b for b, ds in exp.blocks.items() for d in ds}
    groups = {}
    for r in records:
        groups.setdefault((row_key(r), r["dataset"]), []).append(r)
    columns = sorted({k for r in records for k in flat(r)})
    for key in ordered_rows(exp, records):
        seen = list(blocks) + sorted({r["dataset"] for r in records} - set(blocks))
        for d in seen:
            runs = groups.get((key, d))
            if not runs:
                continue
            row = {"block": blocks.get(d, ""), "dataset": d, "model": key[0], "text_emb": key[1],
                   "variant": key[2], "seeds": len(runs),
                   "epochs_run": mean_std([r["epochs_run"] for r in runs])[0],
                   "best_epoch": mean_std([r.get("best_epoch") for r in runs])[0],
                   "capped_runs": sum(r["epochs_run"] >= r["epoch_cap"] for r in runs),
                   "wall_s": mean_std([r["wall_s"] for r in runs])[0]}
            for c in columns:
                mu, sd = mean_std([flat(r).get(c) for r in runs])
                row[c], row[c + ".std"] = mu, sd
            rows.append(row)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, lambda fh: fh.write(buf.getvalue()))


def kept_pictures(md):
    """The lines of the pictures section of the Markdown file `md` as it is (none if absent)."""
    if not os.path.exists(md):
        return []
    with open(md, encoding="utf-8") as fh:
        text = fh.read()
    if "\n## Pictures\n\n" not in text:
        return []
    section = text.split("\n## Pictures\n\n", 1)[1].split("\n## ", 1)[0]
    return section.rstrip("\n").split("\n")


def write_tables(exp, pictures=True):
    """Write `<results>/<name>.md` and `.csv` (and the pictures; with `pictures=False` the
    Markdown keeps the pictures section it had, e.g. where the datasets' `.feat` sidecars,
    which the extraction figure reads, are absent). Returns the Markdown path."""
    records = load_records(exp)
    md, csv_path = (os.path.join(exp.results_dir, f"{exp.name}.{ext}") for ext in ("md", "csv"))
    rel = os.path.relpath(exp.path, ROOT)
    protocol = {k: v for k, v in exp.cold_start.items() if k != "data_path"}
    lines = [f"# {exp.title or exp.name}", "",
             f"Written by `python -m benchmarks.experiments --config {rel}` from the run files in "
             f"`{exp.name}/` ({len(records)} runs); mean ± sample std over seeds. RecBole "
             f"settings over `props/`: `{json.dumps(exp.recbole)}`"
             + (f"; cold-start protocol `{json.dumps(protocol)}`" if exp.cold_start else "") + ". The same numbers, and the standard deviations "
             f"of every analysis, are in `{exp.name}.csv`.", ""]
    if exp.notes:
        lines += [exp.notes, ""]
    for title, text, columns, options in sections(exp, records):
        lines += [f"## {title}", "", text, ""]
        for block, datasets in exp.blocks.items():
            chosen = [r for r in records if r["dataset"] in datasets]
            if chosen:
                lines += ([f"**{block}**", ""] if len(exp.blocks) > 1 else [])
                lines += table(exp, chosen, datasets, columns, **options) + [""]
    pictures = write_figures(exp, records) if pictures else kept_pictures(md)
    if pictures:
        lines += ["## Pictures", ""] + pictures + [""]
    lines += ["## Runs", ""]
    lines += [f"- {row_label(row_key(r))}, {r['dataset']}, seed {r['seed']}: "
              f"{r['epochs_run']} epochs (best {r.get('best_epoch')}, cap {r['epoch_cap']}), "
              f"{r['wall_s']:.0f} s, {r['finished']}; {r['machine']}; `{r['command']}`"
              for r in records]
    atomic_write_text(md, lambda fh: fh.write("\n".join(lines) + "\n"))
    write_csv(exp, records, csv_path)
    return md
