"""Shared data for the model tests: a real Games slice with a random `.feat` for its items."""
import os

import numpy as np
import pytest

from pretrain.common import read_item_titles
from recbole_llm2rec.feat import feat_path, write_feat
from slices import write_slice


@pytest.fixture(scope="module")
def games_root(tmp_path_factory):
    """A real 300-user Games slice with a random 24-dim `.feat` ("rand") for its items."""
    root = write_slice(str(tmp_path_factory.mktemp("data")), "Games", 300)
    folder = os.path.join(root, "Games")
    tokens, _ = read_item_titles(os.path.join(folder, "Games.item"))
    emb = np.random.default_rng(0).normal(size=(len(tokens), 24))
    write_feat(feat_path(folder, "Games", "rand"), tokens, emb)
    return root
