"""The baseline without meta-learning: MetaHeac's network trained by plain minibatch Adam.

Every epoch is one pass over all train rows (every campaign pooled) in a shuffled order drawn from
(seed, epoch); each step is Adam (``metaheac.baselines.lr``, decoupled ``weight_decay``, dense gradients
-- the optimiser the meta-training's outer loop uses) on the batch's mean BCE, with the same L2 on every
embedding row as the outer loop (``embedding_weight_decay``, ``meta.add_embedding_l2``). With the
defaults one epoch takes as many optimiser steps as one meta-training epoch. A checkpoint after every
epoch lets an interrupted run resume exactly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mtl.config import BaselineParams
from mtl.models.metaheac import MetaHeac
from mtl.training.checkpoint import save_checkpoint
from mtl.training.data import TensorSplit
from mtl.training.guards import ensure_finite
from mtl.training.meta import add_embedding_l2, batch_loss, load_resumable, progress_disabled
from mtl.training.seeding import capture_rng_state, derive_seed, restore_rng_state

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1
PLAIN_STREAM = 4


@dataclass
class PlainResult:
    epochs: int
    rows_per_s: float
    train_seconds: float
    resumed_from_epoch: int | None
    history: list[dict[str, Any]] = field(default_factory=list)


def train_plain(
    model: MetaHeac,
    train: TensorSplit,
    settings: BaselineParams,
    *,
    seed: int,
    checkpoint_path: Path | None,
    fingerprint: dict[str, Any],
    resume: bool = True,
    progress: bool | str = "auto",
) -> PlainResult:
    """Fit ``model`` on every row of ``train``; returns timings and the per-epoch history."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    weights = dict(model.named_parameters())
    saved = load_resumable(
        checkpoint_path,
        fingerprint,
        resume,
        CHECKPOINT_FORMAT,
        reached=lambda saved: len(saved["history"]),
        end=settings.epochs,
        unit="epoch",
    )
    history: list[dict[str, Any]] = []
    resumed = len(saved["history"]) if saved else None
    if saved:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        restore_rng_state(saved["rng"])
        history = list(saved["history"])
        log.info("resuming the plain baseline after epoch %d", len(history))
    model.train()
    device = train.row_id.device
    for epoch in range(len(history) + 1, settings.epochs + 1):
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(derive_seed(seed, PLAIN_STREAM, epoch))
        order = torch.randperm(len(train), generator=generator).to(device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        bar = tqdm(
            total=len(train),
            unit="rows",
            desc=f"metaheac plain epoch {epoch}",
            leave=False,
            disable=progress_disabled(progress),
        )
        for step, rows in enumerate(order.split(settings.batch_size), start=1):
            batch = train.take(rows)
            loss = batch_loss(model, weights, batch, None)
            ensure_finite(loss, model=f"{model.name} (plain baseline)", epoch=epoch, step=step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            add_embedding_l2(model, settings.embedding_weight_decay)
            optimizer.step()
            total += loss.detach().double() * len(rows)
            bar.update(len(rows))
        bar.close()
        seconds = time.perf_counter() - started
        loss_mean = total.item() / len(train)
        history.append(
            {"epoch": epoch, "train_loss": loss_mean, "seconds": seconds, "rows_per_s": len(train) / seconds}
        )
        if checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "fingerprint": fingerprint,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": capture_rng_state(),
                    "history": history,
                },
            )
    train_seconds = sum(r["seconds"] for r in history)
    return PlainResult(
        epochs=settings.epochs,
        rows_per_s=len(train) * len(history) / train_seconds if train_seconds > 0 else float("nan"),
        train_seconds=train_seconds,
        resumed_from_epoch=resumed,
        history=history,
    )
