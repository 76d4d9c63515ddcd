"""Against a real ``mlflow server`` on 127.0.0.1 backed by the local PostgreSQL (a throwaway database):
the same train -> evaluate -> register flow, only the tracking URI differs."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mtl import pipeline
from mtl.registry import manage
from tests.support.services import require_service
from tests.support.tracked import free_port, registry_params, stop_process_group, wait_for_http

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
WIDE = [
    "gate.census.floors={income: 0.0, marital: 0.0}",
    "gate.census.prediction_rate_ratio=[0.001, 1000.0]",
    "models.shared_bottom.embed_dim=4",
]


@pytest.fixture
def postgres_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for this test, dropped afterwards."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg2

    name = f"mtl_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture
def mlflow_server(postgres_database: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres_database]
    command += ["--artifacts-destination", str(tmp_path / "server-artifacts")]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        env.pop(name, None)
    server = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", server, timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(server)


@pytest.mark.slow
@pytest.mark.services
def test_train_evaluate_register_through_an_mlflow_server(mlflow_server, data_root, tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "prepared").mkdir(parents=True)
    (data_dir / "prepared" / "census").symlink_to(data_root / "prepared" / "census")
    params = registry_params(mlflow_server, None, *WIDE)
    context = {"dag_id": "mtl_retrain_census", "dag_run_id": "scheduled__2026-11-23T03:00:00+00:00"}
    trained = pipeline.train("census", "shared_bottom", data_dir=data_dir, params=params, run_context=context)
    pipeline.evaluate("census", "shared_bottom", data_dir=data_dir, params=params)
    registered = pipeline.register("census", "shared_bottom", data_dir=data_dir, params=params)
    assert registered["decision"] == "promoted"
    assert registered["aliases"] == ["challenger", "champion"]
    assert pipeline.register("census", "shared_bottom", data_dir=data_dir, params=params) == registered

    client = MlflowClient(mlflow_server)
    run = client.get_run(trained["mlflow_run_id"])
    assert run.data.tags["mtl.dag_run_id"] == context["dag_run_id"]
    assert run.data.metrics["test_income_auc"] == pytest.approx(registered["test_auc"]["income"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/test")}
    assert "evaluation/test/roc_income.png" in artifacts
    assert [r["version"] for r in manage.list_versions(params)] == ["1"]
    version = client.get_model_version_by_alias("census-shared_bottom", "champion")
    assert version.run_id == run.info.run_id
