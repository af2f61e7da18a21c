"""Wall time and peak memory of reading `.feat` files: the first read and a repeated read, each in
a fresh process, next to the size of the float32 matrix read.

    python benchmarks/feat_read.py --feat dataset/Games/Games.minilm.feat \
        --synthetic 100000x1536 --work /tmp/feat_read

`--synthetic RxD` writes (once, into --work) a table of R random rows of D values through
`recbole_llm2rec.feat.write_feat`. Each read runs `read_feat` in a new Python process that
imports only `recbole_llm2rec.feat`; `growth` is its peak RSS (VmHWM) less its RSS just
before the read (exact when the read's peak exceeds that of the imports, as for large tables). Issue 11's targets: first read
<= 30 s, repeated <= 10 s, peak <= 2x the float32 matrix. Appends to benchmarks/results/feat_read.md.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.machine import machine  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results", "feat_read.md")
PROBE = """
import json, sys, time
from recbole_llm2rec.feat import read_feat
def status(key):  # MB; VmHWM is the peak of this process image (ru_maxrss survives exec)
    line = next(l for l in open("/proc/self/status") if l.startswith(key + ":"))
    return int(line.split()[1]) / 1024
before = status("VmRSS")
start = time.perf_counter()
tokens, matrix = read_feat(sys.argv[1])
print(json.dumps({"s": time.perf_counter() - start, "shape": list(matrix.shape),
                  "matrix_mb": matrix.nbytes / 2**20,
                  "peak_mb": status("VmHWM"),
                  "before_mb": before}))
"""


def probe(path):
    """One read of `path` in a fresh process. Returns its measurements."""
    out = subprocess.run([sys.executable, "-c", PROBE, path], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--feat", nargs="*", default=[], help="existing .feat files to read")
    p.add_argument("--synthetic", nargs="*", default=[], help="RxD tables to make and read")
    p.add_argument("--work", default="/tmp/feat_read", help="folder for the synthetic tables")
    args = p.parse_args(argv)
    paths = list(args.feat) + [synthetic(s, args.work) for s in args.synthetic]
    lines = []
    for path in paths:
        first, again = probe(path), probe(path)
        size = os.path.getsize(os.path.realpath(path)) / 2**20
        name = os.path.basename(path)
        lines.append(f"| {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} | {name} | "
                     f"{first['shape'][0]} x {first['shape'][1]} | {size:.0f} | "
                     f"{first['matrix_mb']:.0f} | {first['s']:.1f} | {again['s']:.1f} | "
                     f"{first['peak_mb']:.0f} | {first['before_mb']:.0f} | "
                     f"{(first['peak_mb'] - first['before_mb']) / first['matrix_mb']:.2f}x |")
        print(lines[-1], flush=True)
    new = not os.path.exists(RESULTS)
    with open(RESULTS, "a", encoding="utf-8") as fh:
        if new:
            fh.write("# Reading `.feat` files\n\nWritten by `benchmarks/feat_read.py`; each read "
                     "in a fresh process. `growth / matrix` = (peak RSS - RSS just before the "
                     "read) / float32 matrix size.\n\n| date (UTC) | file | rows x dim | "
                     "file MB | matrix MB | "
                     "first read s | repeated read s | peak RSS MB | RSS before MB | "
                     "growth / matrix |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
        fh.write("\n".join(lines) + "\n")
        fh.write(f"\n- `python benchmarks/feat_read.py {shlex.join(argv or sys.argv[1:])}` on "
                 f"{machine()}\n\n")
    print(RESULTS)


if __name__ == "__main__":
    main()
