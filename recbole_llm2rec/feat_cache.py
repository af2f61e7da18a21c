"""The binary cache of a `.feat` file: `<file>.cache` beside it, so a repeated read skips the text.

The text `.feat` stays the source of truth; the cache is a copy that is used only while it
provably still matches it:

- It records the `.feat`'s identity when it was made, `os.stat` (links followed): size,
  mtime_ns, ctime_ns and inode, and is used only while all four are unchanged. Any write to the
  file moves mtime and ctime; tools that set mtime back (`touch -r`, `cp -p`, `rsync -t`) cannot
  set ctime, and a replaced file (write + rename) has another inode. A content hash would mean
  reading the whole text on every read, the very cost the cache removes.
- A `.feat` modified less than `RACY_S` seconds before it is read is not cached (git's "racy"
  rule): a same-size rewrite within the file system's timestamp granularity could keep its mtime.
- The cache records its exact length and a CRC-32 of its payload, both checked on every load: a
  truncated, partial or damaged cache is ignored (one log line) and rewritten.
- Writing is temp file + rename, so a reader never sees half a cache; a folder that cannot be
  written (read-only dataset) only costs the speed-up, with one log line per read.

Layout: `MAGIC`, the header length (uint64, little-endian), a JSON header {source, rows, dim,
tokens_bytes, crc32}, the tokens (UTF-8, joined by newlines), zero padding to a multiple of 64
bytes, then the rows x dim matrix as little-endian float32.
"""
import json
import logging
import os
import struct
import time
import zlib

import numpy as np

from recbole_llm2rec.atomic import atomic_write_bytes

SUFFIX = ".cache"
MAGIC = b"recbole-llm2rec feat cache v1\n"
RACY_S = 2
_ALIGN = 64
_BLOCK = 1 << 24
_MAX_HEADER = 1 << 16

logger = logging.getLogger(__name__)


class _Unusable(Exception):
    """The cache exists but does not match its `.feat`, or is damaged."""


def cache_path(feat):
    """Path of the binary cache of `.feat` file `feat`."""
    return feat + SUFFIX


def wait_until_cacheable(feat):
    """Sleep until `feat` was last modified `RACY_S` seconds ago, so that its next read writes
    the cache (benchmarks that time a cold read, then a cached one)."""
    time.sleep(max(0.0, RACY_S + 0.1 - (time.time() - os.path.getmtime(feat))))


def source_key(feat):
    """The identity of `feat` that a cache must match: {size, mtime_ns, ctime_ns, ino}."""
    st = os.stat(feat)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "ino": st.st_ino}


def load_cache(feat, key):
    """(tokens, float32 [N, D]) from `feat`'s cache if it matches `key` and is intact, else None."""
    path = cache_path(feat)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    except OSError as err:
        logger.info(f"{path}: not readable ({err.strerror or err}); reading the text file")
        return None
    with fh:
        try:
            return _load(fh, key)
        except (_Unusable, OSError, ValueError, KeyError, TypeError, struct.error) as err:
            logger.info(f"{path}: ignored ({err}); reading the text file")
            return None


def _load(fh, key):
    if fh.read(len(MAGIC)) != MAGIC:
        raise _Unusable("not a .feat cache of this version")
    (size,) = struct.unpack("<Q", fh.read(8))
    if size > _MAX_HEADER:
        raise _Unusable("header too long")
    head = json.loads(fh.read(size))
    if head["source"] != key:
        raise _Unusable("the .feat changed since it was cached")
    rows, dim, tokens_bytes = int(head["rows"]), int(head["dim"]), int(head["tokens_bytes"])
    offset = _padded(len(MAGIC) + 8 + size + tokens_bytes)
    expected, actual = offset + rows * dim * 4, os.fstat(fh.fileno()).st_size
    if actual != expected:
        raise _Unusable(f"{actual} bytes, expected {expected} (truncated or partly written)")
    blob = fh.read(tokens_bytes)
    crc = zlib.crc32(blob)
    tokens = blob.decode("utf-8").split("\n")
    if len(tokens) != rows:
        raise _Unusable(f"{len(tokens)} tokens for {rows} rows")
    fh.seek(offset)
    matrix = np.empty((rows, dim), dtype="<f4")
    view = memoryview(matrix).cast("B")
    done = 0
    while done < len(view):
        got = fh.readinto(view[done:done + _BLOCK])
        if not got:
            raise _Unusable("ends early")
        crc = zlib.crc32(view[done:done + got], crc)
        done += got
    if crc != head["crc32"]:
        raise _Unusable("checksum mismatch (damaged)")
    return tokens, matrix.astype(np.float32, copy=False)


def store_cache(feat, key, tokens, matrix):
    """Write `feat`'s cache of (tokens, matrix [N, D]) read while `feat` had identity `key`.

    Nothing is written when `feat` changed since `key` was taken or is younger than RACY_S
    seconds; a folder that cannot be written gets one log line.
    """
    now = source_key(feat)
    if now != key:
        logger.info(f"{feat}: changed while being read; not cached")
        return
    if time.time_ns() - key["mtime_ns"] < RACY_S * 10**9:
        return
    matrix = np.ascontiguousarray(matrix, dtype="<f4")
    blob = "\n".join(tokens).encode("utf-8")
    payload = memoryview(matrix).cast("B")
    head = json.dumps({"source": key, "rows": matrix.shape[0], "dim": matrix.shape[1],
                       "tokens_bytes": len(blob),
                       "crc32": zlib.crc32(payload, zlib.crc32(blob))}).encode("utf-8")
    start = len(MAGIC) + 8 + len(head) + len(blob)

    def write(fh):
        fh.write(MAGIC + struct.pack("<Q", len(head)) + head)
        fh.write(blob)
        fh.write(b"\0" * (_padded(start) - start))
        fh.write(payload)

    try:
        atomic_write_bytes(cache_path(feat), write)
    except OSError as err:
        logger.warning(f"{feat}: binary cache not written ({err.strerror or err}); every read "
                       f"parses the text")


def _padded(n):
    return -(-n // _ALIGN) * _ALIGN
