import errno
import logging
import os
import stat
import time

import numpy as np
import pytest

from recbole_llm2rec import atomic, feat, feat_cache
from recbole_llm2rec.feat import FeatError, feat_path, read_feat, write_feat
from pretrain.common import read_item_titles
from slices import write_slice


def age(path, seconds=60):
    """Set `path`'s mtime `seconds` back, past the racy window, so its cache may be written."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, time.time_ns() - seconds * 10**9))


@pytest.fixture
def games(tmp_path):
    """A `.feat` of random rows for the items of a real 40-user Games slice, older than RACY_S."""
    root = write_slice(str(tmp_path), "Games", 40)
    tokens, _ = read_item_titles(os.path.join(root, "Games", "Games.item"))
    emb = np.random.default_rng(0).normal(size=(len(tokens), 8)).astype(np.float32)
    path = feat_path(os.path.join(root, "Games"), "Games", "rand")
    write_feat(path, tokens, emb)
    age(path)
    return path, tokens, emb


def no_text_parse(monkeypatch):
    def fail(path):
        raise AssertionError(f"parsed the text of {path}")
    monkeypatch.setattr(feat, "_parse_feat", fail)


def test_repeated_read_comes_from_the_cache(games, monkeypatch):
    path, tokens, emb = games
    first = read_feat(path)
    assert os.path.isfile(path + ".cache")
    no_text_parse(monkeypatch)
    got_tokens, got = read_feat(path)
    assert got_tokens == first[0] == tokens
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, first[1])
    np.testing.assert_array_equal(got, emb)


def edit_one_value(path):
    """Change one digit of the first row's values: same size, other content."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    head, values = lines[1].split("\t")
    i = next(k for k, c in enumerate(values) if c in "123456789")
    values = values[:i] + ("2" if values[i] == "1" else "1") + values[i + 1:]
    lines[1] = head + "\t" + values
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    return np.array(values.split(), dtype=np.float32)


@pytest.mark.parametrize("mtime", ["new", "restored"])
def test_same_size_edit_invalidates_the_cache(games, mtime, caplog):
    path, tokens, emb = games
    read_feat(path)
    before = os.stat(path)
    time.sleep(0.05)  # past the file system's timestamp tick
    row = edit_one_value(path)
    if mtime == "new":
        age(path, 30)
    else:  # as `touch -r` or `cp -p` would: the old mtime, only ctime tells
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert after.st_size == before.st_size
    assert (after.st_mtime_ns == before.st_mtime_ns) == (mtime == "restored")
    with caplog.at_level(logging.INFO, logger=feat_cache.__name__):
        got_tokens, got = read_feat(path)
    assert "the .feat changed since it was cached" in caplog.text
    assert got_tokens == tokens
    np.testing.assert_array_equal(got[0], row)
    assert not np.array_equal(got[0], emb[0])
    np.testing.assert_array_equal(got[1:], emb[1:])
    assert feat_cache.load_cache(path, feat_cache.source_key(path)) is not None  # rewritten


def truncate(cache):
    os.truncate(cache, os.path.getsize(cache) // 2)


def flip_last_byte(cache):
    with open(cache, "r+b") as fh:
        fh.seek(-1, os.SEEK_END)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_END)
        fh.write(bytes([byte[0] ^ 0x40]))


def garbage(cache):
    with open(cache, "wb") as fh:
        fh.write(b"not a cache at all")


@pytest.mark.parametrize("damage, reason", [(truncate, "truncated or partly written"),
                                            (flip_last_byte, "checksum mismatch"),
                                            (garbage, "not a .feat cache")])
def test_damaged_cache_is_detected_and_rebuilt(games, damage, reason, caplog):
    path, tokens, emb = games
    read_feat(path)
    cache = path + ".cache"
    size = os.path.getsize(cache)
    damage(cache)
    with caplog.at_level(logging.INFO, logger=feat_cache.__name__):
        got_tokens, got = read_feat(path)
    assert reason in caplog.text
    assert got_tokens == tokens
    np.testing.assert_array_equal(got, emb)
    assert os.path.getsize(cache) == size
    assert feat_cache.load_cache(path, feat_cache.source_key(path)) is not None


def test_read_only_folder_reads_the_text_and_logs_one_line(games, monkeypatch, caplog):
    path, tokens, emb = games
    folder = os.path.dirname(path)
    entries = sorted(os.listdir(folder))
    mode = os.stat(folder).st_mode
    os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        if os.access(folder, os.W_OK):  # root ignores the mode: fail as the OS fails others
            def denied(*args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied")
            monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
        for _ in range(2):
            caplog.clear()
            with caplog.at_level(logging.INFO, logger=feat_cache.__name__):
                got_tokens, got = read_feat(path)
            assert got_tokens == tokens
            np.testing.assert_array_equal(got, emb)
            assert [r.levelname for r in caplog.records] == ["WARNING"]
            assert "binary cache not written (Permission denied)" in caplog.text
        assert sorted(os.listdir(folder)) == entries
    finally:
        os.chmod(folder, mode)


def test_a_file_modified_just_now_is_cached_only_once_older(games):
    path, tokens, emb = games
    write_feat(path, tokens, emb * 2)  # mtime: now
    np.testing.assert_array_equal(read_feat(path)[1], emb * 2)
    assert not os.path.exists(path + ".cache")
    age(path)
    read_feat(path)
    assert os.path.isfile(path + ".cache")


def test_chunked_parse_keeps_rows_lines_and_tolerates_whitespace(games, monkeypatch):
    path, tokens, emb = games
    lines = open(path, encoding="utf-8").read().splitlines()
    monkeypatch.setattr(feat, "CHUNK_CHARS", 250)  # chunks of 3 rows of 8 values
    lines[5] = lines[5].replace(" ", "  ") + " "  # other whitespace: row-by-row path
    lines.insert(3, "")  # a blank line: fewer rows than lines
    open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    got_tokens, got = read_feat(path)
    assert got_tokens == tokens and got.shape == emb.shape
    np.testing.assert_array_equal(got, emb)
    monkeypatch.setattr(feat, "CHUNK_CHARS", 1)  # one row per chunk: the last one ends a chunk
    np.testing.assert_array_equal(read_feat(path)[1], emb)
    monkeypatch.setattr(feat, "CHUNK_CHARS", 250)
    lines[9] = lines[9].rsplit(" ", 1)[0] + " inf"  # line 10: in the third chunk
    open(path, "w", encoding="utf-8").write("\n".join(lines) + "\n")
    with pytest.raises(FeatError, match=rf"rand.feat:10: field 'item_emb': item '{tokens[7]}' "
                                        r"has NaN/inf values"):
        read_feat(path)


def test_rows_shorter_than_the_first_chunks_grow_the_matrix(tmp_path, monkeypatch):
    """The matrix is sized from the first chunk's shortest row; later, shorter rows (here
    all-zero rows, 2 characters a value) must grow it without losing a row."""
    emb = np.zeros((60, 8), dtype=np.float32)
    emb[:3] = np.random.default_rng(2).normal(size=(3, 8))
    path = str(tmp_path / "short.feat")
    write_feat(path, [f"i{k}" for k in range(60)], emb)
    monkeypatch.setattr(feat, "CHUNK_CHARS", 250)  # first chunk: the 3 long rows
    size = os.path.getsize(path)
    long_rows = open(path, encoding="utf-8").read().splitlines()[1:4]
    assert size // min(len(r) + 1 for r in long_rows) + 1 < 60  # the first bound is too small
    tokens, got = read_feat(path)
    assert tokens == [f"i{k}" for k in range(60)] and got.flags.c_contiguous
    np.testing.assert_array_equal(got, emb)
