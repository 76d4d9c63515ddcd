"""A real Airflow deployment in miniature: scheduler, DAG processor and API server with LocalExecutor
on the local PostgreSQL; a run triggered through the REST API runs to success, then everything stops."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from mtl import paths, pipeline
from mtl.tracking import lineage
from tests.support.cluster import PG, AirflowCluster, ScratchDatabase
from tests.support.orchestration import tiny_conf
from tests.support.services import require_service

pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_rest_triggered_run_with_local_executor_on_postgresql(tmp_path):
    require_service("PostgreSQL", PG["host"], PG["port"])
    data = tmp_path / "data"
    with ScratchDatabase("mtl_airflow") as sql_conn:
        home = tmp_path / "home"  # the user's home directory: nothing may be written there
        home.mkdir()
        cluster = AirflowCluster(
            tmp_path / "airflow",
            sql_conn,
            "LocalExecutor",
            {"MTL_HOME": str(tmp_path / "state"), "HOME": str(home)},
        )
        cluster.start_control_plane()
        try:
            conf = tiny_conf("census", str(data), ["shared_bottom"])
            run_id, run, states = cluster.run_dag("mtl_retrain_census", conf)
            assert run["state"] == "success", (states, cluster.logs())
            assert set(states.values()) == {"success"}
            assert "model.train[0]" in states
            registration = json.loads(paths.registration_file(data, "census", "shared_bottom").read_text())
            assert registration["decision"] == "promoted", registration["reasons"]
            store = f"sqlite:///{tmp_path / 'state' / 'mlflow' / 'mlflow.db'}"
            tags = MlflowClient(store).get_run(registration["mlflow_run_id"]).data.tags
            assert tags[lineage.TAG_DAG_RUN_ID] == run_id
            assert tags[lineage.TAG_DVC_HASH] == pipeline.prepared_dvc_hash(data, "census")
        finally:
            cluster.stop()
        assert all(p.poll() is not None for p in cluster.processes.values())
        assert sorted(str(p.relative_to(home)) for p in home.rglob("*")) == []
