"""A synthetic sequential dataset where learning must show: items lie on random cycles and every
user walks one cycle, so the next item is a fixed function of the previous one. Written as
RecBole atomic files (`.inter` with timestamps, `.item` with titles) in code: no fixture."""
import os

import numpy as np

WORDS = ("red", "blue", "green", "quiet", "fast", "gold", "tiny", "grand", "dark", "soft",
         "wild", "cool", "pro", "mini", "ultra", "classic")


def cycle_successors(n_items, cycle_length, rng):
    """successor[i] of items 1..n_items (index 0 unused): the items shuffled and cut into
    cycles of `cycle_length`, each item followed by the next one on its cycle."""
    order = rng.permutation(np.arange(1, n_items + 1))
    succ = np.zeros(n_items + 1, dtype=np.int64)
    for start in range(0, n_items, cycle_length):
        cycle = order[start:start + cycle_length]
        succ[cycle] = np.roll(cycle, -1)
    return succ


def walk(succ, start, length):
    items = [int(start)]
    while len(items) < length:
        items.append(int(succ[items[-1]]))
    return items


def write_cycles(out_dir, name="Cycles", n_users=400, n_items=200, cycle_length=10,
                 lengths=(6, 9), seed=0):
    """Write `out_dir/<name>/<name>.{inter,item}`: each user walks its cycle from a random item
    for a random length in `lengths` (inclusive), one interaction a day. Returns the successor
    table (for held-out walks)."""
    rng = np.random.default_rng(seed)
    succ = cycle_successors(n_items, cycle_length, rng)
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user in range(1, n_users + 1):
            start_day = int(rng.integers(16000, 17000))
            items = walk(succ, rng.integers(1, n_items + 1), rng.integers(lengths[0],
                                                                          lengths[1] + 1))
            for k, item in enumerate(items):
                fh.write(f"u{user}\ti{item}\t{(start_day + k) * 86400}\n")
    with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as fh:
        fh.write("item_id:token\ttitle:token_seq\n")
        for item in range(1, n_items + 1):
            a, b = rng.choice(len(WORDS), 2, replace=False)
            fh.write(f"i{item}\t{WORDS[a]} {WORDS[b]} gadget {item}\n")
    return succ
