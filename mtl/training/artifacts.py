"""The model directory: what a trained model leaves behind and how it is read back.

``paths.model_dir(data_dir, dataset, model)`` = ``<data_dir>/models/<dataset>/<model>/`` holds

* ``model.json``   -- everything needed to rebuild the network without params.yaml: model name,
  hyperparameters, feature schema, tasks and funnel, the prepared data's ``content_hash``, the seed and
  the training parameters, the mtl version;
* ``weights.pt``   -- the selected (best-validation-epoch) ``state_dict``; load with
  ``load_trained_model`` (``torch.load(weights_only=True)``);
* ``metrics.json`` -- ``training`` (samples/s, wall time, epochs run, best epoch, device, ...) and
  ``splits.<split>`` (per-output metrics; ``valid`` from training, others from ``mtl evaluate``);
* ``history.json`` -- one flat record per epoch (train loss terms, validation metrics, samples/s): a
  ``dvc plots`` source (x: ``epoch``);
* ``checkpoints/last.pt`` -- the resumable state after the last finished epoch;
* ``eval/<split>/`` -- ``metrics.json``, ``predictions.parquet`` (row_id, labels, ``p_<output>``),
  ``plots/roc_<output>.json`` (``[{fpr, tpr, threshold}]``) and ``plots/pr_<output>.json``
  (``[{recall, precision, threshold}]``): ``dvc plots`` sources, at most a few hundred points each.
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

from mtl import __version__
from mtl.datasets.prepared import DatasetMetadata, write_json_atomic
from mtl.errors import ModelConfigError
from mtl.models import ModelSpec, MultiTaskModel, build_model
from mtl.training.checkpoint import load_checkpoint, save_checkpoint

MODEL_CONFIG = "model.json"
WEIGHTS = "weights.pt"
METRICS = "metrics.json"
HISTORY = "history.json"
PREDICTIONS = "predictions.parquet"
PLOTS = "plots"


def record_split_metrics(
    model_dir: Path, dataset: str, model: str, split: str, metrics: dict[str, Any]
) -> None:
    """Set ``splits.<split>`` in the model's metrics.json, under a file lock: evaluations of different
    splits (MetaHeac's hot and cold, or test and valid) may run at the same time."""
    summary_path = Path(model_dir) / METRICS
    with open(summary_path.with_name(f".{summary_path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        summary = read_json(summary_path, {"dataset": dataset, "model": model, "splits": {}})
        summary.setdefault("splits", {})[split] = metrics
        write_json_atomic(summary_path, summary)


def model_config(model: MultiTaskModel, metadata: DatasetMetadata, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model.name,
        "dataset": metadata.dataset,
        "hyperparameters": model.params.model_dump(mode="json"),
        "spec": ModelSpec.from_metadata(metadata).to_json(),
        "content_hash": metadata.content_hash,
        "mtl_version": __version__,
        **extra,
    }


def save_trained_model(model_dir: Path, model: MultiTaskModel, config: dict[str, Any]) -> None:
    """Write weights then model.json (each atomically), so a model.json always has its weights."""
    model_dir = Path(model_dir)
    save_checkpoint(model_dir / WEIGHTS, model.state_dict())
    write_json_atomic(model_dir / MODEL_CONFIG, config)


def load_trained_model(model_dir: Path) -> tuple[MultiTaskModel, dict[str, Any]]:
    """Rebuild a trained model from its directory alone (model.json + weights.pt)."""
    model_dir = Path(model_dir)
    path = model_dir / MODEL_CONFIG
    if not path.is_file():
        raise ModelConfigError(f"{path} not found: train the model first (`mtl train DATASET MODEL`)")
    try:
        config = json.loads(path.read_text())
        spec = ModelSpec.from_json(config["spec"])
        model = build_model(config["model"], spec, config["hyperparameters"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelConfigError(f"{path} is not a valid model configuration: {exc}") from None
    try:
        model.load_state_dict(load_checkpoint(model_dir / WEIGHTS))
    except RuntimeError as exc:  # missing/unexpected keys or shape mismatches
        raise ModelConfigError(f"{model_dir / WEIGHTS} does not match {path}: {exc}") from None
    model.eval()
    return model, config


def read_json(path: Path, default: Any) -> Any:
    return json.loads(Path(path).read_text()) if Path(path).is_file() else default
