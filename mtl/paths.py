"""Where every artifact lives: one function per kind, so no module builds a path by hand.

Data and model artifacts live under a data directory (``--data-dir``, default ``data/``, DVC-tracked).
Local state that is not data -- the MLflow store, the Airflow home, the DVC local remote -- lives under
the state directory: ``$MTL_HOME`` or ``<project root>/.mtl``.
"""

from __future__ import annotations

import os
from pathlib import Path

PARAMS_FILE = "params.yaml"


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding params.yaml, else cwd."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / PARAMS_FILE).is_file():
            return candidate
    return here


def state_dir() -> Path:
    """Local state (MLflow store, Airflow home, DVC local remote); never the user's home directory."""
    env = os.environ.get("MTL_HOME")
    return Path(env).resolve() if env else project_root() / ".mtl"


# --- data directory layout -------------------------------------------------------------------------


def raw_dir(data_dir: Path, dataset: str) -> Path:
    """Downloaded (or generated) source files and their manifest.json."""
    return Path(data_dir) / "raw" / dataset


def raw_manifest(data_dir: Path, dataset: str) -> Path:
    return raw_dir(data_dir, dataset) / "manifest.json"


def prepared_dir(data_dir: Path, dataset: str) -> Path:
    """Parquet splits, vocabularies/encoders and metadata.json of one dataset."""
    return Path(data_dir) / "prepared" / dataset


def prepared_metadata(data_dir: Path, dataset: str) -> Path:
    return prepared_dir(data_dir, dataset) / "metadata.json"


def validation_dir(data_dir: Path, dataset: str, stage: str) -> Path:
    """Great Expectations report (summary.json + data docs) for stage 'raw' or 'prepared'."""
    return Path(data_dir) / "validation" / dataset / stage


def model_dir(data_dir: Path, dataset: str, model: str) -> Path:
    """Everything one trained model produces: weights, metrics, curves, checkpoints."""
    return Path(data_dir) / "models" / dataset / model


def checkpoint_dir(data_dir: Path, dataset: str, model: str) -> Path:
    return model_dir(data_dir, dataset, model) / "checkpoints"


def evaluation_dir(data_dir: Path, dataset: str, model: str, split: str) -> Path:
    """Metrics, curve points and predictions of one model on one split."""
    return model_dir(data_dir, dataset, model) / "eval" / split


def registration_file(data_dir: Path, dataset: str, model: str) -> Path:
    """The registry decision (version, aliases, gate checks) of the latest registration."""
    return model_dir(data_dir, dataset, model) / "registration.json"


# --- state directory layout ------------------------------------------------------------------------


def mlflow_db() -> Path:
    return state_dir() / "mlflow" / "mlflow.db"


def mlflow_artifacts() -> Path:
    return state_dir() / "mlflow" / "artifacts"


def airflow_home() -> Path:
    return state_dir() / "airflow"


def dvc_local_remote() -> Path:
    return state_dir() / "dvc-remote"
