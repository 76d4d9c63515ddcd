"""Tracking a training and its evaluation: run grouping, params, per-epoch steps, lineage, artifacts."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mtl import paths, pipeline
from mtl.errors import TrackingError, TrainingError
from mtl.tracking import lineage, runs, store
from tests.support.tracked import DAG_CONTEXT, free_port, registry_params


def test_training_run_has_params_lineage_epochs_and_a_parent(tracked_model, data_root):
    client = MlflowClient(tracked_model.uri)
    run = client.get_run(tracked_model.run_id)
    tags, params = run.data.tags, run.data.params
    assert tracked_model.train["mlflow_run_id"] == run.info.run_id
    assert tracked_model.train["model"] == "mmoe"
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "mtl-aliccp"

    parent = client.get_run(tags["mlflow.parentRunId"])
    assert parent.data.tags[runs.TAG_KIND] == "pipeline"
    assert parent.data.tags[runs.TAG_PIPELINE_RUN] == DAG_CONTEXT["dag_run_id"]
    assert parent.data.tags[lineage.TAG_DAG_ID] == DAG_CONTEXT["dag_id"]

    # every parameter, overrides included
    assert params["train.epochs"] == "2"
    assert params["models.mmoe.expert_dims"] == "[16]"
    assert params["datasets.aliccp.synthetic.train_rows"] == "4000"
    assert len(params) > 100

    prepared = tracked_model.data_dir / "prepared" / "aliccp"
    metadata = json.loads((prepared / "metadata.json").read_text())
    git = lineage.git_state()
    assert tags[lineage.TAG_DATASET] == "aliccp"
    assert tags[lineage.TAG_SOURCE] == "synthetic"
    assert tags[lineage.TAG_DVC_HASH] == pipeline.prepared_dvc_hash(data_root, "aliccp")
    assert tags[lineage.TAG_CONTENT_HASH] == metadata["content_hash"]
    assert tags[lineage.TAG_GIT_COMMIT] == git["commit"] == tags["mlflow.source.git.commit"]
    assert tags[lineage.TAG_GIT_DIRTY] in ("true", "false")
    assert tags[lineage.TAG_DAG_ID] == DAG_CONTEXT["dag_id"]
    assert tags[lineage.TAG_DAG_RUN_ID] == DAG_CONTEXT["dag_run_id"]
    assert tags["mtl.seed"] == params["seed"]
    assert tags["mtl.training.device"] == "cpu"

    # per-epoch metrics as steps, training summary
    history = client.get_metric_history(run.info.run_id, "valid_click_auc")
    assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["training_samples_per_s"] > 0
    assert run.data.metrics["training_wall_seconds"] > 0

    inputs = run.inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["aliccp-prepared"]
    assert inputs[0].dataset.digest == metadata["content_hash"][:36]

    record = json.loads(
        (paths.model_dir(tracked_model.data_dir, "aliccp", "mmoe") / runs.RUN_FILE).read_text()
    )
    assert record["mlflow_run_id"] == run.info.run_id
    assert record["model_uri"] == tags["mtl.model_uri"]


def test_evaluation_logs_test_metrics_and_plots(tracked_model, tmp_path):
    client = MlflowClient(tracked_model.uri)
    run = client.get_run(tracked_model.run_id)
    assert tracked_model.evaluation["mlflow_run_id"] == run.info.run_id
    outputs = tracked_model.evaluation["metrics"]["outputs"]
    for output in ("click", "purchase", "ctcvr"):  # CTR AUC, CVR AUC on clicked rows, CTCVR AUC
        assert run.data.metrics[f"test_{output}_auc"] == pytest.approx(outputs[output]["auc"])
        assert run.data.metrics[f"test_{output}_rows"] == outputs[output]["rows"]
    assert run.data.metrics["test_purchase_rows"] < run.data.metrics["test_click_rows"]

    listed = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation/test")}
    expected = {f"evaluation/test/{kind}_{o}.png" for kind in ("roc", "pr") for o in outputs}
    assert expected | {"evaluation/test/metrics.json"} <= listed
    local = client.download_artifacts(run.info.run_id, "training/curves.png", str(tmp_path))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = client.download_artifacts(run.info.run_id, "data/validation_summary.json", str(tmp_path))
    assert json.loads(Path(summary).read_text())["suite"] == "aliccp.prepared"


def test_epoch_metrics_are_one_call_per_epoch(tracking, monkeypatch):
    experiment = tracking.experiment_id("census")
    run_id = tracking.client.create_run(experiment).info.run_id
    calls, seen = [], []
    original = tracking.client.log_batch
    monkeypatch.setattr(tracking.client, "log_batch", lambda *a, **k: calls.append(k) or original(*a, **k))
    logger = runs.EpochLogger(tracking, run_id, then=lambda epoch, metrics: seen.append(epoch))
    for epoch in (1, 2, 3):
        logger(epoch, {"epoch": epoch, "train_loss": 1.0 / epoch, "valid_income_auc": 0.6 + epoch / 100})
    logger.backfill([{"epoch": e, "train_loss": 9.0} for e in (1, 2, 3, 4)])  # resumed: epoch 4 unseen
    assert len(calls) == 4
    assert seen == [1, 2, 3]
    history = tracking.client.get_metric_history(run_id, "train_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3)), (4, 9.0)]


@pytest.fixture
def store_params_for_unit(tmp_path, tracked_model):
    import shutil

    shutil.copy2(tracked_model.db, tmp_path / "mlflow.db")
    return registry_params(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")


@pytest.fixture
def tracking(store_params_for_unit):
    with store.connect(store_params_for_unit) as connected:
        yield connected


def test_parent_run_is_created_once_under_concurrency(tracking):
    experiment = tracking.experiment_id("census")
    found, barrier = [], threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        found.append(runs.parent_run(tracking, experiment, "scheduled__2026-11-23", {}))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1
    assert runs._parents(tracking, experiment, "scheduled__2026-11-23") == [found[0]]


def test_parent_created_meanwhile_on_another_host_wins(tracking, monkeypatch):
    experiment = tracking.experiment_id("census")
    original, others = tracking.client.create_run, []

    def create_run(*args, **kwargs):
        if not others:  # another host's task creates its parent between our search and our create
            others.append(original(*args, **kwargs).info.run_id)
        return original(*args, **kwargs)

    monkeypatch.setattr(tracking.client, "create_run", create_run)
    chosen = runs.parent_run(tracking, experiment, "key-1", {})
    assert chosen == others[0]
    assert runs._parents(tracking, experiment, "key-1") == [chosen]  # ours was deleted


def test_unreachable_store_fails_before_training(tmp_path, data_root):
    uri = f"http://127.0.0.1:{free_port()}"
    data_dir = tmp_path / "data"
    (data_dir / "prepared").mkdir(parents=True)
    (data_dir / "prepared" / "census").symlink_to(data_root / "prepared" / "census")
    with pytest.raises(TrackingError, match=f"MLflow tracking server {uri} is unreachable"):
        pipeline.train("census", "shared_bottom", data_dir=data_dir, params=registry_params(uri))
    assert not paths.model_dir(data_dir, "census", "shared_bottom").exists()


def test_failed_training_marks_the_run_failed(tmp_path, data_root, store_params_for_unit, monkeypatch):
    data_dir = tmp_path / "data"
    (data_dir / "prepared").mkdir(parents=True)
    (data_dir / "prepared" / "census").symlink_to(data_root / "prepared" / "census")
    params = store_params_for_unit

    def diverging(dataset, model, *, data_dir, params, on_epoch_end):
        on_epoch_end(1, {"epoch": 1, "train_loss": 0.7})
        raise TrainingError("loss is NaN at epoch 2")

    monkeypatch.setattr(pipeline, "_fit", diverging)
    with pytest.raises(TrainingError, match="NaN"):
        pipeline.train("census", "mmoe", data_dir=data_dir, params=params, run_context={"dag_run_id": "r1"})
    client = MlflowClient(params.tracking.uri)
    [run] = client.search_runs(
        [client.get_experiment_by_name("mtl-census").experiment_id], "tags.`mtl.run_kind` = 'training'"
    )
    assert run.info.status == "FAILED"
    assert run.data.tags["mtl.error"] == "TrainingError: loss is NaN at epoch 2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == [1]
    assert not (paths.model_dir(data_dir, "census", "mmoe") / runs.RUN_FILE).exists()


def test_untracked_training_leaves_no_run_file(tmp_path, data_root):
    data_dir = tmp_path / "data"
    (data_dir / "prepared").mkdir(parents=True)
    (data_dir / "prepared" / "census").symlink_to(data_root / "prepared" / "census")
    model_dir = paths.model_dir(data_dir, "census", "shared_bottom")
    model_dir.mkdir(parents=True)
    (model_dir / runs.RUN_FILE).write_text('{"mlflow_run_id": "stale"}')
    params = registry_params("sqlite:///unused.db", None, "tracking.enabled=false")
    result = pipeline.train("census", "shared_bottom", data_dir=data_dir, params=params)
    assert result["mlflow_run_id"] is None
    assert not (model_dir / runs.RUN_FILE).exists()


def test_uris_resolve_from_params_then_environment_then_the_embedded_default(monkeypatch, mtl_home):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    default = store.resolve(registry_params("null"))
    assert default.uri == f"sqlite:///{mtl_home / 'mlflow' / 'mlflow.db'}" == default.registry_uri
    assert default.artifact_root == (mtl_home / "mlflow" / "artifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "postgresql://u:pw@db.example/registry")
    from_env = store.resolve(registry_params("null"))
    assert from_env.uri == "http://tracking.example:5000"
    assert from_env.artifact_root is None  # the server decides
    assert store.redact(from_env.registry_uri) == "postgresql+psycopg2://u:***@db.example/registry"
    assert store.resolve(registry_params("sqlite:////srv/m.db")).uri == "sqlite:////srv/m.db"


def test_git_state_without_git(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_GIT_COMMIT", "0123abc")
    assert lineage.git_state(tmp_path) == {"commit": "0123abc", "dirty": "unknown"}
    monkeypatch.delenv("MTL_GIT_COMMIT")
    assert lineage.git_state(tmp_path) == {"commit": "unknown", "dirty": "unknown"}
