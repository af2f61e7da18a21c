"""Issue 25: under `cold_start_protocol: unseen` the withheld items do not exist until the test —
their `.feat` rows change nothing in training or validation and do change their test scores —
and a new item's row is the one `new_item_rows` gives (the code path a served model's
`add_items` uses)."""
import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.evaluation import cold_start as cs
from recbole_llm2rec.feat import feat_path, read_feat, write_feat
from recbole_llm2rec.model.hidden_items import hide_items, reveal_items
from recbole_llm2rec.quick_start import build_config, run

SMALL = {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 1,
         "train_batch_size": 256, "text_emb": "rand", "show_progress": False, "epochs": 3,
         "stopping_step": 100, "item_repr": "text+id", "id_dropout": 0.5,
         "id_missing": "learned", "seed": 0}


def cold_copy(root, out, perturb):
    """The 10% cold-start split of the Games slice in `out`; with `perturb`, its `.feat` rows of
    the withheld items are replaced by other random numbers. Returns (name, cold tokens)."""
    name = cs.write_cold_start_dataset(root, "Games", fraction=0.1, seed=0, out_path=out)
    cold = cs.read_manifest(out, name)["cold_items"]
    if perturb:
        path = feat_path(os.path.join(out, name), name, "rand")
        tokens, emb = read_feat(path)
        emb = np.array(emb, dtype=np.float64)
        rows = [i for i, t in enumerate(tokens) if t in set(cold)]
        emb[rows] = np.random.default_rng(1).normal(size=(len(rows), emb.shape[1])) * 3
        os.remove(path)  # a link to the source's table
        write_feat(path, tokens, emb)
    return name, cold


@pytest.fixture(scope="module")
def splits(games_root, tmp_path_factory):
    """(name, cold tokens, folder with the real .feat, folder with the cold rows perturbed)."""
    same = str(tmp_path_factory.mktemp("same"))
    other = str(tmp_path_factory.mktemp("perturbed"))
    name, cold = cold_copy(games_root, same, perturb=False)
    cold_copy(games_root, other, perturb=True)
    return name, cold, same, other


def build(name, data_path, protocol, model="TextSASRec", **overrides):
    """(model with the protocol's items hidden, its first training batch, test data)."""
    config, cls = build_config(model, name, config_dict={
        **SMALL, **cs.cold_start_config(data_path, name, protocol), **overrides})
    dataset = create_dataset(config)
    train, _, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    net = cls(config, train._dataset)
    hidden = cs.items_to_hide(config, dataset)
    if hidden is not None:
        hide_items(net, hidden)
    return net, next(iter(train)), test, cs.cold_item_ids(dataset, cs.manifest_of(config)["cold_items"])


def loss_and_grads(net, batch):
    torch.manual_seed(1)  # the same ID dropout draw in both models
    loss = net.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters()
                           if p.grad is not None}


@pytest.mark.parametrize("protocol, unchanged", [("unseen", True), ("legacy", False)])
def test_withheld_feat_rows_change_no_loss_or_gradient_only_under_unseen(splits, protocol,
                                                                         unchanged):
    name, _, same, other = splits
    a, batch, _, _ = build(name, same, protocol)
    b, _, _, _ = build(name, other, protocol)
    loss_a, grads_a = loss_and_grads(a, batch)
    loss_b, grads_b = loss_and_grads(b, batch)
    assert set(grads_a) == set(grads_b) and "item_embedding.missing_id" in grads_a
    same_grads = all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)
    assert (torch.equal(loss_a, loss_b) and same_grads) == unchanged


def test_training_and_validation_ignore_withheld_rows_and_the_test_uses_them(splits, tmp_path):
    name, cold, same, other = splits
    outs = [run("TextSASRec", name, config_dict={
        **SMALL, **cs.cold_start_config(path, name), "checkpoint_dir": str(tmp_path / tag)})
        for tag, path in (("a", same), ("b", other))]
    a, b = (out["model"] for out in outs)
    assert len(outs[0]["valid_scores"]) == 3 and outs[0]["valid_scores"] == outs[1]["valid_scores"]
    state_a, state_b = a.state_dict(), b.state_dict()
    trained = [k for k in state_a if k != "item_embedding.text_emb"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in trained)
    assert state_a["item_embedding.missing_id"].abs().sum() > 0  # the stand-in was trained
    data, _, _, test = outs[0]["data"]
    cold_ids = torch.as_tensor(cs.cold_item_ids(data, cold))
    warm_ids = torch.as_tensor(np.setdiff1d(np.arange(1, data.item_num), cold_ids.numpy()))
    users = next(iter(test))[0]
    a.eval(), b.eval()
    with torch.no_grad():
        sa, sb = a.full_sort_predict(users), b.full_sort_predict(users)  # revealed after fit
    assert torch.isfinite(sa[:, cold_ids]).all()
    assert torch.equal(sa[:, warm_ids], sb[:, warm_ids])
    assert not torch.allclose(sa[:, cold_ids], sb[:, cold_ids])


def test_hidden_items_are_out_of_the_ranking_until_revealed(splits):
    name, _, same, _ = splits
    net, _, test, cold_ids = build(name, same, "unseen", model="SASRec", item_repr="text")
    users = next(iter(test))[0]
    net.eval()
    with torch.no_grad():
        hidden = net.full_sort_predict(users)
        assert torch.isinf(hidden[:, cold_ids]).all() and torch.isfinite(hidden[:, 1:]).sum() > 0
        reveal_items(net)
        shown = net.full_sort_predict(users)
    assert torch.isfinite(shown[:, cold_ids]).all()
    keep = torch.isfinite(hidden)
    assert torch.equal(hidden[keep], shown[keep])


@pytest.mark.parametrize("settings", [{"item_repr": "text"}, {"id_missing": "zero"}, {}])
def test_new_items_rows_are_new_item_rows_of_their_text(splits, settings):
    name, _, same, _ = splits
    net, batch, _, cold_ids = build(name, same, "unseen", **settings)
    table = net.item_embedding
    if not settings:  # a trained stand-in is not zero
        with torch.no_grad():
            table.missing_id.add_(0.5)
    table.eval()
    with torch.no_grad():
        expected = table.new_item_rows(table.text_emb[cold_ids])
        assert torch.allclose(table.weight[cold_ids], expected, atol=1e-6)
        if settings.get("id_missing") == "zero":
            assert torch.equal(expected, table.adapter(table.text_emb[cold_ids]))


def test_items_cannot_be_withheld_under_a_sampled_loss(splits):
    name, _, same, _ = splits
    with pytest.raises(InputError, match="loss_type 'BPR'"):
        build(name, same, "unseen", model="SASRec", loss_type="BPR",
              train_neg_sample_args={"distribution": "uniform", "sample_num": 1})
    with pytest.raises(InputError, match="cold_start_protocol"):
        cs.cold_start_config(same, name, "later")
