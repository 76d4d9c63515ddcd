"""A champion evaluated on another data version is re-scored on the new test data before comparing."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient

from mtl import pipeline
from tests.support.tracked import registry_params

WIDE = ["gate.aliccp.floors={click: 0.0, ctcvr: 0.0}", "gate.aliccp.prediction_rate_ratio=[0.001, 1000.0]"]


@pytest.mark.slow
def test_champion_is_rescored_when_the_data_version_differs(store, tracked_model, data_root, tmp_path):
    params = registry_params(store.tracking.uri, tmp_path / "artifacts", *WIDE)
    first = pipeline.gate(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=params, mlflow_run_id=tracked_model.run_id
    )
    assert pipeline.register(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=params, decision=first
    )["aliases"] == ["challenger", "champion"]

    # the same raw files prepared again with a larger vocabulary: a new data version, the same test rows
    new_data = tmp_path / "data"
    (new_data / "raw").mkdir(parents=True)
    (new_data / "raw" / "aliccp").symlink_to(data_root / "raw" / "aliccp")
    newer = registry_params(
        store.tracking.uri, tmp_path / "artifacts", *WIDE, "datasets.aliccp.prepare.min_count=1"
    )
    pipeline.prepare("aliccp", data_dir=new_data, params=newer)
    challenger = pipeline.train("aliccp", "mmoe", data_dir=new_data, params=newer)
    pipeline.evaluate("aliccp", "mmoe", data_dir=new_data, params=newer)

    decision = pipeline.gate("aliccp", "mmoe", data_dir=new_data, params=newer)
    client = MlflowClient(store.tracking.uri)
    old, new = (client.get_run(r).data for r in (tracked_model.run_id, challenger["mlflow_run_id"]))
    assert old.tags["mtl.data_content_hash"] != new.tags["mtl.data_content_hash"]
    [check] = [c for c in decision["checks"] if c["name"] == "no_regression"]
    assert "re-scored on the new test data" in check["reason"]
    # each model scored through its served form on the new test rows: the challenger reproduces its own
    # evaluation, and the champion -- whose vocabulary is contained in the new one -- the AUC it had
    # on the same raw rows in its own data version
    mine, theirs = new.metrics["test_click_auc"], old.metrics["test_click_auc"]
    assert f"click AUC {mine:.4f} vs champion version 1 {theirs:.4f}" in check["reason"]
    assert check["passed"] == (mine >= theirs - params.gate.aliccp.tolerance)
