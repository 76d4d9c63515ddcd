# syntax=docker/dockerfile:1
# One image for every Airflow component (API server, scheduler, DAG processor, triggerer, Celery workers)
# and the MLflow tracking server. Dependencies come from requirements.lock through scripts/install.sh,
# exactly as `make setup` installs them.
#
#   docker build -t mtl:cpu .                                    # CPU build of torch (default)
#   docker build --build-arg TORCH_VARIANT=cu128 -t mtl:gpu .   # CUDA build of torch for GPU workers
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/mtl
COPY pyproject.toml requirements.lock README.md ./
COPY scripts/install.sh scripts/install.sh
COPY mtl/ mtl/
# torch's own index serves the CPU (+cpu) and CUDA (+cuXXX) builds of the pinned torch==2.13.0
RUN TORCH_INDEX_URL="https://download.pytorch.org/whl/${TORCH_VARIANT}" scripts/install.sh /opt/venv

FROM ${PYTHON_IMAGE} AS runtime
ARG GIT_COMMIT=unknown
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MTL_HOME=/var/lib/mtl \
    MTL_DATA_DIR=/var/lib/mtl/data \
    MTL_PARAMS=/opt/mtl/params.yaml \
    MTL_GIT_COMMIT=${GIT_COMMIT} \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/mtl/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    MPLCONFIGDIR=/tmp/matplotlib \
    DVC_NO_ANALYTICS=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    GX_ANALYTICS_ENABLED=false
RUN groupadd --system --gid 50000 mtl \
    && useradd --system --uid 50000 --gid mtl --home-dir /var/lib/mtl --create-home --shell /usr/sbin/nologin mtl \
    && mkdir -p /opt/airflow /var/lib/mtl/data \
    && chown -R mtl:mtl /opt/airflow /var/lib/mtl
COPY --from=build /opt/venv /opt/venv
COPY --chown=mtl:mtl . /opt/mtl
WORKDIR /opt/mtl
# The image carries no .git: DVC runs without an SCM (lineage takes the commit from MTL_GIT_COMMIT).
RUN dvc config --local core.no_scm true && chown -R mtl:mtl /opt/mtl/.dvc
USER 50000:50000
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 CMD ["mtl", "healthcheck"]
CMD ["mtl", "--help"]
