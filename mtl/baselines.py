"""The logistic-regression baseline every model must beat: one-hot ids plus dense values, C chosen on the
validation split.

Ids are one-hot (each field its own column range; a multi-valued field's ids weigh 1/length each), dense
values pass as they are. On a funnel it fits the earlier task and the joint label over all rows and scores
the later task as joint / earlier on the rows of the earlier one: the construction the entire-space models
use. The benchmark (benchmarks/quality.py) prints it beside every model; the quality test asserts models
clear it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from mtl.datasets.prepared import DatasetMetadata, SplitArrays, read_split
from mtl.evaluation import JOINT_OUTPUT, evaluate_predictions

# inverse L2 strengths tried; the best sits inside the grid on the synthetic data (0.03 on Ali-CCP)
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def one_hot(arrays: SplitArrays, metadata: DatasetMetadata) -> sp.csr_matrix:
    """Ids one-hot (each field its own column range), multi-valued ids weighted 1/length, dense as is."""
    n = len(arrays)
    rows, cols, vals = [], [], []
    offset = 0
    for j, field in enumerate(metadata.features.sparse):
        rows.append(np.arange(n))
        cols.append(offset + arrays.sparse[:, j])
        vals.append(np.ones(n))
        offset += field.vocab_size
    for j, field in enumerate(metadata.features.multi):
        lengths = arrays.multi_lengths[:, j]
        valid = np.arange(field.max_len)[None, :] < lengths[:, None]
        r, slot = np.nonzero(valid)
        rows.append(r)
        cols.append(offset + arrays.multi[j][r, slot])
        vals.append(1.0 / lengths[r])
        offset += field.vocab_size
    for j in range(arrays.dense.shape[1]):
        rows.append(np.arange(n))
        cols.append(np.full(n, offset + j))
        vals.append(arrays.dense[:, j].astype(np.float64))
    width = offset + arrays.dense.shape[1]
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, width)
    )


def fit_logistic(
    x: sp.csr_matrix, y: np.ndarray, x_valid: sp.csr_matrix, y_valid: np.ndarray
) -> LogisticRegression:
    """The C of ``C_GRID`` with the best validation logloss."""
    best, best_loss = None, np.inf
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=300).fit(x, y)
        p = np.clip(model.predict_proba(x_valid)[:, 1], 1e-7, 1 - 1e-7)
        loss = -np.mean(y_valid * np.log(p) + (1 - y_valid) * np.log(1 - p))
        if loss < best_loss:
            best, best_loss = model, loss
    return best


def logistic_baseline(prepared: Path, metadata: DatasetMetadata) -> dict[str, float | None]:
    """Test AUC per output of the logistic regression fitted on train, C chosen on valid."""
    splits = {s: read_split(prepared, s, metadata) for s in ("train", "valid", "test")}
    features = {s: one_hot(a, metadata) for s, a in splits.items()}
    tasks = metadata.tasks
    probabilities = {}
    for i, task in enumerate(tasks):
        if metadata.funnel and task == metadata.funnel[1]:
            continue
        model = fit_logistic(
            features["train"], splits["train"].labels[:, i], features["valid"], splits["valid"].labels[:, i]
        )
        probabilities[task] = model.predict_proba(features["test"])[:, 1]
    if metadata.funnel:
        earlier, later = metadata.funnel
        joint = {
            s: a.labels[:, tasks.index(earlier)] * a.labels[:, tasks.index(later)] for s, a in splits.items()
        }
        model = fit_logistic(features["train"], joint["train"], features["valid"], joint["valid"])
        probabilities[JOINT_OUTPUT] = model.predict_proba(features["test"])[:, 1]
        probabilities[later] = np.clip(
            probabilities[JOINT_OUTPUT] / np.maximum(probabilities[earlier], 1e-12), 0, 1
        )
    result = evaluate_predictions(tasks, metadata.funnel, splits["test"].labels, probabilities)
    return {output: m["auc"] for output, m in result["outputs"].items()}
