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
    from slices import write_random_feat, write_slice

    return write_random_feat(write_slice(str(tmp_path_factory.mktemp("data")), "Games", 300),
                             "Games", 24)
