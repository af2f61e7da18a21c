"""Puts tests/ on sys.path so every test can `from slices import write_slice` (real data slices);
the `games_root` fixture."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def games_root(tmp_path_factory):
    """A real 300-user Games slice with a random 24-dim `.feat` ("rand") for its items: the
    model tests' data. (Here, not in a tests/<dir>/conftest.py: a second module named
    `conftest` would shadow tests/pretrain/conftest.py for `from conftest import ...`.)"""
    import numpy as np

    from pretrain.common import read_item_titles
    from recbole_llm2rec.feat import feat_path, write_feat
    from slices import write_slice

    root = write_slice(str(tmp_path_factory.mktemp("data")), "Games", 300)
    folder = os.path.join(root, "Games")
    tokens, _ = read_item_titles(os.path.join(folder, "Games.item"))
    emb = np.random.default_rng(0).normal(size=(len(tokens), 24))
    write_feat(feat_path(folder, "Games", "rand"), tokens, emb)
    return root
