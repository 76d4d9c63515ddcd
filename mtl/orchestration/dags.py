"""The retraining DAG factory: one DAG per dataset, every task a thin shell over ``mtl.pipeline``.

Graph (multi-task datasets)::

    download -> validate -> prepare -> models -> [per model: train -> evaluate -> gate -> register] -> summary

Graph (look-alike)::

    download -> validate -> prepare -> meta_train -> [evaluate_hot, evaluate_cold] -> gate -> register
        -> summary

XCom carries only paths, hashes, run ids and small metric dicts. Training runs in pool ``gpu`` and
queue ``gpu``; data-versioning steps that write DVC state run in pool ``dvc`` (one slot).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, task, task_group

from mtl import catalog
from mtl.config import Params, load_params
from mtl.orchestration.params import DAG_PARAM_KEYS, overrides_from_dag_params

log = logging.getLogger(__name__)

GPU_POOL = "gpu"
GPU_QUEUE = "gpu"
DVC_POOL = "dvc"
START_DATE = pendulum.datetime(2026, 1, 1, tz="UTC")


def prepared_asset(dataset: str) -> Asset:
    return Asset(name=f"mtl_prepared_{dataset}", uri=f"mtl://prepared/{dataset}", group="mtl-datasets")


def models_asset(dataset: str) -> Asset:
    return Asset(name=f"mtl_models_{dataset}", uri=f"mtl://registry/{dataset}", group="mtl-models")


def _run_params(context: dict[str, Any], dataset: str) -> Params:
    return load_params(overrides_from_dag_params(dataset, context["params"]))


def _data_dir(context: dict[str, Any]) -> Path:
    from mtl.orchestration.params import data_dir

    return data_dir(context["params"])


def _run_context(context: dict[str, Any]) -> dict[str, str]:
    """Lineage that reaches MLflow: the orchestrator and its run id."""
    return {"orchestrator": "airflow", "dag_id": context["dag"].dag_id, "dag_run_id": context["run_id"]}


# The model steps, shared by the multi-task DAGs' mapped group and the look-alike DAG: each is one
# ``mtl.pipeline`` call with this run's data directory and params.


def _train(dataset: str, model: str, prepared: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from mtl import pipeline

    return pipeline.train(
        dataset,
        model,
        data_dir=_data_dir(context),
        params=_run_params(context, dataset),
        run_context={**_run_context(context), "dvc_hash": prepared["dvc_hash"]},
    )


def _evaluate(
    dataset: str, model: str, trained: dict[str, Any], split: str, context: dict[str, Any]
) -> dict[str, Any]:
    from mtl import pipeline

    return pipeline.evaluate(
        dataset,
        model,
        data_dir=_data_dir(context),
        params=_run_params(context, dataset),
        split=split,
        mlflow_run_id=trained.get("mlflow_run_id"),
    )


def _gate(dataset: str, model: str, mlflow_run_id: str | None, context: dict[str, Any]) -> dict[str, Any]:
    from mtl import pipeline

    return pipeline.gate(
        dataset,
        model,
        data_dir=_data_dir(context),
        params=_run_params(context, dataset),
        mlflow_run_id=mlflow_run_id,
    )


def _register(dataset: str, decision: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from mtl import pipeline

    return pipeline.register(
        dataset,
        decision["model"],
        data_dir=_data_dir(context),
        params=_run_params(context, dataset),
        decision=decision,
    )


def _campaign_workflow(dataset: str) -> bool:
    """Whether the dataset's models are trained once and scored per campaign population (MetaHeac's
    meta-training: one model, several evaluation splits) rather than one mapped branch per model."""
    return not catalog.workflow(dataset).per_model


def _doc(dataset: str, defaults: Params) -> str:
    models = ", ".join(defaults.dataset(dataset).models)
    if _campaign_workflow(dataset):
        graph = (
            "`download` → `validate` → `prepare` → `meta_train` (pool/queue `gpu`) → "
            "`evaluate_hot` ∥ `evaluate_cold` → `gate` → `register` → `summary` → `outcome`"
        )
    else:
        graph = (
            "`download` → `validate` → `prepare` → `models` → one mapped `model` group per model "
            "(`train` in pool/queue `gpu` → `evaluate` → `gate` → `register`) → `summary` → `outcome`"
        )
    return f"""
### Retraining: {dataset}

{graph}

* **download** fetches the source (synthetic by default) with retries and exponential backoff.
* **validate** runs the Great Expectations raw suite; a failure stops the run before training and the
  log links the report (`data/validation/{dataset}/raw/summary.json`).
* **prepare** writes the Parquet splits, runs the prepared suite, records the DVC hash and updates the
  asset `{prepared_asset(dataset).name}`.
* **train** runs in pool `gpu` / queue `gpu` (GPU workers in a Celery/Kubernetes deployment; CPU elsewhere).
* **gate** applies the AUC floors and the no-regression check against the current `champion`; a
  rejection is a decision, not a failure: the run succeeds and the summary says *not promoted* and why.
* **register** creates the MLflow model version (alias `challenger`), moves `champion` if the gate passed,
  and updates the asset `{models_asset(dataset).name}`. A model whose training failed fails only its
  own branch; the others register.
* **summary** (runs whatever happened upstream) logs one line per model: test AUCs, gate decision,
  registry version and aliases; **outcome** fails the run if any model failed.

Default models: {models}. Trigger a run with other settings through the DAG params, e.g.
`airflow dags trigger mtl_retrain_{dataset} -c '{{"epochs": 1, "models": ["mmoe"]}}'`.
"""


def build_retrain_dag(dataset: str, defaults: Params | None = None):
    """Build ``mtl_retrain_<dataset>``; parameters and schedule come from params.yaml."""
    from mtl.orchestration.params import dag_params

    defaults = defaults or load_params()
    settings = defaults.orchestration

    @dag(
        dag_id=f"mtl_retrain_{dataset}",
        schedule=settings.schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["mtl", "retraining", dataset],
        owner_links={},
        default_args={
            "owner": settings.owner,
            "retries": settings.retries,
            "retry_delay": timedelta(seconds=settings.retry_delay_seconds),
        },
        params={key: Param(**spec) for key, spec in dag_params(dataset, defaults).items()},
        doc_md=_doc(dataset, defaults),
    )
    def retrain():
        @task(retries=settings.download_retries, retry_exponential_backoff=True, pool=DVC_POOL)
        def download(**context: Any) -> dict[str, Any]:
            from mtl import pipeline

            return pipeline.download(
                dataset, data_dir=_data_dir(context), params=_run_params(context, dataset)
            ).to_dict()

        @task(retries=0)
        def validate(raw: dict[str, Any], **context: Any) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            from mtl import pipeline
            from mtl.errors import DataValidationError

            try:
                return pipeline.validate(
                    dataset, data_dir=_data_dir(context), params=_run_params(context, dataset)
                ).to_dict()
            except DataValidationError as exc:
                log.error("raw data failed validation; report: %s", exc.report_path)
                raise AirflowFailException(str(exc)) from None

        @task(retries=0, pool=DVC_POOL, outlets=[prepared_asset(dataset)])
        def prepare(validated: dict[str, Any], **context: Any) -> dict[str, Any]:
            from airflow.sdk.exceptions import AirflowFailException

            from mtl import pipeline
            from mtl.errors import DataValidationError

            data_dir = _data_dir(context)
            try:
                result = pipeline.prepare(dataset, data_dir=data_dir, params=_run_params(context, dataset))
            except DataValidationError as exc:
                log.error("prepared data failed validation; report: %s", exc.report_path)
                raise AirflowFailException(str(exc)) from None
            return {
                **result.to_dict(),
                "dvc_hash": pipeline.prepared_dvc_hash(data_dir, dataset),
                "raw_report": validated.get("report"),
            }

        @task
        def summary(results: Any, prepared: dict[str, Any], **context: Any) -> dict[str, Any]:
            from mtl.orchestration.summary import summarise_run

            models = list(_run_params(context, dataset).dataset(dataset).models)
            return summarise_run(dataset, results, prepared or {}, _run_context(context), models)

        @task(trigger_rule="all_done")
        def outcome(summary: dict[str, Any] | None) -> None:
            """The run's verdict: failed if any model failed (the summary above still lists the others)."""
            from airflow.sdk.exceptions import AirflowFailException

            if not summary:
                raise AirflowFailException("the run summary is missing: an upstream task failed")
            if summary.get("failed"):
                raise AirflowFailException(
                    f"model(s) {', '.join(summary['failed'])} failed; registered: "
                    f"{', '.join(r['model'] for r in summary['registered']) or 'none'}"
                )

        prepared = prepare(validate(download()))

        if _campaign_workflow(dataset):
            (model,) = catalog.models_for(dataset)  # one meta-trained model, scored per population

            @task(pool=GPU_POOL, queue=GPU_QUEUE)
            def meta_train(prepared: dict[str, Any], **context: Any) -> dict[str, Any]:
                return _train(dataset, model, prepared, context)

            def evaluate_split(split: str):
                @task(task_id=f"evaluate_{split.removeprefix('test_')}")
                def evaluate(trained: dict[str, Any], **context: Any) -> dict[str, Any]:
                    return _evaluate(dataset, model, trained, split, context)

                return evaluate

            @task
            def gate(trained: dict[str, Any], *evaluated: dict[str, Any], **context: Any):
                return _gate(dataset, model, trained.get("mlflow_run_id"), context)

            @task(outlets=[models_asset(dataset)])
            def register(decision: dict[str, Any], **context: Any) -> dict[str, Any]:
                return _register(dataset, decision, context)

            trained = meta_train(prepared)
            scored = [evaluate_split(split)(trained) for split in catalog.workflow(dataset).evaluation_splits]
            outcome(summary.override(trigger_rule="all_done")([register(gate(trained, *scored))], prepared))
            return

        @task
        def models(**context: Any) -> list[str]:
            return list(_run_params(context, dataset).dataset(dataset).models)

        @task_group(group_id="model")
        def per_model(model: str, prepared: dict[str, Any]):
            @task(pool=GPU_POOL, queue=GPU_QUEUE)
            def train(model: str, prepared: dict[str, Any], **context: Any) -> dict[str, Any]:
                return _train(dataset, model, prepared, context)

            @task
            def evaluate(trained: dict[str, Any], **context: Any) -> dict[str, Any]:
                return _evaluate(dataset, trained["model"], trained, "test", context)

            @task
            def gate(evaluated: dict[str, Any], **context: Any) -> dict[str, Any]:
                return _gate(dataset, evaluated["model"], evaluated.get("mlflow_run_id"), context)

            @task(outlets=[models_asset(dataset)])
            def register(decision: dict[str, Any], **context: Any) -> dict[str, Any]:
                return _register(dataset, decision, context)

            return register(gate(evaluate(train(model, prepared))))

        registered = per_model.partial(prepared=prepared).expand(model=models())
        outcome(summary.override(trigger_rule="all_done")(registered, prepared))

    return retrain()


__all__ = ["DAG_PARAM_KEYS", "GPU_POOL", "GPU_QUEUE", "build_retrain_dag"]
