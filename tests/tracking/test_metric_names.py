"""Metric names for MLflow and how the gate finds a gated name, for per-output and campaign metrics."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtl.config import load_params
from mtl.datasets.prepared import load_metadata
from mtl.errors import ConfigError
from mtl.registry.gate import floors, sanity
from mtl.registry.rescore import scored_target
from mtl.tracking.results import gated_metric, split_metrics


def test_per_output_metrics_are_named_split_output_metric(tmp_path):
    metrics = {
        "auc_mean": 0.7,
        "loss": 0.4,
        "outputs": {"click": {"auc": 0.71, "logloss": 0.2, "positive_rate": 0.04, "rows": 10, "positives": 1},
                    "purchase": {"auc": None, "rows": 3}},
    }  # fmt: skip
    named = split_metrics("test", "mmoe", metrics, tmp_path)
    assert named == {
        "test_auc_mean": 0.7,
        "test_loss": 0.4,
        "test_click_auc": 0.71,
        "test_click_logloss": 0.2,
        "test_click_positive_rate": 0.04,
        "test_click_rows": 10.0,
        "test_click_positives": 1.0,
        "test_purchase_rows": 3.0,  # undefined AUC: left out, so the gate sees it as undefined
    }
    assert gated_metric(named, "click") == 0.71
    assert gated_metric(named, "purchase") is None


def test_campaign_metrics_name_the_population_and_read_rates_from_predictions(tmp_path):
    pq.write_table(
        pa.table({"label": np.array([1, 0, 0, 0], np.int8), "p_metaheac": np.array([0.5, 0.1, 0.1, 0.1])}),
        tmp_path / "predictions.parquet",
    )
    variant = {"auc": 0.8, "gauc": 0.75, "precision_at_top": 0.3, "recall_at_top": 0.2, "top_share": 0.05}
    metrics = {"variants": {"metaheac": variant, "metaheac_unadapted": {**variant, "auc": 0.7}}}
    named = split_metrics("test_hot", "metaheac", metrics, tmp_path)
    assert named["test_hot_auc"] == 0.8
    assert named["test_hot_gauc"] == 0.75
    assert named["test_hot_precision_at_5pct"] == 0.3
    assert named["test_hot_recall_at_5pct"] == 0.2
    assert named["test_hot_metaheac_unadapted_auc"] == 0.7
    assert named["test_hot_positive_rate"] == 0.25
    assert named["test_hot_prediction_mean"] == pytest.approx(0.2)
    assert gated_metric(named, "test_hot") == 0.8
    named.update({"test_cold_auc": 0.6, "test_cold_positive_rate": 0.2, "test_cold_prediction_mean": 0.25})
    gate = load_params().gate.lookalike
    assert not floors(named, gate).passed  # test_cold 0.6 < its floor
    assert sanity(named, ["test_hot", "test_cold"], gate).passed


def test_gated_names_resolve_to_their_scored_split(data_root):
    aliccp = load_metadata(data_root / "prepared" / "aliccp")
    split, target = scored_target(aliccp, "purchase")
    assert (split, target.output, target.given) == ("test", "purchase", "click")
    lookalike = load_metadata(data_root / "prepared" / "lookalike")
    split, target = scored_target(lookalike, "test_hot")
    assert (split, target.output) == ("test_hot_stage2", "label")
    with pytest.raises(ConfigError, match="neither an output of aliccp"):
        scored_target(aliccp, "income")
