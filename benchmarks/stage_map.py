"""The stage map (the LLM2Rec paper's Figure 1): a 2-D t-SNE of one fixed item set's embeddings
for each pre-training stage's `.feat`, with a few co-purchased groups highlighted.

    python -m benchmarks.stage_map --data_path dataset/ --dataset Games \\
        --feat backbone=dataset/Games/Games.smollm2.feat csft=runs/x/csft.feat \\
               mntp=runs/x/mntp.feat ic=dataset/Games/Games.llm2rec.feat \\
        --out benchmarks/results/stage_map.games.png

Groups come from the dataset's `.inter`: two items are co-purchased when a user interacted with
both, and their count is the number of such users. Anchors are taken in order of interaction
count (most first, ties by token); an anchor not yet in a group, with at least `--group_size - 1`
co-purchased items not yet in a group, forms a group with its `--group_size - 1` most
co-purchased such items (most users first, ties by token), until `--groups` groups exist. The
item set is the grouped items plus `--items` other items drawn with `--seed` from the items
present in every `.feat`; every panel embeds exactly that set (t-SNE, cosine distance, PCA
initialisation, `--seed`). Each panel's title gives the group neighbour rate: over the grouped
items, the fraction of their `--k` nearest items (cosine, in the full embedding space, among the
item set) that are in their own group. `<out>.json` records the groups, the item set and the
rates.
"""
import argparse
import collections
import json
import os
import sys

import numpy as np

from benchmarks.experiments.figures import pyplot
from recbole_llm2rec.atomic import atomic_rows, atomic_write_text
from recbole_llm2rec.errors import InputError, cli_main
from recbole_llm2rec.feat import read_feat


def user_items(inter_path):
    """{user: set of items} of a RecBole `.inter` file."""
    users = collections.defaultdict(set)
    with atomic_rows(inter_path, ["user_id", "item_id"], non_empty=["user_id", "item_id"]) as (
            _, rows):
        for row in rows:
            users[row.values["user_id"]].add(row.values["item_id"])
    return users


def copurchase_groups(users, n_groups, size, allowed=None):
    """Up to `n_groups` groups of `size` items (anchor first), built as the module docstring
    says from {user: items}; only items in `allowed` (default: all) take part. Returns lists of
    item tokens."""
    counts = collections.Counter(i for items in users.values() for i in items
                                 if allowed is None or i in allowed)
    holders = collections.defaultdict(list)
    for user, items in users.items():
        for i in items:
            holders[i].append(user)
    grouped, groups = set(), []
    for anchor, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(groups) == n_groups:
            break
        if anchor in grouped:
            continue
        together = collections.Counter(j for u in holders[anchor] for j in users[u]
                                       if j != anchor and j in counts and j not in grouped)
        if len(together) < size - 1:
            continue
        members = [j for j, _ in sorted(together.items(), key=lambda kv: (-kv[1], kv[0]))]
        groups.append([anchor] + members[:size - 1])
        grouped.update(groups[-1])
    return groups


def item_set(groups, candidates, n_other, seed):
    """The grouped items, then `n_other` other items of sorted `candidates` drawn with `seed`."""
    grouped = [i for g in groups for i in g]
    others = sorted(set(candidates) - set(grouped))
    pick = np.random.default_rng(seed).choice(len(others), min(n_other, len(others)),
                                              replace=False)
    return grouped + [others[k] for k in sorted(pick)]


def neighbour_rate(matrix, groups, k):
    """Over the first sum(len(g)) rows of `matrix` (the groups' items, in order), the fraction
    of each row's `k` nearest other rows (cosine) that belong to its own group."""
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    label = np.full(len(matrix), -1)
    start = 0
    for g, members in enumerate(groups):
        label[start:start + len(members)] = g
        start += len(members)
    hits = []
    for row in range(start):
        sim = unit @ unit[row]
        sim[row] = -np.inf
        nearest = np.argsort(-sim, kind="stable")[:k]
        hits.append(np.mean(label[nearest] == label[row]))
    return float(np.mean(hits))


def tsne(matrix, seed):
    """2-D t-SNE of `matrix` [N, D] (cosine distance, PCA start), one thread. Returns [N, 2]."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = min(30.0, (len(matrix) - 1) / 3)
    with threadpool_limits(1):  # one thread: the result does not depend on the core count
        return TSNE(n_components=2, metric="cosine", init="pca", perplexity=perplexity,
                    random_state=seed).fit_transform(np.asarray(matrix, np.float64))


def stage_map(stages, inter_path, out, n_groups=6, group_size=8, n_other=1000, k=5, seed=0):
    """Draw the map of `stages` [(name, .feat path)] to PNG `out` and write `<out>.json`.
    Returns the JSON record."""
    tables = []
    for name, path in stages:
        tokens, matrix = read_feat(path)
        tables.append((name, path, dict(zip(tokens, range(len(tokens)))), matrix))
    common = set.intersection(*(set(index) for _, _, index, _ in tables))
    groups = copurchase_groups(user_items(inter_path), n_groups, group_size, common)
    if not groups:
        raise InputError(f"no item has {group_size - 1} co-purchased items among the items of "
                         f"every .feat; lower --group_size", inter_path)
    items = item_set(groups, common, n_other, seed)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tables), figsize=(4 * len(tables), 4.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    n_grouped = sum(len(g) for g in groups)
    rates = {}
    for ax, (name, path, index, matrix) in zip(axes[0], tables):
        rows = matrix[[index[i] for i in items]]
        rates[name] = neighbour_rate(rows, groups, k)
        xy = tsne(rows, seed)
        ax.scatter(xy[n_grouped:, 0], xy[n_grouped:, 1], s=4, color="0.8", lw=0)
        start = 0
        for g, members in enumerate(groups):
            part = xy[start:start + len(members)]
            ax.scatter(part[:, 0], part[:, 1], s=22, color=colours(g % 10), edgecolor="k",
                       lw=0.3, label=f"group {g + 1}")
            start += len(members)
        ax.set_title(f"{name}\nin-group {k}-NN rate {rates[name]:.2f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(fontsize=6, loc="best")
    fig.suptitle(f"t-SNE of {len(items)} items ({len(groups)} co-purchased groups of "
                 f"{group_size} in colour), seed {seed}", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    record = dict(stages=[dict(name=n, feat=p) for n, p, _, _ in tables], inter=inter_path,
                  groups=groups, items=items, seed=seed, k=k, neighbour_rate=rates)
    atomic_write_text(out + ".json", lambda fh: json.dump(record, fh, indent=1))
    return record


def parse_stage(text):
    """`name=path` -> (name, path)."""
    name, eq, path = text.partition("=")
    if not eq or not name or not path:
        raise InputError("expected NAME=PATH (e.g. ic=dataset/Games/Games.llm2rec.feat)",
                         field="--feat", value=text)
    return name, path


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.stage_map",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data_path", default="dataset/")
    p.add_argument("--dataset", required=True, help="its .inter gives the co-purchased groups")
    p.add_argument("--feat", nargs="+", required=True, help="NAME=PATH, one per stage, in order")
    p.add_argument("--out", required=True, help="PNG to write (and <out>.json)")
    p.add_argument("--groups", type=int, default=6)
    p.add_argument("--group_size", type=int, default=8)
    p.add_argument("--items", type=int, default=1000, help="other items in the map")
    p.add_argument("--k", type=int, default=5, help="neighbours for the in-group rate")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    inter = os.path.join(args.data_path, args.dataset, f"{args.dataset}.inter")
    record = stage_map([parse_stage(s) for s in args.feat], inter, args.out, args.groups,
                       args.group_size, args.items, args.k, args.seed)
    print(f"{args.out}: " + ", ".join(f"{n} {r:.2f}" for n, r in
                                      record["neighbour_rate"].items()))


if __name__ == "__main__":
    cli_main(main, "python -m benchmarks.stage_map", sys.argv[1:])
