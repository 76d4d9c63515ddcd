"""Where tracking goes: URIs from params, the environment or the embedded SQLite default; a checked
connection; one experiment per dataset.

Resolution, for the tracking URI: ``tracking.uri`` in params, else ``$MLFLOW_TRACKING_URI``, else
``sqlite:///<state>/mlflow/mlflow.db``; the registry URI: ``tracking.registry_uri``, else
``$MLFLOW_REGISTRY_URI``, else the tracking URI. Experiments this project creates keep their
artifacts under ``tracking.artifact_root``, else ``<state>/mlflow/artifacts`` for a database store; an
MLflow server (``http(s)://``) chooses its own artifact location.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mtl import paths
from mtl.config import Params
from mtl.errors import TrackingError

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 5.0  # a server or database that does not answer within this is unreachable
LOCK_TIMEOUT_S = 120.0
_HTTP = ("http://", "https://")
_DATABASE = ("sqlite", "postgresql", "mysql", "mssql")
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
_ACTIVE: list[TrackingConfig] = []  # stores of the open ``with connect(...)`` blocks, innermost last
_SAVED_ENV: dict[str, str | None] = {}


@dataclass(frozen=True)
class TrackingConfig:
    uri: str
    registry_uri: str
    artifact_root: str | None
    experiment_prefix: str

    def experiment_name(self, dataset: str) -> str:
        return f"{self.experiment_prefix}-{dataset}"


def resolve(params: Params) -> TrackingConfig:
    """The tracking and registry URIs and artifact root these params ask for (see the module docstring)."""
    settings = params.tracking
    uri = settings.uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{paths.mlflow_db()}"
    registry = settings.registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or uri
    artifact_root = settings.artifact_root
    if artifact_root is None and _scheme(uri) in _DATABASE:
        artifact_root = paths.mlflow_artifacts().as_uri()
    prefix = settings.experiment_prefix
    return TrackingConfig(_with_driver(uri), _with_driver(registry), artifact_root, prefix)


def redact(uri: str) -> str:
    """A URI safe to print and store: any password replaced by ***."""
    return re.sub(r"(//[^/:@]+:)[^@/]*@", r"\1***@", uri)


class Tracking:
    """A checked connection: an ``MlflowClient`` on the configured URIs."""

    def __init__(self, config: TrackingConfig):
        from mlflow import MlflowClient

        self.config = config
        for uri in dict.fromkeys((config.uri, config.registry_uri)):
            check_reachable(uri)
        with errors(f"open the MLflow store at {redact(config.uri)}"), store_lock(config.uri):
            self.client = MlflowClient(tracking_uri=config.uri, registry_uri=config.registry_uri)
            self.client.search_experiments(max_results=1)  # creates/migrates a fresh database store

    def __enter__(self) -> Tracking:
        """Point mlflow's module-level state at this store for the block (nested blocks restore it).

        Some client calls resolve URIs through that state (``models:/`` sources, ``log_model``,
        ``load_model``); ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` and
        ``MLFLOW_REGISTRY_URI``, which must not outlive the block to override the next step's settings.
        """
        if not _ACTIVE:
            _SAVED_ENV.update({name: os.environ.get(name) for name in _URI_VARIABLES})
        _ACTIVE.append(self.config)
        _point_mlflow_at(self.config)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _ACTIVE.pop()
        if _ACTIVE:
            _point_mlflow_at(_ACTIVE[-1])
            return
        import mlflow

        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  (None = unset)
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        for name, value in _SAVED_ENV.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def experiment_id(self, dataset: str) -> str:
        """The dataset's experiment, created (or restored from deletion) when needed; safe under races."""
        from mlflow.exceptions import MlflowException

        name = self.config.experiment_name(dataset)
        with errors(f"open experiment {name!r} at {redact(self.config.uri)}"):
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                try:
                    return self.client.create_experiment(name, artifact_location=self.config.artifact_root)
                except MlflowException:  # created meanwhile by a concurrent task
                    experiment = self.client.get_experiment_by_name(name)
                    if experiment is None:
                        raise
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            return experiment.experiment_id


def connect(params: Params) -> Tracking:
    """Resolve and check the tracking configuration (TrackingError naming an unreachable URI); use the
    result as a context manager: ``with connect(params) as tracking: ...``."""
    return Tracking(resolve(params))


def _point_mlflow_at(config: TrackingConfig) -> None:
    import mlflow

    mlflow.set_tracking_uri(config.uri)
    mlflow.set_registry_uri(config.registry_uri)


def check_reachable(uri: str, timeout: float = CHECK_TIMEOUT_S) -> None:
    """Fail fast with a clear TrackingError where an MLflow server or database does not answer."""
    scheme = _scheme(uri)
    hint = "start it, or point tracking.uri / MLFLOW_TRACKING_URI at a reachable store"
    if uri.startswith(_HTTP):
        import requests

        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as exc:
            raise TrackingError(
                f"MLflow tracking server {redact(uri)} is unreachable ({type(exc).__name__}); {hint}"
            ) from None
        if response.status_code != 200:
            raise TrackingError(
                f"MLflow tracking server {redact(uri)} answered /health with HTTP {response.status_code}; "
                f"{hint}"
            )
    elif scheme == "sqlite":
        path = Path(uri.split(":///", 1)[-1]) if ":///" in uri else None
        if path is not None and str(path) not in ("", ":memory:"):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TrackingError(f"cannot create the MLflow SQLite store {uri}: {exc}") from None
    elif scheme in _DATABASE:
        import sqlalchemy

        timeout_args = {"connect_timeout": int(timeout)} if scheme in ("postgresql", "mysql") else {}
        try:
            engine = sqlalchemy.create_engine(uri, connect_args=timeout_args)
        except (ImportError, sqlalchemy.exc.ArgumentError) as exc:
            raise TrackingError(f"cannot use the MLflow database {redact(uri)}: {exc}") from None
        try:
            with engine.connect():
                pass
        except Exception as exc:  # any driver error: refused, unknown host, auth, missing database
            reason = " ".join(str(getattr(exc, "orig", exc)).split())[:300]
            raise TrackingError(f"MLflow database {redact(uri)} is unreachable: {reason}; {hint}") from None
        finally:
            engine.dispose()


@contextlib.contextmanager
def errors(action: str) -> Iterator[None]:
    """Turn MLflow, HTTP and database failures into a TrackingError saying what could not be done."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except TrackingError:
        raise
    except (MlflowException, OSError) as exc:
        raise TrackingError(f"could not {action}: {' '.join(str(exc).split())[:500]}") from exc
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in ("sqlalchemy", "requests", "urllib3", "psycopg2"):
            raise TrackingError(f"could not {action}: {type(exc).__name__}: {exc}") from exc
        raise


@contextlib.contextmanager
def store_lock(uri: str, purpose: str = "store") -> Iterator[None]:
    """An exclusive lock between processes on this host, keyed by URI and purpose (``flock``)."""
    key = hashlib.sha256(f"{purpose}:{uri}".encode()).hexdigest()[:16]
    path = paths.state_dir() / "mlflow" / "locks" / f"{purpose}-{key}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        _acquire(handle.fileno(), path)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _acquire(fd: int, path: Path) -> None:
    import time

    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TrackingError(f"timed out after {LOCK_TIMEOUT_S:.0f} s waiting for {path}") from None
            time.sleep(0.05)


def _with_driver(uri: str) -> str:
    """``postgresql://`` names no driver, and SQLAlchemy 2.1 then picks psycopg 3; where only psycopg2
    is installed (as in requirements.lock), name it, so a plain PostgreSQL URI works as written."""
    import importlib.util

    plain = uri.startswith("postgresql://")
    if plain and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + uri[len("postgresql://") :]
    return uri


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()
