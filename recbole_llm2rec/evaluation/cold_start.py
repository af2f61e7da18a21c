"""Cold-start items: a seeded fraction of the items withheld from training and validation.

    name = write_cold_start_dataset("dataset/", "Games2k", fraction=0.1, seed=0)
    # -> dataset/Games2k-cold10s0/ ; train on it with cold_start_config(...) as RecBole settings

The protocol (docs/experiments.md):
1. Each user's interactions are put in time order (ties keep file order, as RecBole sorts).
2. `floor(fraction * m)` of the m items of the `.inter` file are drawn with
   `numpy.random.default_rng(seed).choice` from the item tokens in sorted order: the cold items.
3. Every interaction with a cold item is removed, except a user's last interaction (the test
   target under leave-one-out). So no training or validation sequence, and no test history,
   contains a cold item; a test case is cold when its target is a cold item.
4. Users left with fewer than 3 interactions are dropped (RecBole's leave-one-out would make a
   2-interaction user's last item a training target).
5. The derived dataset keeps the whole catalogue: its `.item` lists every item of the source
   `.inter` (with the source `.item`'s columns, e.g. titles, where it has them), so the cold
   items have ids and `.feat` rows; each `<source>.<x>.feat` is linked as `<name>.<x>.feat`.
   `<name>.cold.json` records the cold items and the counts.
6. `cold_start_protocol` (a RecBole setting) says when a cold item first exists. `unseen` (the
   default): only at test time — `quick_start.run` hides the cold items from the training loss
   and the validation ranking (`model.hidden_items.hide_items`) and reveals them before the test, as a
   served model's `add_items` would add them. `legacy` (before issue 25): the whole catalogue
   throughout, so every cold item is a negative of every training batch and a candidate of
   every validation ranking.
"""
import json
import os

import numpy as np

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.evaluation.interactions import fraction_count
from recbole_llm2rec.feat import atomic_write_text

MIN_INTERACTIONS = 3
PROTOCOLS = ("unseen", "legacy")  # when a cold item first exists: at test only, or always


def choose_cold_items(items, fraction=0.1, seed=0):
    """The withheld item tokens: a seeded draw of floor(fraction * m) of the m distinct `items`.
    Returns a sorted list."""
    tokens = sorted(set(items))
    chosen = np.random.default_rng(seed).choice(len(tokens), fraction_count(fraction, len(tokens)),
                                                replace=False)
    return sorted(tokens[i] for i in chosen)


def split_sequences(sequences, cold):
    """Remove the cold items from every user's time-ordered sequence except its last item.

    `sequences` maps user -> list of (item, row) in time order. Returns (kept, dropped_users):
    kept maps user -> filtered list, for users with at least MIN_INTERACTIONS left."""
    cold = set(cold)
    kept, dropped = {}, []
    for user, seq in sequences.items():
        rest = [entry for entry in seq[:-1] if entry[0] not in cold] + seq[-1:]
        if len(rest) >= MIN_INTERACTIONS:
            kept[user] = rest
        else:
            dropped.append(user)
    return kept, dropped


def read_sequences(path, uid_field="user_id", iid_field="item_id", time_field="timestamp"):
    """(header line, {user: [(item, line), ...] in time order}) of an atomic `.inter` file."""
    with open(path, encoding="utf-8") as fh:
        header = fh.readline()
        names = [f.split(":")[0] for f in header.rstrip("\n").split("\t")]
        for field in (uid_field, iid_field, time_field):
            if field not in names:
                raise InputError("missing column", path=path, line=1, field=field)
        cols = [names.index(f) for f in (uid_field, iid_field, time_field)]
        rows = {}
        for number, line in enumerate(fh, start=2):
            values = line.rstrip("\n").split("\t")
            if len(values) < len(names):
                raise InputError(f"{len(values)} values for {len(names)} columns", path=path,
                                 line=number)
            try:
                when = float(values[cols[2]])
            except ValueError:
                raise InputError("not a number", path=path, line=number, field=time_field,
                                 value=values[cols[2]]) from None
            rows.setdefault(values[cols[0]], []).append((when, values[cols[1]], line))
    # a stable sort: equal timestamps keep file order, as RecBole's stable time sort does
    return header, {u: [(item, line) for _, item, line in sorted(seq, key=lambda r: r[0])]
                    for u, seq in rows.items()}


def write_catalogue(source, path, items):
    """The derived `.item`: the source `.item` lines of `items` (titles travel with them), or
    an `item_id:token` column when the source has none; every item of `items` is listed."""
    lines, header = {}, "item_id:token\n"
    if os.path.isfile(source):
        with open(source, encoding="utf-8") as fh:
            header = fh.readline()
            if not header.startswith("item_id:"):
                raise InputError("the first column must be item_id", path=source, line=1)
            wanted = set(items)
            lines = {line.split("\t", 1)[0].rstrip("\n"): line for line in fh
                     if line.split("\t", 1)[0].rstrip("\n") in wanted}
    missing = "\t" * header.count("\t")  # items without a line keep empty other columns
    atomic_write_text(path, lambda fh: fh.writelines(
        [header] + [lines.get(i) or f"{i}{missing}\n" for i in items]))


def cold_start_name(dataset, fraction, seed):
    """Default name of the derived dataset, e.g. Games2k-cold10s0."""
    return f"{dataset}-cold{round(fraction * 100):g}s{seed}"


def write_cold_start_dataset(data_path, dataset, fraction=0.1, seed=0, out_path=None, name=None):
    """Write the cold-start version of `<data_path>/<dataset>` to `<out_path>/<name>/`.

    An existing folder made with the same settings is reused; one made otherwise is an error
    (nothing is overwritten). Returns the name."""
    out_path = out_path or data_path
    name = name or cold_start_name(dataset, fraction, seed)
    src = os.path.join(data_path, dataset)
    dst = os.path.join(out_path, name)
    manifest_path = os.path.join(dst, f"{name}.cold.json")
    settings = {"source": dataset, "fraction": fraction, "seed": seed}
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as fh:
            made = json.load(fh)
        if {k: made.get(k) for k in settings} != settings:
            raise InputError(f"made with other settings than {settings}", path=manifest_path)
        link_tables(src, dataset, dst, name)  # tables extracted since
        return name
    header, sequences = read_sequences(os.path.join(src, f"{dataset}.inter"))
    items = sorted({item for seq in sequences.values() for item, _ in seq})
    cold = choose_cold_items(items, fraction, seed)
    kept, dropped = split_sequences(sequences, cold)
    os.makedirs(dst, exist_ok=True)
    atomic_write_text(os.path.join(dst, f"{name}.inter"), lambda fh: fh.writelines(
        [header] + [line for seq in kept.values() for _, line in seq]))
    write_catalogue(os.path.join(src, f"{dataset}.item"), os.path.join(dst, f"{name}.item"),
                    items)
    link_tables(src, dataset, dst, name)
    cold_set = set(cold)
    manifest = {**settings, "name": name, "n_items": len(items), "cold_items": cold,
                "n_users": len(kept), "dropped_users": sorted(dropped),
                "interactions": sum(len(s) for s in sequences.values()),
                "kept_interactions": sum(len(s) for s in kept.values()),
                "cold_test_cases": sum(seq[-1][0] in cold_set for seq in kept.values())}
    atomic_write_text(manifest_path, lambda fh: json.dump(manifest, fh, indent=1))
    return name


def link_tables(src, dataset, dst, name):
    """Link each `<src>/<dataset>.<x>.feat` (and its `.json` sidecar) as `<dst>/<name>.<x>.feat`
    where no such file is yet."""
    prefix = f"{dataset}."
    for entry in sorted(os.listdir(src)):
        if entry.startswith(prefix) and (entry.endswith(".feat") or entry.endswith(".feat.json")):
            link = os.path.join(dst, name + "." + entry[len(prefix):])
            if not os.path.lexists(link):
                os.symlink(os.path.relpath(os.path.join(src, entry), dst), link)


def read_manifest(data_path, name):
    """The `<name>.cold.json` record of a derived dataset."""
    with open(os.path.join(data_path, name, f"{name}.cold.json"), encoding="utf-8") as fh:
        return json.load(fh)


def cold_start_config(data_path, name, protocol="unseen"):
    """RecBole settings that train on the derived dataset `name`: its folder, `load_col`
    reading the `.item` catalogue (so items without training interactions keep their ids) and
    the `cold_start_protocol`."""
    return {"data_path": data_path, "cold_start_protocol": check_protocol(protocol),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]}}


def check_protocol(protocol):
    """`protocol` when it is one of PROTOCOLS, else an InputError."""
    if protocol not in PROTOCOLS:
        raise InputError(f"not one of {list(PROTOCOLS)}", field="cold_start_protocol",
                         value=protocol)
    return protocol


def manifest_of(config):
    """The `<dataset>.cold.json` record of the run's dataset, or None when it has none."""
    path = os.path.join(config["data_path"], f"{config['dataset']}.cold.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def items_to_hide(config, dataset):
    """RecBole ids of the items a run must hide until its test (`hide_items`): the
    cold items of a derived dataset under `cold_start_protocol: unseen`, else None."""
    manifest = manifest_of(config)
    protocol = check_protocol(config["cold_start_protocol"] or "unseen")
    if manifest is None or protocol != "unseen":
        return None
    return cold_item_ids(dataset, manifest["cold_items"])


def cold_item_ids(dataset, cold_tokens):
    """RecBole ids of the cold item tokens in a loaded dataset. Returns sorted int64 array."""
    return np.sort(dataset.token2id(dataset.iid_field, list(cold_tokens))).astype(np.int64)
