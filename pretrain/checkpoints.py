"""Trainer checkpoints a stage can resume from: complete ones only (a run killed while writing
one leaves it incomplete)."""
import json
import os
import re

# A checkpoint can be resumed from when its trainer_state.json parses and these are present.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors",
                "pytorch_model.bin", "pytorch_model.bin.index.json")
OPTIMIZER_FILES = ("optimizer.pt", "scheduler.pt")


def _present(path):
    return os.path.isfile(path) and os.path.getsize(path) > 0


def checkpoint_problem(path):
    """Why checkpoint folder `path` cannot be resumed from, or None when it is complete: its
    trainer_state.json parses, and its weights, optimizer and scheduler files are present."""
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as fh:
            int(json.load(fh)["global_step"])
    except FileNotFoundError:
        return "no trainer_state.json"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"trainer_state.json is unreadable ({type(err).__name__}: {err})"
    if not any(_present(os.path.join(path, name)) for name in WEIGHT_FILES):
        return f"no model weights ({' or '.join(WEIGHT_FILES[:2])})"
    missing = [name for name in OPTIMIZER_FILES if not _present(os.path.join(path, name))]
    return f"no {' or '.join(missing)}" if missing else None


def latest_checkpoint(folder):
    """Newest complete `checkpoint-N` in `folder` (see `checkpoint_problem`); says which newer
    ones it skips and why (e.g. a run killed while writing them). None when there is none."""
    if not os.path.isdir(folder):
        return None
    steps = sorted(((int(m.group(1)), name) for name in os.listdir(folder)
                    if (m := re.fullmatch(r"checkpoint-(\d+)", name))), reverse=True)
    for _, name in steps:
        path = os.path.join(folder, name)
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print(f"skipping {path}: {problem}", flush=True)
    return None
