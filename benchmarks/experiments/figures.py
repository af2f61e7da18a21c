"""Pictures next to the tables: validation curves per run, bars of the item-group metrics
(warm/cold, popular/unpopular, frequent/rare) per model row, and test Recall@10 against each
embedder's extraction time (the paper's Figure 5). Small PNGs, meant to be committed."""
import os

from benchmarks.experiments.spec import NO_EMB
from benchmarks.experiments.rows import family, mean_std, ordered_rows, row_key, row_label
from recbole_llm2rec.feat import dataset_feat_path, read_sidecar

PAIRS = (("warm", "cold"), ("popular", "unpopular"), ("frequent", "rare"))


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def validation_curves(exp, records, path):
    """Validation Recall@20 per epoch, one panel per dataset, one line per run (colour = row)."""
    plt = pyplot()
    datasets = [d for d in exp.datasets if any(r["dataset"] == d for r in records)]
    rows = ordered_rows(exp, records)
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, d in zip(axes[0], datasets):
        for i, key in enumerate(rows):
            runs = [r for r in records if r["dataset"] == d and row_key(r) == key]
            for j, r in enumerate(runs):
                ax.plot(range(1, len(r["valid_curve"]) + 1), r["valid_curve"], lw=1,
                        color=colours(i % 10), label=row_label(key) if j == 0 else None)
                if r.get("best_epoch"):
                    ax.plot(r["best_epoch"], max(r["valid_curve"]), "o", ms=3,
                            color=colours(i % 10))
        ax.set(title=d, xlabel="epoch", ylabel="validation Recall@20")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{exp.name}: validation curves (dot = best epoch)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def group_bars(exp, records, path):
    """Test Recall@10 (mean ± std over seeds) of each item-group pair, per dataset and row.
    Returns False when the records hold no groups."""
    panels = [(d, pair) for d in exp.datasets for pair in PAIRS
              if any(r["dataset"] == d and pair[0] in r["analyses"].get("full", {})
                     for r in records)]
    if not panels:
        return False
    plt = pyplot()
    rows = ordered_rows(exp, records)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    width = 0.8 / max(len(rows), 1)
    colours = plt.get_cmap("tab10")
    for ax, (d, pair) in zip(axes[0], panels):
        for i, key in enumerate(rows):
            runs = [r for r in records if r["dataset"] == d and row_key(r) == key]
            stats = [mean_std([r["analyses"].get("full", {}).get(g, {}).get("recall@10")
                               for r in runs]) for g in pair]
            ax.bar([x + i * width for x in range(len(pair))], [m or 0 for m, _ in stats], width,
                   yerr=[s or 0 for _, s in stats], color=colours(i % 10), label=row_label(key))
        ax.set_xticks([x + width * (len(rows) - 1) / 2 for x in range(len(pair))], pair)
        ax.set(title=d, ylabel="test Recall@10")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def extraction_time(data_path, dataset, emb):
    """(`extraction` record of `<Dataset>.<emb>.feat`'s sidecar, None) as `pretrain.extract`
    writes it (wall seconds, items, tokens, device, threads, ...), or (None, why not)."""
    feat = dataset_feat_path(data_path, dataset, emb)
    meta = read_sidecar(feat)
    if meta is None:
        return None, ("unreadable sidecar" if os.path.exists(feat + ".json")
                      else "no .feat sidecar")
    took = meta.get("extraction")
    if not isinstance(took, dict) or not took.get("seconds") or not took.get("items"):
        return None, "sidecar records no extraction time"
    return took, None


def metric_vs_extraction_time(exp, records, path):
    """Test Recall@10 (mean over seeds) of each text row against its embedder's extraction wall
    seconds per 1,000 items, one panel per dataset; ID-only rows as dashed lines at zero cost.
    Returns (points {(dataset, row key): (seconds per 1,000 items, mean Recall@10)}, timed
    {(dataset, emb): sidecar `extraction` record}, missing {(dataset, emb): why no time});
    draws nothing when no embedder has a recorded time."""
    points, times, missing = {}, {}, {}
    for r in records:
        if r["text_emb"] != NO_EMB and (r["dataset"], r["text_emb"]) not in times:
            took, why = extraction_time(exp.data_path, r["dataset"], r["text_emb"])
            times[(r["dataset"], r["text_emb"])] = took
            if why:
                missing[(r["dataset"], r["text_emb"])] = why
    timed = {k: took for k, took in times.items() if took}
    rows = ordered_rows(exp, records)
    recalls = {(d, key): mean_std([r["test"].get("recall@10") for r in records
                                   if r["dataset"] == d and row_key(r) == key])[0]
               for d in exp.datasets for key in rows}
    for (d, key), recall in recalls.items():
        took = times.get((d, key[1]))
        if took and recall is not None:
            points[(d, key)] = (1000 * took["seconds"] / took["items"], recall)
    if not points:
        return points, timed, missing
    plt = pyplot()
    datasets = [d for d in exp.datasets if any(p[0] == d for p in points)]
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    series = list(dict.fromkeys((k[0], k[2]) for _, k in points))  # (model, variant)
    colours = plt.get_cmap("tab10")
    for ax, d in zip(axes[0], datasets):
        for i, (model, variant) in enumerate(series):
            mine = [(k[1], xy) for (dd, k), xy in points.items()
                    if dd == d and (k[0], k[2]) == (model, variant)]
            if not mine:
                continue
            ax.scatter([xy[0] for _, xy in mine], [xy[1] for _, xy in mine], s=25,
                       color=colours(i % 10), label=row_label((model, NO_EMB, variant)))
            for emb, (x, y) in mine:
                ax.annotate(emb, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for key in rows:  # ID-only rows: no extraction at all
            recall = recalls[(d, key)]
            if key[1] == NO_EMB and recall is not None and any(
                    family(m) == family(key[0]) for m, _ in series):
                ax.axhline(recall, ls="--", lw=1, color="grey")
                ax.annotate(row_label(key), (0, recall), fontsize=7, color="grey",
                            xycoords=("axes fraction", "data"), xytext=(3, 3),
                            textcoords="offset points")
        ax.set(title=d, xlabel="extraction wall seconds per 1,000 items", ylabel="test Recall@10")
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{exp.name}: test Recall@10 (mean over seeds) vs extraction time", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return points, timed, missing


def write_figures(exp, records):
    """Write `<name>.curves.png`, `<name>.groups.png` (when there are groups) and
    `<name>.extraction.png` (when an embedder's extraction time is recorded) beside the tables.
    Returns Markdown lines: the pictures, and which embedders the extraction figure leaves out."""
    os.makedirs(exp.results_dir, exist_ok=True)
    written = []
    if any(r.get("valid_curve") for r in records):
        validation_curves(exp, records, os.path.join(exp.results_dir, f"{exp.name}.curves.png"))
        written.append(f"{exp.name}.curves.png")
    if group_bars(exp, records, os.path.join(exp.results_dir, f"{exp.name}.groups.png")):
        written.append(f"{exp.name}.groups.png")
    lines = [f"![{p}]({p})" for p in written]
    name = f"{exp.name}.extraction.png"
    points, timed, missing = metric_vs_extraction_time(exp, records,
                                                       os.path.join(exp.results_dir, name))
    if points:
        lines.append(f"![{name}]({name})")
    if points or missing:
        lines.append(extraction_note(points, timed, missing))
    return lines


def extraction_note(points, timed, missing):
    """One Markdown line under the extraction figure: each time it uses, and who is left out."""
    text = ("Test Recall@10 vs extraction time: wall seconds per 1,000 items from each `.feat` "
            "sidecar's `extraction` record, written by `pretrain.extract`: " + "; ".join(
                f"{emb} on {d} {1000 * t['seconds'] / t['items']:.1f} s ({t.get('device')}, "
                f"{t.get('threads')} threads, {t.get('finished')})"
                for (d, emb), t in sorted(timed.items())) + "." if points else
            "Test Recall@10 vs extraction time: not drawn, no embedder's `.feat` sidecar "
            "records its extraction time.")
    if missing:
        text += " Left out, no recorded time: " + "; ".join(
            f"{emb} on {d} ({why})" for (d, emb), why in sorted(missing.items())) + "."
    return text
