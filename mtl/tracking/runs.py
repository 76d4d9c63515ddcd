"""Runs: one parent run per pipeline run (per dataset experiment), one child run per trained model.

The parent is keyed by the pipeline run id: Airflow's ``dag_run_id`` when the DAG passes it, else
``$MTL_PIPELINE_RUN_ID``, else a fresh id per invocation. Mapped train tasks start together, so the
parent is found-or-created under a host-wide lock, and -- for tasks on other hosts -- re-read after
creation: every task adopts the earliest parent with that key and a task whose own parent lost
deletes it. The child run's id is also written into the model directory (``tracking.json``), so a
later ``mtl evaluate``/``mtl register`` finds it without XCom.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtl.datasets.prepared import write_json_atomic
from mtl.errors import TrackingError
from mtl.tracking.lineage import TAG_DAG_ID, TAG_DAG_RUN_ID
from mtl.tracking.store import Tracking, redact, store_lock

RUN_FILE = "tracking.json"
TAG_KIND = "mtl.run_kind"
TAG_PIPELINE_RUN = "mtl.pipeline_run_id"
TAG_MODEL = "mtl.model"
PARENT, TRAINING = "pipeline", "training"
PARAMS_PER_CALL = 100  # MLflow's log_batch limit for params
EpochCallback = Callable[[int, dict[str, float]], None]


def pipeline_run_key(run_context: dict[str, Any]) -> str:
    """The id that groups this invocation's training runs under one parent run."""
    key = str(
        run_context.get("dag_run_id")
        or os.environ.get("MTL_PIPELINE_RUN_ID")
        or f"local-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    )
    if "'" in key or "\\" in key:
        raise TrackingError(f"pipeline run id {key!r} must not contain quotes or backslashes")
    return key


def parent_run(tracking: Tracking, experiment_id: str, key: str, run_context: dict[str, Any]) -> str:
    """The parent run of pipeline run ``key``, created once however many tasks ask at the same time."""
    client = tracking.client
    with store_lock(tracking.config.uri, f"parent-{experiment_id}-{key}"):
        found = _parents(tracking, experiment_id, key)
        if found:
            return found[0]
        tags = {TAG_KIND: PARENT, TAG_PIPELINE_RUN: key}
        tags.update({tag: str(run_context[k]) for k, tag in _CONTEXT_TAGS.items() if run_context.get(k)})
        own = client.create_run(experiment_id, tags=tags, run_name=f"pipeline {key}").info.run_id
        winner = (_parents(tracking, experiment_id, key) or [own])[0]
        if winner != own:  # another host created one first: use it, drop ours (it has no children)
            client.delete_run(own)
        return winner


def start_training_run(
    tracking: Tracking, experiment_id: str, parent_id: str, model: str, tags: dict[str, str]
) -> str:
    """A RUNNING child run for ``model``; attempts left RUNNING under this parent become KILLED."""
    client = tracking.client
    for stale in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{TAG_MODEL}` = '{model}' "
        "and attributes.status = 'RUNNING'",
    ):
        client.set_tag(stale.info.run_id, "mtl.superseded", "a later attempt of this task started")
        client.set_terminated(stale.info.run_id, "KILLED")
    run = client.create_run(
        experiment_id,
        run_name=model,
        tags={"mlflow.parentRunId": parent_id, TAG_KIND: TRAINING, TAG_MODEL: model, **tags},
    )
    return run.info.run_id


def log_params(tracking: Tracking, run_id: str, flat: dict[str, Any]) -> None:
    """Every parameter, in as few calls as MLflow allows."""
    from mlflow.entities import Param

    items = [Param(key, _param_value(value)) for key, value in sorted(flat.items())]
    for start in range(0, len(items), PARAMS_PER_CALL):
        tracking.client.log_batch(run_id, params=items[start : start + PARAMS_PER_CALL])


class EpochLogger:
    """An ``on_epoch_end`` that logs an epoch's metrics as step ``epoch`` in one call, then calls ``then``.

    ``backfill`` logs the epochs it did not see: those a resumed training finished before this run.
    """

    def __init__(self, tracking: Tracking, run_id: str, then: EpochCallback | None = None):
        self.tracking, self.run_id, self.then = tracking, run_id, then
        self.logged: set[int] = set()

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        self._log(epoch, metrics)
        if self.then is not None:
            self.then(epoch, metrics)

    def backfill(self, history: list[dict[str, Any]]) -> None:
        for record in history:
            if isinstance(record.get("epoch"), int) and record["epoch"] not in self.logged:
                self._log(record["epoch"], record)

    def _log(self, epoch: int, metrics: dict[str, Any]) -> None:
        values = {key: value for key, value in metrics.items() if key != "epoch"}
        self.tracking.client.log_batch(self.run_id, metrics=metric_entities(values, step=epoch))
        self.logged.add(epoch)


def metric_entities(values: dict[str, Any], step: int = 0) -> list[Any]:
    """MLflow ``Metric`` entities (timestamped now) of the numeric values; other values are skipped."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [
        Metric(key, float(value), now, step)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def run_tag(key: str, value: Any) -> Any:
    """An MLflow ``RunTag`` (values are strings, at most 5000 characters)."""
    from mlflow.entities import RunTag

    return RunTag(key, str(value)[:5000])


def write_run_file(model_dir: Path, tracking: Tracking, record: dict[str, Any]) -> None:
    """``<model_dir>/tracking.json``: which run holds this model (and on which store)."""
    write_json_atomic(Path(model_dir) / RUN_FILE, {**record, "tracking_uri": redact(tracking.config.uri)})


def forget_run_file(model_dir: Path) -> None:
    """Drop a previous training's run file (a model trained again no longer belongs to that run)."""
    (Path(model_dir) / RUN_FILE).unlink(missing_ok=True)


def run_id_for(model_dir: Path, tracking: Tracking, explicit: str | None = None) -> str | None:
    """The explicit run id, else the one in ``tracking.json`` (checked to be on this store), else None."""
    if explicit:
        return explicit
    path = Path(model_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        run_id, uri = record["mlflow_run_id"], record["tracking_uri"]
    except (ValueError, KeyError) as exc:
        raise TrackingError(f"{path} is not a valid run file ({exc}); train the model again") from None
    if uri != redact(tracking.config.uri):
        raise TrackingError(
            f"{path} names run {run_id} on {uri}, but tracking now points at {redact(tracking.config.uri)}; "
            "use the store the model was trained with, or train it again"
        )
    return run_id


_CONTEXT_TAGS = {"dag_id": TAG_DAG_ID, "dag_run_id": TAG_DAG_RUN_ID}


def _parents(tracking: Tracking, experiment_id: str, key: str) -> list[str]:
    """Active parent runs of pipeline run ``key``, earliest first (ties broken by run id)."""
    runs = tracking.client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_PIPELINE_RUN}` = '{key}' and tags.`{TAG_KIND}` = '{PARENT}'",
    )
    return [r.info.run_id for r in sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))]


def _param_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
