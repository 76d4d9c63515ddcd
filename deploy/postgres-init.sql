-- One PostgreSQL instance, two databases: Airflow metadata and the MLflow backend store.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
