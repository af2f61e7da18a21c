import collections
import os

import pytest

from dataset_atomic import ml100k
from recbole_check import recbole_counts


def _rows(path):
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n").split("\t") for line in fh]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("data"))
    return out, ml100k.convert(out)


def test_convert_keeps_every_interaction_sorted_by_user_then_time(converted):
    out, folder = converted
    assert folder == os.path.join(out, "ml-100k")
    inter = _rows(os.path.join(folder, "ml-100k.inter"))
    item = _rows(os.path.join(folder, "ml-100k.item"))
    assert inter[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    assert item[0] == ["item_id:token", "title:token_seq"]

    src = _rows(os.path.join(ml100k.source_dir(), "ml-100k.inter"))[1:]
    assert collections.Counter((u, i, t) for u, i, _, t in src) == \
        collections.Counter(map(tuple, inter[1:]))
    assert len(inter) - 1 == 100000
    assert len({r[0] for r in inter[1:]}) == 943
    users = [int(r[0]) for r in inter[1:]]
    assert users == sorted(users)
    for prev, cur in zip(inter[1:], inter[2:]):
        if prev[0] == cur[0]:
            assert float(prev[2]) <= float(cur[2])

    titles = dict(item[1:])
    assert len(titles) == len(item) - 1 == 1682
    assert titles["1"] == "Toy Story"
    assert titles["111"] == "Truth About Cats & Dogs, The"
    assert [int(r[0]) for r in item[1:]] == list(range(1, 1683))
    assert recbole_counts(out, "ml-100k", split=False) == (943, 1682)


def test_convert_is_idempotent(converted):
    out, folder = converted
    path = os.path.join(folder, "ml-100k.inter")
    os.utime(path, (1, 1))
    assert ml100k.convert(out) == folder
    assert os.path.getmtime(path) == 1
