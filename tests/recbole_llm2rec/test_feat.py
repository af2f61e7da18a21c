import os

import numpy as np
import pytest

from recbole_llm2rec.feat import (EMB_FIELD, ID_FIELD, FeatError, align_embeddings, feat_path,
                                  load_aligned, read_feat, write_feat)
from pretrain.common import read_item_titles
from slices import write_slice


@pytest.fixture
def games(tmp_path):
    """Item tokens of a real 40-user Games slice, and random embeddings for them."""
    root = write_slice(str(tmp_path), "Games", 40)
    tokens, _ = read_item_titles(os.path.join(root, "Games", "Games.item"))
    emb = np.random.default_rng(0).normal(size=(len(tokens), 8)).astype(np.float32)
    return os.path.join(root, "Games"), tokens, emb


def test_round_trip_is_exact_and_keyed_by_token(games):
    folder, tokens, emb = games
    path = feat_path(folder, "Games", "rand")
    write_feat(path, tokens, emb, meta={"backbone": "random"})
    got_tokens, got = read_feat(path)
    assert got_tokens == tokens
    np.testing.assert_array_equal(got, emb)  # %.9g round-trips float32 exactly
    with open(path, encoding="utf-8") as fh:
        assert fh.readline() == f"{ID_FIELD}\t{EMB_FIELD}\n"
    assert os.path.isfile(path + ".json")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_alignment_ignores_row_order_and_string_ids(games, tmp_path):
    folder, tokens, emb = games
    order = np.random.default_rng(1).permutation(len(tokens))
    path = str(tmp_path / "shuffled.feat")
    write_feat(path, [tokens[i] for i in order], emb[order])
    id_tokens = ["[PAD]"] + tokens[::-1]  # internal ids in another order than the file
    aligned = load_aligned(path, id_tokens)
    assert aligned.shape == (len(tokens) + 1, 8)
    np.testing.assert_array_equal(aligned[0], np.zeros(8, dtype=np.float32))
    for internal_id, tok in enumerate(id_tokens[1:], start=1):
        np.testing.assert_array_equal(aligned[internal_id], emb[tokens.index(tok)])


def test_missing_items_are_an_error_or_zeros(games, tmp_path):
    folder, tokens, emb = games
    path = str(tmp_path / "partial.feat")
    write_feat(path, tokens[1:], emb[1:])
    with pytest.raises(FeatError, match=r"1 of .* items have no embedding .*" + tokens[0]):
        load_aligned(path, ["[PAD]"] + tokens)
    aligned = load_aligned(path, ["[PAD]"] + tokens, on_missing="zeros")
    assert not aligned[1].any() and aligned[2].any()


def test_wrong_dimension_is_an_error(games, tmp_path):
    _, tokens, emb = games
    path = str(tmp_path / "x.feat")
    write_feat(path, tokens, emb)
    with pytest.raises(FeatError, match="dimension 8, config expects 16"):
        load_aligned(path, ["[PAD]"] + tokens, expected_dim=16)
    lines = open(path, encoding="utf-8").read().splitlines()
    lines[3] = lines[3].rsplit(" ", 1)[0]  # drop one value of the third item
    open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    with pytest.raises(FeatError, match=rf"x.feat:4: field 'item_emb': item '{tokens[2]}' has 7 values, expected 8"):
        read_feat(path)


@pytest.mark.parametrize("bad, message", [
    ("nan", r"field 'item_emb': item '{}' has NaN/inf values"),
    ("abc", r"field 'item_emb' = 'abc': item '{}': not a number")])
def test_bad_values_name_line_and_item(games, tmp_path, bad, message):
    _, tokens, emb = games
    path = str(tmp_path / "x.feat")
    write_feat(path, tokens, emb)
    lines = open(path, encoding="utf-8").read().splitlines()
    lines[2] = lines[2].rsplit(" ", 1)[0] + " " + bad
    open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    with pytest.raises(FeatError, match="x.feat:3: " + message.format(tokens[1])):
        read_feat(path)


def test_duplicate_token_and_bad_header(tmp_path):
    path = tmp_path / "d.feat"
    path.write_text(f"{ID_FIELD}\t{EMB_FIELD}\na\t1 2\nb\t3 4\na\t5 6\n", encoding="utf-8")
    with pytest.raises(FeatError, match=r"d.feat:4: field 'item_id' = 'a': already given on line 2"):
        read_feat(str(path))
    path.write_text("item_id:token\temb:float\na\t1 2\n", encoding="utf-8")
    with pytest.raises(FeatError, match="header must have fields"):
        read_feat(str(path))
    with pytest.raises(FeatError, match="not found"):
        read_feat(str(tmp_path / "absent.feat"))


def test_failed_write_keeps_the_existing_file(games, tmp_path):
    _, tokens, emb = games
    out = tmp_path / "out"
    path = str(out / "keep.feat")
    write_feat(path, tokens, emb)
    before = open(path, encoding="utf-8").read()
    bad = emb.copy()
    bad[5, 2] = np.nan
    with pytest.raises(FeatError, match="NaN"):
        write_feat(path, tokens, bad)
    assert open(path, encoding="utf-8").read() == before
    assert sorted(os.listdir(out)) == ["keep.feat", "keep.feat.json"]


def test_align_rejects_unknown_policy():
    with pytest.raises(FeatError, match="missing_item_emb"):
        align_embeddings("x.feat", ["a"], np.ones((1, 2), np.float32), ["[PAD]", "a"], "mean")
