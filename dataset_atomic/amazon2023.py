"""Amazon Reviews 2023 (`<Category>.jsonl[.gz]` + `meta_<Category>.jsonl[.gz]`) to atomic files.

Memory does not grow with the reviews file: the titled items are a set (it grows with the meta
file only), reviews go through an external sort (sorted runs of `chunk_lines` lines merged by
`heapq.merge`), and the iterative k-core passes over the user-sorted file holding only item
counts. Every stage writes its output atomically into a work folder, so a killed run resumes
where it stopped (the reviews stage at its last finished run).
"""
import collections
import datetime
import glob
import heapq
import itertools
import json
import os
import resource
import shutil

from tqdm import tqdm

from dataset_atomic.atomic_files import (BadLines, ConvertError, clean_title, is_token, natural_key,
                                         open_source, output_files, write_inter, write_item)
from recbole_llm2rec.atomic import atomic_write_text

WORK = ".amazon2023-work"


def parse_day(option, text):
    """'YYYY-MM-DD' (UTC midnight) as Unix milliseconds; None stays None."""
    if text is None:
        return None
    try:
        day = datetime.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ConvertError("not a date like 2023-10-01", field=option.lstrip("-"),
                           value=text) from None
    return int(day.timestamp()) * 1000


def _json_lines(path, desc, bad, skip_to=0):
    """Yield (line number, parsed dict) of a JSON-lines file, reporting malformed lines."""
    with open_source(path) as fh:
        for lineno, raw in enumerate(tqdm(fh, desc=desc, unit=" lines", mininterval=2), start=1):
            if lineno <= skip_to or not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                bad.add(path, lineno, "malformed JSON", raw)
                continue
            if not isinstance(record, dict):
                bad.add(path, lineno, "not a JSON object", raw)
                continue
            yield lineno, record


def _text(value):
    """A meta attribute as one cleaned line: strings as they are, lists joined; others empty."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, list):
        value = " ".join(str(v) for v in value if isinstance(v, (str, int, float)))
    return clean_title(value) if isinstance(value, str) else ""


def _collect_titles(meta, titles_path, max_title_words, text_fields=()):
    """Write `asin<TAB>title<TAB>texts...` for items with a usable title. Returns counts."""
    seen, counts, bad = set(), collections.Counter(), BadLines()

    def write(fh):
        for lineno, record in _json_lines(meta, "meta", bad):
            asin = record.get("parent_asin")
            if not is_token(asin):
                bad.add(meta, lineno, "no usable parent_asin", repr(asin))
                continue
            if asin in seen:
                counts["meta_duplicates"] += 1
                continue
            seen.add(asin)
            title = clean_title(record["title"]) if isinstance(record.get("title"), str) else ""
            if not title or (max_title_words and len(title.split()) > max_title_words):
                counts["items_without_usable_title"] += 1
                continue
            counts["items_with_title"] += 1
            fh.write("\t".join([asin, title] + [_text(record.get(f)) for f in text_fields]) + "\n")

    atomic_write_text(titles_path, write)
    counts["malformed_meta_lines"] = bad.count
    return counts


def _read_rows(path):
    """Yield the tab-separated fields of each line of a work file."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            yield line.rstrip("\n").split("\t")


def _sort_runs(reviews, titled, start_ms, end_ms, runs_dir, chunk_lines):
    """Write sorted runs `run_<last line>.tsv` (+ `.json` with counts) of the usable reviews.

    A run line is `natural_key(user) ts(15 digits) line(12 digits) user item`, so plain string
    order is user, then time, then file order (stable ties). Finished runs survive a kill and
    are skipped on resume. Returns the counts summed over all runs.
    """
    os.makedirs(runs_dir, exist_ok=True)
    for tsv in glob.glob(os.path.join(runs_dir, "run_*.tsv")):
        if not os.path.exists(tsv[:-4] + ".json"):
            os.remove(tsv)  # a run killed between its two writes
    infos = []
    for path in glob.glob(os.path.join(runs_dir, "run_*.json")):
        with open(path) as fh:
            infos.append(json.load(fh))
    skip_to = max((info["last_line"] for info in infos), default=0)
    buffer, counts, bad = [], collections.Counter(), BadLines()

    def flush(last_line):
        buffer.sort()
        stem = os.path.join(runs_dir, f"run_{last_line:012d}")
        atomic_write_text(stem + ".tsv", lambda fh: fh.writelines(buffer))
        counts["malformed_review_lines"] += bad.count
        info = {"last_line": last_line, "counts": dict(counts)}
        atomic_write_text(stem + ".json", lambda fh: json.dump(info, fh))
        infos.append(info)
        buffer.clear()
        counts.clear()
        bad.count = 0

    lineno = skip_to
    for lineno, record in _json_lines(reviews, "reviews", bad, skip_to):
        user, item, stamp = record.get("user_id"), record.get("parent_asin"), record.get("timestamp")
        if isinstance(stamp, str) and stamp.isdigit():
            stamp = int(stamp)
        if not (is_token(user) and is_token(item)) or type(stamp) is not int or stamp < 0:
            bad.add(reviews, lineno, "needs user_id, parent_asin and an integer timestamp",
                    json.dumps(record)[:200])
            continue
        counts["review_lines"] += 1
        if (start_ms is not None and stamp < start_ms) or (end_ms is not None and stamp >= end_ms):
            counts["outside_time_window"] += 1
        elif item not in titled:
            counts["reviews_of_untitled_items"] += 1
        else:
            buffer.append(f"{natural_key(user)}\t{stamp:015d}\t{lineno:012d}\t{user}\t{item}\n")
            if len(buffer) >= chunk_lines:
                flush(lineno)
    if buffer or counts or bad.count or not infos:
        flush(lineno)
    total = collections.Counter()
    for info in infos:
        total.update(info["counts"])
    return total


def _allow_open_files(needed):
    """Raise the soft limit on open files to `needed` (all runs are merged at once)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ConvertError(f"merging needs {needed} open files but the limit is {hard}; "
                           f"run again with a larger --chunk_lines", field="chunk_lines")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _merge_runs(runs_dir, merged_path, dedup):
    """Merge the runs into `user<TAB>item<TAB>ms` lines grouped by user, in time order.

    Returns the number of dropped repeated user-item pairs (the earliest one is kept).
    """
    runs = sorted(glob.glob(os.path.join(runs_dir, "run_*.tsv")))
    _allow_open_files(len(runs) + 64)
    files = [open(path, encoding="utf-8") for path in runs]
    duplicates = 0
    try:
        def write(fh):
            nonlocal duplicates
            user_seen, current = set(), None
            for line in tqdm(heapq.merge(*files), desc="merge", unit=" lines", mininterval=2):
                _, stamp, _, user, item = line.rstrip("\n").split("\t")
                if user != current:
                    current, user_seen = user, set()
                if dedup:
                    if item in user_seen:
                        duplicates += 1
                        continue
                    user_seen.add(item)
                fh.write(f"{user}\t{item}\t{int(stamp)}\n")

        atomic_write_text(merged_path, write)
    finally:
        for fh in files:
            fh.close()
    return duplicates


def _k_core(merged_path, work, k):
    """Iterative k-core by passes over the user-grouped file. Returns (path, item counts, #users)."""
    current, keep, rounds = merged_path, None, 0
    while True:
        rounds += 1
        out_path = os.path.join(work, f"core_{rounds % 2}.tsv")
        item_counts = collections.Counter()
        users = 0

        def write(fh):
            nonlocal users
            rows = _read_rows(current)
            for _, group in itertools.groupby(tqdm(rows, desc=f"{k}-core pass {rounds}",
                                                   unit=" lines", mininterval=2),
                                              key=lambda r: r[0]):
                group = [r for r in group if keep is None or r[1] in keep]
                if len(group) >= k:
                    users += 1
                    fh.writelines("\t".join(r) + "\n" for r in group)
                    item_counts.update(r[1] for r in group)

        atomic_write_text(out_path, write)
        rare = [item for item, n in item_counts.items() if n < k]
        if not rare:
            return out_path, item_counts, users
        keep = set(item_counts).difference(rare)
        current = out_path


def _read_json(path):
    """The JSON value in `path`, or None when it is missing or unreadable."""
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _stage(counts_path, compute):
    """Counts of a finished stage (its json exists), or run `compute()` and save its counts."""
    if not os.path.exists(counts_path):
        found = dict(compute())
        atomic_write_text(counts_path, lambda fh: json.dump(found, fh, sort_keys=True))
    with open(counts_path) as fh:
        return collections.Counter(json.load(fh))


def convert(reviews, meta, out_dir, name, k=5, start=None, end=None, max_title_words=None,
            keep_duplicates=False, overwrite=False, chunk_lines=200_000, text_fields=()):
    """Convert one Amazon 2023 category into `<out_dir>/<name>/`. Returns (folder, counts dict).

    Keeps reviews with `start <= day < end` (dates 'YYYY-MM-DD', UTC), of items whose meta has
    a non-empty title (at most `max_title_words` words when given), drops repeated user-item
    pairs (keeping the earliest) unless `keep_duplicates`, then applies the iterative k-core.
    `text_fields` (e.g. ["store", "categories"]) adds meta attributes as `.item` text columns.
    """
    start_ms, end_ms = parse_day("--start", start), parse_day("--end", end)
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise ConvertError(f"must be before --end {end}", field="start", value=start)
    if not isinstance(k, int) or k < 1:
        raise ConvertError("must be a positive integer", field="k", value=k)
    if max_title_words is not None and max_title_words < 1:
        raise ConvertError("must be positive", field="max_title_words", value=max_title_words)
    text_fields = list(text_fields)
    for field in text_fields:
        if not field.isidentifier() or field in ("item_id", "title") or text_fields.count(field) > 1:
            raise ConvertError("not a usable extra column name", field="text_fields", value=field)
    for path in (reviews, meta):
        open_source(path).close()
    folder, inter_path, item_path = output_files(out_dir, name, overwrite)

    work = os.path.join(folder, WORK)
    params = {"reviews": os.path.abspath(reviews), "meta": os.path.abspath(meta),
              "sizes": [os.path.getsize(reviews), os.path.getsize(meta)], "k": k,
              "start": start, "end": end, "max_title_words": max_title_words,
              "dedup": not keep_duplicates, "chunk_lines": chunk_lines,
              "text_fields": text_fields}
    params_path = os.path.join(work, "params.json")
    if os.path.isdir(work) and _read_json(params_path) != params:
        shutil.rmtree(work)  # our own leftovers from a run with other settings
    os.makedirs(work, exist_ok=True)
    atomic_write_text(params_path, lambda fh: json.dump(params, fh, sort_keys=True))

    titles_path = os.path.join(work, "titles.tsv")
    counts = _stage(os.path.join(work, "meta_counts.json"),
                    lambda: _collect_titles(meta, titles_path, max_title_words, text_fields))
    merged_path = os.path.join(work, "merged.tsv")

    def reviews_stage():
        titled = {row[0] for row in _read_rows(titles_path)}
        found = _sort_runs(reviews, titled, start_ms, end_ms, runs_dir, chunk_lines)
        del titled
        found["duplicate_user_item_pairs"] = _merge_runs(runs_dir, merged_path, not keep_duplicates)
        return found

    runs_dir = os.path.join(work, "runs")
    counts.update(_stage(os.path.join(work, "reviews_counts.json"), reviews_stage))
    if os.path.isdir(runs_dir):
        shutil.rmtree(runs_dir)
    core_path, item_counts, users = _k_core(merged_path, work, k)

    write_item(item_path, (row for row in _read_rows(titles_path) if row[0] in item_counts),
               text_fields)
    kept = write_inter(inter_path, ((u, i, int(ms) / 1000) for u, i, ms in _read_rows(core_path)))
    counts.update(users=users, items=len(item_counts), interactions=kept)
    shutil.rmtree(work)
    return folder, dict(counts)
