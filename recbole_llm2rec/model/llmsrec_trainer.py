"""LLMSRec's trainer: RecBole's, with the reference code's Adam betas and learning-rate decay
(`llmsrec_adam_betas`, `llmsrec_lr_decay` per epoch)."""
from recbole.trainer import Trainer
from torch import optim


class LLMSRecTrainer(Trainer):
    """Adam/AdamW with `llmsrec_adam_betas`; after every training epoch each parameter group's
    learning rate is multiplied by `llmsrec_lr_decay` (the decayed rate lives in the
    optimizer's state, so a resumed run continues from it). Logs the users' alignment cosine
    with the teacher after each training and validation epoch."""

    _epoch = 0

    def _build_optimizer(self, **kwargs):
        learner = kwargs.get("learner", self.learner).lower()
        if learner not in ("adam", "adamw"):
            return super()._build_optimizer(**kwargs)
        make = optim.Adam if learner == "adam" else optim.AdamW
        return make(kwargs.get("params", self.model.parameters()),
                    lr=kwargs.get("learning_rate", self.learning_rate),
                    weight_decay=kwargs.get("weight_decay", self.weight_decay),
                    betas=tuple(self.config["llmsrec_adam_betas"]))

    def _train_epoch(self, train_data, epoch_idx, *args, **kwargs):
        loss = super()._train_epoch(train_data, epoch_idx, *args, **kwargs)
        for group in self.optimizer.param_groups:
            group["lr"] *= self.config["llmsrec_lr_decay"]
        self._log_alignment(epoch_idx, "train", "training users")
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self._log_alignment(self._epoch, "eval", "validation users")
        return result

    def fit(self, train_data, valid_data=None, *args, **kwargs):
        self.model.pop_alignment("eval")
        return super().fit(train_data, valid_data, *args, **kwargs)

    def _log_alignment(self, epoch_idx, phase, who):
        """One log line per epoch: the mean cosine between the users' f_user vectors and their
        teacher's f_CF-user vectors (what the distillation pulls up)."""
        if phase == "train":
            self._epoch = epoch_idx
        value = self.model.pop_alignment(phase)
        if value is not None:
            self.logger.info(f"epoch {epoch_idx} alignment cosine ({who}): {value:.4f}")
