"""Train and evaluate one model on one prepared dataset, writing the model directory (see ``artifacts``).

``pipeline.train``/``pipeline.evaluate`` call these. Under ``torchrun`` every rank runs ``train_model``;
rank 0 writes the files, and every rank returns the same summary.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtl import paths
from mtl.config import Params
from mtl.datasets.prepared import DatasetMetadata, load_metadata, write_json_atomic
from mtl.errors import ConfigError, ModelConfigError
from mtl.evaluation import (
    evaluate_predictions,
    evaluation_targets,
    precision_recall_points,
    roc_curve_points,
    target_labels,
)
from mtl.models import ModelSpec, build_model
from mtl.training import artifacts
from mtl.training.checkpoint import code_version
from mtl.training.data import SplitSource
from mtl.training.device import resolve_device, resolve_precision
from mtl.training.distributed import setup_distributed, teardown_distributed
from mtl.training.predict import Predictions, predict
from mtl.training.seeding import seed_everything
from mtl.training.trainer import EpochCallback, Trainer

log = logging.getLogger(__name__)
TEST_SPLIT = "test"
# train settings that cannot change the result, or (epochs) that a resumed run may extend: a checkpoint
# written under other values still resumes, unless it holds more epochs than asked (Trainer._resume)
_NOT_IN_FINGERPRINT = {
    "device",
    "epochs",
    "eval_batch_size",
    "compile",
    "resume",
    "progress",
    "num_threads",
    "nan_check_interval",
}


def train_model(
    dataset: str,
    model_name: str,
    *,
    data_dir: Path,
    params: Params,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Fit ``model_name`` on the train split, select on the validation split, write the model directory."""
    settings = params.train
    if settings.validation_split == TEST_SPLIT:
        raise ConfigError(
            "train.validation_split must not be 'test': model selection never looks at test data"
        )
    prepared = paths.prepared_dir(data_dir, dataset)
    metadata = load_metadata(prepared)
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    dist, device = setup_distributed(settings.device)
    try:
        seed_everything(params.seed)
        model = build_model(model_name, metadata, params)
        precision = resolve_precision(settings.precision, device)
        sources = {
            split: _source(prepared, split, metadata, params, device)
            for split in ("train", settings.validation_split)
        }
        train_settings = settings.model_dump(mode="json")
        fingerprint = _json(
            {
                "model": model_name,
                "hyperparameters": model.params.model_dump(mode="json"),
                "content_hash": metadata.content_hash,
                "seed": params.seed,
                "code": code_version(),
                "train": {k: v for k, v in train_settings.items() if k not in _NOT_IN_FINGERPRINT},
            }
        )
        model_dir = paths.model_dir(data_dir, dataset, model_name)
        trainer = Trainer(
            model,
            settings,
            seed=params.seed,
            device=device,
            precision=precision,
            dist=dist,
            checkpoint_dir=paths.checkpoint_dir(data_dir, dataset, model_name),
            fingerprint=fingerprint,
            on_epoch_end=on_epoch_end,
        )
        result = trainer.fit(sources["train"], sources[settings.validation_split])
        training = {k: v for k, v in vars(result).items() if k not in ("history", "best_valid")}
        training["streaming"] = sources["train"].streaming
        if dist.is_main:
            config = artifacts.model_config(model, metadata, {"seed": params.seed, "train": train_settings})
            artifacts.save_trained_model(model_dir, model, config)
            write_json_atomic(model_dir / artifacts.HISTORY, result.history)
            metrics = {
                "dataset": dataset,
                "model": model_name,
                "content_hash": metadata.content_hash,
                "training": training,
                "splits": {settings.validation_split: result.best_valid},
            }
            write_json_atomic(model_dir / artifacts.METRICS, metrics)
        dist.barrier()
    finally:
        teardown_distributed(dist)
    return {
        "dataset": dataset,
        "model": model_name,
        "model_dir": str(model_dir),
        "weights": str(model_dir / artifacts.WEIGHTS),
        "metrics_file": str(model_dir / artifacts.METRICS),
        "content_hash": metadata.content_hash,
        "training": training,
        "valid": result.best_valid,
    }


def evaluate_model(
    dataset: str, model_name: str, *, data_dir: Path, params: Params, split: str = TEST_SPLIT
) -> dict[str, Any]:
    """Score a trained model on one split; write eval/<split>/ and update the model's metrics.json."""
    model_dir = paths.model_dir(data_dir, dataset, model_name)
    model, config = artifacts.load_trained_model(model_dir)
    prepared = paths.prepared_dir(data_dir, dataset)
    metadata = load_metadata(prepared)
    if ModelSpec.from_metadata(metadata).to_json() != config["spec"]:
        raise ModelConfigError(
            f"{model_dir} was trained on a different feature schema or task list than {prepared} now has; "
            f"retrain it (`mtl train {dataset} {model_name}`)"
        )
    if metadata.content_hash != config["content_hash"]:
        log.warning(
            "%s was trained on data %s; scoring it on data %s",
            model_name,
            config["content_hash"],
            metadata.content_hash,
        )
    device = resolve_device(params.train.device)
    precision = resolve_precision(params.train.precision, device)
    source = _source(prepared, split, metadata, params, device)
    model.to(device)
    started = time.perf_counter()
    predictions = predict(model, source, batch_size=params.train.eval_batch_size, precision=precision)
    seconds = time.perf_counter() - started
    metrics = evaluate_predictions(
        model.spec.tasks, model.funnel, predictions.labels, predictions.probabilities
    )
    metrics.update(
        {
            "loss": predictions.loss,
            "rows_per_s": len(predictions) / seconds if seconds > 0 else None,
            "content_hash": metadata.content_hash,
        }
    )
    out = paths.evaluation_dir(data_dir, dataset, model_name, split)
    plots = _write_evaluation(out, model.spec, predictions, metrics)
    artifacts.record_split_metrics(model_dir, dataset, model_name, split, metrics)
    return {
        "dataset": dataset,
        "model": model_name,
        "split": split,
        "model_dir": str(model_dir),
        "metrics_file": str(out / artifacts.METRICS),
        "predictions": str(out / artifacts.PREDICTIONS),
        "plots": plots,
        "metrics": metrics,
    }


def _write_evaluation(
    out: Path, spec: ModelSpec, predictions: Predictions, metrics: dict[str, Any]
) -> list[str]:
    write_json_atomic(out / artifacts.METRICS, metrics)
    columns = {"row_id": pa.array(predictions.row_id)}
    columns.update(
        {task: pa.array(predictions.labels[:, i].astype(np.int8)) for i, task in enumerate(spec.tasks)}
    )
    columns.update({f"p_{name}": pa.array(values) for name, values in predictions.probabilities.items()})
    tmp = out / f".{artifacts.PREDICTIONS}.tmp"
    pq.write_table(pa.table(columns), tmp, compression="zstd")
    tmp.replace(out / artifacts.PREDICTIONS)
    written = []
    for target in evaluation_targets(spec.tasks, spec.funnel):
        y, mask = target_labels(target, predictions.labels, spec.tasks)
        scores = predictions.probabilities[target.output][mask]
        for kind, points in (
            ("roc", roc_curve_points(y[mask], scores)),
            ("pr", precision_recall_points(y[mask], scores)),
        ):
            path = out / artifacts.PLOTS / f"{kind}_{target.output}.json"
            write_json_atomic(path, points)
            written.append(str(path))
    return written


def _source(
    prepared: Path, split: str, metadata: DatasetMetadata, params: Params, device: torch.device
) -> SplitSource:
    settings = params.train
    return SplitSource(
        prepared,
        split,
        metadata,
        device=device,
        max_in_memory_rows=settings.max_in_memory_rows,
        chunk_rows=settings.stream_chunk_rows,
    )


def _json(value: Any) -> Any:
    """Round-trip through JSON so the fingerprint compares equal after a checkpoint reload."""
    return json.loads(json.dumps(value, sort_keys=True))
