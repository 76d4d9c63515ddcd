"""Airflow under test: the embedded-default settings (config/airflow.env) with AIRFLOW_HOME in the
session's temporary state folder, applied before anything imports airflow."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from mtl.config import apply_overrides, read_params_file
from mtl.orchestration.environment import apply_airflow_environment

# params.yaml with a 1 s retry delay: a task that fails on purpose is retried at once, not after a minute
_PARAMS = Path(os.environ["MTL_HOME"]) / "orchestration-params.yaml"
_PARAMS.write_text(
    yaml.safe_dump(
        apply_overrides(read_params_file(), {"orchestration.retry_delay_seconds": 1}), sort_keys=False
    )
)
os.environ["MTL_PARAMS"] = str(_PARAMS)
apply_airflow_environment()
