"""Every model learns the planted signal of the fixture datasets: beyond chance, at least as well as the
logistic-regression baseline on its dataset's primary task, and CVR on clicked rows above 0.5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl import pipeline
from mtl.baselines import logistic_baseline
from mtl.datasets.prepared import load_metadata, read_split
from mtl.evaluation import oracle_aucs
from tests.support.models import MULTI_TASK_MODELS, small_params

CASES = [("aliccp", name) for name in MULTI_TASK_MODELS] + [
    ("census", n) for n in MULTI_TASK_MODELS if n != "esmm"
]


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of an AUC measured on this many positives/negatives."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    return (variance / (positives * negatives)) ** 0.5


@pytest.fixture(scope="module")
def logistic(prepared_root: Path) -> dict[str, dict[str, float | None]]:
    return {
        dataset: logistic_baseline(prepared_root / dataset, load_metadata(prepared_root / dataset))
        for dataset in ("aliccp", "census")
    }


@pytest.mark.parametrize(("dataset", "model"), CASES)
def test_model_learns_planted_tasks(data_dir, logistic, dataset, model):
    params = small_params()
    trained = pipeline.train(dataset, model, data_dir=data_dir, params=params)
    result = pipeline.evaluate(dataset, model, data_dir=data_dir, params=params, split="test")
    outputs = result["metrics"]["outputs"]
    metadata = load_metadata(data_dir / "prepared" / dataset)
    oracle = oracle_aucs(metadata.extra, "test", metadata.tasks, metadata.funnel)
    assert set(outputs) == set(oracle)
    for output, metrics in outputs.items():
        # share of the oracle's lift over chance that the model must reach; CVR is scored on ~400 clicked
        # test rows only (and single_task learns it from the clicked training rows alone)
        share = 0.4 if output == "purchase" else 0.6
        assert metrics["auc"] > 0.5 + share * (oracle[output] - 0.5), (output, metrics["auc"], oracle[output])
        assert metrics["auc"] < oracle[output] + 0.03  # nobody beats the truth by more than noise
    # below logistic regression on the primary task by more than two standard errors of the test AUC
    # (the fixture's 2,000 test rows; its planted truth is mostly per-field effects, LR's home ground)
    primary = params.gate.for_dataset(dataset).primary
    labels = read_split(data_dir / "prepared" / dataset, "test", metadata).labels[
        :, metadata.tasks.index(primary)
    ]
    positives = int(labels.sum())
    margin = 2 * auc_standard_error(logistic[dataset][primary], positives, labels.size - positives)
    assert outputs[primary]["auc"] >= logistic[dataset][primary] - margin, (
        f"{model} {primary} AUC {outputs[primary]['auc']:.4f} below logistic regression's "
        f"{logistic[dataset][primary]:.4f} - {margin:.4f}"
    )
    if metadata.funnel:
        assert outputs[metadata.funnel[1]]["auc"] > 0.5  # CVR on clicked rows: better than chance
    assert trained["training"]["epochs_run"] >= 1
    metrics_file = json.loads((data_dir / "models" / dataset / model / "metrics.json").read_text())
    assert set(metrics_file["splits"]) == {"valid", "test"}
