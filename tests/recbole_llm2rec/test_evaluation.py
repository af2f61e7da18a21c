"""recbole_llm2rec.evaluation on tiny data with hand-checked values: the cold-start split, item
groups by training count, the shuffled-history test and uni100 negatives."""
import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction

from recbole_llm2rec.evaluation import evaluate_test, shuffle_histories, shuffle_item_sequences
from recbole_llm2rec.evaluation import cold_start as cs
from recbole_llm2rec.evaluation.groups import count_groups, training_counts
from recbole_llm2rec.evaluation.sampled import sample_negatives
from recbole_llm2rec.quick_start import build_config, run
from slices import write_slice

# user: (item, timestamp) in FILE order; u4's lines are scrambled and hold equal timestamps
TINY = {
    "u1": [("i01", 1), ("i07", 2), ("i02", 3), ("i03", 4), ("i04", 5)],
    "u2": [("i02", 1), ("i03", 2), ("i04", 3), ("i05", 4), ("i08", 5)],
    "u3": [("i07", 1), ("i08", 2), ("i01", 3), ("i09", 4)],
    "u4": [("i09", 2), ("i07", 3), ("i05", 1), ("i10", 3), ("i06", 1)],
    "u5": [("i01", 1), ("i02", 2), ("i03", 3), ("i08", 4), ("i07", 5)],
    "u6": [("i10", 1), ("i09", 2), ("i08", 3)],
}
SMALL = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1, "epochs": 1,
         "train_batch_size": 64, "show_progress": False}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny"))
    os.makedirs(os.path.join(root, "Tiny"))
    with open(os.path.join(root, "Tiny", "Tiny.inter"), "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        fh.writelines(f"{u}\t{i}\t{t}\n" for u, seq in TINY.items() for i, t in seq)
    return root


@pytest.fixture(scope="module")
def tiny_cold(tiny_root):
    """The cold-start version of Tiny (20% of 10 items, seed 0), loaded through RecBole."""
    name = cs.write_cold_start_dataset(tiny_root, "Tiny", fraction=0.2, seed=0)
    config, _ = build_config("SASRec", name, config_dict={
        **SMALL, **cs.cold_start_config(tiny_root, name)})
    dataset = create_dataset(config)
    return name, dataset, data_preparation(config, dataset)


def test_cold_items_are_a_seeded_draw_of_sorted_tokens():
    tokens = [f"i{k:02d}" for k in range(1, 11)]
    # default_rng(0).choice(10, 2, replace=False) = [7, 6] -> the 8th and 7th sorted tokens
    assert cs.choose_cold_items(reversed(tokens), 0.2, seed=0) == ["i07", "i08"]
    assert cs.choose_cold_items(tokens, 0.2, seed=1) == ["i05", "i06"]  # draw [4, 5]
    assert cs.choose_cold_items(tokens, 0.1, seed=0) == ["i09"]  # draw [8]: floor(0.1 * 10) = 1


def test_cold_start_split_by_hand(tiny_root, tiny_cold):
    name, dataset, _ = tiny_cold
    manifest = cs.read_manifest(tiny_root, name)
    assert name == "Tiny-cold20s0"
    assert manifest["cold_items"] == ["i07", "i08"]
    # u3 keeps only i01, i09 once i07/i08 are gone: dropped (a 2-item user's last item would train)
    assert manifest["dropped_users"] == ["u3"]
    assert manifest["cold_test_cases"] == 3  # u2 (i08), u5 (i07), u6 (i08)
    with open(os.path.join(tiny_root, name, f"{name}.inter"), encoding="utf-8") as fh:
        rows = [line.split("\t")[:2] for line in fh.readlines()[1:]]
    kept = {}
    for user, item in rows:
        kept.setdefault(user, []).append(item)
    assert kept == {"u1": ["i01", "i02", "i03", "i04"],
                    "u2": ["i02", "i03", "i04", "i05", "i08"],
                    "u4": ["i05", "i06", "i09", "i10"],  # time order, ties in file order
                    "u5": ["i01", "i02", "i03", "i07"],
                    "u6": ["i10", "i09", "i08"]}
    # the whole catalogue stays rankable: 10 items + [PAD]
    assert dataset.item_num == 11


def _tokens(dataset, ids):
    return [dataset.id2token(dataset.iid_field, int(i)) for i in ids]


def test_no_training_or_validation_sequence_contains_a_cold_item(tiny_cold):
    name, dataset, (train, valid, test) = tiny_cold
    item_list = dataset.iid_field + dataset.config["LIST_SUFFIX"]
    for split in (train._dataset, valid._dataset):
        seen = set(_tokens(dataset, split.inter_feat[dataset.iid_field]))
        seen |= set(_tokens(dataset, split.inter_feat[item_list].flatten()))
        assert not seen & {"i07", "i08"}
    inter = test._dataset.inter_feat
    users = [dataset.id2token(dataset.uid_field, int(u)) for u in inter[dataset.uid_field]]
    targets = dict(zip(users, _tokens(dataset, inter[dataset.iid_field])))
    assert targets == {"u1": "i04", "u2": "i08", "u4": "i10", "u5": "i07", "u6": "i08"}
    histories = set(_tokens(dataset, inter[item_list].flatten()))
    assert not histories & {"i07", "i08"}


def test_cold_test_set_is_exactly_the_cold_target_cases(tiny_cold):
    name, dataset, (train, valid, test) = tiny_cold
    cold = cs.cold_item_ids(dataset, ["i07", "i08"])
    torch.manual_seed(0)
    from recbole.model.sequential_recommender import SASRec

    model = SASRec(train.config, train._dataset)
    report = evaluate_test(model, dataset, train, test, analyses=(), cold_items=cold)
    assert report["full"]["cold"]["n"] == 3 and report["full"]["warm"]["n"] == 2
    assert report["group_sizes"] == {"cold": 2, "warm": 8}
    # training counts on the split: first items count, validation/test items do not
    counts = training_counts(train._dataset)
    by_token = {dataset.id2token(dataset.iid_field, i): int(c) for i, c in enumerate(counts) if i}
    assert by_token == {"i01": 2, "i02": 3, "i03": 1, "i04": 1, "i05": 1, "i06": 1, "i07": 0,
                        "i08": 0, "i09": 1, "i10": 1}


def test_head_tail_split_of_ten_items():
    #                   PAD  1  2  3  4  5  6  7  8  9  10
    counts = np.array([0, 5, 3, 3, 9, 0, 1, 7, 2, 2, 4])
    groups = count_groups(counts)
    # by count: 4(9) 7(7) 1(5) 10(4) 2(3) 3(3) 8(2) 9(2) 6(1) 5(0); ties by id
    assert groups["popular"].tolist() == [4, 7]                    # 20% of 10
    assert groups["unpopular"].tolist() == [1, 2, 3, 5, 6, 8, 9, 10]
    assert groups["frequent"].tolist() == [1, 4, 7]                # floor(35% of 10) = 3
    assert groups["rare"].tolist() == [5, 6, 9]


def test_shuffle_permutes_items_within_length_only():
    seq = torch.tensor([[11, 12, 13, 14, 0, 0], [21, 22, 23, 0, 0, 0]])
    lengths = torch.tensor([4, 3])
    keys = torch.tensor([7, 8])
    out = shuffle_item_sequences(seq, lengths, seed=0, keys=keys)
    # default_rng([0, 7]).permutation(4) = [3, 0, 2, 1];
    # default_rng([0, 8]).permutation(3) = [0, 2, 1]
    assert out.tolist() == [[14, 11, 13, 12, 0, 0], [21, 23, 22, 0, 0, 0]]
    assert seq[0, 0] == 11  # input untouched
    # the same user gets the same permutation in another batch
    alone = shuffle_item_sequences(seq[1:], lengths[1:], seed=0, keys=keys[1:])
    assert alone.tolist() == out[1:].tolist()


def test_shuffled_history_changes_sasrec_scores_and_keeps_timestamps(tiny_cold):
    name, dataset, (train, valid, test) = tiny_cold
    from recbole.model.sequential_recommender import SASRec

    torch.manual_seed(0)
    model = SASRec(train.config, train._dataset).eval()
    config = train.config
    inter = Interaction({
        config["USER_ID_FIELD"]: torch.tensor([7]),
        "item_id_list": torch.tensor([[1, 2, 3, 4, 0, 0, 0, 0, 0, 0]]),
        "timestamp_list": torch.tensor([[1., 2., 3., 4., 0, 0, 0, 0, 0, 0]]),
        "item_length": torch.tensor([4]),
    })
    shuffled = shuffle_histories(inter, config, seed=0)
    assert shuffled["item_id_list"][0, :4].tolist() == [4, 1, 3, 2]
    assert torch.equal(shuffled["timestamp_list"], inter["timestamp_list"])
    with torch.no_grad():
        before, after = model.full_sort_predict(inter), model.full_sort_predict(shuffled)
    # SASRec reads positions: the same items in another order score differently
    assert (before - after).abs().max() > 1e-3


def test_uni100_negatives_avoid_every_item_of_the_sequence(tmp_path):
    root = write_slice(str(tmp_path), "Games", 120)
    config, _ = build_config("SASRec", "Games", config_dict={**SMALL, "data_path": root})
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    negatives = sample_negatives(dataset, 100, seed=0)
    sequences = {}
    with open(os.path.join(root, "Games", "Games.inter"), encoding="utf-8") as fh:
        for line in fh.readlines()[1:]:
            user, item = line.split("\t")[:2]
            sequences.setdefault(user, set()).add(item)
    for user, items in sequences.items():
        uid = dataset.token2id(dataset.uid_field, user)
        row = negatives[uid]
        assert len(set(row.tolist())) == 100 and 0 not in row
        # the user's first item is excluded too (RecBole's own sampler can draw it)
        assert not set(_tokens(dataset, row)) & items
    assert np.array_equal(negatives, sample_negatives(dataset, 100, seed=0))
    assert not np.array_equal(negatives, sample_negatives(dataset, 100, seed=1))
    # each test target is among its candidates: its rank is taken against the 100 negatives only
    targets = test._dataset.inter_feat
    for uid, target in zip(targets[dataset.uid_field].numpy(), targets[dataset.iid_field].numpy()):
        assert target not in negatives[uid]


def test_full_ranking_metrics_equal_recboles(tmp_path):
    root = write_slice(str(tmp_path), "Games", 150)
    out = run("SASRec", "Games", config_dict={**SMALL, "epochs": 2, "data_path": root,
                                              "checkpoint_dir": str(tmp_path / "saved")})
    data, train, _, test = out["data"]
    report = evaluate_test(out["model"], data, train, test)
    for metric, value in out["test_result"].items():
        assert report["full"]["all"][metric] == pytest.approx(value, abs=1e-4)
    assert report["full"]["all"]["n"] == 150
    groups = report["full"]
    assert groups["popular"]["n"] + groups["unpopular"]["n"] == 150
    assert report["uni100"]["all"]["recall@10"] >= report["full"]["all"]["recall@10"]
    assert report["random"]["uni100"]["recall@10"] == pytest.approx(10 / 101)
    assert set(report) >= {"full", "shuffled", "uni100", "random"}


def test_checkpoint_cli_reports_warm_and_cold(tiny_root, tiny_cold, tmp_path, monkeypatch, capsys):
    import json

    from recbole_llm2rec import quick_start
    from recbole_llm2rec.evaluation import __main__ as cli

    name = tiny_cold[0]
    out = run("SASRec", name, config_dict={**SMALL, **cs.cold_start_config(tiny_root, name),
                                           "checkpoint_dir": str(tmp_path), "topk": [5],
                                           "valid_metric": "Recall@5"})  # 10 items
    loaded = (out["config"], out["model"], *out["data"])
    # the checkpoint loader is quick_start's; here the run's own objects stand in for its result
    monkeypatch.setattr(quick_start, "load_data_and_model",
                        lambda path: loaded if path == out["model_file"] else None, raising=False)
    cli.main([out["model_file"], "--analyses", "popularity", "--out", str(tmp_path / "r.json")])
    report = json.loads((tmp_path / "r.json").read_text())
    assert json.loads(capsys.readouterr().out) == report
    assert report["full"]["cold"]["n"] == 3 and report["full"]["warm"]["n"] == 2
    assert set(report["full"]) == {"all", "popular", "unpopular", "cold", "warm"}
    with pytest.raises(Exception, match="checkpoint not found"):
        cli.main([str(tmp_path / "missing.pth")])


def test_metrics_average_over_tied_positions():
    from recbole_llm2rec.evaluation.ranking import metrics_from_ranks

    # case 1: rank 0, no tie; case 2: 9 items above and 1 tie -> position 9 or 10;
    # case 3: rank 12 -> outside the top 10
    m = metrics_from_ranks([0, 9, 12], ties=[0, 1, 0], topk=(10,))
    assert m["recall@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 0.5 / np.log2(11)) / 3)
    assert metrics_from_ranks([0, 9, 12], topk=(10,))["recall@10"] == pytest.approx(2 / 3)
    assert metrics_from_ranks([], topk=(10,)) == {"recall@10": None, "ndcg@10": None, "n": 0}


def test_identical_items_tie_instead_of_favouring_the_target(tiny_cold):
    name, dataset, (train, valid, test) = tiny_cold
    from recbole_llm2rec.evaluation.ranking import rank_targets

    class Constant(torch.nn.Module):  # every item scores the same: all tie
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def full_sort_predict(self, interaction):
            return torch.zeros(len(interaction), dataset.item_num) + self.w

    ranked = rank_targets(Constant(), test)
    assert ranked["rank"].tolist() == [0] * 5 and ranked["ties"].tolist() == [9] * 5
    from recbole_llm2rec.evaluation.ranking import metrics_from_ranks

    # 10 real items, all tied: the target is at each of the 10 positions with probability 1/10
    metrics = metrics_from_ranks(ranked["rank"], ranked["ties"], (5,))
    assert metrics["recall@5"] == pytest.approx(0.5)


def test_a_table_extracted_after_the_split_is_linked_when_the_split_is_reused(tmp_path):
    src = tmp_path / "src"
    os.makedirs(src / "Tiny")
    with open(src / "Tiny" / "Tiny.inter", "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        fh.writelines(f"{u}\t{i}\t{t}\n" for u, seq in TINY.items() for i, t in seq)
    name = cs.write_cold_start_dataset(str(src), "Tiny", fraction=0.2, seed=0)
    assert not os.path.exists(src / name / f"{name}.late.feat")
    (src / "Tiny" / "Tiny.late.feat").write_text("item_id:token\tlate:float_seq\n", "utf-8")
    assert cs.write_cold_start_dataset(str(src), "Tiny", fraction=0.2, seed=0) == name
    assert (src / name / f"{name}.late.feat").read_text("utf-8").startswith("item_id:token")
