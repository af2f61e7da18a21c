"""Fair tuning (issue 12): every variant gets the same search, winners chosen on validation are
written to props/tuned/ and reload through RecBole's Config; a tiny real run end to end."""
import json
import os

import pandas as pd
import pytest
import yaml

from benchmarks.fair_tuning import __main__ as cli
from benchmarks.fair_tuning.spec import load_fair_tuning
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.tune.cli import build_parser, parse_overrides
from recbole_llm2rec.tune.folder import search_settings

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "benchmarks", "configs", "fair_tuning_2k.yaml")


def settings(argv):
    """What the tuner saves in search.json for these arguments (its own parser)."""
    args, rest = build_parser().parse_known_args(argv)
    return search_settings(args, parse_overrides(rest))


def test_every_variant_gets_the_same_space_budget_and_settings():
    spec = load_fair_tuning(CONFIG)
    assert {"SASRec", "text", "text+id"} <= set(spec.variants)
    for dataset in spec.datasets:
        searches = {v: settings(spec.search_args(dataset, v)) for v in spec.variants}
        for variant, search in searches.items():
            own = spec.variants[variant]
            assert search["model"] == own["model"] and search["dataset"] == dataset
            # the variant's own settings are the only overrides that differ
            assert {k: search["overrides"].pop(k) for k in own["set"]} == {
                k: str(v) for k, v in own["set"].items()}
            del search["model"]
        first = searches.pop("SASRec")
        assert first["num_samples"] == spec.num_samples and first["seed"] == spec.search_seed
        assert first["grace_period"] == spec.grace_period
        assert first["space"] == os.path.abspath(spec.space)
        for search in searches.values():
            assert search == first


def test_a_variant_may_not_change_the_shared_settings(tmp_path):
    path = tmp_path / "bad.yaml"
    with open(CONFIG, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    config["variants"]["text"]["set"]["epochs"] = 10
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match="variants.text.set.epochs.*every variant must share"):
        load_fair_tuning(str(path))
    with pytest.raises(InputError, match="not among the config's variants"):
        cli.main(["--config", CONFIG, "--variants", "nope", "--report"])


@pytest.mark.slow  # three Ray starts and four trials: about a minute idle, minutes loaded
def test_tiny_fair_tuning_end_to_end(tmp_path, games_root, monkeypatch):
    from recbole_llm2rec.quick_start import build_config

    monkeypatch.chdir(tmp_path)  # the config's paths are relative to the working folder
    (tmp_path / "space.yaml").write_text("learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n"
                                         "hidden_dropout_prob: {uniform: [0.1, 0.5]}\n")
    (tmp_path / "fair.yaml").write_text(f"""
name: tiny
data_path: {games_root}
datasets: [Games]
space: space.yaml
num_samples: 2
search_seed: 3
grace_period: 1
reduction_factor: 2
cpus: 1
results_dir: results
recbole: {{epochs: 1, train_batch_size: 256, n_layers: 1, hidden_size: 16, inner_size: 32,
          text_emb: rand}}
variants:
  SASRec: {{model: SASRec}}
  text+id: {{model: TextSASRec, set: {{item_repr: text+id}}}}
""")
    cli.main(["--config", "fair.yaml"])

    spec = load_fair_tuning("fair.yaml")
    tables = {v: pd.read_csv(spec.record("Games", v, "csv")) for v in spec.variants}
    keys = ["learning_rate", "hidden_dropout_prob"]
    sampled = [t.sort_values("trial")[keys].values.tolist() for t in tables.values()]
    assert sampled[0] == sampled[1] and len(sampled[0]) == 2  # the same trials for both
    for variant, table in tables.items():
        winner = table[table["status"] == "completed"].iloc[0]  # sorted on validation
        assert winner["valid/recall@20"] == table["valid/recall@20"].max()
        path = spec.tuned("Games", variant)
        assert path == os.path.join("props", "tuned", {"SASRec": "SASRec-Games.yaml",
                                                       "text+id": "TextSASRec-text+id-Games.yaml"}
                                    [variant])
        assert f"# Winner {winner['trial']}: valid/recall@20 = " in open(path).read()
        config, _ = build_config(spec.variants[variant]["model"], "Games", [path])
        assert config["learning_rate"] == pytest.approx(winner["learning_rate"])
        assert config["hidden_dropout_prob"] == pytest.approx(winner["hidden_dropout_prob"])
        assert config["train_batch_size"] == 256 and config["epochs"] == 1
        if variant == "text+id":
            assert config["item_repr"] == "text+id" and config["text_emb"] == "rand"
        record = json.load(open(spec.record("Games", variant, "json")))
        assert len(record["sessions"]) == 1 and record["model"] == spec.variants[variant]["model"]

    report = open(os.path.join("results", "tiny.md")).read()
    assert "| SASRec | SASRec | - | 2 / 0 / 0 |" in report
    assert "| text+id | TextSASRec | item_repr=text+id | 2 / 0 / 0 |" in report
    assert "## Not finished" not in report

    # rerunning skips finished searches; --refresh rewrites the tuned yaml without a session
    os.remove(spec.tuned("Games", "SASRec"))
    cli.main(["--config", "fair.yaml"])
    assert not os.path.exists(spec.tuned("Games", "SASRec"))
    cli.main(["--config", "fair.yaml", "--refresh", "--variants", "SASRec"])
    assert os.path.isfile(spec.tuned("Games", "SASRec"))
    record = json.load(open(spec.record("Games", "SASRec", "json")))
    assert len(record["sessions"]) == 1


def test_the_grace_period_paragraph_comes_from_the_run_files(tmp_path):
    from types import SimpleNamespace

    from benchmarks.fair_tuning.report import grace_paragraph

    runs = tmp_path / "defaults"
    runs.mkdir()
    for seed, best in ((0, 12), (1, 45)):
        (runs / f"r{seed}.json").write_text(json.dumps(
            {"model": "TextSASRec", "dataset": "Games", "text_emb": "minilm", "variant": "text",
             "seed": seed, "best_epoch": best, "test": {}}))
    spec = SimpleNamespace(results_dir=str(tmp_path), grace_evidence="defaults", grace_period=40)
    text = grace_paragraph(spec)[0]
    assert "TextSASRec · minilm [text] 12/45 on Games" in text
    assert "40 epochs, NOT above the latest of those best epochs (45)" in text
    spec.grace_period = 50
    assert "50 epochs, above the latest" in grace_paragraph(spec)[0]
    assert grace_paragraph(SimpleNamespace(grace_evidence=None)) == []
    # the committed report says what the committed run files say
    report = open(os.path.join(REPO, "benchmarks", "results", "fair_tuning_2k.md")).read()
    spec = load_fair_tuning(CONFIG)
    spec.results_dir = os.path.join(REPO, spec.results_dir)
    assert grace_paragraph(spec)[0] in report
