"""Pictures next to the tables: validation curves per run, and bars of the item-group metrics
(warm/cold, popular/unpopular, frequent/rare) per model row. Small PNGs, meant to be committed."""
import os

from benchmarks.experiments.tables import mean_std, ordered_rows, row_key, row_label

PAIRS = (("warm", "cold"), ("popular", "unpopular"), ("frequent", "rare"))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def validation_curves(exp, records, path):
    """Validation Recall@20 per epoch, one panel per dataset, one line per run (colour = row)."""
    plt = _pyplot()
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
    plt = _pyplot()
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


def write_figures(exp, records):
    """Write `<name>.curves.png` (and `<name>.groups.png` when there are groups) beside the
    tables. Returns the names written."""
    os.makedirs(exp.results_dir, exist_ok=True)
    written = []
    if any(r.get("valid_curve") for r in records):
        validation_curves(exp, records, os.path.join(exp.results_dir, f"{exp.name}.curves.png"))
        written.append(f"{exp.name}.curves.png")
    if group_bars(exp, records, os.path.join(exp.results_dir, f"{exp.name}.groups.png")):
        written.append(f"{exp.name}.groups.png")
    return written
