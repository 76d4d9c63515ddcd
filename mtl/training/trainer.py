"""The training loop: epochs of shuffled batches, validation, early stopping, checkpoints, resume.

* Model selection reads ``train.validation_split`` only; the test split is never opened here. When
  training ends (early stop or last epoch) the best epoch's weights are restored.
* With ``train.weight_average_decay`` > 0 the weights validated, selected and restored are a moving
  average of the epoch-end weights (``RunState.update_average``); training itself goes on from the
  epoch-end weights. The validation metrics reported are the average's.
* After every epoch ``checkpoints/last.pt`` is written atomically: model, optimisers, grad scaler, RNG
  states, epoch, early-stopping state, best weights, weight average and history. A run started again with
  the same fingerprint (model, hyperparameters, data hash, seed, optimisation settings) resumes after the
  last finished epoch and ends exactly where an uninterrupted run would (on CPU, bit for bit).
* A NaN/inf loss raises ``TrainingError`` naming model, epoch and step, before any weight changes.
* ``on_epoch_end(epoch, metrics)`` is called on rank 0 after each epoch's checkpoint with a flat dict
  of floats (train loss terms, validation metrics, samples/s), e.g. for MLflow ``log_metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mtl.config import TrainParams
from mtl.errors import TrainingError
from mtl.evaluation import evaluate_predictions
from mtl.models import MultiTaskModel
from mtl.models.layers import InputPlanner, prepare_for_compile
from mtl.training.data import SplitSource, prefetched, train_batches
from mtl.training.device import Precision
from mtl.training.distributed import DistributedContext
from mtl.training.guards import LossGuard
from mtl.training.optim import build_optimizers, scale_embedding_decay, use_sparse_embeddings
from mtl.training.predict import predict
from mtl.training.state import RunState, averaged, load_run, save_run

log = logging.getLogger(__name__)
EpochCallback = Callable[[int, dict[str, float]], None]
CHECKPOINT_FILE = "last.pt"


@dataclass
class FitResult:
    """What a finished fit reports (all JSON-able but ``history`` entries' None values)."""

    best_epoch: int
    best_metric: float
    best_valid: dict[str, Any]  # evaluate_predictions() of the best epoch on the validation split
    epochs_run: int
    stopped_early: bool  # by early stopping (not by reaching train.epochs)
    resumed_from_epoch: int | None
    train_rows_per_epoch: int
    samples_per_s: float  # training rows / training seconds (validation excluded), all epochs
    train_seconds: float
    wall_seconds: float
    device: str
    precision: str
    world_size: int
    embedding_gradients: str
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    def __init__(
        self,
        model: MultiTaskModel,
        params: TrainParams,
        *,
        seed: int,
        device: torch.device,
        precision: Precision,
        dist: DistributedContext | None = None,
        checkpoint_dir: Path | None = None,
        fingerprint: dict[str, Any] | None = None,
        on_epoch_end: EpochCallback | None = None,
    ):
        self.model = model.to(device)
        self.params = params
        self.seed = seed
        self.device = device
        self.precision = precision
        self.dist = dist or DistributedContext()
        self.checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
        self.on_epoch_end = on_epoch_end
        self.sparse = params.embedding_gradients == "sparse" or (
            params.embedding_gradients == "auto" and self.dist.backend != "nccl"
        )
        # the resolved gradient mode decides the optimisers, so a checkpoint only fits the same mode
        self.fingerprint = {**(fingerprint or {}), "sparse_embeddings": self.sparse}
        if self.sparse and self.dist.backend == "nccl":
            raise TrainingError(
                "NCCL has no sparse all-reduce: set train.embedding_gradients to auto or dense"
            )
        if self.dist.enabled and any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()
        ):
            if device.type == "cuda":
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            else:
                log.warning(
                    "batch norm under gloo uses per-rank statistics: results depend on the rank count"
                )
        self.scaler = precision.grad_scaler()
        # row mode (mtl.models.embedding) where no one else reads the sparse gradient: DDP all-reduces it
        # and the fp16 grad scaler unscales it
        rows = not self.dist.enabled and not self.scaler.is_enabled()
        use_sparse_embeddings(self.model, self.sparse, rows=rows)
        self.optimizers = build_optimizers(self.model, params, sparse=self.sparse)
        network: torch.nn.Module = self.model
        if self.dist.enabled:
            network = DistributedDataParallel(
                self.model, device_ids=[device] if device.type == "cuda" else None
            )
        if params.compile:
            prepare_for_compile()
        self.network = torch.compile(network) if params.compile else network
        # the batch thread plans each batch's input layer ahead of its step (not for a compiled network,
        # which would guard on the planned batch's type, nor under DDP: no row mode there, and on GPUs it
        # rebuilds its inputs)
        self.planner = None if params.compile or self.dist.enabled else InputPlanner(self.model)

    # --- the loop ----------------------------------------------------------------------------------

    def fit(self, train: SplitSource, valid: SplitSource) -> FitResult:
        started = time.perf_counter()
        state, resumed = self._resume()
        scale_embedding_decay(
            self.model,
            self.optimizers,
            self.params,
            (chunk.features for chunk in train.chunks()),
            train.rows,
            sparse=self.sparse,
        )
        while not state.finished and state.epoch < self.params.epochs:
            epoch = state.epoch + 1
            record = self._train_epoch(train, epoch)
            if self.params.weight_average_decay > 0:
                state.update_average(self.model, self.params.weight_average_decay)
            with averaged(self.model, state.average):
                valid_metrics = self._validate(valid)
                record.update(_flat_validation(valid_metrics))
                self._update_early_stopping(state, epoch, valid_metrics, record)
            state.history.append(record)
            state.epoch = epoch
            if self.dist.is_main:
                if self.checkpoint_path:
                    save_run(self.checkpoint_path, state, **self._run_parts())
                log.info(_describe_epoch(self.model.name, epoch, self.params.epochs, record))
                if self.on_epoch_end:
                    self.on_epoch_end(epoch, {k: float(v) for k, v in record.items() if v is not None})
        if state.best_weights is None:
            raise TrainingError(f"{self.model.name}: no epoch finished, so there are no weights to keep")
        self.model.load_state_dict(state.best_weights)
        train_seconds = sum(r["train_seconds"] for r in state.history)
        train_rows = sum(r["train_rows"] for r in state.history)
        return FitResult(
            best_epoch=state.best_epoch,
            best_metric=float(state.best_metric),
            best_valid=state.best_valid,
            epochs_run=state.epoch,
            stopped_early=state.finished,
            resumed_from_epoch=resumed,
            train_rows_per_epoch=train.rows,
            samples_per_s=train_rows / train_seconds if train_seconds > 0 else 0.0,
            train_seconds=train_seconds,
            wall_seconds=time.perf_counter() - started,
            device=str(self.device),
            precision=self.precision.name,
            world_size=self.dist.world_size,
            embedding_gradients="sparse" if self.sparse else "dense",
            history=state.history,
        )

    def _train_epoch(self, source: SplitSource, epoch: int) -> dict[str, Any]:
        self.model.train()
        progress = self.params.progress
        bar = tqdm(
            total=source.rows,
            unit="rows",
            unit_scale=True,
            desc=f"{self.model.name} epoch {epoch}/{self.params.epochs}",
            # None = tqdm's own rule: a bar on a TTY only
            disable=True if not self.dist.is_main else (None if progress == "auto" else not progress),
            leave=False,
        )
        term_sums: torch.Tensor | None = None
        names: list[str] = []
        rows = step = 0
        started, started_cpu = time.perf_counter(), time.process_time()
        batches = prefetched(
            train_batches(
                source,
                batch_size=self.params.batch_size,
                seed=self.seed,
                epoch=epoch,
                rank=self.dist.rank,
                world_size=self.dist.world_size,
                plan=self.planner,
            )
        )
        every = 1 if self.device.type == "cpu" else self.params.nan_check_interval
        guard = LossGuard(self.model.name, epoch, device=self.device, every=every, dist=self.dist)
        for step, (batch, global_rows) in enumerate(batches, start=1):
            with self.precision.autocast():
                logits = self.network(batch.features)
            terms = self.model.loss_terms(logits, batch.labels)
            per_term = torch.stack([t.sum() for t in terms.values()])
            # sum over rows / global batch rows x ranks: DDP's gradient average then equals the
            # gradient of the global batch mean, however the batch was split
            loss = per_term.sum() * (self.dist.world_size / global_rows)
            guard.observe(loss, step)
            for optimizer in self.optimizers:
                optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            for optimizer in self.optimizers:
                self.scaler.step(optimizer)
            self.scaler.update()
            term_sums = per_term.detach() if term_sums is None else term_sums + per_term.detach()
            names = list(terms)
            rows += global_rows
            bar.update(global_rows)
        bar.close()
        guard.check()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
        if term_sums is None:
            raise TrainingError(f"{self.model.name}: the training split {source.split!r} yielded no batch")
        means = (self.dist.all_reduce_sum(term_sums.double()) / rows).tolist()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": sum(means)}
        record.update({f"train_loss_{name}": value for name, value in zip(names, means)})
        record.update(
            {
                "train_rows": rows,
                "train_steps": step,
                "train_seconds": seconds,
                "train_cpu_seconds": cpu_seconds,  # this process's CPU time: immune to other load
                "samples_per_s": rows / seconds,
            }
        )
        return record

    def _validate(self, source: SplitSource) -> dict[str, Any]:
        # every rank scores the whole validation split with identical weights: identical decisions, no
        # communication (costs one forward pass per rank over a split ~10% of train)
        predictions = predict(
            self.model, source, batch_size=self.params.eval_batch_size, precision=self.precision
        )
        metrics = evaluate_predictions(
            self.model.spec.tasks, self.model.funnel, predictions.labels, predictions.probabilities
        )
        metrics["loss"] = predictions.loss
        return metrics

    def _update_early_stopping(
        self, state: RunState, epoch: int, valid: dict[str, Any], record: dict[str, Any]
    ) -> None:
        rule = self.params.early_stopping
        value = valid[rule.metric]
        if value is None:
            raise TrainingError(
                f"{self.model.name}: validation {rule.metric} is undefined at epoch {epoch} (every "
                f"validation AUC has a single class); use --set train.early_stopping.metric=loss"
            )
        state.observe(
            epoch,
            value,
            valid,
            self.model,
            higher_is_better=rule.metric == "auc_mean",
            min_delta=rule.min_delta,
            patience=rule.patience,
        )
        record["best_epoch"] = state.best_epoch

    # --- checkpoints -------------------------------------------------------------------------------

    def _resume(self) -> tuple[RunState, int | None]:
        path = self.checkpoint_path
        if path is None:
            return RunState(), None
        if path.is_file() and not self.params.resume:
            log.info("train.resume is false: ignoring %s and starting afresh", path.resolve())
            return RunState(), None
        state = load_run(path, **self._run_parts(), epochs=self.params.epochs)
        if state is None:
            return RunState(), None
        log.info("resuming %s after epoch %d from %s", self.model.name, state.epoch, path)
        return state, state.epoch

    def _run_parts(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "model": self.model,
            "optimizers": self.optimizers,
            "scaler": self.scaler,
        }


def _flat_validation(metrics: dict[str, Any]) -> dict[str, Any]:
    flat = {
        "valid_loss": metrics["loss"],
        "valid_auc_mean": metrics["auc_mean"],
        "valid_logloss_mean": metrics["logloss_mean"],
    }
    for output, values in metrics["outputs"].items():
        flat[f"valid_{output}_auc"] = values["auc"]
        flat[f"valid_{output}_logloss"] = values["logloss"]
    return flat


def _describe_epoch(model: str, epoch: int, epochs: int, record: dict[str, Any]) -> str:
    auc = record.get("valid_auc_mean")
    return (
        f"{model} epoch {epoch}/{epochs}: train loss {record['train_loss']:.5f}, valid loss "
        f"{record['valid_loss']:.5f}, valid AUC mean {'n/a' if auc is None else f'{auc:.4f}'}, "
        f"{record['samples_per_s']:,.0f} rows/s (best epoch {record['best_epoch']})"
    )


__all__ = ["CHECKPOINT_FILE", "EpochCallback", "FitResult", "Trainer"]
