"""Items added by title: embedded with the `.feat`'s own embedder and settings, through the
trained adapter, they score exactly as the offline cold-start evaluation scores them."""
import numpy as np
import pytest
import torch

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.evaluation.cold_start import (cold_start_config, read_manifest,
                                                   write_cold_start_dataset)
from recbole_llm2rec.export import export
from recbole_llm2rec.serving.recommender import Recommender
from serving_helpers import embedded_slice, full_sort, history_cases, titles_of, train
from tiny_llm import save_tiny_model


@pytest.fixture(scope="module")
def embedder_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"), "qwen2")


@pytest.fixture(scope="module")
def cold(tmp_path_factory, embedder_dir):
    """A text+id TextSASRec trained on the cold-start split (10% of the items withheld) of a
    200-user Games slice, its bundle, and the withheld items."""
    tmp = tmp_path_factory.mktemp("cold")
    root = embedded_slice(tmp / "data", 200, embedder_dir)
    name = write_cold_start_dataset(root, "Games", fraction=0.1, seed=0)
    settings = {**cold_start_config(root, name), "text_emb": "tiny", "item_repr": "text+id"}
    ckpt, net, data, test_data = train("TextSASRec", settings.pop("data_path"), name, tmp,
                                       **settings)
    bundle = str(tmp / "bundle")
    export(ckpt, bundle)
    return dict(root=root, name=name, net=net, data=data, test_data=test_data, bundle=bundle,
                cold=read_manifest(root, name)["cold_items"])


def test_an_item_added_by_title_scores_as_in_the_offline_cold_start_evaluation(cold):
    data, net = cold["data"], cold["net"]
    titles = titles_of(cold["root"])
    rec = Recommender.load(cold["bundle"], index="exact")
    withheld = [t for t in cold["cold"][:6] if t in rec._state.rows]
    assert len(withheld) == 6
    assert not net.item_embedding.id_mask[data.token2id("item_id", withheld)].any()  # no ID part
    rec.remove_items(withheld)  # gone from the catalogue ...
    assert all(t not in rec._state.rows for t in withheld)
    rec.add_items(withheld, [titles[t] for t in withheld])  # ... and back by title alone
    offline = full_sort(net, cold["test_data"])  # the cold-start evaluation's scores
    ids = data.token2id("item_id", withheld)
    histories = history_cases(data, cold["test_data"])[:40]
    answers = rec.recommend(histories, k=rec.size, exclude_seen=False)
    worst = 0.0
    for answer, row in zip(answers, offline):
        served = dict(answer)
        worst = max(worst, max(abs(served[t] - float(row[i])) for t, i in zip(withheld, ids)))
    assert worst <= 1e-5, worst
    # the added items also work as history items: embedded as the model embeds them
    again = rec.recommend([withheld[0]], k=5, exclude_seen=False)
    assert len(again) == 5


def test_add_items_refusals_name_the_cause(cold, tmp_path):
    rec = Recommender.load(cold["bundle"], index="exact")
    size = rec.size
    present = next(iter(rec._state.rows))
    with pytest.raises(InputError, match="already in the catalogue") as err:
        rec.add_items(["brand-new", present], ["A title", "Another"])
    assert present in str(err.value)
    with pytest.raises(InputError, match="titles"):
        rec.add_items(["a", "b"], ["only one"])
    with pytest.raises(InputError, match=r"titles\[0\]"):
        rec.add_items(["a"], ["   "])
    assert rec.size == size and "brand-new" not in rec._state.rows  # nothing half-applied
    # the embedder's model folder moved away: refused in one line naming it
    rec.embedder.sidecar = dict(rec.embedder.sidecar, backbone=str(tmp_path / "moved"))
    with pytest.raises(InputError, match="cannot be found") as err:
        rec.add_items(["x1"], ["Some game"])
    assert "\n" not in str(err.value) and "moved" in str(err.value)


def test_titles_are_embedded_as_the_feat_was(cold):
    """Re-embedding a catalogue item's title reproduces its `.feat` row, so adapter(row) is
    the item's exported text part."""
    from recbole_llm2rec.feat import feat_path, read_feat

    rec = Recommender.load(cold["bundle"], index="exact")
    tokens, table = read_feat(feat_path(f"{cold['root']}/Games", "Games", "tiny"))
    titles = titles_of(cold["root"])
    again = rec.embedder.embed([titles[t] for t in tokens[:20]])
    assert np.abs(again - table[:20]).max() < 1e-5
    assert torch.is_tensor(rec.text_table.new_item_rows(torch.as_tensor(again)))
