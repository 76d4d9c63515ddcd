"""Per-campaign metrics: pooled AUC, GAUC (unweighted and row-weighted), precision/recall at the top."""

from __future__ import annotations

import numpy as np
import pytest

from mtl.evaluation import campaign_metrics, campaign_table, roc_auc, top_share_precision_recall


def test_gauc_is_the_mean_of_campaign_aucs_unweighted_and_row_weighted():
    rng = np.random.default_rng(0)
    groups = np.repeat([7, 3, 5], [100, 300, 60])
    labels = (rng.random(groups.size) < 0.3).astype(int)
    scores = rng.random(groups.size) + 0.5 * labels * (groups == 3)  # campaign 3 ranks well, others at random
    order = rng.permutation(groups.size)  # rows of campaigns interleaved
    labels, scores, groups = labels[order], scores[order], groups[order]
    aucs = {g: roc_auc(labels[groups == g], scores[groups == g]) for g in (3, 5, 7)}
    metrics = campaign_metrics(labels, scores, groups)
    assert metrics["gauc"] == pytest.approx(np.mean(list(aucs.values())))
    assert metrics["gauc_weighted"] == pytest.approx((300 * aucs[3] + 60 * aucs[5] + 100 * aucs[7]) / 460)
    assert metrics["auc"] == roc_auc(labels, scores)  # pooled over every row
    assert (metrics["campaigns_evaluated"], metrics["campaigns_skipped"], metrics["rows"]) == (3, 0, 460)
    table = campaign_table(labels, scores, groups, top_share=0.05)
    assert table["group"].tolist() == [3, 5, 7]
    assert table["rows"].tolist() == [300, 60, 100]
    assert table["auc"].tolist() == [aucs[3], aucs[5], aucs[7]]


def test_a_one_class_campaign_is_skipped_and_counted():
    labels = np.array([1, 0, 1, 0, 0, 0, 0, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.3, 0.6, 0.1, 0.7, 0.4, 0.5])
    groups = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3])  # campaign 2 has negatives only
    metrics = campaign_metrics(labels, scores, groups, top_share=0.5)
    assert metrics["campaigns_evaluated"] == 2
    assert metrics["campaigns_skipped"] == 1
    table = campaign_table(labels, scores, groups, top_share=0.5)
    assert np.isnan(table["auc"][1])
    assert np.isnan(table["precision"][1])
    assert np.isnan(table["recall"][1])
    assert metrics["gauc"] == pytest.approx((1.0 + 0.5) / 2)
    assert metrics["precision_at_top"] == pytest.approx((1.0 + 1.0) / 2)  # top 2 of 4, top 1 of 3
    assert metrics["recall_at_top"] == pytest.approx((1.0 + 0.5) / 2)


def test_precision_and_recall_at_the_top_share():
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1] * 2)
    scores = np.linspace(1.0, 0.0, labels.size)  # the first rows score highest
    precision, recall = top_share_precision_recall(labels, scores, 0.1)  # k = int(0.1 * 40) = 4
    assert precision == pytest.approx(2 / 4)
    assert recall == pytest.approx(2 / 8)
    # fewer than 1/share rows: still the single best row (k = max(1, int(share n)))
    assert top_share_precision_recall(np.array([0, 1, 0]), np.array([0.1, 0.9, 0.3]), 0.05) == (1.0, 1.0)
    # ties at the cut: earlier rows first, so the result is deterministic
    assert top_share_precision_recall(np.array([0, 1]), np.array([0.5, 0.5]), 0.5) == (0.0, 0.0)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="differ in length"):
        campaign_metrics(np.zeros(3), np.zeros(3), np.zeros(2))
