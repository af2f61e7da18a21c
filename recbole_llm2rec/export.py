"""Export a trained checkpoint as a self-contained bundle for serving.

    python -m recbole_llm2rec.export saved/TextSASRec-....pth --out bundle/

The bundle (`recbole_llm2rec.serving.bundle`) holds the weights (safetensors), the adapted
item vectors, the item tokens and titles, the run's settings, the `.feat` sidecar and a
manifest of checksums. Exporting reads the run's dataset once; loading the bundle needs neither
the dataset nor pickle (`Recommender.load`, `python -m recbole_llm2rec.serve`).
"""
import argparse
import os
import sys

from recbole_llm2rec.errors import InputError, cli_main

PROG = "python -m recbole_llm2rec.export"


def export(checkpoint, out):
    """Write the bundle of `checkpoint` into the new folder `out`. Returns the manifest."""
    from recbole_llm2rec.compat import plain_config, read_checkpoint
    from recbole_llm2rec.serving.bundle import PAD, check_bundle, write_bundle
    from recbole_llm2rec.serving.model import adapted_vectors, check_exportable, serving_weights

    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise InputError("already exists and is not an empty folder; choose a new --out",
                         path=out)
    check_exportable(read_checkpoint(checkpoint)["config"].get("model"))
    from recbole_llm2rec.quick_start import load_data_and_model

    config, model, dataset, _, _, _ = load_data_and_model(checkpoint)
    model.eval()
    tokens = [str(t) for t in dataset.field2id_token[dataset.iid_field]]
    tokens[0] = PAD
    settings = plain_config(config)
    sidecar = None
    if getattr(model, "uses_text_emb", False):
        from recbole_llm2rec.feat import dataset_feat_path, read_sidecar

        sidecar = read_sidecar(dataset_feat_path(config["data_path"], config["dataset"],
                                                 config["text_emb"]))
    titles = item_titles(config, tokens, (sidecar or {}).get("title_field") or "title")
    write_bundle(out, settings, serving_weights(model.state_dict()), adapted_vectors(model),
                 tokens, titles, sidecar, source=os.path.basename(checkpoint))
    return check_bundle(out)


def item_titles(config, tokens, title_field):
    """Titles of `tokens` (row order; None for the padding row and items without one) from the
    dataset's `.item` file, or None when it has no such column."""
    from recbole_llm2rec.atomic import atomic_rows

    path = os.path.join(config["data_path"], f"{config['dataset']}.item")
    if not os.path.isfile(path):
        return None
    with atomic_rows(path) as (header, rows):
        if title_field not in header.names or "item_id" not in header.names:
            return None
        found = {row.values["item_id"]: " ".join(row.values[title_field].split())
                 for row in rows}
    return [None] + [found.get(t) for t in tokens[1:]]


def main(argv=None):
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a .pth written by this plugin's runner")
    parser.add_argument("--out", required=True, help="new (or empty) folder for the bundle")
    args = parser.parse_args(argv)
    manifest = export(args.checkpoint, args.out)
    print(f"{manifest['model']} ({manifest['n_items']} items) -> {args.out}")
    return manifest


if __name__ == "__main__":
    cli_main(main, PROG, sys.argv[1:])
