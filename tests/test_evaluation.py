"""Exact AUC, undefined AUC, the click-masked CVR AUC, and ROC / precision-recall curve points."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mtl.evaluation import (
    UndefinedMetricWarning,
    evaluate_predictions,
    evaluation_targets,
    logloss,
    oracle_aucs,
    output_metrics,
    precision_recall_points,
    roc_auc,
    roc_curve_points,
)


def brute_force_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(tie), over every pair."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_pairwise_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random(700) < 0.3).astype(int)
    scores = np.round(rng.random(700) + 0.3 * labels, 1)  # coarse rounding: many ties, across classes too
    assert len(np.unique(scores)) < 30
    assert roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores), abs=1e-12)


def test_auc_of_constant_scores_is_one_half_and_of_perfect_scores_one():
    labels = np.array([0, 1, 0, 1, 1])
    assert roc_auc(labels, np.zeros(5)) == 0.5
    assert roc_auc(labels, labels.astype(float)) == 1.0
    assert roc_auc(labels, -labels.astype(float)) == 0.0


@pytest.mark.parametrize("labels", [np.zeros(10), np.ones(10), np.zeros(0)])
def test_undefined_auc_is_none_with_a_warning(labels):
    scores = np.linspace(0, 1, len(labels))
    assert roc_auc(labels, scores) is None
    with pytest.warns(UndefinedMetricWarning, match="'purchase'"):
        metrics = output_metrics(labels, scores, name="purchase")
    assert metrics["auc"] is None
    assert metrics["rows"] == len(labels)


def test_output_metrics_report_calibration_figures():
    labels = np.array([1, 0, 0, 0])
    probs = np.array([0.9, 0.2, 0.1, 0.4])
    metrics = output_metrics(labels, probs, name="click")
    assert metrics["positive_rate"] == 0.25
    assert metrics["prediction_mean"] == pytest.approx(0.4)
    assert metrics["positives"] == 1
    expected = -np.mean(np.log([0.9, 0.8, 0.9, 0.6]))
    assert metrics["logloss"] == pytest.approx(expected)
    assert logloss(labels, probs) == pytest.approx(expected)


def funnel_case(rng: np.random.Generator, n: int = 4000):
    click = rng.random(n) < 0.3
    purchase = click & (rng.random(n) < 0.4)
    labels = np.stack([click, purchase], axis=1).astype(np.float32)
    p_click = np.clip(0.3 + 0.2 * (click - 0.3) + rng.normal(0, 0.1, n), 0.01, 0.99)
    p_cvr = np.clip(0.4 + 0.3 * (purchase - 0.4) + rng.normal(0, 0.2, n), 0.01, 0.99)
    p_cvr[~click] = rng.uniform(0.3, 0.9, (~click).sum())  # pCVR says nothing about rows never clicked
    return labels, {"click": p_click, "purchase": p_cvr, "ctcvr": p_click * p_cvr}


def test_funnel_targets_are_ctr_cvr_on_clicks_and_ctcvr():
    targets = {t.output: t for t in evaluation_targets(["click", "purchase"], ["click", "purchase"])}
    assert set(targets) == {"click", "purchase", "ctcvr"}
    assert targets["purchase"].given == "click"
    assert targets["ctcvr"].label_tasks == ("click", "purchase")
    assert [t.output for t in evaluation_targets(["income", "marital"], None)] == ["income", "marital"]


def test_cvr_auc_is_computed_on_clicked_rows_only():
    labels, probs = funnel_case(np.random.default_rng(0))
    metrics = evaluate_predictions(["click", "purchase"], ["click", "purchase"], labels, probs)["outputs"]
    clicked = labels[:, 0] == 1
    masked = brute_force_auc(labels[clicked, 1], probs["purchase"][clicked])
    entire_space = brute_force_auc(labels[:, 1], probs["purchase"])
    assert metrics["purchase"]["auc"] == pytest.approx(masked)
    assert abs(masked - entire_space) > 0.02  # the bug this guards against would change the figure
    assert metrics["purchase"]["rows"] == clicked.sum()
    assert metrics["ctcvr"]["rows"] == len(labels)
    assert metrics["ctcvr"]["auc"] == pytest.approx(brute_force_auc(labels[:, 1], probs["ctcvr"]))
    assert metrics["click"]["auc"] == pytest.approx(brute_force_auc(labels[:, 0], probs["click"]))


def test_a_single_class_task_is_reported_not_raised():
    labels, probs = funnel_case(np.random.default_rng(1), n=200)
    labels[:, 1] = 0  # no purchase at all
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_predictions(["click", "purchase"], ["click", "purchase"], labels, probs)
    assert result["outputs"]["purchase"]["auc"] is None
    assert result["outputs"]["ctcvr"]["auc"] is None
    assert result["auc_mean"] == result["outputs"]["click"]["auc"]
    assert {str(w.message).split("'")[1] for w in caught if w.category is UndefinedMetricWarning} == {
        "purchase",
        "ctcvr",
    }


def test_roc_points_trace_the_exact_curve():
    rng = np.random.default_rng(2)
    labels = (rng.random(5000) < 0.2).astype(int)
    scores = np.round(rng.random(5000) + 0.5 * labels, 3)
    full = roc_curve_points(labels, scores, max_points=10**6)
    fpr = np.array([p["fpr"] for p in full])
    tpr = np.array([p["tpr"] for p in full])
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0)
    assert np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores), abs=1e-12)
    small = roc_curve_points(labels, scores, max_points=200)
    assert 100 <= len(small) <= 202
    assert (small[0]["fpr"], small[-1]["tpr"]) == (0.0, 1.0)
    assert np.trapezoid([p["tpr"] for p in small], [p["fpr"] for p in small]) == pytest.approx(
        roc_auc(labels, scores), abs=2e-3
    )


def test_precision_recall_points():
    labels = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    points = precision_recall_points(labels, scores)
    assert [round(p["recall"], 4) for p in points] == [0.3333, 0.6667, 0.6667, 1.0, 1.0, 1.0]
    assert [round(p["precision"], 4) for p in points] == [1.0, 1.0, 0.6667, 0.75, 0.6, 0.5]
    assert points[0]["threshold"] == 0.9
    assert precision_recall_points(np.zeros(4), np.arange(4)) == []
    assert roc_curve_points(np.ones(4), np.arange(4)) == []


def test_oracle_aucs_map_the_generators_keys_to_scored_outputs():
    extra = {"oracle_auc": {"test": {"rows": 9, "click": 0.75, "purchase": 0.80, "cvr": 0.70}}}
    funnel = ["click", "purchase"]
    assert oracle_aucs(extra, "test", funnel, funnel) == {"click": 0.75, "purchase": 0.70, "ctcvr": 0.80}
    census = {"oracle_auc": {"test": {"income": 0.9, "marital": 0.85}}}
    assert oracle_aucs(census, "test", ["income", "marital"], None) == {"income": 0.9, "marital": 0.85}
    assert oracle_aucs({}, "test", ["income"], None) == {"income": None}
