"""End to end: each retraining DAG through ``dag.test()`` on tiny synthetic data, then the artifacts,
the MLflow runs (lineage tags) and the registry (champion) it left behind."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.state import DagRunState, TaskInstanceState
from mlflow import MlflowClient

from mtl import paths, pipeline
from mtl.config import load_params
from mtl.registry import tags as T
from mtl.tracking import lineage
from mtl.tracking.store import resolve
from tests.support.orchestration import tiny_conf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dags(repo_root):
    from airflow.utils import db

    db.initdb()
    bag = DagBag(dag_folder=str(repo_root / "dags"), safe_mode=False)
    assert bag.import_errors == {}
    return bag.dags


@pytest.fixture(scope="module")
def client() -> MlflowClient:
    return MlflowClient(resolve(load_params()).uri)


def states(run) -> dict[str, str]:
    return {
        ti.task_id + (f"[{ti.map_index}]" if ti.map_index >= 0 else ""): ti.state
        for ti in run.get_task_instances()
    }


def summary_of(run) -> dict:
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "summary"]
    return ti.xcom_pull(task_ids="summary")


def champion_version(client: MlflowClient, name: str) -> str | None:
    aliases = client.get_registered_model(name).aliases
    return str(aliases[T.CHAMPION]) if T.CHAMPION in aliases else None


def test_aliccp_dag_trains_gates_registers_and_a_second_run_keeps_the_champion(dags, client, tmp_path):
    data = tmp_path / "data"
    run = dags["mtl_retrain_aliccp"].test(run_conf=tiny_conf("aliccp", str(data), ["mmoe", "esmm"]))
    assert run.state == DagRunState.SUCCESS, states(run)
    assert set(states(run).values()) == {TaskInstanceState.SUCCESS}

    # artifacts of every step, under the run's data directory
    metadata = json.loads(paths.prepared_metadata(data, "aliccp").read_text())
    assert set(metadata["splits"]) == {"train", "valid", "test"}
    assert (paths.validation_dir(data, "aliccp", "raw") / "summary.json").is_file()
    dvc_hash = pipeline.prepared_dvc_hash(data, "aliccp")
    for model in ("mmoe", "esmm"):
        registration = json.loads(paths.registration_file(data, "aliccp", model).read_text())
        assert registration["decision"] == "promoted", registration["reasons"]
        assert registration["aliases"] == ["challenger", "champion"]
        assert champion_version(client, f"aliccp-{model}") == registration["version"]
        tags = client.get_run(registration["mlflow_run_id"]).data.tags
        assert tags[lineage.TAG_DAG_ID] == "mtl_retrain_aliccp"
        assert tags[lineage.TAG_DAG_RUN_ID] == run.run_id
        assert tags[lineage.TAG_DVC_HASH] == dvc_hash
        assert tags[lineage.TAG_DATASET] == "aliccp"
        assert tags[lineage.TAG_GIT_COMMIT]

    summary = summary_of(run)
    assert summary["dvc_hash"] == dvc_hash
    assert sorted(summary["promoted"]) == ["esmm", "mmoe"]
    assert "promoted" in summary["table"]

    # second run: an impossible floor; a successful run that promotes nothing and says why
    champion_before = champion_version(client, "aliccp-mmoe")
    conf = tiny_conf("aliccp", str(data), ["mmoe"], floors={"click": 1.0, "ctcvr": 0.5})
    again = dags["mtl_retrain_aliccp"].test(run_conf=conf)
    assert again.state == DagRunState.SUCCESS, states(again)
    second = summary_of(again)
    assert second["promoted"] == []
    (row,) = second["registered"]
    assert row["decision"] == "not promoted"
    assert row["version"] != champion_before
    assert any(r.startswith("floors: fail: click AUC") and "below floor 1.0" in r for r in row["reasons"])
    assert "not promoted: floors: click AUC" in second["table"]
    assert "sanity" not in second["table"]  # the table names only what failed
    assert champion_version(client, "aliccp-mmoe") == champion_before


def test_a_failed_model_fails_its_own_branch_and_the_others_register(dags, client, tmp_path, caplog):
    data = tmp_path / "data"
    # single_task finds a corrupt checkpoint to resume from: its training fails with a clear error
    checkpoint = paths.checkpoint_dir(data, "census", "single_task") / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"not a checkpoint")
    conf = tiny_conf("census", str(data), ["shared_bottom", "single_task"])
    with caplog.at_level(logging.INFO):
        run = dags["mtl_retrain_census"].test(run_conf=conf)
    assert run.state == DagRunState.FAILED
    by_task = states(run)
    assert by_task["summary"] == TaskInstanceState.SUCCESS
    failed = sorted(k for k, v in by_task.items() if v == TaskInstanceState.FAILED)
    assert len(failed) == 2
    assert failed[0].startswith("model.train")
    assert failed[1] == "outcome"  # the run's verdict, after the summary
    summary = summary_of(run)
    assert [r["model"] for r in summary["registered"]] == ["shared_bottom"]
    assert summary["failed"] == ["single_task"]
    assert "failed: no registration" in summary["table"]
    assert json.loads(paths.registration_file(data, "census", "shared_bottom").read_text())["version"]
    assert not paths.registration_file(data, "census", "single_task").exists()


def test_lookalike_dag_evaluates_hot_and_cold_then_registers_metaheac(dags, client, tmp_path):
    data = tmp_path / "data"
    run = dags["mtl_retrain_lookalike"].test(run_conf=tiny_conf("lookalike", str(data), ["metaheac"]))
    assert run.state == DagRunState.SUCCESS, states(run)
    by_task = states(run)
    assert by_task["evaluate_hot"] == by_task["evaluate_cold"] == TaskInstanceState.SUCCESS
    model_dir = paths.model_dir(data, "lookalike", "metaheac")
    assert (model_dir / "eval" / "test_hot" / "metrics.json").is_file()
    assert (model_dir / "eval" / "test_cold" / "metrics.json").is_file()
    registration = json.loads(paths.registration_file(data, "lookalike", "metaheac").read_text())
    assert registration["decision"] == "promoted", registration["reasons"]
    assert set(registration["test_auc"]) == {"test_hot", "test_cold"}
    assert champion_version(client, "lookalike-metaheac") == registration["version"]
    metrics = client.get_run(registration["mlflow_run_id"]).data.metrics
    assert {"test_hot_auc", "test_hot_gauc", "test_cold_auc", "test_cold_gauc"} <= set(metrics)
    tags = client.get_run(registration["mlflow_run_id"]).data.tags
    assert tags[lineage.TAG_DAG_RUN_ID] == run.run_id
    assert tags[lineage.TAG_DVC_HASH] == pipeline.prepared_dvc_hash(data, "lookalike")


def test_invalid_raw_data_fails_the_run_before_training(dags, tmp_path):
    data = tmp_path / "data"
    conf = tiny_conf("census", str(data), ["shared_bottom"])
    # the generated income rate is ~0.2: the raw suite's label-rate expectation (a warning) rejects it
    conf["overrides"] = {
        **conf["overrides"],
        "datasets.census.validation.label_rates.income": {"min": 0.5, "max": 0.9},
        "validation.fail_on_warning": True,
    }
    run = dags["mtl_retrain_census"].test(run_conf=conf)
    assert run.state == DagRunState.FAILED
    by_task = states(run)
    assert by_task["download"] == TaskInstanceState.SUCCESS
    assert by_task["validate"] == TaskInstanceState.FAILED
    assert by_task.get("model.train[0]") in (None, TaskInstanceState.UPSTREAM_FAILED)
    assert not Path(paths.model_dir(data, "census", "shared_bottom")).exists()
    summary = json.loads((paths.validation_dir(data, "census", "raw") / "summary.json").read_text())
    assert summary["success"] is False
