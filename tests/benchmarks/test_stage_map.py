import json
import os

import numpy as np
import pytest

from benchmarks.stage_map import (copurchase_groups, item_set, main, neighbour_rate, stage_map,
                                  user_items)
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import write_feat
from slices import write_slice

INTER = """user_id:token\titem_id:token\ttimestamp:float
u1\ta\t1
u1\tb\t2
u1\tc\t3
u2\ta\t1
u2\tb\t2
u2\tc\t3
u3\ta\t1
u3\tb\t2
u3\td\t3
u4\te\t1
u4\tf\t2
u5\te\t1
u5\tf\t2
u5\tg\t3
u6\te\t1
u6\tg\t2
u7\th\t1
u7\ta\t2
"""


def test_copurchase_groups_by_hand(tmp_path):
    path = tmp_path / "t.inter"
    path.write_text(INTER, encoding="utf-8")
    users = user_items(str(path))
    # a: 4 users, b and e: 3; a's partners b (3 users), c (2), d, h (1); e's f, g (2 each)
    assert copurchase_groups(users, 2, 3) == [["a", "b", "c"], ["e", "f", "g"]]
    assert copurchase_groups(users, 5, 3) == [["a", "b", "c"], ["e", "f", "g"]]  # no third
    assert copurchase_groups(users, 2, 3, allowed=set("acdefgh")) == [["a", "c", "d"],
                                                                      ["e", "f", "g"]]
    assert copurchase_groups(users, 1, 5) == [["a", "b", "c", "d", "h"]]


def test_item_set_is_groups_then_a_seeded_draw():
    groups = [["a", "b"], ["e"]]
    items = item_set(groups, list("abcdefgh"), 3, seed=0)
    assert items[:3] == ["a", "b", "e"] and len(set(items)) == 6
    assert set(items[3:]) <= set("cdfgh")
    assert item_set(groups, list("hgfedcba"), 3, seed=0) == items  # candidate order is irrelevant


def test_neighbour_rate_by_hand():
    rows = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [1, 0.05]])
    # k=1: rows 0 and 1 are nearest to the ungrouped row 4, rows 2 and 3 to each other
    assert neighbour_rate(rows, [["a", "b"], ["c", "d"]], 1) == 0.5
    assert neighbour_rate(rows[:4], [["a", "b"], ["c", "d"]], 1) == 1.0


@pytest.fixture
def games(tmp_path):
    root = write_slice(str(tmp_path), "Games", 120)
    inter = os.path.join(root, "Games", "Games.inter")
    return tmp_path, inter


def test_stage_map_draws_every_stage_and_scores_grouped_embeddings(games):
    tmp_path, inter = games
    users = user_items(inter)
    items = sorted({i for s in users.values() for i in s})
    groups = copurchase_groups(users, 3, 4)
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(items), 16)).astype(np.float32)
    grouped = noise.copy()
    for g, members in enumerate(groups):
        centre = rng.normal(size=16) * 10
        for tok in members:
            grouped[items.index(tok)] += centre.astype(np.float32)
    paths = {}
    for name, matrix in (("backbone", noise), ("ic", grouped)):
        paths[name] = str(tmp_path / f"Games.{name}.feat")
        write_feat(paths[name], items, matrix)
    out = str(tmp_path / "map" / "stage_map.png")
    record = stage_map([("backbone", paths["backbone"]), ("ic", paths["ic"])], inter, out,
                       n_groups=3, group_size=4, n_other=50, k=3, seed=0)
    assert record["groups"] == groups
    assert record["items"][:12] == [i for g in groups for i in g] and len(record["items"]) == 62
    assert record["neighbour_rate"]["ic"] == 1.0
    assert record["neighbour_rate"]["backbone"] < 0.5
    assert os.path.getsize(out) > 5000
    with open(out + ".json", encoding="utf-8") as fh:
        assert json.load(fh)["neighbour_rate"] == record["neighbour_rate"]


def test_cli_reads_name_path_pairs_and_rejects_others(games, capsys):
    tmp_path, inter = games
    users = user_items(inter)
    items = sorted({i for s in users.values() for i in s})
    path = str(tmp_path / "Games.x.feat")
    write_feat(path, items, np.random.default_rng(1).normal(size=(len(items), 8)))
    out = str(tmp_path / "m.png")
    main(["--data_path", str(tmp_path), "--dataset", "Games", "--feat", f"x={path}",
          "--out", out, "--groups", "2", "--group_size", "3", "--items", "20"])
    assert "m.png: x " in capsys.readouterr().out and os.path.isfile(out)
    with pytest.raises(InputError, match="expected NAME=PATH"):
        main(["--data_path", str(tmp_path), "--dataset", "Games", "--feat", path, "--out", out])
