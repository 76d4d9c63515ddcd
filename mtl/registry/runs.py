"""The training run behind a registry operation: found, and checked to be finished and evaluated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mtl import paths
from mtl.config import Params
from mtl.errors import ConfigError
from mtl.registry.tags import RegistrationError
from mtl.tracking.lineage import TAG_DATASET
from mtl.tracking.results import gated_metric
from mtl.tracking.runs import TAG_MODEL, run_id_for
from mtl.tracking.store import Tracking, errors, redact
from mtl.tracking.training import TAG_MODEL_URI


def require_tracking(params: Params) -> None:
    if not params.tracking.enabled:
        raise ConfigError("the model registry is MLflow: set tracking.enabled=true to gate or register")


def require_recorded_run(data_dir: Path, dataset: str, model: str) -> None:
    """Before connecting to MLflow: the model directory must record its training run."""
    from mtl.tracking.runs import RUN_FILE

    model_dir = paths.model_dir(data_dir, dataset, model)
    if not (model_dir / RUN_FILE).is_file():
        raise RegistrationError(_no_run(model_dir, dataset, model))


def _no_run(model_dir: Path, dataset: str, model: str) -> str:
    return (
        f"{model_dir} records no MLflow run (no tracking.json): train it with tracking enabled "
        f"(`mtl train {dataset} {model}`) before registering"
    )


def training_run_id(tracking: Tracking, dataset: str, model: str, data_dir: Path, run_id: str | None) -> str:
    """The model's training run id: explicit, else the one its ``tracking.json`` records."""
    model_dir = paths.model_dir(data_dir, dataset, model)
    found = run_id_for(model_dir, tracking, run_id)
    if found is None:
        raise RegistrationError(_no_run(model_dir, dataset, model))
    return found


def evaluated_run(tracking: Tracking, run_id: str, dataset: str, model: str, names: list[str]) -> Any:
    """The run, if it is a finished training of ``dataset``/``model`` with test metrics for ``names``."""
    from mlflow.exceptions import MlflowException

    where = redact(tracking.config.uri)
    try:
        run = tracking.client.get_run(run_id)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistrationError(f"MLflow run {run_id} does not exist at {where}") from None
        with errors(f"read run {run_id}"):
            raise
    tags = run.data.tags
    if run.info.lifecycle_stage == "deleted":
        raise RegistrationError(f"MLflow run {run_id} at {where} is deleted; nothing registered")
    if (tags.get(TAG_DATASET), tags.get(TAG_MODEL)) != (dataset, model):
        raise RegistrationError(
            f"MLflow run {run_id} trained {tags.get(TAG_DATASET)}/{tags.get(TAG_MODEL)}, "
            f"not {dataset}/{model}"
        )
    if run.info.status != "FINISHED":
        raise RegistrationError(
            f"MLflow run {run_id} is {run.info.status}: only a finished training run is registered; "
            "nothing registered"
        )
    if not tags.get(TAG_MODEL_URI):
        raise RegistrationError(f"MLflow run {run_id} logged no model; train again; nothing registered")
    missing = [name for name in names if gated_metric(run.data.metrics, name, "rows") is None]
    if missing:
        raise RegistrationError(
            f"MLflow run {run_id} has no test metrics for {missing}: evaluate it first (`mtl evaluate "
            f"{dataset} {model}`, with --split NAME for a campaign population); nothing registered"
        )
    return run
