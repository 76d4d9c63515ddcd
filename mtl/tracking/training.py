"""A training run with tracking: connect, group under the pipeline's parent run, log params, lineage,
per-epoch metrics, the training summary, the data input and the served model; failures mark the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtl import paths
from mtl.config import Params
from mtl.datasets.prepared import ENCODERS_FILE, DatasetMetadata, load_metadata
from mtl.tracking import runs
from mtl.tracking.lineage import TAG_DVC_HASH, lineage_tags, log_prepared_input
from mtl.tracking.store import Tracking, connect, errors
from mtl.training import artifacts

log = logging.getLogger(__name__)
TAG_MODEL_URI = "mtl.model_uri"
TAG_MODEL_ID = "mtl.model_id"
Fit = Callable[..., dict[str, Any]]


def tracked_train(
    fit: Fit,
    dataset: str,
    model: str,
    *,
    data_dir: Path,
    params: Params,
    run_context: dict[str, Any],
    dvc_hash: Callable[[], str],
    on_epoch_end: runs.EpochCallback | None = None,
) -> dict[str, Any]:
    """``fit(dataset, model, data_dir=, params=, on_epoch_end=)`` inside a child run of the pipeline's run."""
    with connect(params) as tracking:
        prepared = paths.prepared_dir(data_dir, dataset)
        metadata = load_metadata(prepared)
        record = _open_run(tracking, dataset, model, params, metadata, run_context, dvc_hash)
        run_id = record["mlflow_run_id"]
        epochs = runs.EpochLogger(tracking, run_id, then=on_epoch_end)
        try:
            result = fit(dataset, model, data_dir=data_dir, params=params, on_epoch_end=epochs)
            with errors(f"log the trained model of {dataset}/{model} to run {run_id}"):
                epochs.backfill(artifacts.read_json(Path(result["model_dir"]) / artifacts.HISTORY, []))
                model_uri = _finish(tracking, run_id, dataset, prepared, metadata, result)
        except BaseException as exc:
            _fail(tracking, run_id, exc)
            raise
        finally:
            _touch_parent(tracking, record["parent_run_id"])
        runs.write_run_file(Path(result["model_dir"]), tracking, {**record, "model_uri": model_uri})
        return {**result, "model": model, "mlflow_run_id": run_id}


def _open_run(
    tracking: Tracking,
    dataset: str,
    model: str,
    params: Params,
    metadata: DatasetMetadata,
    run_context: dict[str, Any],
    dvc_hash: Callable[[], str],
) -> dict[str, str]:
    """The experiment, the pipeline's parent run and a RUNNING child run with its lineage tags and every
    parameter; returns what ``tracking.json`` records about it."""
    tags = lineage_tags(dataset, metadata, run_context.get("dvc_hash") or dvc_hash(), run_context)
    tags["mtl.seed"] = str(params.seed)
    with errors(f"start the training run of {dataset}/{model}"):
        experiment_id = tracking.experiment_id(dataset)
        key = runs.pipeline_run_key(run_context)
        parent_id = runs.parent_run(tracking, experiment_id, key, run_context)
        run_id = runs.start_training_run(
            tracking, experiment_id, parent_id, model, {**tags, runs.TAG_PIPELINE_RUN: key}
        )
        runs.log_params(tracking, run_id, params.flat())
        _log_drift(tracking, run_id, metadata)
    log.info("tracking %s/%s in MLflow run %s (parent %s)", dataset, model, run_id, parent_id)
    return {
        "mlflow_run_id": run_id,
        "experiment_id": experiment_id,
        "parent_run_id": parent_id,
        "pipeline_run_id": key,
        "data_dvc_hash": tags[TAG_DVC_HASH],
        "content_hash": metadata.content_hash,
    }


def _log_drift(tracking: Tracking, run_id: str, metadata: DatasetMetadata) -> None:
    """The prepared data's drift against the version it replaced (``mtl.validation``): params + metrics."""
    from mtl.validation import drift_log_record

    drift_params, metrics = drift_log_record(metadata.drift)
    runs.log_params(tracking, run_id, drift_params)
    entities = runs.metric_entities(metrics)
    for start in range(0, len(entities), 1000):  # MLflow's limit per call
        tracking.client.log_batch(run_id, metrics=entities[start : start + 1000])


def _finish(
    tracking: Tracking,
    run_id: str,
    dataset: str,
    prepared: Path,
    metadata: DatasetMetadata,
    result: dict[str, Any],
) -> str | None:
    """Training summary, data inputs and the pyfunc model (where the data has encoders); ends the run
    FINISHED. Returns the model URI."""
    import mlflow

    from mtl.serving.package import log_pyfunc

    client = tracking.client
    numbers, labels = {}, {}
    for key, value in result.get("training", {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            labels[f"mtl.training.{key}"] = str(value)
        else:
            numbers[f"training_{key}"] = float(value)
    numbers.update(_best_valid(result.get("valid") or {}))
    client.log_batch(
        run_id,
        metrics=runs.metric_entities(numbers),
        tags=[runs.run_tag(k, v) for k, v in labels.items()],
    )
    log_prepared_input(client, run_id, dataset, prepared, metadata, "training")
    if not (prepared / ENCODERS_FILE).is_file():  # e.g. tests.support.prepared: ids, no raw values
        log.warning("%s has no %s: no servable model is logged for run %s", prepared, ENCODERS_FILE, run_id)
        client.set_tag(run_id, "mtl.model_logged", f"false: {prepared} has no {ENCODERS_FILE}")
        client.set_terminated(run_id, "FINISHED")
        return None
    with mlflow.start_run(run_id=run_id):
        info = log_pyfunc(Path(result["model_dir"]), prepared)
        mlflow.set_tags({TAG_MODEL_URI: info.model_uri, TAG_MODEL_ID: info.model_id or ""})
    return info.model_uri


def _best_valid(valid: dict[str, Any]) -> dict[str, float]:
    """The selected epoch's validation metrics (``best_valid_<output>_auc`` ...), finite or NaN."""
    out = {}
    for key in ("loss", "auc_mean", "logloss_mean"):
        if isinstance(valid.get(key), (int, float)):
            out[f"best_valid_{key}"] = float(valid[key])
    for output, metrics in (valid.get("outputs") or {}).items():
        for key in ("auc", "logloss"):
            if metrics.get(key) is not None:
                out[f"best_valid_{output}_{key}"] = float(metrics[key])
    return out


def _fail(tracking: Tracking, run_id: str, exc: BaseException) -> None:
    """Mark the run FAILED (KILLED on Ctrl-C) with the reason; never hides the original error."""
    status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
    try:
        tracking.client.set_tag(run_id, "mtl.error", f"{type(exc).__name__}: {exc}"[:4900])
        tracking.client.set_terminated(run_id, status)
    except Exception:  # the store may be what failed; the training error is the one to report
        log.warning("could not mark MLflow run %s %s", run_id, status, exc_info=True)


def _touch_parent(tracking: Tracking, parent_id: str) -> None:
    """End the parent now (end time = the latest child's end); a later child moves it again."""
    try:
        tracking.client.set_terminated(parent_id, "FINISHED")
    except Exception:
        log.warning("could not update the parent MLflow run %s", parent_id, exc_info=True)
