"""Score a logged or registered model on prepared test data through its served form.

The prepared rows are decoded back to raw feature columns (``Dataset.raw_codec``) and fed to the
pyfunc, which encodes them with its *own* encoders -- so a champion trained on an older data version
is scored on the new test data exactly as it would be served. Chunked, so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtl.datasets import get_dataset
from mtl.datasets.prepared import DatasetMetadata, iter_split, load_metadata
from mtl.errors import ConfigError
from mtl.evaluation import Target, evaluation_targets, roc_auc, target_labels

CHUNK_ROWS = 200_000
TEST_SPLIT = "test"
SCORED_STAGE = "_stage2"  # a campaign population's scored rows (look-alike: test_hot_stage2)


def scored_target(metadata: DatasetMetadata, name: str) -> tuple[str, Target]:
    """(split, target) a gated name is scored on: an output of the test split, or a campaign
    population's scored stage with the dataset's single task."""
    targets = {t.output: t for t in evaluation_targets(metadata.tasks, metadata.funnel)}
    if name in targets and TEST_SPLIT in metadata.splits:
        return TEST_SPLIT, targets[name]
    if name + SCORED_STAGE in metadata.splits and len(metadata.tasks) == 1:
        task = metadata.tasks[0]
        return name + SCORED_STAGE, Target(task, (task,))
    raise ConfigError(
        f"gate name {name!r} is neither an output of {metadata.dataset} ({sorted(targets)}) nor a campaign "
        f"population with a '{SCORED_STAGE}' split; fix gate.{metadata.dataset} in params.yaml"
    )


def served_auc(model_uri: str, dataset: str, prepared_dir: Path, name: str) -> float | None:
    """AUC of the served model ``model_uri`` on gated name ``name`` of the prepared data (inside an
    open ``with connect(...)`` block, which ``models:/`` URIs resolve through)."""
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(model_uri)
    metadata = load_metadata(prepared_dir)
    split, target = scored_target(metadata, name)
    codec = get_dataset(dataset).raw_codec(prepared_dir)
    labels, scores = [], []
    for arrays in iter_split(prepared_dir, split, CHUNK_ROWS, metadata):
        predicted = pyfunc.predict(codec.decode(arrays))
        y, mask = target_labels(target, arrays.labels, metadata.tasks)
        labels.append(y[mask])
        scores.append(predicted[f"p_{target.output}"].to_numpy(dtype=np.float64)[mask])
    if not labels:
        return None
    return roc_auc(np.concatenate(labels), np.concatenate(scores))
