"""Shared fixtures. Environment for Airflow/MLflow/DVC is set here, before anything imports them."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Fixtures of tests.support (planted-signal prepared data, MetaHeac data, a tracked model), for every folder.
pytest_plugins = ["tests.support.models", "tests.support.metaheac", "tests.support.tracked"]

REPO_ROOT = Path(__file__).resolve().parents[1]
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="mtl-test-home-"))
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)

# Keep every test away from the developer's real state (.mtl/) and home directory.
os.environ["MTL_HOME"] = str(_SESSION_HOME)
os.environ["MTL_PARAMS"] = str(REPO_ROOT / "params.yaml")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def mtl_home() -> Path:
    return _SESSION_HOME
