"""Multi-task recommendation models kept fresh by an Airflow/DVC/MLflow retraining workflow."""

__version__ = "0.1.0"
