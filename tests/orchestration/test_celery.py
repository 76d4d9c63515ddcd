"""Past one machine: Airflow with PostgreSQL and CeleryExecutor. A real Celery worker (listening on the
`default` and `gpu` queues, like the compose stack's two workers) runs a DAG triggered over REST, with
Redis as the broker and PostgreSQL as metadata DB and result backend."""

from __future__ import annotations

import json
import random

import pytest

from mtl import paths
from tests.support.cluster import PG, AirflowCluster, ScratchDatabase
from tests.support.orchestration import tiny_conf
from tests.support.services import require_service

pytestmark = [pytest.mark.slow, pytest.mark.services]


def test_celery_worker_runs_a_dag_from_redis_and_postgresql(tmp_path):
    require_service("PostgreSQL", PG["host"], PG["port"])
    require_service("Redis", "127.0.0.1", 6379)
    data = tmp_path / "data"
    with ScratchDatabase("mtl_celery") as sql_conn:
        broker = f"redis://127.0.0.1:6379/{random.randint(1, 15)}"
        cluster = AirflowCluster(
            tmp_path / "airflow",
            sql_conn,
            "CeleryExecutor",
            {
                "MTL_HOME": str(tmp_path / "state"),
                "AIRFLOW__CELERY__BROKER_URL": broker,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + sql_conn,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            },
        )
        cluster.start_control_plane()
        cluster.start("worker", "celery", "worker", "--queues", "default,gpu", "--concurrency", "2")
        try:
            conf = tiny_conf("census", str(data), ["shared_bottom"])
            run_id, run, states = cluster.run_dag("mtl_retrain_census", conf)
            assert run["state"] == "success", (states, cluster.logs())
            instances = cluster.api("GET", f"/dags/mtl_retrain_census/dagRuns/{run_id}/taskInstances").json()
            queues = {ti["task_id"]: ti["queue"] for ti in instances["task_instances"]}
            assert queues["model.train"] == "gpu"
            assert queues["prepare"] == "default"
            registration = json.loads(paths.registration_file(data, "census", "shared_bottom").read_text())
            assert registration["version"]
            worker_log = (tmp_path / "airflow" / "worker.log").read_text(errors="replace")
            assert "celery@" in worker_log  # the tasks ran in the Celery worker, not in the scheduler
        finally:
            cluster.stop()
        assert all(p.poll() is not None for p in cluster.processes.values())
