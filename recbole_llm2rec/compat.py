"""Fixes for RecBole 1.2.1 on the current torch stack, applied by importing this module.

1. Importing RecBole's sequential models runs `torch.autograd.set_detect_anomaly(True)`
   (sine.py), which doubles training time for the whole process. We import them once
   here and switch it back off.
2. RecBole saves its checkpoints with the whole `Config` object and pickle protocol 4,
   which torch>=2.6's safe `torch.load(weights_only=True)` refuses, so RecBole cannot
   reload its own best model. Rather than disabling safe loading, our trainers save
   checkpoints made only of tensors and plain values, which the safe loader accepts
   (`read_checkpoint` reads them back; `quick_start.load_data_and_model` rebuilds the run).
3. RecBole reads atomic files with pandas' CSV quoting, but atomic files are plain tab-separated
   lines (our reader, `recbole_llm2rec.atomic`, takes every character literally). A title that
   begins with a double quote, like Beauty's `"Pro-nu" Anti-aging ...`, made RecBole's read of
   the `.item` file fail whenever a run loads item columns (the cold-start split, LLMSRec's
   titles). For the datasets of the plugin's runs only (a config built by
   `quick_start.build_config`, whose class sets `reads_atomic_files_literally`), RecBole's
   `Dataset._load_feat` first checks the file with our reader (which refuses a line CSV quoting
   would read otherwise, a value starting with '"' whose quote runs past a tab), then reads it
   with quoting off. Any other RecBole dataset in the process reads its files as stock RecBole
   does: same `read_csv` call, same arguments.
4. RecBole's multi-process training (`nproc > 1`) needs nccl and GPUs, and its evaluation counts
   some users twice: `recbole_llm2rec.distributed` fixes both; our trainers include its mixin.
5. RecBole's GradScaler (`enable_scaler`) runs on CUDA only: `recbole_llm2rec.precision` makes
   it follow the trainer's device; our trainers include its mixin.

docs/compat.md lists every change importing the plugin makes, and why.
"""
import contextvars
import csv
import enum
import os
import pickle

import pandas
import torch
import recbole.data.dataset.dataset as _recbole_dataset
import recbole.model.sequential_recommender  # noqa: F401  (runs sine.py's global switch)
from recbole.utils import get_trainer as _recbole_get_trainer

from recbole_llm2rec.atomic import atomic_write_bytes, check_rows
from recbole_llm2rec.distributed import DistributedTrainerMixin, without_launch_keys
from recbole_llm2rec.precision import PrecisionTrainerMixin
from recbole_llm2rec.errors import InputError

torch.autograd.set_detect_anomaly(False)


_LITERAL = contextvars.ContextVar("recbole_llm2rec_literal_quotes", default=False)


class _QuotingPandas:
    """pandas as RecBole's dataset module sees it: every name is pandas' own; `read_csv` turns
    quoting off only inside `_load_feat` for a dataset of the plugin's runs."""

    def __getattr__(self, name):
        return getattr(pandas, name)

    @staticmethod
    def read_csv(*args, **kwargs):
        if _LITERAL.get():
            kwargs.setdefault("quoting", csv.QUOTE_NONE)
        return pandas.read_csv(*args, **kwargs)


_stock_load_feat = _recbole_dataset.Dataset._load_feat


def _load_feat(self, filepath, source):
    """RecBole's `Dataset._load_feat`; for a config of the plugin's runs, the file is checked by
    our reader first (InputError naming file, line and value) and read with quotes literal."""
    if (not getattr(type(self.config), "reads_atomic_files_literally", False)
            or self._get_load_and_unload_col(source)[0] == set()):  # stock reads nothing then
        return _stock_load_feat(self, filepath, source)
    check_rows(filepath, sep=self.config["field_separator"])
    token = _LITERAL.set(True)
    try:
        return _stock_load_feat(self, filepath, source)
    finally:
        _LITERAL.reset(token)


_recbole_dataset.pd = _QuotingPandas()
_recbole_dataset.Dataset._load_feat = _load_feat

_PLAIN = (str, int, float, bool, type(None))


# Marks a checkpoint written by SafeCheckpointMixin (and the layout of its keys).
CHECKPOINT_FORMAT = "recbole_llm2rec.checkpoint/1"


def plain_values(values):
    """`values` (a dict) as a tree of plain Python values (enums by name; others dropped)."""

    def convert(value):
        if isinstance(value, enum.Enum):
            return value.name
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, (list, tuple)):
            items = [convert(v) for v in value]
            return _DROP if any(i is _DROP for i in items) else items
        if isinstance(value, dict):
            items = {str(k): convert(v) for k, v in value.items()}
            return {k: v for k, v in items.items() if v is not _DROP}
        return _DROP

    _DROP = object()
    return convert(dict(values))


def plain_config(config):
    """The config's final values as plain Python values (see `plain_values`)."""
    return plain_values(config.final_config_dict)


def read_checkpoint(path, map_location="cpu"):
    """A checkpoint written by our trainers, read with torch's safe loader (no code runs).

    Returns its dict: format, config (final values), external_config (what the run was given:
    props, config files, config_dict, overrides), state_dict, other_parameter, optimizer, epoch.
    InputError (one line) for a missing file or one we did not write, e.g. RecBole's own
    checkpoints, which pickle the whole Config object.
    """
    if not os.path.isfile(path):
        raise InputError("checkpoint file not found", path=path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"not a checkpoint written by recbole_llm2rec: torch's safe loader "
                         f"refuses it ({reason[:100]}); RecBole's own checkpoints pickle their "
                         f"Config and are not loaded here", path=path) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
        raise InputError(f"not a checkpoint written by recbole_llm2rec (format {found!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})", path=path)
    return checkpoint


class SafeCheckpointMixin:
    """Trainer mixin: checkpoints loadable by `torch.load(..., weights_only=True)`; keeps the
    last validation result (`last_valid_result`) for per-epoch callbacks and every validation
    score (`valid_scores`); writes and reads a resume state (`save_resume_state`, `resume`);
    builds the optimizer over the model's `optimizer_param_groups()` where it defines them."""

    last_valid_result = None
    valid_scores = ()

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.last_valid_result = result
        self.valid_scores = [*self.valid_scores, float(score)]
        return score, result

    def _build_optimizer(self, **kwargs):
        # a model may ask for its own parameter groups (e.g. a separate adapter learning rate)
        groups = getattr(self.model, "optimizer_param_groups", None)
        if "params" not in kwargs and groups is not None and groups() is not None:
            kwargs["params"] = groups()
        return super()._build_optimizer(**kwargs)

    def _checkpoint_state(self, epoch):
        return {
            "format": CHECKPOINT_FORMAT,
            "config": plain_config(self.config),
            "external_config": without_launch_keys(plain_values(self.config.external_config_dict)),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }

    def _is_writer(self):
        return self.config["single_spec"] or self.config["local_rank"] == 0

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self._is_writer():
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = self._checkpoint_state(epoch)
        atomic_write_bytes(saved_model_file, lambda fh: torch.save(state, fh))
        if verbose:
            self.logger.info(f"Saving current: {saved_model_file}")

    def save_resume_state(self, epoch, path):
        """Write what `resume` needs to continue training after `epoch` (call it after that
        epoch's validation, once `fit` has saved any new best checkpoint): the checkpoint of
        the current weights and optimizer, plus the early-stopping state, every validation
        score so far and the name of the best checkpoint (which must stay beside `path`).
        Written to a temporary file, then renamed over `path` (`atomic_write_bytes`)."""
        if not self._is_writer():
            return
        best = self.best_valid_result
        state = {**self._checkpoint_state(epoch), "kind": "resume",
                 "best_model_file": os.path.basename(self.saved_model_file),
                 "best_valid_result": None if best is None else {
                     str(k): float(v) for k, v in best.items()},
                 "valid_scores": list(self.valid_scores)}
        atomic_write_bytes(path, lambda fh: torch.save(state, fh))

    def resume(self, path):
        """Continue from `save_resume_state`'s file: weights, optimizer, early-stopping state,
        validation scores and best checkpoint; `fit` then starts at the next epoch. The file
        must have been written for the same settings. Returns the epoch it resumes after.
        Random-number state is not restored: a resumed run shuffles its later epochs
        differently from one never stopped."""
        state = read_checkpoint(path, map_location=self.device)
        if state.get("kind") != "resume":
            raise InputError("not a resume state (a best-model checkpoint?); resume states "
                             "are written by save_resume_state", path=path)
        given = without_launch_keys(plain_values(self.config.external_config_dict))
        changed = sorted(k for k in set(given) | set(state["external_config"])
                         if given.get(k) != state["external_config"].get(k))
        if changed:
            raise InputError(f"resume state written for other settings ({', '.join(changed)} "
                             f"differ); delete it to start this run again", path=path)
        best = os.path.join(os.path.dirname(path), state["best_model_file"])
        if not os.path.isfile(best):
            raise InputError(f"the best checkpoint it names ({state['best_model_file']}) is "
                             f"missing beside it; delete it to start this run again", path=path)
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(state.get("other_parameter"))
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch = state["epoch"] + 1
        self.cur_step = state["cur_step"]
        self.best_valid_score = state["best_valid_score"]
        self.best_valid_result = state["best_valid_result"]
        self.valid_scores = list(state["valid_scores"])
        self.saved_model_file = best
        self.logger.info(f"Resumed from {path} after epoch {state['epoch']}")
        return state["epoch"]


_TRAINERS = {}


def get_trainer(model_type, model_name):
    """RecBole's trainer class for the model, with safe checkpoints, multi-process runs and
    loss scaling on any device."""
    base = _recbole_get_trainer(model_type, model_name)
    if base not in _TRAINERS:
        _TRAINERS[base] = type("Safe" + base.__name__,
                               (DistributedTrainerMixin, PrecisionTrainerMixin,
                                SafeCheckpointMixin, base), {})
    return _TRAINERS[base]
