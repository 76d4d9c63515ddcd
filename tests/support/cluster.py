"""A real Airflow deployment for tests: metadata DB on the local PostgreSQL, the API server, scheduler,
DAG processor (and Celery workers) as separate processes, each in its own process group, driven
through the REST API exactly as a user or CI system would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import requests
import yaml

from mtl.config import apply_overrides, read_params_file
from mtl.orchestration.environment import airflow_environment
from mtl.orchestration.local import init_airflow, stop_process_groups

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
PASSWORD = "test-admin-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScratchDatabase:
    """A PostgreSQL database of its own, dropped afterwards."""

    def __init__(self, prefix: str) -> None:
        self.name = f"{prefix}_{uuid.uuid4().hex[:8]}"

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(dbname="postgres", **PG)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def __enter__(self) -> str:
        self._admin(f"CREATE DATABASE {self.name}")
        return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{self.name}"

    def __exit__(self, *exc: object) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


class AirflowCluster:
    """Airflow components as processes over one AIRFLOW_HOME and metadata DB; ``stop`` ends them all."""

    def __init__(self, home: Path, sql_conn: str, executor: str, extra_env: dict[str, str] | None = None):
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        passwords = home / "passwords.json"
        home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({"admin": PASSWORD}))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env = airflow_environment(base_env)
        # manual runs only: the cron schedule would add a run (with default params) when the DAG unpauses
        params = home / "params.yaml"
        params.write_text(
            yaml.safe_dump(
                apply_overrides(read_params_file(), {"orchestration.schedule": None}), sort_keys=False
            )
        )
        self.env["MTL_PARAMS"] = str(params)
        self.env["MTL_DATA_DIR"] = str(home / "data")  # never the repository's data/
        self.env.update(
            {
                "AIRFLOW_HOME": str(home / "airflow"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_conn,
                "AIRFLOW__CORE__EXECUTOR": executor,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
                "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                **(extra_env or {}),
            }
        )
        Path(self.env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.token: str | None = None

    def start_control_plane(self) -> None:
        """Migrate, create pools, then the API server, scheduler and DAG processor."""
        self.init()
        self.start("api-server", "api-server", "--port", str(self.port))
        self.start("scheduler", "scheduler")
        self.start("dag-processor", "dag-processor")

    def run_dag(self, dag_id: str, conf: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
        """Wait for the API and the parsed DAG, trigger a run over REST, wait for it to end: its id, the
        run and the state of each task instance."""
        self.wait_until_up()
        self.wait_for_dag(dag_id)
        run_id = self.trigger(dag_id, conf)
        run = self.wait_for_run(dag_id, run_id)
        return run_id, run, self.task_states(dag_id, run_id)

    def airflow(self) -> str:
        return str(Path(sys.executable).with_name("airflow"))

    def init(self) -> None:
        init_airflow(self.env, log_file=self.home / "init.log")

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "ab")  # noqa: SIM115 -- lives as long as the process
        self.processes[name] = subprocess.Popen(
            [self.airflow(), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        stop_process_groups(list(self.processes.values()), grace=20)

    def logs(self) -> str:
        parts = []
        for name in self.processes:
            text = (self.home / f"{name}.log").read_text(errors="replace")
            parts.append(f"--- {name} (last lines) ---\n" + "\n".join(text.splitlines()[-25:]))
        return "\n".join(parts)

    # --- REST API -----------------------------------------------------------------------------------

    def wait_until_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {process.returncode}\n{self.logs()}")
            try:
                if requests.get(f"{self.base}/api/v2/monitor/health", timeout=2).ok:
                    response = requests.post(
                        f"{self.base}/auth/token", json={"username": "admin", "password": PASSWORD}, timeout=5
                    )
                    response.raise_for_status()
                    self.token = response.json()["access_token"]
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"the API server did not answer within {timeout} s\n{self.logs()}")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.base}/api/v2{path}", headers=headers, timeout=30, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/dags/{dag_id}").ok:
                self.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
                return
            time.sleep(2)
        raise TimeoutError(f"{dag_id} was not parsed within {timeout} s\n{self.logs()}")

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        response = self.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
        response.raise_for_status()
        return response.json()["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}").json()
            if run.get("state") in ("success", "failed"):
                return run
            time.sleep(3)
        raise TimeoutError(f"{dag_id} run {run_id} did not finish within {timeout} s\n{self.logs()}")

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        instances = self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
        return {
            ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""): ti["state"]
            for ti in instances
        }
