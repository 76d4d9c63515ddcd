"""Airflow integration: the embedded-default environment and the retraining DAG factory."""
