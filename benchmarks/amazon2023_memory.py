"""Peak memory and throughput of the Amazon Reviews 2023 converter on synthetic raw files.

Generates reviews files of several sizes (default 0.5M and 2M lines, Amazon 2023 schema, users
and items drawn from skewed distributions, random line order) plus a meta file, runs
`python -m dataset_atomic amazon2023` on each in a subprocess, and records its peak RSS
(ru_maxrss from wait4) and lines/s in `benchmarks/results/amazon2023_memory.md`.

    nice -n 5 python -m benchmarks.amazon2023_memory            # 0.5M and 2M lines
    python -m benchmarks.amazon2023_memory --lines 20000        # quick check
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results", "amazon2023_memory.md")
ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))


def _ids(rng, n, prefix, length):
    """n distinct-looking random ids like Amazon's (prefix + uppercase/digits)."""
    chars = ALPHABET[rng.integers(0, len(ALPHABET), size=(n, length))]
    return [prefix + "".join(row) + str(i) for i, row in enumerate(chars)]


def generate(folder, n_lines, seed=0):
    """Write `<folder>/Synthetic.jsonl` (n_lines reviews) and `meta_Synthetic.jsonl`. Returns paths."""
    rng = np.random.default_rng(seed)
    n_users, n_items = max(n_lines // 5, 10), max(n_lines // 40, 10)
    users, items = _ids(rng, n_users, "A", 24), _ids(rng, n_items, "B0", 6)
    meta_path = os.path.join(folder, "meta_Synthetic.jsonl")
    with open(meta_path, "w", encoding="utf-8") as fh:
        for i, asin in enumerate(items):
            record = {"main_category": "Video Games", "title": None if i % 20 == 0 else
                      f"Synthetic item {i} &amp; accessories", "average_rating": 4.2,
                      "rating_number": 10, "features": ["f1", "f2"], "description": ["d"],
                      "price": 9.99, "images": [], "videos": [], "store": "Store",
                      "categories": ["Video Games"], "details": {}, "parent_asin": asin,
                      "bought_together": None}
            fh.write(json.dumps(record) + "\n")
    reviews_path = os.path.join(folder, "Synthetic.jsonl")
    start, span = 946684800000, 23 * 365 * 86400 * 1000
    text = "Works as described. " * 12
    with open(reviews_path, "w", encoding="utf-8") as fh:
        for lo in range(0, n_lines, 100_000):
            n = min(100_000, n_lines - lo)
            u = (n_users * rng.random(n) ** 2).astype(np.int64)  # skewed activity
            it = (n_items * rng.random(n) ** 3).astype(np.int64)  # skewed popularity
            ts = start + rng.integers(0, span, size=n)
            fh.writelines(json.dumps({
                "rating": 5.0, "title": "Great", "text": text, "images": [],
                "asin": items[b], "parent_asin": items[b], "user_id": users[a],
                "timestamp": int(t), "helpful_vote": 0, "verified_purchase": True}) + "\n"
                for a, b, t in zip(u.tolist(), it.tolist(), ts.tolist()))
    return reviews_path, meta_path


def measure(cmd_args):
    """Run `python <cmd_args>` in a subprocess. Returns (peak RSS MiB, wall seconds, stdout)."""
    cmd = [sys.executable] + cmd_args
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                            text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.time() - t0
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"converter failed ({status}): {stdout}")
    return usage.ru_maxrss / 1024, wall, stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[500_000, 2_000_000])
    parser.add_argument("--results", default=RESULTS)
    args = parser.parse_args(argv)
    base_rss, base_wall, _ = measure(["-c", "import dataset_atomic.__main__"])
    print(f"startup (imports only): peak RSS {base_rss:.0f} MiB, {base_wall:.1f}s")
    rows = []
    for n_lines in args.lines:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            reviews, meta = generate(tmp, n_lines)
            gen = time.time() - t0
            size = os.path.getsize(reviews) / 2**20
            rss, wall, stdout = measure(["-m", "dataset_atomic", "amazon2023", reviews, meta,
                                         "--name", "Synthetic", "--out", os.path.join(tmp, "out")])
            conversion = next(line for line in stdout.splitlines() if line.startswith("conversion:"))
            speed = n_lines / max(wall - base_wall, 1e-9)
            rows.append((n_lines, size, rss, wall, speed, conversion))
            print(f"{n_lines:,} lines ({size:.0f} MiB, generated in {gen:.0f}s): peak RSS "
                  f"{rss:.0f} MiB, {wall:.1f}s, {speed:,.0f} lines/s\n  {conversion}")
    lines = [
        "# Amazon Reviews 2023 converter: peak memory and throughput",
        "",
        f"Run: `python -m benchmarks.amazon2023_memory --lines {' '.join(map(str, args.lines))}` "
        f"on {datetime.date.today()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPU cores (shared with other jobs).",
        "Synthetic reviews in the Amazon 2023 schema, random line order; users ~ n/5, items ~ n/40,",
        "skewed activity and popularity; 5% of items without title; k-core 5. Peak RSS is the",
        "converter subprocess's ru_maxrss (whole process: Python, imports, buffers); lines/s",
        "divides the lines by the wall time minus the startup time of the imports alone.",
        "",
        f"Startup (`python -c 'import dataset_atomic.__main__'`): peak RSS {base_rss:.0f} MiB, "
        f"{base_wall:.1f} s.",
        "",
        "| reviews lines | file MiB | peak RSS MiB | wall s | lines/s |",
        "|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {n:,} | {size:.0f} | {rss:.0f} | {wall:.1f} | {speed:,.0f} |"
              for n, size, rss, wall, speed, _ in rows]
    lines += ["", "Converter summaries:", ""] + [f"- {n:,} lines: `{c}`" for n, *_, c in rows]
    lines += ["", "Target: peak RSS < 1 GiB at 2M lines, and flat in the number of lines."]
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results + ".tmp", "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(args.results + ".tmp", args.results)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
