"""Pooled AUC and per-campaign AUC (GAUC) of known probabilities: the ceiling a model can reach."""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl.evaluation import campaign_metrics


def ranking_quality(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Pooled AUC, GAUC (unweighted mean of campaign AUCs, as MetaHeac reports it) and its
    row-weighted variant, with how many campaigns were scored and skipped (one class only)."""
    metrics = campaign_metrics(labels, scores, groups)
    return {
        "auc": metrics["auc"],
        "gauc": metrics["gauc"],
        "gauc_weighted": metrics["gauc_weighted"],
        "campaigns_scored": metrics["campaigns_evaluated"],
        "campaigns_skipped": metrics["campaigns_skipped"],
    }
