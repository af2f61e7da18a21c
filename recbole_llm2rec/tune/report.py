"""The search's results: one table row per trial, `results.{csv,md}` and `best_config.yaml`."""
import datetime
import math
import os

import pandas as pd
import yaml

from recbole_llm2rec.feat import atomic_write_text


def plain(value):
    """Numpy scalars and tuples as plain Python values (for yaml and json)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def trial_rows(results, space_keys, metric, mode):
    """One row per trial: parameters, best validation and final test metrics, status, error."""
    rows = []
    for res in results:
        metrics = res.metrics or {}
        row = {"trial": os.path.basename(res.path.rstrip("/"))}
        row.update({k: plain((res.config or {}).get(k)) for k in space_keys})
        history = res.metrics_dataframe
        # only a trial that ran to its end reports test metrics
        completed = any(str(k).startswith("test/") for k in metrics)
        if res.error is not None:
            row["status"] = "error"
        else:
            row["status"] = "completed" if completed else "stopped"
        evals = pd.DataFrame()
        if history is not None and "epoch" in history:
            evals = history[history["epoch"].notna()]
        row["epochs"] = int(evals["epoch"].max()) if len(evals) else 0
        # the final result repeats the best validation values: the first row holding them is
        # the epoch they come from
        best_row = (evals.loc[evals[metric].idxmax() if mode == "max" else evals[metric].idxmin()]
                    if len(evals) and metric in evals and evals[metric].notna().any() else None)
        row["best_epoch"] = int(best_row["epoch"]) if best_row is not None else 0
        best = metrics if completed else best_row if best_row is not None else {}
        row.update({k: float(best[k]) for k in best.keys()
                    if str(k).startswith(("valid/", "test/"))})
        row["time_s"] = round(float(metrics.get("time_total_s", float("nan"))), 1)
        row["error"] = _one_line(res.error) if res.error is not None else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if metric not in table:
        table[metric] = float("nan")
    front = ["trial", "status", *space_keys, "epochs", "best_epoch", metric]
    valid = sorted(c for c in table.columns if c.startswith("valid/") and c not in front)
    test = sorted(c for c in table.columns if c.startswith("test/"))
    table = table[front + valid + test + ["time_s", "error"]]
    table = table.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")
    return table.reset_index(drop=True)


def _one_line(error):
    """The last non-empty line of an error's text, shortened (full trace: the trial folder)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else type(error).__name__
    return text[:160]


def _cell(column, value):
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if column.startswith(("valid/", "test/")):
            return f"{value:.4f}"
        return f"{value:.1f}" if column == "time_s" else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(table):
    """The results table as GitHub Markdown: metrics to 4 decimals, parameters to 4 digits."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(c, v) for c, v in zip(table.columns, row)) + " |")
    return "\n".join(lines) + "\n"


def write_results(table, out_dir):
    """Write `results.csv` and `results.md` atomically. Returns their paths."""
    csv_path, md_path = os.path.join(out_dir, "results.csv"), os.path.join(out_dir, "results.md")
    atomic_write_text(csv_path, lambda fh: table.to_csv(fh, index=False))
    atomic_write_text(md_path, lambda fh: fh.write(markdown_table(table)))
    return csv_path, md_path


def best_config(table, space_keys, fixed):
    """The best completed trial (table is sorted) as a RecBole config: `fixed` plus its parameters.

    Returns (config dict, its table row), or (None, None) when no trial completed.
    """
    done = table[table["status"] == "completed"]
    if done.empty:
        return None, None
    best = done.iloc[0]
    config = dict(fixed)
    config.update({k: plain(best[k]) for k in space_keys})
    return config, best


def _space_text(space):
    """'learning_rate ~ loguniform [0.0003, 0.003]; ...' for a parsed space."""
    return "; ".join(f"{key} ~ {dist} {plain(args)}" for key, (dist, args) in space.items())


def write_best_config(path, search, config, best, metric, table):
    """Write `config` as a yaml for `run_recbole.py --config_files=...`, with a header saying how
    it was chosen: when, the winner's validation metric, the space, the search and its budget."""
    test = metric.replace("valid/", "test/")
    counts = table["status"].value_counts()
    statuses = ", ".join(f"{counts[s]} {s}" for s in ("completed", "stopped", "error")
                         if s in counts)
    fixed = " ".join([*(f"--config_files={os.path.basename(f)}" for f in search["config_files"]),
                      *(f"--{k}={v}" for k, v in search["overrides"].items())])
    shown = os.path.basename(path) if os.path.isabs(path) else path
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    header = [
        f"# Chosen by `python -m recbole_llm2rec.tune` on {today} (UTC): of {len(table)} trials "
        f"of {search['model']} on {search['dataset']}, the completed one with the best {metric}",
        f"# (validation only: test metrics are recorded in results.csv, never used to choose).",
        f"# Winner {best['trial']}: {metric} = {best[metric]:.4f}"
        + (f" (its {test} = {best[test]:.4f})" if test in best else "") + ".",
        f"# Space: {_space_text(search['space_parsed'])}.",
        f"# Search: {search['search_alg']}, seed {search['seed']}; ASHA on {metric}, grace period "
        f"{search['grace_period']} evaluations, reduction factor {search['reduction_factor']}; "
        f"trials: {statuses}.",
        f"# Fixed for every trial: {fixed or 'nothing'} (the rest from props/).",
        f"# python run_recbole.py --model={search['model']} --dataset={search['dataset']} "
        f"--config_files={shown}",
    ]

    def write(fh):
        fh.write("\n".join(header) + "\n")
        yaml.safe_dump(plain(config), fh, default_flow_style=False, sort_keys=False)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, write)
