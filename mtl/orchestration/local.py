"""Running the DAGs on one machine: the main job (``mtl run``), the UIs (``mtl ui``), service init.

``mtl run`` runs every retraining DAG end to end with ``airflow dags test`` on the embedded default
(SQLite metadata DB and MLflow store under the state folder), then prints one line per model: test
AUCs, the gate decision and the registry version/alias. ``mtl ui`` starts the Airflow UI (standalone)
and the MLflow UI on the same state, bound to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl import paths
from mtl.errors import MtlError
from mtl.orchestration.environment import airflow_environment

log = logging.getLogger(__name__)

DATASETS = ("aliccp", "census", "lookalike")
GPU_POOL_DESCRIPTION = "training tasks: one slot per GPU"
DVC_POOL_DESCRIPTION = "tasks that write DVC state (one at a time)"


@dataclass
class DagOutcome:
    dag_id: str
    succeeded: bool
    seconds: float
    log_file: Path


def _executable(name: str) -> str:
    """A console script of this environment (next to the running interpreter), else from PATH."""
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _run(
    args: list[str],
    env: dict[str, str],
    log_file: Path | None = None,
    timeout: float | None = None,
    cwd: Path | None = None,
) -> int:
    if log_file is None:
        return subprocess.run(args, env=env, check=False, timeout=timeout, cwd=cwd).returncode
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as handle:
        return subprocess.run(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False, timeout=timeout, cwd=cwd
        ).returncode


def init_airflow(env: dict[str, str], gpu_slots: int = 1, log_file: Path | None = None) -> None:
    """Migrate the Airflow metadata DB and create the pools the DAGs use (idempotent)."""
    airflow = _executable("airflow")
    steps = [
        [airflow, "db", "migrate"],
        [airflow, "pools", "set", "gpu", str(gpu_slots), GPU_POOL_DESCRIPTION],
        [airflow, "pools", "set", "dvc", "1", DVC_POOL_DESCRIPTION],
    ]
    for step in steps:
        if _run(step, env, log_file) != 0:
            where = f"; see {log_file}" if log_file else ""
            raise MtlError(
                f"`{' '.join(step[1:4])}` failed for AIRFLOW_HOME={env.get('AIRFLOW_HOME')}{where}"
            )


def run_dag(dag_id: str, env: dict[str, str], conf: dict[str, Any] | None, log_file: Path) -> DagOutcome:
    """One DAG run through ``airflow dags test`` (tasks in-process, in dependency order)."""
    args = [_executable("airflow"), "dags", "test", dag_id]
    if conf:
        args += ["-c", json.dumps(conf)]
    started = time.monotonic()
    code = _run(args, env, log_file)
    return DagOutcome(dag_id, code == 0, time.monotonic() - started, log_file)


@dataclass
class MainJobOutcome:
    dags: list[DagOutcome]
    registrations: list[dict[str, Any]]
    seconds: float
    log_dir: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "dags": [
                {
                    "dag_id": d.dag_id,
                    "succeeded": d.succeeded,
                    "seconds": round(d.seconds, 1),
                    "log": str(d.log_file),
                }
                for d in self.dags
            ],
            "registrations": self.registrations,
            "seconds": round(self.seconds, 1),
            "log_dir": str(self.log_dir),
        }


def main_job(
    data_dir: Path, datasets: tuple[str, ...] = DATASETS, conf: dict[str, Any] | None = None
) -> MainJobOutcome:
    """Run every retraining DAG in turn (``airflow dags test``); collect this run's registrations."""
    env = airflow_environment()
    env["MTL_DATA_DIR"] = str(Path(data_dir).resolve())
    log_dir = paths.state_dir() / "logs" / time.strftime("run-%Y%m%d-%H%M%S")
    print(f"Airflow home {env['AIRFLOW_HOME']}; logs in {log_dir}", flush=True)
    started = time.time()
    init_airflow(env, log_file=log_dir / "airflow-init.log")
    outcomes = []
    for dataset in datasets:
        dag_id = f"mtl_retrain_{dataset}"
        print(f"{dag_id}: running ...", flush=True)
        outcome = run_dag(dag_id, env, conf, log_dir / f"{dag_id}.log")
        status = "succeeded" if outcome.succeeded else f"FAILED (see {outcome.log_file})"
        print(f"{dag_id}: {status} in {outcome.seconds:.0f} s", flush=True)
        outcomes.append(outcome)
    registrations = registrations_since(Path(data_dir), started, datasets)
    return MainJobOutcome(outcomes, registrations, time.time() - started, log_dir)


def airflow_command(args: list[str]) -> int:
    """``airflow ARGS`` with the embedded-default settings (for ``mtl airflow ...``)."""
    return _run([_executable("airflow"), *args], airflow_environment())


def registrations_since(
    data_dir: Path, since: float, datasets: tuple[str, ...] = DATASETS
) -> list[dict[str, Any]]:
    """Registration records (``models/<dataset>/<model>/registration.json``) written after ``since``."""
    records = []
    for dataset in datasets:
        for path in sorted(Path(data_dir).glob(f"models/{dataset}/*/registration.json")):
            if path.stat().st_mtime < since:
                continue
            records.append(json.loads(path.read_text()))
    return records


# --- UIs ---------------------------------------------------------------------------------------------


def start_uis(airflow_port: int = 8080, mlflow_port: int = 5000) -> int:
    """Airflow standalone + MLflow UI on 127.0.0.1 over the local state; Ctrl-C stops both cleanly."""
    from mtl.config import load_params
    from mtl.tracking.store import resolve

    env = airflow_environment()
    env["AIRFLOW__API__HOST"] = "127.0.0.1"
    env["AIRFLOW__API__PORT"] = str(airflow_port)
    tracking_uri = resolve(load_params()).uri
    processes = {
        "airflow": subprocess.Popen([_executable("airflow"), "standalone"], env=env, start_new_session=True),
        "mlflow": subprocess.Popen(
            [
                _executable("mlflow"),
                "ui",
                "--backend-store-uri",
                tracking_uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
            ],
            env=env,
            start_new_session=True,
        ),
    }
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    print(f"Airflow UI: http://127.0.0.1:{airflow_port} (user admin; password in {passwords})")
    print(f"MLflow UI:  http://127.0.0.1:{mlflow_port}  (store {tracking_uri})")
    print("Ctrl-C stops both.", flush=True)

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, and a SIGTERM from a supervisor, both stop the UIs' process groups (a shell that
    # backgrounds this command may have set SIGINT to ignored: take it back)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_process_groups(list(processes.values()))
    return 0


def stop_process_groups(processes: list[subprocess.Popen], grace: float = 15.0) -> None:
    """SIGTERM each process group, then SIGKILL what is left after ``grace`` seconds."""
    for process in processes:
        if process.poll() is None:
            _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(process.pid), sig)


# --- deployment ------------------------------------------------------------------------------------


def deploy_init() -> None:
    """The compose init job: migrate Airflow's and MLflow's databases, create the pools, set the admin
    password. Idempotent; reads its settings from the environment (see deploy/docker-compose.yaml)."""
    env = dict(os.environ)
    init_airflow(env, gpu_slots=int(env.get("MTL_GPU_POOL_SLOTS", "1")))
    backend = env.get("MLFLOW_BACKEND_STORE_URI")
    if backend:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        # creating the store creates or upgrades the schema
        SqlAlchemyStore(backend, env.get("MLFLOW_ARTIFACTS_DESTINATION", "./mlruns"))
    remote = env.get("MTL_DVC_REMOTE_URL")
    if remote:  # the shared DVC remote (S3-compatible URL or shared path) as this checkout's default
        dvc = _executable("dvc")
        root = paths.project_root()
        command = [dvc, "remote", "add", "--local", "--force", "--default", "shared", remote]
        if _run(command, env, cwd=root) != 0:
            raise MtlError(f"could not configure the DVC remote {remote}")
    password = env.get("AIRFLOW_ADMIN_PASSWORD")
    passwords_file = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    if password and passwords_file:
        Path(passwords_file).write_text(json.dumps({"admin": password}))


def healthcheck() -> None:
    """The container health check: the package imports, params load, the state folder is writable."""
    from mtl.config import load_params

    load_params()
    probe = paths.state_dir() / ".healthcheck"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(str(time.time()))
    probe.unlink()
