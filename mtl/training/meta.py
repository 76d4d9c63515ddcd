"""MetaHeac meta-training: MAML over campaigns on the train split, with checkpoints and exact resume.

One meta-step (official ``run.py::train_stage`` + ``metamodel.py::global_update``):

1. draw ``task_count`` campaigns (probability ∝ rows, √rows or uniform; without replacement by
   default, as the official code) and, for each, a support and a query batch of ``batch_size`` rows:
   ``query: independent`` draws both from all its rows (they may overlap, as the official code);
   ``disjoint`` draws them from two disjoint halves, as a test campaign's stage1 and stage2 rows are
   disjoint users (an overlapping query rewards memorising the support rows). A campaign (or half)
   with fewer rows than a batch is sampled with replacement (``small_campaigns: replace``) or used
   whole (``all``); the official code fails there;
2. inner loop, per campaign: from the current weights, ``inner_steps`` SGD steps of ``inner_lr`` on the
   support loss, every parameter (embeddings included) as a fast weight. ``second_order`` keeps the
   graph of those steps (``create_graph``, as the official code), otherwise the inner gradients are
   constants (first-order MAML, as PaddleRec in effect does). The test-time adaptation
   (``mtl.training.adaptation``) should be this same procedure -- SGD, ``inner_lr``, one step per
   epoch -- so that the initialisation is meta-learnt for the adaptation that actually happens (the
   official code meta-trains for one SGD step of 2e-4 and then adapts with 2 epochs of Adam 1e-3);
3. outer loop: Adam (``outer_lr``; decoupled ``weight_decay``, 0 as the official code) on the mean over
   campaigns of the query loss under the fast weights, plus ``embedding_weight_decay`` x row on the
   gradient of every embedding row (``add_embedding_l2``; none in the official code).

Fast weights run through ``torch.func.functional_call``; each campaign's embedding fast weights are
only the rows its two batches use (``campaigns.compact_weights``), which is exact and keeps a step
O(batch), not O(vocabulary). An epoch is ``ceil(train rows / batch_size)`` meta-steps.

Determinism: meta-step ``s`` of epoch ``e`` draws from its own generator seeded by (seed, e, s), so a run
resumed from ``checkpoints/last.pt`` (written every ``checkpoint_every`` meta-steps and at each epoch
end) ends with the same weights as an uninterrupted one. ``probe`` scores a fixed set of meta-batches
(query loss after the inner loop, no update) before and after training.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call
from tqdm import tqdm

from mtl.config import MetaTrainingParams
from mtl.errors import ConfigError
from mtl.models.metaheac import MetaHeac
from mtl.training.campaigns import Batch, CampaignSplit, compact_ids, compact_weights, concat_batches
from mtl.training.checkpoint import load_checkpoint, of_this_run, save_checkpoint
from mtl.training.guards import ensure_finite
from mtl.training.optim import embedding_parameters
from mtl.training.seeding import capture_rng_state, derive_seed, restore_rng_state

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1
META_STREAM, PROBE_STREAM = 1, 2  # keys that keep the random streams of meta-steps and probe apart
PROBE_META_STEPS = 4
EpochCallback = Callable[[int, dict[str, float]], None]


def batch_loss(model: MetaHeac, weights: dict[str, Tensor], batch: Batch, ids: Tensor | None) -> Tensor:
    """Mean BCE of ``batch`` under ``weights`` (``ids``: the batch's rows of a compact table)."""
    logits = functional_call(model, weights, (batch.features,), {"ids": ids})
    terms = model.loss_terms(logits, batch.labels)
    return torch.stack([term.mean() for term in terms.values()]).sum()


def adapted_query_loss(
    model: MetaHeac,
    weights: dict[str, Tensor],
    support: Batch,
    query: Batch,
    settings: MetaTrainingParams,
    *,
    create_graph: bool,
) -> tuple[Tensor, Tensor]:
    """(support loss before adapting, query loss after ``inner_steps`` SGD steps on the support batch)."""
    rows, local = compact_ids(model, concat_batches([support, query]).features)
    support_ids, query_ids = local[: len(support.labels)], local[len(support.labels) :]
    fast = compact_weights(weights, rows)
    first_support_loss = None
    for _ in range(settings.inner_steps):
        support_loss = batch_loss(model, fast, support, support_ids)
        if first_support_loss is None:
            first_support_loss = support_loss.detach()
        grads = torch.autograd.grad(support_loss, list(fast.values()), create_graph=create_graph)
        fast = {name: w - settings.inner_lr * g for (name, w), g in zip(fast.items(), grads)}
    return first_support_loss, batch_loss(model, fast, query, query_ids)


class TaskSampler:
    """Draws a meta-batch: campaigns, then a support and a query batch of each."""

    def __init__(self, train: CampaignSplit, settings: MetaTrainingParams):
        self.train, self.settings = train, settings
        counts = train.counts.astype(np.float64)
        weight = {"rows": counts, "sqrt": np.sqrt(counts), "uniform": np.ones_like(counts)}
        self.probability = weight[settings.task_sampling] / weight[settings.task_sampling].sum()
        if not settings.task_replacement and settings.task_count > len(counts):
            raise ConfigError(
                f"metaheac.meta.task_count={settings.task_count} campaigns per meta-step without "
                f"replacement, but split {train.name!r} has only {len(counts)} campaigns; lower "
                "task_count or set metaheac.meta.task_replacement=true"
            )

    def campaigns(self, rng: np.random.Generator) -> np.ndarray:
        """Positions (into ``train.campaigns``) of the meta-batch's campaigns."""
        return rng.choice(
            len(self.probability),
            size=self.settings.task_count,
            replace=self.settings.task_replacement,
            p=self.probability,
        )

    def sample(self, rng: np.random.Generator) -> list[tuple[Batch, Batch]]:
        """(support, query) of every campaign of one meta-batch."""
        tasks = []
        for campaign in self.campaigns(rng):
            count = int(self.train.counts[campaign])
            if self.settings.query == "disjoint" and count >= 2:
                # two halves of the campaign's rows, as stage1 and stage2 are disjoint users
                order = rng.permutation(count)
                halves = order[: count // 2], order[count // 2 :]
                tasks.append((self.batch(campaign, rng, halves[0]), self.batch(campaign, rng, halves[1])))
            else:
                tasks.append((self.batch(campaign, rng), self.batch(campaign, rng)))
        return tasks

    def batch(self, campaign: int, rng: np.random.Generator, among: np.ndarray | None = None) -> Batch:
        """``batch_size`` rows of campaign number ``campaign`` (of its rows ``among``, default all of them;
        all of those, if fewer and ``small_campaigns: all``)."""
        among = np.arange(int(self.train.counts[campaign])) if among is None else among
        count, size = len(among), self.settings.batch_size
        if count >= size:
            picks = rng.choice(count, size=size, replace=False)
        elif self.settings.small_campaigns == "replace":
            picks = rng.choice(count, size=size, replace=True)
        else:
            picks = rng.permutation(count)
        index = torch.from_numpy(self.train.starts[campaign] + among[picks]).to(self.train.data.row_id.device)
        return self.train.data.take(index)


@dataclass
class MetaResult:
    meta_steps: int
    epochs: int
    steps_per_s: float  # meta-steps / seconds spent in them (probe and checkpoints excluded), all sessions
    train_seconds: float
    wall_seconds: float
    probe_query_loss_before: float
    probe_query_loss_after: float
    resumed_from_step: int | None
    history: list[dict[str, Any]] = field(default_factory=list)


class MetaTrainer:
    def __init__(
        self,
        model: MetaHeac,
        settings: MetaTrainingParams,
        *,
        seed: int,
        checkpoint_path: Path | None,
        fingerprint: dict[str, Any],
        resume: bool = True,
        progress: bool | str = "auto",
        on_epoch_end: EpochCallback | None = None,
    ):
        self.model, self.settings, self.seed = model, settings, seed
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=settings.outer_lr, weight_decay=settings.weight_decay
        )
        self.checkpoint_path, self.fingerprint, self.resume = checkpoint_path, fingerprint, resume
        self.progress, self.on_epoch_end = progress, on_epoch_end

    def probe(self, sampler: TaskSampler) -> float:
        """Mean query loss after the inner loop over a fixed set of meta-batches (no weight change)."""
        weights = dict(self.model.named_parameters())
        losses = []
        for index in range(PROBE_META_STEPS):
            rng = np.random.default_rng(derive_seed(self.seed, PROBE_STREAM, index))
            for support, query in sampler.sample(rng):
                _, loss = adapted_query_loss(
                    self.model, weights, support, query, self.settings, create_graph=False
                )
                losses.append(loss.item())
        return float(np.mean(losses))

    def step(self, tasks: list[tuple[Batch, Batch]], epoch: int, step: int) -> tuple[float, float]:
        """One meta-step; returns (mean support loss before adapting, mean query loss)."""
        weights = dict(self.model.named_parameters())
        support_losses, query_losses = [], []
        for support, query in tasks:
            support_loss, query_loss = adapted_query_loss(
                self.model, weights, support, query, self.settings, create_graph=self.settings.second_order
            )
            support_losses.append(support_loss)
            query_losses.append(query_loss)
        loss = torch.stack(query_losses).mean()
        ensure_finite(loss, model=self.model.name, epoch=epoch, step=step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        add_embedding_l2(self.model, self.settings.embedding_weight_decay)
        self.optimizer.step()
        return torch.stack(support_losses).mean().item(), loss.item()

    def fit(self, train: CampaignSplit) -> MetaResult:
        started = time.perf_counter()
        self.model.train()
        sampler = TaskSampler(train, self.settings)
        per_epoch = math.ceil(train.rows / self.settings.batch_size)
        total = per_epoch * self.settings.epochs
        saved = self._load(total)
        done, history = (saved["step"], list(saved["history"])) if saved else (0, [])
        probe_before = saved["probe_before"] if saved else self.probe(sampler)
        sums, count, seconds = np.zeros(2), 0, 0.0
        bar = tqdm(
            total=total,
            initial=done,
            unit="meta-step",
            desc="metaheac",
            disable=progress_disabled(self.progress),
            leave=False,
        )
        for index in range(done, total):
            epoch, step = index // per_epoch + 1, index % per_epoch + 1
            tick = time.perf_counter()
            tasks = sampler.sample(np.random.default_rng(derive_seed(self.seed, META_STREAM, epoch, step)))
            sums += self.step(tasks, epoch, step)
            seconds += time.perf_counter() - tick
            count += 1
            bar.update(1)
            if (index + 1) % self.settings.checkpoint_every and step != per_epoch:
                continue
            record = {
                "epoch": epoch,
                "step": index + 1,
                "support_loss": float(sums[0] / count),  # plain floats: checkpoints load weights-only
                "query_loss": float(sums[1] / count),
                "steps_per_s": count / seconds,
                "seconds": seconds,
            }
            history.append(record)
            self._save(index + 1, history, probe_before)
            if self.on_epoch_end and step == per_epoch:
                self.on_epoch_end(epoch, {k: float(v) for k, v in record.items()})
            sums, count, seconds = np.zeros(2), 0, 0.0
        bar.close()
        train_seconds = sum(r["seconds"] for r in history)
        return MetaResult(
            meta_steps=total,
            epochs=self.settings.epochs,
            steps_per_s=total / train_seconds if train_seconds > 0 else float("nan"),
            train_seconds=train_seconds,
            wall_seconds=time.perf_counter() - started,
            probe_query_loss_before=probe_before,
            probe_query_loss_after=self.probe(sampler),
            resumed_from_step=done or None,
            history=history,
        )

    def _save(self, step: int, history: list[dict[str, Any]], probe_before: float) -> None:
        if self.checkpoint_path is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": capture_rng_state(),
            "history": history,
            "probe_before": probe_before,
        }
        save_checkpoint(self.checkpoint_path, state)

    def _load(self, total: int) -> dict[str, Any] | None:
        saved = load_resumable(
            self.checkpoint_path,
            self.fingerprint,
            self.resume,
            CHECKPOINT_FORMAT,
            reached=lambda saved: saved["step"],
            end=total,
            unit="meta-step",
        )
        if saved:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            restore_rng_state(saved["rng"])
            log.info("resuming metaheac meta-training after meta-step %d", saved["step"])
        return saved


def add_embedding_l2(model: MetaHeac, l2: float) -> None:
    """Add ``l2 x row`` to the gradient of every row of ``model``'s embedding tables (call between
    ``backward`` and the optimiser step): the gradient of ``l2 / 2 x ||table||^2``, coupled to Adam.

    Adam divides it by the row's own second moment, so a row the batches seldom touch (most kw/topic
    tokens, whose few rows it would otherwise memorise) is pulled toward zero at about the learning rate
    per step, while a frequent row's data gradient outweighs it. Measured on the synthetic look-alike
    data (``benchmarks/metaheac.py``; README, "Quality and speed"): it is what lets the network learn
    past its first epoch, and the adaptation reach further from it.
    """
    if l2 == 0.0:
        return
    for table in embedding_parameters(model):
        if table.grad is None:
            table.grad = l2 * table.detach()
        else:
            table.grad.add_(table.detach(), alpha=l2)


def progress_disabled(setting: bool | str) -> bool | None:
    """tqdm's ``disable`` for ``train.progress``: None (a bar on a TTY only) for ``auto``."""
    return None if setting == "auto" else not setting


def load_resumable(
    path: Path | None,
    fingerprint: dict[str, Any],
    resume: bool,
    version: int,
    *,
    reached: Callable[[dict[str, Any]], int],
    end: int,
    unit: str,
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if resuming is on, it belongs to this run (same fingerprint) and it is
    not past the run's ``end`` (``reached(checkpoint)`` ``unit``s done)."""
    if path is None or not path.is_file():
        return None
    if not resume:
        log.info("train.resume is false: ignoring %s and starting afresh", path.resolve())
        return None
    saved = load_checkpoint(path)
    if not of_this_run(path, saved, fingerprint, version, reached=reached(saved), end=end, unit=unit):
        return None
    return saved
