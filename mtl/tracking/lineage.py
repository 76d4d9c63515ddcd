"""Lineage of a training run: the code (git commit, dirty tree), the data (dataset, source, DVC and
content hashes) and the orchestrator run (Airflow ``dag_id``/``dag_run_id``), as run tags; and the
prepared data as an MLflow dataset input."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from mtl.datasets.prepared import DatasetMetadata

UNKNOWN = "unknown"
CODE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding the mtl package
# run tags (one place, so that tracking, the gate and `mtl registry show` read the same keys)
TAG_DATASET = "mtl.dataset"
TAG_SOURCE = "mtl.dataset_source"
TAG_DVC_HASH = "mtl.data_dvc_hash"
TAG_CONTENT_HASH = "mtl.data_content_hash"
TAG_RAW_HASH = "mtl.data_raw_hash"
TAG_GIT_COMMIT = "mtl.git_commit"
TAG_GIT_DIRTY = "mtl.git_dirty"
TAG_DAG_ID = "mtl.dag_id"
TAG_DAG_RUN_ID = "mtl.dag_run_id"


def git_state(root: Path | None = None) -> dict[str, str]:
    """``{"commit", "dirty"}`` of the checkout the running code comes from; ``$MTL_GIT_COMMIT`` (e.g.
    baked into an image without ``.git``) where git cannot tell, else "unknown"."""
    root = root or CODE_ROOT
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = "true" if _git(root, "status", "--porcelain", "--untracked-files=no") else "false"
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": os.environ.get("MTL_GIT_COMMIT", UNKNOWN), "dirty": UNKNOWN}


def lineage_tags(
    dataset: str, metadata: DatasetMetadata, dvc_hash: str, run_context: dict[str, Any]
) -> dict[str, str]:
    """The lineage tags of a training run (MLflow's own git tag included, so its UI shows the commit)."""
    git = git_state()
    tags = {
        TAG_DATASET: dataset,
        TAG_SOURCE: metadata.source,
        TAG_DVC_HASH: dvc_hash,
        TAG_CONTENT_HASH: metadata.content_hash,
        TAG_RAW_HASH: metadata.raw_hash,
        TAG_GIT_COMMIT: git["commit"],
        TAG_GIT_DIRTY: git["dirty"],
    }
    if git["commit"] != UNKNOWN:
        tags["mlflow.source.git.commit"] = git["commit"]
    for key, tag in (("dag_id", TAG_DAG_ID), ("dag_run_id", TAG_DAG_RUN_ID)):
        if run_context.get(key):
            tags[tag] = str(run_context[key])
    return tags


def log_prepared_input(
    client: Any, run_id: str, dataset: str, prepared_dir: Path, metadata: DatasetMetadata, context: str
) -> None:
    """Record the prepared data as the run's dataset input (name, content hash as digest, location)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    entity = MetaDataset(
        LocalArtifactDatasetSource(Path(prepared_dir).resolve().as_uri()),
        name=f"{dataset}-prepared",
        digest=metadata.content_hash[:36] or None,
    )._to_mlflow_entity()
    client.log_inputs(run_id, datasets=[DatasetInput(entity, [InputTag(MLFLOW_DATASET_CONTEXT, context)])])


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()
