"""Shared by the serving tests: a tiny model trained on a committed fixture and its bundle."""
import os

import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.quick_start import build_config

TINY = {"hidden_size": 16, "inner_size": 32, "embedding_size": 16, "n_layers": 1, "n_heads": 2,
        "epochs": 1, "train_batch_size": 512, "show_progress": False, "seed": 0,
        "eval_batch_size": 512}


def train(model, data_path, dataset, tmp_path, **settings):
    """Train `model` on `dataset` for TINY's epochs; returns (checkpoint, trained model in eval
    mode, the RecBole dataset, test data)."""
    config, cls = build_config(model, dataset, config_dict={
        **TINY, "data_path": data_path, "checkpoint_dir": str(tmp_path), **settings})
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(
        config, cls(config, train_data._dataset))
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    net = trainer.model
    net.load_state_dict(torch.load(trainer.saved_model_file, weights_only=True)["state_dict"])
    return trainer.saved_model_file, net.eval(), data, test_data


def history_cases(data, test_data):
    """[(history tokens, full_sort_predict scores [n_items])] of every test user."""
    model_cases = []
    iid = data.iid_field
    for batch in test_data:
        inter = batch[0]
        seqs, lengths = inter[iid + "_list"], inter["item_length"]
        for seq, n in zip(seqs.tolist(), lengths.tolist()):
            model_cases.append(list(data.id2token(iid, seq[:n])))
    return model_cases


def full_sort(model, test_data):
    with torch.no_grad():
        return torch.cat([model.full_sort_predict(batch[0]) for batch in test_data])


def assert_bundle_equals_model(rec, data, model, test_data, atol=1e-5):
    """Every test user's bundle scores equal full_sort_predict's; top-10 lists identical."""
    expected = full_sort(model, test_data)
    tokens = list(data.field2id_token[data.iid_field])
    histories = history_cases(data, test_data)
    answers = rec.recommend(histories, k=rec.size, exclude_seen=False)
    worst = 0.0
    for history, answer, row in zip(histories, answers, expected):
        got = torch.zeros(len(tokens))
        for token, score in answer:
            got[rec._state.rows[token]] = score
        worst = max(worst, float((got[1:] - row[1:]).abs().max()))
        top = [t for t, _ in answer[:10]]
        assert top == [tokens[i] for i in torch.topk(row[1:], 10).indices.add(1).tolist()]
    assert worst <= atol, worst
    return worst


def fixture_path():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


def embedded_slice(out_dir, n_users, model_dir, name="tiny"):
    """A Games slice of `n_users` users whose `.feat` (`name`) is extracted with the tiny LLM
    in `model_dir` (its sidecar records it, so titles can be added later). Returns the root."""
    from pretrain.extract import extract
    from slices import write_slice

    root = write_slice(str(out_dir), "Games", n_users)
    extract(model_dir, root, ["Games"], name, device="cpu")
    return root


def titles_of(root, dataset="Games"):
    from pretrain.common import read_item_titles

    return dict(zip(*read_item_titles(os.path.join(root, dataset, f"{dataset}.item"))))
