"""RecBole interop: command-line values parsed as literals (never eval'd), and checkpoints
written by our trainers reloaded like RecBole's `load_data_and_model` does."""
import os

import pytest
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.quick_start import (build_config, literal_value, load_data_and_model,
                                         parse_overrides)
from slices import FIXTURES, write_random_feat, write_slice


def test_overrides_are_parsed_as_literals_never_evaluated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    attack = "__import__('os').system('touch PWNED')"
    overrides = parse_overrides([
        f"--x={attack}", "--learning_rate=1e-3", "--epochs=3", "--topk=[10,20]",
        "--show_progress=False", "--reproducibility=true", "--text_emb=minilm",
        "--eval_args={'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'full'}",
        "--user_inter_num_interval=[0,40)", "--adapter_hidden_size=None",
        "--data_path=" + FIXTURES])
    config, _ = build_config("SASRec", "Games", overrides=overrides)
    assert config["x"] == attack and not (tmp_path / "PWNED").exists()
    assert config["learning_rate"] == 0.001 and config["epochs"] == 3
    assert config["topk"] == [10, 20] and config["show_progress"] is False
    assert config["reproducibility"] is True and config["text_emb"] == "minilm"
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["user_inter_num_interval"] == "[0,40)" and config["adapter_hidden_size"] is None
    # config_dict strings went through RecBole's eval() too
    config, _ = build_config("SASRec", "Games", config_dict={"x": attack, "data_path": FIXTURES})
    assert config["x"] == attack and not (tmp_path / "PWNED").exists()


def test_recbole_reads_titles_that_begin_with_a_quote_literally():
    """Beauty has titles that begin with '"' (e.g. i11873 '"WOW! Your Skin Looks Great!" ::');
    RecBole's pandas read of the `.item` file took them as CSV quoting and failed."""
    config, _ = build_config("SASRec", "Beauty", config_dict={
        "data_path": FIXTURES,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}})
    data = create_dataset(config)
    with open(os.path.join(FIXTURES, "Beauty", "Beauty.item"), encoding="utf-8") as fh:
        titles = dict(line.rstrip("\n").split("\t") for line in fh.readlines()[1:])
    quoted = [item for item, title in titles.items() if title.startswith('"')]
    assert len(quoted) >= 2
    assert data.item_num == len(titles) + 1  # every row, plus RecBole's padding item
    vocab = data.field2id_token["title"]
    for item in quoted:
        ids = data.item_feat["title"][data.token2id("item_id", item)].tolist()
        assert [vocab[i] for i in ids if i] == titles[item].split(" ")


@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("-2", -2), ("[10, 20]", [10, 20]), ("(1, 2)", (1, 2)), ("None", None),
    ("FALSE", False), ("True", True), ("{'a': [1]}", {"a": [1]}), ("'quoted'", "quoted"),
    ("{1, 2}", "{1, 2}"), ("1+2j", "1+2j"), ("2**10", "2**10"), ("saved/", "saved/"),
    ("open('x')", "open('x')"),
])
def test_literal_value_keeps_recbole_results_for_literals(text, value):
    assert literal_value(text) == value and type(literal_value(text)) is type(value)


def test_malformed_argument_is_an_input_error():
    with pytest.raises(InputError, match="unrecognised argument 'epochs=3'"):
        parse_overrides(["epochs=3"])


TINY = {"hidden_size": 16, "inner_size": 32, "embedding_size": 16, "n_layers": 1, "n_heads": 2,
        "epochs": 1, "train_batch_size": 256, "text_emb": "rand", "show_progress": False}


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    """A 150-user Games slice with a random 16-dim `.feat` for its items."""
    return write_random_feat(write_slice(str(tmp_path_factory.mktemp("data")), "Games", 150),
                             "Games", 16)


def full_sort_scores(model, test_data):
    """Scores of every item for each test user, batch after batch. Returns [users, items]."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model.full_sort_predict(batch[0]) for batch in test_data])


@pytest.mark.parametrize("model", ["TextSASRec", "SASRec"])
def test_load_data_and_model_reproduces_the_trained_model(model, games, tmp_path):
    config, cls = build_config(model, "Games", config_dict={
        **TINY, "data_path": games, "checkpoint_dir": str(tmp_path)})
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(
        config, cls(config, train_data._dataset))
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    tested = trainer.evaluate(test_data, load_best_model=True)
    expected = full_sort_scores(trainer.model, test_data)

    config2, net, dataset, train2, valid2, test2 = load_data_and_model(trainer.saved_model_file)
    assert type(net) is cls and config2["model"] == model
    assert config2["hidden_size"] == 16 and config2["data_path"] == config["data_path"]
    assert dataset.inter_num == data.inter_num
    assert train2._dataset.inter_num == train_data._dataset.inter_num
    assert torch.equal(full_sort_scores(net, test2), expected)
    retested = get_trainer(config2["MODEL_TYPE"], model)(config2, net).evaluate(
        test2, load_best_model=False)
    assert dict(retested) == dict(tested)


def test_a_recbole_pickled_checkpoint_is_refused_in_one_line(games, tmp_path):
    config = Config("SASRec", "Games",
                    config_dict={"data_path": games, "train_neg_sample_args": None})
    path = str(tmp_path / "recbole.pth")
    torch.save({"config": config, "state_dict": {}}, path, pickle_protocol=4)  # as RecBole does
    with pytest.raises(InputError) as err:
        load_data_and_model(path)
    message = str(err.value)
    assert message.startswith(path) and "not a checkpoint written by recbole_llm2rec" in message
    assert "\n" not in message
    plain = str(tmp_path / "plain.pth")
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(InputError, match="not a checkpoint written by recbole_llm2rec"):
        load_data_and_model(plain)
