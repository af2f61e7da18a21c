"""RecBole's mixed-precision options on any device, not only on CUDA GPUs.

RecBole 1.2.1 trains under `torch.autocast(device.type)` when `enable_amp` is set (bf16 on
CPUs, fp16 on GPUs), but builds its GradScaler (`enable_scaler`) from `torch.cuda.amp` and
only when CUDA is available, so a scaler never runs on a CPU, and a CUDA scaler would be wrong
for a run on the CPU of a GPU machine. `PrecisionTrainerMixin` makes the scaler follow the
trainer's device (`torch.amp.GradScaler(device.type)`): a step whose gradients hold inf or NaN
is skipped and the scale lowered, on every device.
"""
import torch
import recbole.trainer.trainer as _recbole_trainer


class _AmpOfTheTrainer:
    """`torch.cuda.amp` as RecBole's trainer module sees it: scaler and autocast for the device
    of the trainer whose epoch runs now (`PrecisionTrainerMixin._train_epoch` sets it)."""

    device_type = "cuda"

    def GradScaler(self, *args, **kwargs):  # noqa: N802  (the name RecBole calls)
        return torch.amp.GradScaler(self.device_type, *args, **kwargs)

    def autocast(self, *args, **kwargs):
        return torch.autocast(self.device_type, *args, **kwargs)


_AMP = _AmpOfTheTrainer()
_recbole_trainer.amp = _AMP


class PrecisionTrainerMixin:
    """Trainer mixin: `enable_scaler` scales the loss on the trainer's device, CPU included."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.enable_scaler = bool(config["enable_scaler"])  # RecBole's: CUDA only

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        _AMP.device_type = self.device.type
        try:
            return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func,
                                        show_progress=show_progress)
        finally:  # a stock trainer in this process sees torch.cuda.amp's behaviour again
            _AMP.device_type = "cuda"
