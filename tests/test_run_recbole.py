"""The entry script bootstraps the embedded default; the `recbole_llm2rec` package does not."""
import os

import pytest

import run_recbole
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.quick_start import build_config, check_data


def test_entry_script_converts_ml100k_and_the_package_does_not(tmp_path):
    config, _ = build_config("SASRec", "ml-100k", overrides={"data_path": str(tmp_path)})
    assert config["data_path"] == os.path.join(str(tmp_path), "ml-100k")
    assert os.listdir(tmp_path) == []  # building a config reads and writes no data
    with pytest.raises(InputError, match=r"ml-100k: dataset folder not found; convert it with: "
                                         r"python -m dataset_atomic ml100k --out "):
        check_data(config)
    run_recbole.bootstrap("SASRec", config)  # an ID-only model: no .feat to build
    assert sorted(os.listdir(tmp_path / "ml-100k")) == ["ml-100k.inter", "ml-100k.item"]
    # every ml-100k user has 20 or more ratings, so no short users; ties in time are warned of
    inter = tmp_path / "ml-100k" / "ml-100k.inter"
    assert check_data(config) == [
        f"{inter}:3: field 'timestamp' = '874965478': 943 user(s) have 50561 row(s) with the "
        f"same timestamp as an earlier row of theirs: RecBole keeps tied rows in file order (a "
        f"stable sort), which decides the held-out item(s) of 599 user(s)"]


def test_bootstrap_builds_a_feat_only_for_models_that_read_one(tmp_path, monkeypatch):
    import pretrain.extract

    built = []
    monkeypatch.setattr(pretrain.extract, "ensure_feat", lambda *args: built.append(args))
    for model in ("LLMSRec", "SASRec", "TextGRU4Rec", "TextSASRec"):
        config, _ = build_config(model, "ml-100k", overrides={"data_path": str(tmp_path)})
        if model == "LLMSRec":  # its input checks stop it (no titles loaded, no LLM) first
            with pytest.raises(InputError, match="LLMSRec needs"):
                run_recbole.bootstrap(model, config)
            continue
        run_recbole.bootstrap(model, config)
    root = os.path.join(str(tmp_path), "ml-100k")
    assert built == [(root, "ml-100k", "minilm")] * 2  # the two Text* models, not LLMSRec


def test_main_builds_the_config_and_checks_the_data_once(tmp_path, monkeypatch):
    from recbole_llm2rec import quick_start

    calls = {"build_config": 0, "check_data": 0}

    def counted(name):
        real = getattr(quick_start, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    for name in calls:
        monkeypatch.setattr(quick_start, name, counted(name))
    trained = []
    monkeypatch.setattr(quick_start, "run_config", lambda config, model_class, warnings: (
        trained.append((config["model"], model_class.__name__, warnings))
        or {"test_result": {"recall@10": 0.5}}))
    run_recbole.main(["--model=SASRec", "--dataset=ml-100k", f"--data_path={tmp_path}"])
    assert calls == {"build_config": 1, "check_data": 1}
    # the config that was checked is the one run, with the check's warnings (ml-100k has ties)
    [(model, model_class, warnings)] = trained
    assert (model, model_class) == ("SASRec", "SASRec")
    assert len(warnings) == 1 and "with the same timestamp" in warnings[0]
