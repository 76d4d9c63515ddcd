"""Real prepared data (the synthetic sources at small sizes), one tracked training, and fresh stores.

The session trains and evaluates one Ali-CCP MMoE with tracking into a session SQLite store. Each test
that changes the registry gets its own copy of that store (``store``): a fresh registry, the trained
run and its logged model already inside, without paying for a database migration per test.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mtl import pipeline
from mtl.config import Params, load_params

ALICCP = [
    "datasets.aliccp.synthetic.train_rows=4000",
    "datasets.aliccp.synthetic.test_rows=1500",
]
CENSUS = ["datasets.census.synthetic.train_rows=2000", "datasets.census.synthetic.test_rows=1200"]
LOOKALIKE = [
    "datasets.lookalike.synthetic.users=1500",
    "datasets.lookalike.synthetic.train_campaigns=4",
    "datasets.lookalike.synthetic.hot_campaigns=2",
    "datasets.lookalike.synthetic.cold_campaigns=2",
    "datasets.lookalike.synthetic.train_rows=[60, 120]",
    "datasets.lookalike.synthetic.hot_rows=[60, 120]",
    "datasets.lookalike.synthetic.cold_rows=[40, 60]",
]
# small, fast training; gate bounds wide enough for a model trained for one epoch on a few thousand rows
FAST = [
    "train.epochs=1",
    "train.batch_size=512",
    "train.progress=false",
    "models.mmoe.embed_dim=8",
    "models.mmoe.n_experts=2",
    "models.mmoe.expert_dims=[16]",
    "models.mmoe.tower_dims=[8]",
    "models.shared_bottom.embed_dim=8",
    "models.shared_bottom.bottom_dims=[16]",
    "models.shared_bottom.tower_dims=[8]",
]
DAG_CONTEXT = {"dag_id": "mtl_retrain_aliccp", "dag_run_id": "manual__2026-11-22T10:00:00+00:00"}


def registry_params(uri: str, artifact_root: Path | None = None, *extra: str) -> Params:
    """Params on a given tracking URI with the test sizes (more overrides in ``extra``)."""
    root = [f"tracking.artifact_root={artifact_root.as_uri()}"] if artifact_root else []
    return load_params([*ALICCP, *CENSUS, *LOOKALIKE, *FAST, f"tracking.uri={uri}", *root, *extra])


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with aliccp, census and lookalike downloaded (generated) and prepared."""
    root = tmp_path_factory.mktemp("data")
    params = registry_params("sqlite:///unused.db", None, "tracking.enabled=false")
    for dataset in ("aliccp", "census", "lookalike"):
        pipeline.download(dataset, data_dir=root, params=params)
        pipeline.prepare(dataset, data_dir=root, params=params)
    return root


@dataclass
class TrackedModel:
    data_dir: Path
    uri: str
    db: Path
    artifacts: Path
    run_id: str
    train: dict[str, Any]
    evaluation: dict[str, Any]


@pytest.fixture(scope="session")
def tracked_model(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> TrackedModel:
    """aliccp/mmoe trained (two epochs) and evaluated with tracking into a session SQLite store."""
    home = tmp_path_factory.mktemp("tracked")
    data_dir = home / "data"
    data_dir.mkdir()
    (data_dir / "prepared").mkdir()
    (data_dir / "prepared" / "aliccp").symlink_to(data_root / "prepared" / "aliccp")
    shutil.copytree(data_root / "validation", data_dir / "validation")
    db = home / "mlflow.db"
    params = registry_params(f"sqlite:///{db}", home / "artifacts", "train.epochs=2")
    train = pipeline.train("aliccp", "mmoe", data_dir=data_dir, params=params, run_context=DAG_CONTEXT)
    evaluation = pipeline.evaluate("aliccp", "mmoe", data_dir=data_dir, params=params)
    return TrackedModel(
        data_dir, f"sqlite:///{db}", db, home / "artifacts", train["mlflow_run_id"], train, evaluation
    )


@pytest.fixture
def store(tmp_path: Path, tracked_model: TrackedModel) -> Params:
    """Params on a private copy of the session store (fresh registry; the tracked run inside)."""
    db = tmp_path / "mlflow.db"
    shutil.copy2(tracked_model.db, db)
    return registry_params(f"sqlite:///{db}", tmp_path / "artifacts", "gate.aliccp.tolerance=0.01")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    """Poll ``url`` until it answers 200; fail with the process output if it exits or times out."""
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"server exited with {process.returncode} before {url} answered:\n{output[-3000:]}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it forks workers), SIGKILL what is left after 15 s."""
    import os
    import signal

    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # workers that outlived the leader
        os.killpg(process.pid, signal.SIGKILL)


def evaluated_copy(
    params: Params,
    base_run_id: str,
    aucs: dict[str, float],
    *,
    positive_rate: float = 0.05,
    prediction_mean: float = 0.05,
    status: str = "FINISHED",
    log_params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
) -> str:
    """A finished training run like ``base_run_id`` (same lineage tags, same logged model) whose test
    metrics are ``aucs`` per gated output: a challenger of chosen quality, without training one.
    ``log_params``/``tags`` are added (e.g. another learning rate: a different model, not a re-run)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(params.tracking.uri)
    base = client.get_run(base_run_id)
    copied = {k: v for k, v in base.data.tags.items() if not k.startswith("mlflow.")}
    copied["mtl.git_dirty"] = "false"  # a run from a clean tree, whatever state this checkout is in
    run_id = client.create_run(
        base.info.experiment_id, tags={**copied, **(tags or {})}, run_name="challenger"
    ).info.run_id
    for key, value in (log_params or {}).items():
        client.log_param(run_id, key, value)
    now = int(time.time() * 1000)
    metrics = []
    for name, auc in aucs.items():
        values = {
            "auc": auc,
            "rows": 1500,
            "positive_rate": positive_rate,
            "prediction_mean": prediction_mean,
        }
        metrics += [Metric(f"test_{name}_{key}", value, now, 0) for key, value in values.items()]
    client.log_batch(run_id, metrics=metrics)
    client.set_terminated(run_id, status)
    return run_id
