"""Stop training when the loss stops being a finite number, naming model, epoch and step."""

from __future__ import annotations

import torch
from torch import Tensor

from mtl.errors import TrainingError
from mtl.training.distributed import DistributedContext

_NO_STEP = 2**62


class LossGuard:
    """Remembers the first step of an epoch whose loss was NaN/inf; ``check`` raises ``TrainingError``.

    ``observe`` records on the loss's device without waiting for it and checks every ``every`` steps.
    On CPU ``every`` is 1, so the error comes before that step's update. On CUDA a check waits for the
    GPU, so it runs every few steps: the error still names the first bad step, and nothing from it is
    kept (checkpoints are written only after whole, finite epochs). Under DDP the check is collective,
    so every rank stops at the same step instead of one leaving the others in an all-reduce.
    """

    def __init__(
        self,
        model: str,
        epoch: int,
        *,
        device: torch.device,
        every: int = 1,
        dist: DistributedContext | None = None,
    ):
        self.model, self.epoch, self.every = model, epoch, max(every, 1)
        self.dist = dist or DistributedContext()
        self.first_bad = torch.full((), _NO_STEP, dtype=torch.int64, device=device)

    def observe(self, loss: Tensor, step: int) -> None:
        bad = ~torch.isfinite(loss.detach()).all()
        self.first_bad = torch.minimum(self.first_bad, torch.where(bad, step, _NO_STEP))
        if step % self.every == 0:
            self.check()

    def check(self) -> None:
        step = int(self.dist.all_min(self.first_bad))
        if step != _NO_STEP:
            raise TrainingError(
                f"{self.model}: the training loss was not finite (NaN or inf) at epoch {self.epoch}, "
                f"step {step}; lower train.lr / train.embedding_lr, or check the data for extreme values"
            )


def ensure_finite(
    loss: Tensor, *, model: str, epoch: int, step: int, dist: DistributedContext | None = None
) -> None:
    """Check one loss now (synchronising); ``LossGuard`` is the deferred form for the trainer's hot loop."""
    LossGuard(model, epoch, device=loss.device, dist=dist).observe(loss, step)
