"""Run state that survives a restart: early stopping with best weights, the moving average of the
epoch-end weights, and the resumable checkpoint.

A checkpoint holds the model, optimisers, grad scaler, every RNG state, the epoch, the early-stopping
state (best epoch, metric, weights, misses), the weight average, the history and a *fingerprint* of the
run; it is resumed only by a run with the same fingerprint. Reusable by any epoch-based trainer (e.g.
MetaHeac's).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl.training.checkpoint import load_checkpoint, of_this_run, save_checkpoint
from mtl.training.seeding import capture_rng_state, restore_rng_state

CHECKPOINT_FORMAT = 1
SWAP_CHUNK = 1 << 20  # elements swapped at a time between the model and its average (bounded scratch)


@dataclass
class RunState:
    """Everything that changes from epoch to epoch."""

    epoch: int = 0
    best_epoch: int = 0
    best_metric: float | None = None
    best_valid: dict[str, Any] = field(default_factory=dict)
    best_weights: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    average: dict[str, torch.Tensor] | None = None  # update_average()'s, on the model's device

    def _keep(self, model: nn.Module) -> None:
        """The model's weights, on the CPU, as the best so far: into the tensors of the previous best where
        there are some (a second copy of the model would raise the run's peak memory by its size)."""
        weights = model.state_dict()
        if self.best_weights is None:
            self.best_weights = {k: v.detach().to("cpu", copy=True) for k, v in weights.items()}
            return
        with torch.no_grad():
            for key, value in weights.items():
                self.best_weights[key].copy_(value)

    def update_average(self, model: nn.Module, decay: float) -> None:
        """Fold the model's epoch-end weights into the moving average: a <- decay * a + (1 - decay) * w
        for floating-point entries of the state dict (the others, such as batch-norm step counts, are
        the model's own); the first epoch starts it at a copy of the weights."""
        weights = model.state_dict()
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in weights.items()}
            return
        with torch.no_grad():
            for key, value in weights.items():
                mean = self.average[key]
                if mean.is_floating_point():
                    mean.mul_(decay).add_(value, alpha=1.0 - decay)
                else:
                    mean.copy_(value)

    def observe(
        self,
        epoch: int,
        value: float,
        valid: dict[str, Any],
        model: nn.Module,
        *,
        higher_is_better: bool,
        min_delta: float,
        patience: int,
    ) -> None:
        """Record an epoch's validation value: keep a CPU copy of the weights if it improved by more than
        ``min_delta`` (``_keep``); finish after ``patience`` epochs in a row without improvement."""
        if self.best_metric is None:
            gain = None
        else:
            gain = value - self.best_metric if higher_is_better else self.best_metric - value
        if gain is None or gain > min_delta:
            self.best_epoch, self.best_metric, self.best_valid = epoch, value, valid
            self._keep(model)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            self.finished = self.bad_epochs >= patience


def save_run(
    path: Path,
    state: RunState,
    *,
    fingerprint: dict[str, Any],
    model: nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
) -> None:
    """Write the resumable checkpoint atomically."""
    save_checkpoint(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": fingerprint,
            "epoch": state.epoch,
            "finished": state.finished,
            "model": model.state_dict(),
            "optimizers": [o.state_dict() for o in optimizers],
            "scaler": scaler.state_dict(),
            "rng": capture_rng_state(),
            "best": {
                "epoch": state.best_epoch,
                "metric": state.best_metric,
                "valid": state.best_valid,
                "weights": state.best_weights,
            },
            "bad_epochs": state.bad_epochs,
            "history": state.history,
            "average": state.average,
        },
    )


def load_run(
    path: Path,
    *,
    fingerprint: dict[str, Any],
    model: nn.Module,
    optimizers: Sequence[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    epochs: int,
) -> RunState | None:
    """Restore model, optimisers, scaler and RNGs from ``path``; None if absent, of another run or past
    this run's ``epochs``."""
    if not Path(path).is_file():
        return None
    saved = load_checkpoint(path)
    if not of_this_run(path, saved, fingerprint, CHECKPOINT_FORMAT, reached=saved.get("epoch"), end=epochs):
        return None
    model.load_state_dict(saved["model"])
    for optimizer, optimizer_state in zip(optimizers, saved["optimizers"], strict=True):
        optimizer.load_state_dict(optimizer_state)
    scaler.load_state_dict(saved["scaler"])
    restore_rng_state(saved["rng"])
    best = saved["best"]
    average = saved.get("average")
    if average is not None:  # saved from the model's device, loaded onto the CPU: back where it lived
        devices = {k: v.device for k, v in model.state_dict().items()}
        average = {k: v.to(devices[k]) for k, v in average.items()}
    return RunState(
        epoch=saved["epoch"],
        best_epoch=best["epoch"],
        best_metric=best["metric"],
        best_valid=best["valid"],
        best_weights=best["weights"],
        bad_epochs=saved["bad_epochs"],
        finished=saved["finished"],
        history=list(saved["history"]),
        average=average,
    )


@contextmanager
def averaged(model: nn.Module, average: dict[str, torch.Tensor] | None) -> Iterator[None]:
    """Inside the block the model holds ``average``'s values (and ``average`` the model's); both are back
    in place after it. The values are swapped in place, chunk by chunk: optimisers and kernels keep their
    tensors, and memory grows by one chunk, not by a copy of the model. No-op when ``average`` is None."""
    if average is None:
        yield
        return
    _swap(model.state_dict(), average)
    try:
        yield
    finally:
        _swap(model.state_dict(), average)


def _swap(weights: dict[str, torch.Tensor], average: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for key, tensor in weights.items():
            mine, theirs = tensor.view(-1), average[key].view(-1)  # state-dict tensors are contiguous
            scratch = torch.empty(min(SWAP_CHUNK, mine.numel()), dtype=mine.dtype, device=mine.device)
            for start in range(0, mine.numel(), SWAP_CHUNK):
                stop = min(start + SWAP_CHUNK, mine.numel())
                held = scratch[: stop - start]
                held.copy_(mine[start:stop])
                mine[start:stop].copy_(theirs[start:stop])
                theirs[start:stop].copy_(held)
