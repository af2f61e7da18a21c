"""The exported bundle: scores equal the trained model's full_sort_predict, it loads without
the dataset or pickle, a changed file is refused; the Recommender's Python API."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.export import export, main as export_main
from recbole_llm2rec.serving.recommender import Recommender
from serving_helpers import assert_bundle_equals_model, history_cases, train
from slices import write_random_feat, write_slice

VARIANTS = {"TextSASRec-text": ("TextSASRec", {"item_repr": "text"}),
            "TextSASRec-text+id": ("TextSASRec", {"item_repr": "text+id"}),
            "TextGRU4Rec-text": ("TextGRU4Rec", {"item_repr": "text"}),
            "SASRec": ("SASRec", {})}


def same(a, b):
    """Two answers list the same items, with scores equal up to float rounding."""
    return [t for t, _ in a] == [t for t, _ in b] and np.allclose(
        [s for _, s in a], [s for _, s in b], atol=1e-5)


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    """The committed Games fixture (500 users) with a random 24-dim `.feat` ("rand")."""
    return write_random_feat(write_slice(str(tmp_path_factory.mktemp("data")), "Games", 500),
                             "Games", 24)


@pytest.fixture(scope="module")
def trained(games, tmp_path_factory):
    cache = {}

    def get(variant):
        if variant not in cache:
            model, settings = VARIANTS[variant]
            tmp = tmp_path_factory.mktemp(variant.replace("+", "_"))
            ckpt, net, data, test_data = train(model, games, "Games", tmp, text_emb="rand",
                                               **settings)
            bundle = str(tmp / "bundle")
            export(ckpt, bundle)
            cache[variant] = dict(ckpt=ckpt, net=net, data=data, test_data=test_data,
                                  bundle=bundle)
        return cache[variant]

    return get


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_bundle_scores_equal_full_sort_predict_and_top10_is_identical(trained, variant):
    run = trained(variant)
    rec = Recommender.load(run["bundle"], index="exact")
    assert rec.size == run["data"].item_num - 1
    assert_bundle_equals_model(rec, run["data"], run["net"], run["test_data"], atol=1e-5)


def test_bundle_loads_without_the_dataset_or_pickle(trained, games, tmp_path):
    run = trained("TextSASRec-text+id")
    moved = shutil.move(games, str(tmp_path / "elsewhere"))  # the dataset is gone
    code = ("import pickle, sys, torch\n"
            "def refuse(*a, **k): raise AssertionError('unpickling')\n"
            "pickle.load = pickle.loads = torch.load = refuse\n"
            "from recbole_llm2rec.serving.recommender import Recommender\n"
            f"rec = Recommender.load({run['bundle']!r})\n"
            "print(rec.size, rec.recommend(['i101', 'i103'], k=3)[0][0])\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    finally:
        shutil.move(moved, games)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0] == str(run["data"].item_num - 1)
    names = sorted(os.listdir(run["bundle"]))
    assert names == ["config.json", "feat.json", "items.json", "items.safetensors",
                     "manifest.json", "weights.safetensors"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_a_changed_or_truncated_file_is_refused_in_one_line(trained, tmp_path, damage):
    bundle = shutil.copytree(trained("TextSASRec-text")["bundle"], str(tmp_path / "b"))
    target = os.path.join(bundle, "weights.safetensors")
    if damage == "truncate":
        with open(target, "r+b") as fh:
            fh.truncate(os.path.getsize(target) - 10)
    elif damage == "flip":
        with open(target, "r+b") as fh:
            fh.seek(-5, 2)
            byte = fh.read(1)
            fh.seek(-5, 2)
            fh.write(bytes([byte[0] ^ 1]))
    elif damage == "delete":
        os.remove(target)
    else:
        target = os.path.join(bundle, "manifest.json")
        os.remove(target)
    with pytest.raises(InputError) as err:
        Recommender.load(bundle)
    message = str(err.value)
    assert "\n" not in message and (target in message or bundle in message), message
    expect = {"truncate": "truncated", "flip": "sha256", "delete": "missing",
              "manifest": "no manifest.json"}[damage]
    assert expect in message


def test_export_refuses_an_existing_folder_and_unexportable_models(trained, tmp_path, capsys):
    from recbole_llm2rec.compat import CHECKPOINT_FORMAT
    from recbole_llm2rec.errors import cli_main

    run = trained("SASRec")
    with pytest.raises(InputError, match="already exists"):
        export(run["ckpt"], run["bundle"])
    fake = str(tmp_path / "llmsrec.pth")
    torch.save({"format": CHECKPOINT_FORMAT, "config": {"model": "LLMSRec"}}, fake)
    with pytest.raises(SystemExit):
        cli_main(export_main, "python -m recbole_llm2rec.export",
                 [fake, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'LLMSRec'" in err and "not exportable yet" in err
    assert not os.path.exists(tmp_path / "x")


def test_recommend_single_batch_unknown_and_long_histories(trained):
    run = trained("TextSASRec-text")
    rec = Recommender.load(run["bundle"], index="exact")
    histories = history_cases(run["data"], run["test_data"])[:3]
    batch = rec.recommend(histories, k=10)
    for h, answer in zip(histories, batch):  # a batch answers as its histories one by one
        assert same(rec.recommend(h, k=10), answer)
    one = batch[0]
    assert len(one) == 10 and all(t not in histories[0] for t, _ in one)  # exclude_seen
    assert [s for _, s in one] == sorted((s for _, s in one), reverse=True)
    with pytest.raises(InputError, match="not in the catalogue") as err:
        rec.recommend(histories[0] + ["nope-1", "nope-2"])
    assert "nope-1" in str(err.value) and "nope-2" in str(err.value)
    assert same(rec.recommend(histories[0] + ["nope-1"], on_unknown="skip"), one)
    long = histories[1] * 5 + histories[0]  # longer than MAX_ITEM_LIST_LENGTH (10)
    tail = long[-rec.max_length:]
    assert same(rec.recommend(long, k=10, exclude_seen=False),
                rec.recommend(tail, k=10, exclude_seen=False))
    assert not same(rec.recommend(long, k=10, exclude_seen=False),
                    rec.recommend(long[:rec.max_length], k=10, exclude_seen=False))
    for bad, field in [([], "history"), ("i101", "history"), ([["i101"], []], r"history\[1\]"),
                       ([1, 2], r"history\[0\]")]:
        with pytest.raises(InputError, match=field):
            rec.recommend(bad)
    for k in (0, -1, rec.size + 1, 2.5, True):
        with pytest.raises(InputError, match="'k'"):
            rec.recommend(histories[0], k=k)
    with pytest.raises(InputError, match="on_unknown"):
        rec.recommend(histories[0], on_unknown="ignore")


def test_remove_items_applies_whole_or_not_at_all(trained):
    run = trained("TextSASRec-text")
    rec = Recommender.load(run["bundle"], index="exact")
    history = history_cases(run["data"], run["test_data"])[0]
    top = [t for t, _ in rec.recommend(history, k=5)]
    size = rec.size
    with pytest.raises(InputError, match="not in the catalogue"):
        rec.remove_items(top[:2] + ["nope"])
    assert rec.size == size and rec.recommend(history, k=5)[0][0] == top[0]
    assert rec.remove_items(top[:2]) == size - 2
    assert [t for t, _ in rec.recommend(history, k=3)] == top[2:5]
    with pytest.raises(InputError, match="not in the catalogue"):
        rec.recommend([top[0]])  # removed items are unknown in histories too


def test_sasrec_has_no_text_table_so_add_items_is_refused(trained):
    rec = Recommender.load(trained("SASRec")["bundle"])
    with pytest.raises(InputError, match="no text item table") as err:
        rec.add_items(["new"], ["A new game"])
    assert "SASRec" in str(err.value)


def test_hnsw_matches_exact_and_follows_adds_and_removals(trained):
    from recbole_llm2rec.serving import index as ix

    run = trained("TextSASRec-text")
    exact = Recommender.load(run["bundle"], index="exact")
    approx = Recommender.load(run["bundle"], index="hnsw")
    assert approx._state.hnsw.n == approx._state.n  # built over every row
    histories = history_cases(run["data"], run["test_data"])[:200]
    truth, found = exact.recommend(histories, k=10), approx.recommend(histories, k=10)
    recall = np.mean([len({t for t, _ in a} & {t for t, _ in b}) / 10
                      for a, b in zip(found, truth)])
    assert recall >= 0.99, recall
    # removed items never come back; added ones are found (searched exactly beside the index)
    top = [t for t, _ in found[0]]
    approx.remove_items(top[:3])
    assert not {t for t, _ in approx.recommend(histories[0], k=10)} & set(top[:3])
    query = approx.encode([[approx._state.rows[t] for t in histories[0]]])
    approx.append(["twin"], query * 10)  # scores far above every item's
    assert approx.recommend(histories[0], k=1)[0][0] == "twin"
    assert approx._state.hnsw.n < approx._state.n  # not rebuilt for one item ...
    n = approx._state.n
    approx.append([f"x{i}" for i in range(n // 5)], torch.randn(n // 5, query.shape[1]))
    assert approx._state.hnsw.n == approx._state.n  # ... but once 10% more rows came
    assert approx.recommend(histories[0], k=1)[0][0] == "twin"
    assert ix.choose_kind("auto", 1000) == ix.EXACT
    assert ix.choose_kind("auto", ix.AUTO_HNSW_FROM) == ix.HNSW
    with pytest.raises(InputError, match="index"):
        ix.choose_kind("annoy", 10)


def test_serve_refuses_a_missing_bundle_or_bad_port_in_one_line(tmp_path, capsys):
    from recbole_llm2rec import serve
    from recbole_llm2rec.errors import cli_main

    for argv, expect in ([["--bundle", str(tmp_path / "nope")], "bundle folder not found"],
                         [["--bundle", str(tmp_path), "--port", "70000"], "'port'"]):
        with pytest.raises(SystemExit):
            cli_main(serve.main, serve.PROG, argv)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expect in err, err
