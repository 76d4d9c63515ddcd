"""The DAG files: import cleanly (no errors, no warnings), no cycles, known pools, the expected graph."""

from __future__ import annotations

import copy
import itertools
import warnings

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.exceptions import ParamValidationError

from mtl.config import load_params
from mtl.orchestration.dags import DVC_POOL, GPU_POOL, GPU_QUEUE, models_asset, prepared_asset

DAG_IDS = {"mtl_retrain_aliccp", "mtl_retrain_census", "mtl_retrain_lookalike"}
KNOWN_POOLS = {"default_pool", GPU_POOL, DVC_POOL}


@pytest.fixture(scope="module")
def dagbag(repo_root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(repo_root / "dags"), safe_mode=False, known_pools=KNOWN_POOLS)
    bag.caught_warnings = [w for w in caught if "mtl" in w.filename or "dags" in w.filename]
    return bag


def test_every_dag_file_imports_without_errors_warnings_or_cycles(dagbag):
    assert dagbag.import_errors == {}  # cycles show up here too
    assert dagbag.dag_warnings == set()  # e.g. an unknown pool
    assert [str(w.message) for w in dagbag.caught_warnings] == []
    assert set(dagbag.dag_ids) == DAG_IDS


@pytest.mark.parametrize("dag_id", sorted(DAG_IDS))
def test_schedule_and_run_settings_come_from_params(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    settings = load_params().orchestration
    assert dag.timetable.expression == settings.schedule
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert {"mtl", "retraining"} <= set(dag.tags)
    assert dag.default_args["owner"] == settings.owner
    assert dag.doc_md
    assert "gate" in dag.doc_md
    assert {"source", "models", "epochs", "floors", "tolerance", "synthetic_scale"} <= set(dag.params)


@pytest.mark.parametrize("dataset", ["aliccp", "census"])
def test_multitask_graph(dagbag, dataset):
    dag = dagbag.dags[f"mtl_retrain_{dataset}"]
    order = ["download", "validate", "prepare"]
    for upstream, downstream in itertools.pairwise(order):
        assert downstream in dag.get_task(upstream).downstream_task_ids
    chain = ["model.train", "model.evaluate", "model.gate", "model.register"]
    for upstream, downstream in itertools.pairwise(chain):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    train = dag.get_task("model.train")
    assert (train.pool, train.queue) == (GPU_POOL, GPU_QUEUE)
    assert "summary" in dag.get_task("model.register").downstream_task_ids
    assert dag.get_task("summary").trigger_rule == "all_done"  # one model's failure hides nothing
    assert dag.get_task("summary").downstream_task_ids == {"outcome"}
    assert dag.get_task("outcome").trigger_rule == "all_done"
    assert dag.leaves == [dag.get_task("outcome")]
    assert {t.pool for t in dag.tasks if t.task_id != "model.train"} <= {"default_pool", DVC_POOL}
    assert prepared_asset(dataset) in dag.get_task("prepare").outlets
    assert models_asset(dataset) in dag.get_task("model.register").outlets


def test_lookalike_graph_evaluates_hot_and_cold_as_separate_parallel_tasks(dagbag):
    dag = dagbag.dags["mtl_retrain_lookalike"]
    assert dag.get_task("prepare").downstream_task_ids == {"meta_train", "summary"}
    meta_train = dag.get_task("meta_train")
    assert (meta_train.pool, meta_train.queue) == (GPU_POOL, GPU_QUEUE)
    assert meta_train.downstream_task_ids == {"evaluate_hot", "evaluate_cold", "gate"}
    hot, cold = dag.get_task("evaluate_hot"), dag.get_task("evaluate_cold")
    assert hot.downstream_task_ids == cold.downstream_task_ids == {"gate"}
    assert hot.task_id not in cold.upstream_task_ids
    assert cold.task_id not in hot.upstream_task_ids
    assert dag.get_task("gate").downstream_task_ids == {"register"}
    assert dag.get_task("register").downstream_task_ids == {"summary"}
    assert dag.get_task("summary").trigger_rule == "all_done"
    assert dag.leaves == [dag.get_task("outcome")]
    assert models_asset("lookalike") in dag.get_task("register").outlets


def test_downloads_retry_with_backoff_and_validation_does_not(dagbag):
    dag = dagbag.dags["mtl_retrain_aliccp"]
    download = dag.get_task("download")
    assert download.retries == load_params().orchestration.download_retries > 0
    assert download.retry_exponential_backoff
    assert dag.get_task("validate").retries == 0  # bad data does not get better by retrying


def test_data_writing_tasks_share_a_pool_of_one(dagbag):
    for dag in dagbag.dags.values():
        assert dag.get_task("download").pool == DVC_POOL
        assert dag.get_task("prepare").pool == DVC_POOL


@pytest.mark.parametrize(
    ("key", "value"),
    [("models", ["nope"]), ("models", []), ("epochs", 0), ("tolerance", 2.0), ("source", "ftp")],
)
def test_dag_params_reject_bad_values(dagbag, key, value):
    params = copy.deepcopy(dagbag.dags["mtl_retrain_aliccp"].params)
    params.validate()  # the defaults are valid
    with pytest.raises(ParamValidationError):
        params[key] = value  # a DAG run's conf is validated value by value like this
