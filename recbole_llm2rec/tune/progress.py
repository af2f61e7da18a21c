"""A tqdm bar of finished trials, as a Ray Tune callback."""
from tqdm import tqdm


class ProgressBar:
    """Ray Tune callback: a tqdm bar of finished trials, with the best validation score so far."""

    def __init__(self, total, metric, mode):
        self.total, self.metric, self.mode = total, metric, mode
        self.bar, self.best = None, None

    def __getstate__(self):
        # Ray pickles its run config for Tuner.restore; the bar itself is not picklable
        return {"total": self.total, "metric": self.metric, "mode": self.mode}

    def __setstate__(self, state):
        self.__init__(**state)

    def _tick(self, trial):
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc="trials", unit="trial")
        score = (trial.last_result or {}).get(self.metric)
        if score is not None and (self.best is None or (score > self.best) == (self.mode == "max")):
            self.best = score
        if self.best is not None:
            self.bar.set_postfix({self.metric: f"{self.best:.4f}"})
        self.bar.update(1)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._tick(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._tick(trial)

    def on_experiment_end(self, trials, **info):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
