"""Wall time and peak memory of reading `.feat` files: the first read (no binary cache: the text
is parsed and `<file>.cache` written) and a repeated read (from the cache), each in a fresh
process, next to the size of the float32 matrix read.

    nice -n 19 python -m benchmarks.feat_read --feat dataset/Games/Games.minilm.feat \
        --synthetic 100000x1536 --work saved/feat_read

Each `--feat` file is linked into --work, so its cache goes there even when the dataset folder
is read-only. `--synthetic RxD` writes (once, into --work) a table of R random rows of D values
through `recbole_llm2rec.feat.write_feat`. Before the first read the file's cache is deleted.
Each read runs `read_feat` in a new Python process (one thread) that imports only
`recbole_llm2rec.feat`, timed in wall and CPU seconds (the CPU time of a shared machine
does not count other jobs); `growth` is its peak RSS (VmHWM) less its RSS just before the read
(exact when the read's peak exceeds that of the imports, as for large tables); both reads must
return the same tokens and matrix (CRC-32 compared). The page cache is not dropped: the first
read finds the text file in memory when it was read or written recently. Issue 11's targets:
first read <= 30 s, repeated <= 10 s, peak <= 2x the float32 matrix. Appends to
benchmarks/results/feat_read.md.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from benchmarks.machine import machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(ROOT, "benchmarks", "results", "feat_read.md")
PROBE = """
import json, sys, time, zlib
from recbole_llm2rec.feat import read_feat
def status(key):  # MB; VmHWM is the peak of this process image (ru_maxrss survives exec)
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024
before = status("VmRSS")
start, cpu = time.perf_counter(), time.process_time()
tokens, matrix = read_feat(sys.argv[1])
seconds, cpu, peak = time.perf_counter() - start, time.process_time() - cpu, status("VmHWM")
crc = zlib.crc32(memoryview(matrix).cast("B"), zlib.crc32("\\n".join(tokens).encode()))
print(json.dumps({"s": seconds, "cpu_s": cpu, "shape": list(matrix.shape), "crc32": crc,
                  "matrix_mb": matrix.nbytes / 2**20, "peak_mb": peak, "before_mb": before}))
"""


def probe(path):
    """One read of `path` in a fresh process with one thread. Returns its measurements."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PROBE, path], capture_output=True, text=True,
                         cwd=ROOT, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def linked(path, work):
    """`path` as seen from a link in `work`, so its cache is written in `work`."""
    os.makedirs(work, exist_ok=True)
    link = os.path.join(work, os.path.basename(path))
    if os.path.realpath(link) != os.path.realpath(path):
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(os.path.abspath(path), link)
    return link


def synthetic(spec, work):
    """The path of a random RxD `.feat` in `work`, written on first use."""
    import numpy as np

    from recbole_llm2rec.feat import write_feat

    rows, dim = (int(x) for x in spec.lower().split("x"))
    path = os.path.join(work, f"synthetic_{rows}x{dim}.feat")
    if not os.path.exists(path):
        os.makedirs(work, exist_ok=True)
        start = time.perf_counter()
        matrix = np.random.default_rng(0).normal(size=(rows, dim)).astype(np.float32)
        write_feat(path, [f"i{k}" for k in range(rows)], matrix)
        print(f"wrote {path} in {time.perf_counter() - start:.0f} s", flush=True)
    return path


INTRO = ("\n## With the binary cache\n\nThe first read parses the text and writes "
         "`<file>.cache`; the repeated read loads that cache. `growth / matrix` = (peak RSS - RSS "
         "just before the read) / float32 matrix size. One table per run.\n")
HEADER = ("| date (UTC) | file | rows x dim | file MB | matrix MB | first read s (CPU s) | "
          "repeated read s (CPU s) | first growth / matrix | repeated growth / matrix | "
          "same result |")


def row(path, first, again):
    """The results table line of one file's two reads."""
    size = os.path.getsize(os.path.realpath(path)) / 2**20
    growth = [(r["peak_mb"] - r["before_mb"]) / r["matrix_mb"] for r in (first, again)]
    return (f"| {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} | {os.path.basename(path)} | "
            f"{first['shape'][0]} x {first['shape'][1]} | {size:.0f} | {first['matrix_mb']:.0f} | "
            f"{first['s']:.2f} ({first['cpu_s']:.2f}) | {again['s']:.2f} ({again['cpu_s']:.2f}) | "
            f"{growth[0]:.2f}x | {growth[1]:.2f}x | "
            f"{'yes' if first['crc32'] == again['crc32'] else 'NO'} |")


def main(argv=None):
    from recbole_llm2rec.feat_cache import cache_path, wait_until_cacheable

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--feat", nargs="*", default=[], help="existing .feat files to read")
    p.add_argument("--synthetic", nargs="*", default=[], help="RxD tables to make and read")
    p.add_argument("--work", default="saved/feat_read",
                   help="folder for the synthetic tables, links and caches")
    args = p.parse_args(argv)
    paths = [linked(f, args.work) for f in args.feat]
    paths += [synthetic(s, args.work) for s in args.synthetic]
    lines = []
    for path in paths:
        if os.path.exists(cache_path(path)):
            os.remove(cache_path(path))
        wait_until_cacheable(path)
        first, again = probe(path), probe(path)
        lines.append(row(path, first, again))
        print(lines[-1], flush=True)
    text = open(RESULTS, encoding="utf-8").read() if os.path.exists(RESULTS) else ""
    with open(RESULTS, "a", encoding="utf-8") as fh:
        if INTRO not in text:
            fh.write(INTRO)
        fh.write("\n" + HEADER + "\n|---|---|---|---:|---:|---:|---:|---:|---:|---|\n"
                 + "\n".join(lines) + "\n")
        fh.write(f"\n- `python -m benchmarks.feat_read {shlex.join(argv or sys.argv[1:])}` on "
                 f"{machine()} (each read: 1 thread)\n")
    print(RESULTS)


if __name__ == "__main__":
    main()
