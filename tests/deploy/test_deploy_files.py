"""The Dockerfile (hadolint) and the compose stack (structure, references, variables, entry points).

Docker is not available on the development machines, so the compose file is checked against the
compose specification's structure and against this repository: every service, volume and network it
references exists, every variable it uses is in .env.example, every variable the code reads is set, and
its commands are entry points that parse (the same ones CI runs: see tests/orchestration)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtl.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "docker-compose.yaml"
SERVICES = {
    "postgres", "redis", "mlflow", "airflow-init", "airflow-apiserver", "airflow-scheduler",
    "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "airflow-worker-gpu",
}  # fmt: skip
SERVICE_KEYS = {
    "image", "build", "command", "entrypoint", "environment", "env_file", "volumes", "networks", "ports",
    "depends_on", "healthcheck", "restart", "deploy", "user", "working_dir", "expose",
}  # fmt: skip
# variables the code reads that a deployment does not set: supplied at run time by torchrun or by our
# own parent process, optional overrides with working defaults, or settings of the init job only
NOT_DEPLOYMENT_SETTINGS = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK",  # torchrun
    "MTL_DAG_ID", "MTL_DAG_RUN_ID", "MTL_PIPELINE_RUN_ID",  # set for torchrun children by the train step
    "TQDM_DISABLE",  # optional
    "MTL_NATIVE_KERNELS", "CC",  # optional: 0 turns the compiled row-update kernels off; the C compiler
    "PATH",  # the operating system's (the image's ENV puts /opt/venv/bin first)
    "MLFLOW_REGISTRY_URI",  # optional: defaults to the tracking URI
    "MLFLOW_ARTIFACTS_DESTINATION",  # optional, init job
}  # fmt: skip
INIT_ONLY = {"MTL_GPU_POOL_SLOTS", "MLFLOW_BACKEND_STORE_URI", "AIRFLOW_ADMIN_PASSWORD"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_dockerfile_is_hadolint_clean():
    hadolint = Path(sys.executable).with_name("hadolint")
    done = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_installs_through_the_one_install_script_and_runs_unprivileged():
    text = (REPO / "Dockerfile").read_text()
    assert text.count("FROM ") >= 2  # multi-stage
    assert "scripts/install.sh" in text
    assert "requirements.lock" in text
    assert re.search(r"^USER 50000", text, re.M)
    assert re.search(r"^HEALTHCHECK .*mtl\", \"healthcheck", text, re.M)
    assert "ARG TORCH_VARIANT" in text
    assert not re.search(r"(?i)(password|secret|token)\s*=", text)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".mtl", ".git"} <= {line.strip("/") for line in ignored}


def test_compose_structure(compose):
    assert set(compose) <= {"name", "services", "volumes", "networks"} | {
        k for k in compose if k.startswith("x-")
    }
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        build = service.get("build")
        if build:
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"
        for network in service.get("networks", []):
            assert network in compose["networks"], (name, network)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], (name, source)
            else:
                assert (COMPOSE.parent / source).exists(), (name, source)
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in compose["services"], (name, dependency)
            target = compose["services"][dependency]
            if condition["condition"] == "service_healthy":
                assert target.get("healthcheck", {}).get("test"), dependency
            else:
                assert condition["condition"] == "service_completed_successfully", (name, condition)
        if name != "airflow-init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_gpu_worker_takes_the_gpu_queue_with_a_device_reservation(compose):
    gpu = compose["services"]["airflow-worker-gpu"]
    assert gpu["command"][:3] == ["airflow", "celery", "worker"]
    assert gpu["command"][gpu["command"].index("--queues") + 1] == "gpu"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    cpu = compose["services"]["airflow-worker"]
    assert cpu["command"][cpu["command"].index("--queues") + 1] == "default"


def test_every_variable_the_compose_file_uses_is_in_env_example():
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)(?::?[-?][^}]*)?\}", COMPOSE.read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (COMPOSE.parent / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used <= example, used - example
    assert ".env" in (REPO / ".gitignore").read_text()


def test_every_variable_the_code_reads_is_set_by_the_deployment(compose):
    read = set()
    for path in (REPO / "mtl").rglob("*.py"):
        read |= set(re.findall(r"""environ(?:\.get\(|\[)\s*["']([A-Z_][A-Z0-9_]+)["']""", path.read_text()))
        read |= set(re.findall(r"""env\.get\(\s*["']([A-Z_][A-Z0-9_]+)["']""", path.read_text()))
    dockerfile_env = set(re.findall(r"^\s+([A-Z_][A-Z0-9_]+)=", (REPO / "Dockerfile").read_text(), re.M))
    services = compose["services"]
    common = set(services["airflow-scheduler"]["environment"])
    init = set(services["airflow-init"]["environment"])
    needed = read - NOT_DEPLOYMENT_SETTINGS
    assert needed - INIT_ONLY <= common | dockerfile_env, needed - INIT_ONLY - common - dockerfile_env
    assert init >= INIT_ONLY
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        # the image has psycopg2, not psycopg 3 (SQLAlchemy 2.1's default PostgreSQL driver)
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_service_commands_are_entry_points_that_parse(compose):
    from airflow.cli.cli_parser import get_parser

    airflow = get_parser()
    for name, service in compose["services"].items():
        command = service.get("command")
        if not command or name in ("postgres", "redis"):
            continue
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        argv = [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", a) for a in argv]
        if argv[0] == "mtl":
            build_parser().parse_args(argv[1:])
        elif argv[0] == "airflow":
            airflow.parse_args(argv[1:])
        else:
            assert argv[:2] == ["mlflow", "server"], name
            done = subprocess.run(
                [str(Path(sys.executable).with_name("mlflow")), "server", "--help"],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0
            for option in (a for a in argv[2:] if a.startswith("--")):
                assert option in done.stdout, option
