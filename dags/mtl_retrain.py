"""Airflow retraining DAGs, one per dataset: mtl_retrain_aliccp, mtl_retrain_census, mtl_retrain_lookalike.

Thin on purpose: the graph is built by ``mtl.orchestration.dags.build_retrain_dag`` and every task
calls a step function of ``mtl.pipeline`` (the same functions ``mtl`` and ``dvc repro`` run).
"""

from mtl.orchestration.dags import build_retrain_dag

mtl_retrain_aliccp = build_retrain_dag("aliccp")
mtl_retrain_census = build_retrain_dag("census")
mtl_retrain_lookalike = build_retrain_dag("lookalike")
