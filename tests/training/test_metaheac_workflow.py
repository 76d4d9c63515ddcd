"""MetaHeac evaluation: hot and cold separately, baselines beside it, skipped campaigns, safe loading."""

from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mtl import cli, paths, pipeline
from mtl.datasets import safe_pickle
from mtl.errors import ConfigError
from tests.support.metaheac import SMALL, build_lookalike, fresh_data_dir, small_params

pytestmark = pytest.mark.usefixtures("single_thread")

VARIANTS = {"metaheac", "metaheac_unadapted", "plain", "plain_adapted"}


def test_hot_and_cold_are_separate_evaluations_with_baselines_beside(metaheac_root, tmp_path, capsys):
    data_dir = fresh_data_dir(tmp_path, metaheac_root, models=True)
    sets = [f"--set={s}" for s in SMALL]
    assert (
        cli.main(
            ["--data-dir", str(data_dir), *sets, "evaluate", "lookalike", "metaheac", "--split", "test_hot"]
        )
        == 0
    )
    assert "plain_adapted" in capsys.readouterr().out
    hot_dir = paths.evaluation_dir(data_dir, "lookalike", "metaheac", "test_hot")
    hot_files = {p.name: p.read_bytes() for p in hot_dir.rglob("*") if p.is_file()}
    assert {"metrics.json", "predictions.parquet", "campaigns.parquet", "roc_metaheac.json"} <= set(hot_files)
    assert not paths.evaluation_dir(data_dir, "lookalike", "metaheac", "test_cold").exists()

    batched = small_params("metaheac.adaptation.batched=true")
    cold = pipeline.evaluate("lookalike", "metaheac", data_dir=data_dir, params=batched, split="test_cold")
    assert {p.name: p.read_bytes() for p in hot_dir.rglob("*") if p.is_file()} == hot_files  # untouched
    hot = json.loads(hot_files["metrics.json"])
    assert (hot["stage1"], hot["stage2"], cold["metrics"]["stage2"]) == (
        "test_hot_stage1", "test_hot_stage2", "test_cold_stage2",
    )  # fmt: skip
    assert (hot["campaigns"], cold["metrics"]["campaigns"]) == (4, 6)
    # batched: auto adapts one campaign at a time on the CPU; true forces the vmapped path
    assert (hot["adaptation"]["mode"], cold["metrics"]["adaptation"]["mode"]) == ("sequential", "batched")
    for metrics in (hot, cold["metrics"]):
        assert set(metrics["variants"]) == VARIANTS
        for variant in metrics["variants"].values():
            assert {"auc", "gauc", "gauc_weighted", "precision_at_top", "recall_at_top"} <= set(variant)
            assert variant["campaigns_evaluated"] + variant["campaigns_skipped"] == metrics["campaigns"]
        assert metrics["oracle"]["gauc"] > max(v["gauc"] for v in metrics["variants"].values())
        assert metrics["adaptation"]["campaigns_per_s"] > 0
    predictions = pd.read_parquet(
        paths.evaluation_dir(data_dir, "lookalike", "metaheac", "test_cold") / "predictions.parquet"
    )
    assert len(predictions) == cold["metrics"]["stage2_rows"]
    assert {f"p_{v}" for v in VARIANTS} <= set(predictions.columns)
    summary = json.loads((paths.model_dir(data_dir, "lookalike", "metaheac") / "metrics.json").read_text())
    assert set(summary["splits"]) == {"test_hot", "test_cold"}


def test_adaptation_improves_stage2_auc_on_average(metaheac_root, tmp_path):
    data_dir = fresh_data_dir(tmp_path, metaheac_root, models=True)
    result = pipeline.evaluate(
        "lookalike", "metaheac", data_dir=data_dir, params=small_params(), split="test_hot"
    )
    variants = result["metrics"]["variants"]
    assert variants["metaheac"]["gauc"] > variants["metaheac_unadapted"]["gauc"] + 0.01, variants
    assert variants["plain_adapted"]["gauc"] > variants["plain"]["gauc"], variants
    campaigns = pd.read_parquet(result["campaigns_file"])
    assert (campaigns["auc_metaheac"] > campaigns["auc_metaheac_unadapted"]).mean() >= 0.5


def test_a_campaign_with_one_class_in_stage2_is_skipped_and_counted(metaheac_root, tmp_path):
    data_dir = fresh_data_dir(tmp_path, metaheac_root, models=True)
    prepared = data_dir / "prepared" / "lookalike"
    prepared.unlink()
    shutil.copytree(metaheac_root / "prepared" / "lookalike", prepared)
    table = pq.read_table(prepared / "test_cold_stage2.parquet")
    first = table.column("aid")[0].as_py()
    label = pc.if_else(pc.equal(table.column("aid"), first), 0, table.column("label")).cast(
        table.schema.field("label").type
    )
    pq.write_table(
        table.set_column(table.schema.get_field_index("label"), "label", label),
        prepared / "test_cold_stage2.parquet",
    )
    result = pipeline.evaluate(
        "lookalike", "metaheac", data_dir=data_dir, params=small_params("metaheac.baselines.enabled=false"),
        split="test_cold",
    )  # fmt: skip
    metrics = result["metrics"]
    assert set(metrics["variants"]) == {"metaheac", "metaheac_unadapted"}
    assert metrics["baselines"] == "disabled"
    for variant in metrics["variants"].values():
        assert (variant["campaigns_evaluated"], variant["campaigns_skipped"]) == (5, 1)
    campaigns = pd.read_parquet(result["campaigns_file"]).set_index("aid")
    assert np.isnan(campaigns.loc[first, "auc_metaheac"])
    assert campaigns.loc[first, "positives"] == 0
    assert campaigns.drop(index=first)["auc_metaheac"].notna().all()


def test_an_evaluation_split_must_have_two_stages(metaheac_root, tmp_path):
    data_dir = fresh_data_dir(tmp_path, metaheac_root, models=True)
    for split in ("test", "train", "test_hot_stage2"):
        with pytest.raises(ConfigError, match=r"choose one of test_cold, test_hot"):
            pipeline.evaluate("lookalike", "metaheac", data_dir=data_dir, params=small_params(), split=split)


def test_the_dataset_files_are_read_through_the_restricted_unpickler(tmp_path, monkeypatch):
    resolved = []
    original = safe_pickle.RestrictedUnpickler.find_class

    def spy(self, module, name):
        resolved.append((module, name))
        return original(self, module, name)

    def refuse(*args, **kwargs):
        raise AssertionError("a dataset file was unpickled without the allow-list")

    monkeypatch.setattr(safe_pickle.RestrictedUnpickler, "find_class", spy)
    for module, name in ((pickle, "load"), (pickle, "loads"), (pd, "read_pickle")):
        monkeypatch.setattr(module, name, refuse)
    metadata = build_lookalike(tmp_path, small_params())
    assert metadata.splits["train"].rows > 0
    assert ("pandas.core.indexes.numeric", "Int64Index") in resolved  # the legacy pandas < 2 layout
