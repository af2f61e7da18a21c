"""The experiment runner end to end on a tiny slice: runs, run files, tables, resuming."""
import csv
import json
import os

import numpy as np
import pytest

from benchmarks.experiments import __main__ as cli
from benchmarks.experiments import execute
from benchmarks.experiments.spec import load_experiment
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import feat_path, write_feat
from slices import write_slice


@pytest.fixture
def config(tmp_path):
    root = write_slice(str(tmp_path / "data"), "Games", 120)
    with open(os.path.join(root, "Games", "Games.item"), encoding="utf-8") as fh:
        tokens = [line.split("\t")[0] for line in fh.readlines()[1:]]
    write_feat(feat_path(os.path.join(root, "Games"), "Games", "rand"), tokens,
               np.random.default_rng(0).normal(size=(len(tokens), 8)))
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""
name: tiny
data_path: {root}
results_dir: {tmp_path / 'results'}
datasets: {{in_domain: [Games]}}
models: [SASRec, TextSASRec]
embedders: [rand]
seeds: [0]
recbole: {{epochs: 2, train_batch_size: 256, hidden_size: 16, inner_size: 32, n_layers: 1}}
variants: {{mlp: {{set: {{adapter_type: mlp}}}}}}
analyses: [popularity, shuffle, uni100]
cold_start: {{fraction: 0.1, seed: 0, data_path: {tmp_path / 'derived'}}}
""")
    return str(path)


def test_runs_write_records_and_tables_and_resume(config, tmp_path, monkeypatch):
    exp = load_experiment(config)
    assert [r.file_name for r in exp.runs()] == [
        "SASRec.Games.-.seed0.json", "TextSASRec.Games.rand.seed0.json",
        "TextSASRec.Games.rand.mlp.seed0.json"]
    cli.main(["--config", config])
    runs_dir = tmp_path / "results" / "tiny"
    record = json.loads((runs_dir / "TextSASRec.Games.rand.mlp.seed0.json").read_text())
    assert record["overrides"] == {"adapter_type": "mlp"} and record["epoch_cap"] == 2
    assert record["epochs_run"] == 2 and len(record["valid_curve"]) == 2
    assert record["cold_start"]["name"] == "Games-cold10s0"
    assert record["cold_start"]["protocol"] == "unseen"  # the default: new items exist at test
    # the derived catalogue keeps the source .item's titles, one line per item of the .inter
    catalogue = (tmp_path / "derived" / "Games-cold10s0" / "Games-cold10s0.item").read_text()
    source = open(os.path.join(os.path.dirname(config), "data", "Games", "Games.item")).read()
    assert catalogue.splitlines()[0] == source.splitlines()[0] == "item_id:token\ttitle:token_seq"
    assert sorted(catalogue.splitlines()[1:]) == sorted(source.splitlines()[1:])
    full = record["analyses"]["full"]
    # one source of a run's test metrics: the plugin's full ranking, full precision, in `test`
    assert "all" not in full and record["test_source"] == execute.TEST_SOURCE
    assert full["warm"]["n"] + full["cold"]["n"] == record["test"]["n"] > 0
    assert {"shuffled", "uni100", "random"} <= set(record["analyses"])
    md = (tmp_path / "results" / "tiny.md").read_text()
    # ... rounded only where a table is written, and the same in every table that shows it
    shown = f"{record['test']['ndcg@10']:.4f} ± 0.0000"
    for title in ("Test metrics", "Shuffled histories"):
        table = md.split(f"## {title}")[1].split("\n## ")[0]
        row = next(line for line in table.splitlines() if line.startswith(
            "| TextSASRec · rand [mlp] |"))
        assert shown in row, (title, row)
    assert '"protocol": "unseen"' in md
    assert "Cold-start items" in md and "TextSASRec · rand [mlp]" in md
    assert "(cap 2: 1/1)" in md and "Random ranking (expected)" in md
    assert "![tiny.curves.png](tiny.curves.png)" in md and "![tiny.groups.png]" in md
    assert (tmp_path / "results" / "tiny.groups.png").stat().st_size > 1000
    # `rand` was written without an extraction time: no Figure 5, and the note names it
    assert "rand on Games (sidecar records no extraction time)" in md
    assert not (tmp_path / "results" / "tiny.extraction.png").exists()
    rows = list(csv.DictReader(open(tmp_path / "results" / "tiny.csv")))
    assert [r["variant"] for r in rows] == ["-", "-", "mlp"]
    assert float(rows[0]["full.cold.recall@10"]) >= 0
    # finished runs are never recomputed
    monkeypatch.setattr(execute, "train_and_evaluate", lambda *a: pytest.fail("recomputed"))
    cli.main(["--config", config])
    # analyses recomputed from the checkpoint, without training, give the same numbers
    cli.main(["--config", config, "--reanalyse"])
    again = json.loads((runs_dir / "TextSASRec.Games.rand.mlp.seed0.json").read_text())
    assert again["analyses"] == record["analyses"] and again["test"] == record["test"]
    assert "analysed" in again
    # a run without a file (killed before it finished) runs again
    os.remove(runs_dir / "SASRec.Games.-.seed0.json")
    assert [r.file_name for r in execute.pending(exp)] == ["SASRec.Games.-.seed0.json"]


def test_bad_config_is_one_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("datasets: [Games]\nmodels: [SASRec]\nanalyses: [popularty]\n")
    with pytest.raises(InputError, match="analyses.*popularty"):
        load_experiment(str(path))
    path.write_text("datasets: [Games]\nmodel: [SASRec]\n")
    with pytest.raises(InputError, match="unknown keys"):
        load_experiment(str(path))


@pytest.mark.slow
def test_parallel_runs_through_ray(config, tmp_path):
    cli.main(["--config", config, "--parallel", "2"])
    files = sorted(os.listdir(tmp_path / "results" / "tiny"))
    assert files == ["SASRec.Games.-.seed0.json", "TextSASRec.Games.rand.mlp.seed0.json",
                     "TextSASRec.Games.rand.seed0.json"]
    record = json.loads((tmp_path / "results" / "tiny" / files[0]).read_text())
    assert record["test"]["n"] > 0


def test_unknown_model_or_dataset_is_named_before_any_run(config, tmp_path):
    text = open(config).read()
    bad = tmp_path / "bad_model.yaml"
    bad.write_text(text.replace("models: [SASRec, TextSASRec]", "models: [SASRex]"))
    with pytest.raises(InputError, match="models.*SASRex"):
        cli.main(["--config", str(bad)])
    bad.write_text(text.replace("[Games]", "[Gamez]"))
    with pytest.raises(InputError, match="datasets.*Gamez"):
        cli.main(["--config", str(bad)])
    assert not os.path.exists(tmp_path / "results" / "tiny")


def test_embedders_option_runs_only_those_embedders(config, tmp_path, capsys):
    text = open(config).read().replace("embedders: [rand]", "embedders: [rand, other]")
    open(config, "w").write(text)
    cli.main(["--config", config, "--list", "--embedders", "rand"])
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["SASRec.Games.-.seed0.json", "TextSASRec.Games.rand.seed0.json",
                      "TextSASRec.Games.rand.mlp.seed0.json"]
    with pytest.raises(InputError, match=r"field 'embedders' = \['nope'\]: not among"):
        cli.main(["--config", config, "--list", "--embedders", "nope"])


def test_variants_option_runs_only_those_variants(config, capsys):
    cli.main(["--config", config, "--list", "--variants", "mlp"])
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["TextSASRec.Games.rand.mlp.seed0.json"]
    cli.main(["--config", config, "--list", "--variants", "-"])
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["SASRec.Games.-.seed0.json", "TextSASRec.Games.rand.seed0.json"]
    with pytest.raises(InputError, match=r"field 'variants' = \['nope'\]: not among"):
        cli.main(["--config", config, "--list", "--variants", "nope"])


def test_variant_limited_to_embedders_with_per_dataset_settings(config):
    text = open(config).read().replace("embedders: [rand]", "embedders: [rand, other]").replace(
        "[Games]", "[Games, Beauty]").replace(
        "variants: {mlp: {set: {adapter_type: mlp}}}",
        "variants: {rat: {set: {adapter_type: rat, rat_teacher_checkpoint: \"t/SASRec.{dataset}.s{seed}.pth\"},"
        " embedders: [other]}}")
    open(config, "w").write(text)
    exp = load_experiment(config)
    assert [r.file_name for r in exp.runs() if r.dataset == "Beauty"] == [
        "SASRec.Beauty.-.seed0.json", "TextSASRec.Beauty.rand.seed0.json",
        "TextSASRec.Beauty.other.seed0.json", "TextSASRec.Beauty.other.rat.seed0.json"]
    rat = [r for r in exp.runs() if r.variant == "rat"]
    assert [exp.settings(r)["rat_teacher_checkpoint"] for r in rat] == [
        "t/SASRec.Games.s0.pth", "t/SASRec.Beauty.s0.pth"]
    assert exp.settings(rat[0])["text_emb"] == "other"
    open(config, "w").write(text.replace("embedders: [other]", "embedders: [nope]"))
    with pytest.raises(InputError, match=r"field 'variants.rat.embedders' = \['nope'\]: not among"):
        load_experiment(config)


def test_models_and_datasets_options_run_only_those(config, capsys):
    text = open(config).read().replace("[Games]", "[Games, Beauty]")
    open(config, "w").write(text)
    cli.main(["--config", config, "--list", "--models", "TextSASRec", "--datasets", "Beauty"])
    listed = [line.split()[1] for line in capsys.readouterr().out.splitlines()]
    assert listed == ["TextSASRec.Beauty.rand.seed0.json", "TextSASRec.Beauty.rand.mlp.seed0.json"]
    with pytest.raises(InputError, match=r"field 'models' = \['GRU4Rec'\]: not among"):
        cli.main(["--config", config, "--list", "--models", "GRU4Rec"])
    with pytest.raises(InputError, match=r"field 'datasets' = \['Toys'\]: not among"):
        cli.main(["--config", config, "--list", "--datasets", "Toys"])


def test_metric_vs_extraction_time_figure_lists_embedders_without_a_time(tmp_path):
    from benchmarks.experiments import figures

    root = write_slice(str(tmp_path / "data"), "Games", 3)
    folder = os.path.join(root, "Games")
    tokens = [line.split("\t")[0] for line in open(os.path.join(folder, "Games.item"))][1:]
    emb = np.ones((len(tokens), 4))
    took = {"seconds": 2.0, "items": 40, "tokens": 300, "device": "cpu", "threads": 1,
            "finished": "2026-12-02 05:00 UTC"}
    write_feat(feat_path(folder, "Games", "timed"), tokens, emb, {"extraction": took})
    write_feat(feat_path(folder, "Games", "untimed"), tokens, emb)  # older file: no time
    path = tmp_path / "fig.yaml"
    path.write_text(f"name: fig\ndata_path: {root}\nresults_dir: {tmp_path / 'results'}\n"
                    "datasets: [Games]\nmodels: [SASRec, TextSASRec]\n"
                    "embedders: [timed, untimed, gone]\nseeds: [0, 1]\n")
    exp = load_experiment(str(path))

    def record(model, emb, seed, recall):
        return {"model": model, "dataset": "Games", "text_emb": emb, "variant": "-",
                "seed": seed, "test": {"recall@10": recall}, "analyses": {}}

    records = [record("TextSASRec", "timed", 0, 0.10), record("TextSASRec", "timed", 1, 0.20),
               record("TextSASRec", "untimed", 0, 0.30), record("TextSASRec", "gone", 0, 0.4),
               record("SASRec", "-", 0, 0.05)]
    out = tmp_path / "x.png"
    points, timed, missing = figures.metric_vs_extraction_time(exp, records, str(out))
    # 2 s for 40 items = 50 s per 1,000 items; Recall@10 is the mean of the two seeds
    assert points.keys() == {("Games", ("TextSASRec", "timed", "-"))}
    assert points[("Games", ("TextSASRec", "timed", "-"))] == pytest.approx((50.0, 0.15))
    assert timed == {("Games", "timed"): took}
    assert missing == {("Games", "untimed"): "sidecar records no extraction time",
                       ("Games", "gone"): "no .feat sidecar"}
    assert out.stat().st_size > 1000
    lines = figures.write_figures(exp, records)
    assert "![fig.extraction.png](fig.extraction.png)" in lines
    note = lines[-1]
    assert "timed on Games 50.0 s (cpu, 1 threads" in note
    assert "gone on Games (no .feat sidecar); untimed on Games (sidecar records no " in note
    assert (tmp_path / "results" / "fig.extraction.png").stat().st_size > 1000
    # without any recorded time there is no figure, and the note says who has none
    assert figures.metric_vs_extraction_time(exp, records[2:], str(tmp_path / "y.png"))[0] == {}
    assert not (tmp_path / "y.png").exists()


def test_records_written_before_hold_the_full_precision_metrics_once_loaded(tmp_path):
    from types import SimpleNamespace

    from benchmarks.experiments.tables import load_records

    old = {"model": "SASRec", "dataset": "Games", "text_emb": "-", "seed": 0, "epochs_run": 3,
           "test": {"recall@10": 0.0521, "ndcg@10": 0.0252},  # RecBole's, rounded
           "analyses": {"full": {"all": {"recall@10": 0.05205, "ndcg@10": 0.025249, "n": 2000},
                                 "rare": {"recall@10": 0.01, "n": 5}}}}
    older = {**old, "seed": 1, "analyses": {}}  # no analyses at all: RecBole's stays
    for name, record in (("a.json", old), ("b.json", older)):
        (tmp_path / name).write_text(json.dumps(record))
    first, second = load_records(SimpleNamespace(runs_dir=str(tmp_path), recbole={"epochs": 9}))
    assert first["test"] == {"recall@10": 0.05205, "ndcg@10": 0.025249, "n": 2000}
    assert first["analyses"]["full"] == {"rare": {"recall@10": 0.01, "n": 5}}
    assert first["test_source"] == execute.TEST_SOURCE
    assert second["test"] == older["test"] and second["test_source"] == execute.RECBOLE_SOURCE
