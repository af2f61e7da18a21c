"""RecBole interop: command-line values parsed as literals (never eval'd), and checkpoints
written by our trainers reloaded like RecBole's `load_data_and_model` does."""
import json
import logging
import os
import subprocess
import sys

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


# Reads the items' titles and years of `data_path`'s Beauty with stock RecBole (its Config);
# prints them as JSON. Run in this process (plugin imported) and in a fresh one (not imported).
STOCK_READ = """
import json, logging, sys
from recbole.config import Config
from recbole.data import create_dataset
logging.disable(logging.WARNING)
config = Config("SASRec", "Beauty", config_dict={"data_path": DATA_PATH,
    "train_neg_sample_args": None, "load_col": {
    "inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "year"]}})
data = create_dataset(config)
titles, years = data.field2id_token["title"], data.field2id_token["year"]
RESULT = {"plugin imported": "recbole_llm2rec" in sys.modules, "items": {
    item: [[titles[t] for t in data.item_feat["title"][i].tolist() if t],
           years[int(data.item_feat["year"][i])]]
    for item, i in data.field2token_id["item_id"].items() if i}}
print(json.dumps(RESULT))
"""


def beauty_with_csv_quotes(tmp_path):
    """A real 20-user Beauty slice whose `.item` gains a year column, one title in CSV quotes
    ('"Quoted whole"' style) and one quoted title holding a tab. Returns (data_path, first
    item, second item, the second's .item line)."""
    root = write_slice(str(tmp_path / "data"), "Beauty", 20)
    path = os.path.join(root, "Beauty", "Beauty.item")
    with open(path, encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh]
    (first, title1), (second, title2) = rows[1], rows[2]
    rows[1][1] = f'"{title1}"'
    words = title2.split(" ")
    rows[2][1] = f'"{words[0]}\t{" ".join(words[1:])}"'
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("item_id:token\ttitle:token_seq\tyear:token\n")
        fh.writelines("\t".join(row + [str(2000 + n)]) + "\n" for n, row in enumerate(rows[1:]))
    return root, (first, title1.split(" ")), (second, words), 3


def test_stock_recbole_reads_csv_quotes_as_without_the_plugin(tmp_path):
    """The plugin's literal quotes are for its own runs: stock RecBole, in the same process,
    reads CSV quotes (and a tab inside them) as it does in a process without the plugin."""
    root, (first, words1), (second, words2), _ = beauty_with_csv_quotes(tmp_path)
    here = {"DATA_PATH": root}
    try:
        exec(STOCK_READ.replace("print(json.dumps(RESULT))", ""), here)
    finally:  # the script silences logging; later tests in this process read their logs
        logging.disable(logging.NOTSET)
    fresh = subprocess.run([sys.executable, "-c", f"DATA_PATH = {root!r}\n" + STOCK_READ],
                           capture_output=True, text=True, timeout=300, check=True)
    alone = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert here["RESULT"]["plugin imported"] and not alone["plugin imported"]
    assert here["RESULT"]["items"] == alone["items"]
    assert alone["items"][first] == [words1, "2000"]  # the quotes are CSV quoting
    assert alone["items"][second] == [[f"{words2[0]}\t{words2[1]}"] + words2[2:], "2001"]


def test_plugin_runs_refuse_a_quoted_value_holding_a_tab(tmp_path):
    root, _, (second, words2), line = beauty_with_csv_quotes(tmp_path)
    path = os.path.join(root, "Beauty", "Beauty.item")
    config, _ = build_config("SASRec", "Beauty", config_dict={"data_path": root, "load_col": {
        "inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title", "year"]}})
    with pytest.raises(InputError) as err:
        create_dataset(config)
    value = '"' + words2[0]
    assert str(err.value) == (
        f"{path}:{line}: field 'title' = {value!r}: starts with '\"' and has no closing "
        f"quote before the next tab: pandas' CSV quoting (stock RecBole) reads the tab as part "
        f"of the value, this reader and the plugin's runs as a separator; remove the quote or "
        f"the tab")


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
