"""`mtl ui` (what `make ui` runs): the Airflow UI (standalone) and the MLflow UI answer on 127.0.0.1 over
the project's local state, and a SIGTERM (or Ctrl-C) stops every process they started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.cluster import free_port

pytestmark = pytest.mark.slow


def wait_for(url: str, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "mtl ui exited early"
        try:
            if requests.get(url, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise TimeoutError(url)


def listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_ui_serves_airflow_and_mlflow_on_loopback_and_stops_cleanly(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    airflow_port, mlflow_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTL_", "AIRFLOW"))}
    # as from a plain shell: the virtualenv is not on PATH, HOME must stay untouched
    env.update({"MTL_HOME": str(tmp_path / "state"), "HOME": str(home), "PATH": "/usr/bin:/bin"})
    command = [str(Path(sys.executable).with_name("mtl")), "ui"]
    command += ["--airflow-port", str(airflow_port), "--mlflow-port", str(mlflow_port)]
    log = open(tmp_path / "ui.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{mlflow_port}/health", 180, process)
        wait_for(f"http://127.0.0.1:{airflow_port}/api/v2/monitor/health", 180, process)
        assert (tmp_path / "state" / "airflow" / "simple_auth_manager_passwords.json.generated").is_file()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        log.close()
    assert process.returncode == 0, (tmp_path / "ui.log").read_text()[-3000:]
    time.sleep(1)
    assert not listening(airflow_port)
    assert not listening(mlflow_port)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True
    ).stdout
    assert leftovers.strip() == ""
    assert sorted(p.name for p in home.rglob("*")) == []
