"""The item tables of the Text* models (model/layers.py): when the adapted table is computed."""
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.quick_start import build_config
from test_models import SMALL  # the small TextSASRec/TextGRU4Rec settings of the model tests


def build(model, root, **overrides):
    """(model in train mode, config, train, valid, test data) on the Games slice."""
    config, cls = build_config(model, "Games", config_dict={**SMALL, "data_path": root, **overrides})
    train, valid, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return cls(config, train._dataset), config, train, valid, test


def count_table_builds(table):
    """A list that grows by one each time the table's adapter runs."""
    calls = []
    table.adapter.register_forward_hook(lambda *args: calls.append(1))
    return calls


def skip_step(net):
    """The optimizer does nothing (e.g. GradScaler skipping a step on inf gradients)."""
    for p in net.parameters():
        p.grad = None


def fused_adamw_step(net):
    """A real update that leaves the parameters' version counters unchanged."""
    torch.optim.AdamW(net.parameters(), lr=1e-2, fused=True).step()


@pytest.mark.parametrize("model", ["TextSASRec", "TextGRU4Rec"])
@pytest.mark.parametrize("step", [skip_step, fused_adamw_step])
def test_next_batch_trains_after_a_step_that_leaves_parameter_versions(model, step, games_root):
    net, _, train, _, _ = build(model, games_root)
    calls = count_table_builds(net.item_embedding)
    batches = iter(train)
    first = net.calculate_loss(next(batches))
    assert len(calls) == 1  # input rows and scores share one table per forward
    first.backward()
    step(net)
    second = net.calculate_loss(next(batches))  # failed: backward through a freed graph
    second.backward()
    assert len(calls) == 2
    assert net.item_embedding.adapter.linear.weight.grad.abs().sum() > 0


def test_evaluation_reuses_the_table_until_parameters_change(games_root):
    net, _, train, _, test = build("TextSASRec", games_root)
    table = net.item_embedding
    calls = count_table_builds(table)
    net.eval()
    users = [batch[0] for batch in test]
    with torch.no_grad():
        first = net.full_sort_predict(users[0])
        net.full_sort_predict(users[0])
        assert len(calls) == 1  # cached across evaluation batches
        table.adapter.linear.bias.add_(1.0)  # changed in place
        moved = net.full_sort_predict(users[0])
        assert len(calls) == 2 and not torch.allclose(first, moved)
    # a training epoch with an update that keeps version counters (fused AdamW), then evaluation
    net.train()
    net.calculate_loss(next(iter(train))).backward()
    fused_adamw_step(net)
    net.eval()
    with torch.no_grad():
        assert torch.equal(table.weight, table.adapter(table.text_emb))


# ---- item_repr and adapter_type (issue 12) ----

def training_split_items(root, dataset):
    """Item tokens of each user's interactions but the last two in time order (ties keep file
    order, as RecBole's stable sort does), read from the file."""
    import collections
    rows = collections.defaultdict(list)
    with open(f"{root}/Games/Games.inter", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            user, item, ts = line.rstrip("\n").split("\t")[:3]
            rows[user].append((float(ts), item))
    return {item for inters in rows.values()
            for _, item in sorted(inters, key=lambda row: row[0])[:-2]}


def test_text_id_rows_of_items_without_training_interactions_stay_zero(games_root):
    from recbole_llm2rec.compat import get_trainer

    net, config, train, _, test = build("TextSASRec", games_root, item_repr="text+id",
                                        id_dropout=0.3, id_weight_decay=0.1)
    table = net.item_embedding
    tokens = train._dataset.field2id_token["item_id"]
    seen = table.id_mask.squeeze(1).bool()
    assert {tokens[i] for i in range(1, len(tokens)) if seen[i]} == training_split_items(games_root, "Games")
    new = (~seen).nonzero().squeeze(1)[1:]  # without the padding row
    assert len(new) > 50 and seen.sum() > 500
    trainer = get_trainer(config["MODEL_TYPE"], "TextSASRec")(config, net)
    assert [g["weight_decay"] for g in trainer.optimizer.param_groups] == [1e-4, 0.1]
    before = table.id_embedding.weight.detach().clone()
    for batch in list(train)[:3]:
        trainer.optimizer.zero_grad()
        net.calculate_loss(batch).backward()
        trainer.optimizer.step()
    ids = table.id_embedding.weight.detach()
    assert not torch.equal(ids[seen], before[seen])  # trained
    assert torch.count_nonzero(ids[new]) == 0  # exactly zero after weight decay and steps
    net.eval()
    with torch.no_grad():
        users = next(iter(test))[0]
        scores = net.full_sort_predict(users)
        user_vec = net.forward(users[net.ITEM_SEQ], users[net.ITEM_SEQ_LEN])
        text_only = user_vec @ table.adapter(table.text_emb)[new].T
        assert torch.equal(table.weight[new], table.adapter(table.text_emb)[new])
        assert torch.allclose(scores[:, new], text_only, atol=1e-6)


@pytest.mark.parametrize("model, settings", [
    ("TextSASRec", {"adapter_type": "linear"}), ("TextSASRec", {"adapter_type": "mlp"}),
    ("TextSASRec", {"adapter_type": "moe", "adapter_n_experts": 4}),
    ("TextSASRec", {"item_repr": "text+id"}),
    ("TextGRU4Rec", {"item_repr": "text+id", "adapter_type": "moe"})])
def test_each_variant_maps_text_to_hidden_and_trains(model, settings, games_root):
    net, config, train, _, _ = build(model, games_root, **settings)
    table = net.item_embedding
    z = torch.randn(7, 24)
    assert table.adapter(z).shape == (7, 32) and table.weight.shape == (len(table.text_emb), 32)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    batch = next(iter(train))
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = net.calculate_loss(batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.97 * losses[0]


def test_adapter_learning_rate_makes_its_own_group_and_defaults_keep_one(games_root):
    from recbole_llm2rec.compat import get_trainer

    for lr, groups in ((None, [1e-3]), (5e-3, [1e-3, 5e-3])):
        net, config, *_ = build("TextGRU4Rec", games_root, adapter_learning_rate=lr,
                                learning_rate=1e-3)
        optimizer = get_trainer(config["MODEL_TYPE"], "TextGRU4Rec")(config, net).optimizer
        assert [g["lr"] for g in optimizer.param_groups] == groups
        assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(net.parameters()))
    assert optimizer.param_groups[1]["params"] == list(net.item_embedding.adapter.parameters())


@pytest.mark.parametrize("settings", [
    {}, {"adapter_type": "moe", "adapter_n_experts": 2}, {"item_repr": "text+id"},
    {"item_repr": "text+id", "adapter_learning_rate": 3e-3, "id_weight_decay": 0.0}])
def test_checkpoints_reload_through_recbole_evaluate(settings, games_root, tmp_path):
    from recbole_llm2rec.compat import get_trainer
    from recbole_llm2rec.quick_start import run

    result = run("TextSASRec", "Games", config_dict={
        **SMALL, **settings, "data_path": games_root, "epochs": 1,
        "checkpoint_dir": str(tmp_path)})
    config = result["config"]
    _, _, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(123)  # a differently initialised model, overwritten by the checkpoint
    net, *_ = build("TextSASRec", games_root, **settings)
    trainer = get_trainer(config["MODEL_TYPE"], "TextSASRec")(config, net)
    reloaded = trainer.evaluate(test, load_best_model=True, model_file=result["model_file"])
    assert dict(reloaded) == dict(result["test_result"])
    assert reloaded["recall@20"] > 0


def test_bad_item_repr(games_root):
    with pytest.raises(ValueError, match="item_repr 'id' is not one of"):
        build("TextSASRec", games_root, item_repr="id")


@pytest.mark.parametrize("rescale, factor", [(True, 2.0), (False, 1.0)])  # True: the props default
def test_id_dropout_drops_whole_rows_and_rescales_the_kept_ones(games_root, rescale, factor):
    net, *_ = build("TextSASRec", games_root, item_repr="text+id", id_dropout=0.5,
                    id_dropout_rescale=rescale)
    table = net.item_embedding
    ids = table.id_embedding.weight.detach()
    seen = table.id_mask.squeeze(1).bool()
    torch.manual_seed(3)
    rows = table.id_rows().detach()[seen]
    kept = rows.abs().sum(1) > 0
    assert 0.4 < kept.float().mean() < 0.6  # whole rows, about half of them
    assert torch.allclose(rows[kept], ids[seen][kept] * factor)
    table.eval()
    assert torch.equal(table.id_rows().detach(), ids * table.id_mask)  # test: every ID row
