"""The promotion gate and registration on the embedded SQLite store: every case of the issue.

Challengers of chosen quality are runs like the session's trained run (same lineage, same logged
model) with chosen test AUCs (``evaluated_copy``); the gate and the registry code run for real.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from mtl import paths, pipeline
from mtl.errors import TrackingError
from mtl.registry import tags as T
from mtl.registry.tags import RegistrationError
from mtl.tracking.store import connect
from tests.support.tracked import evaluated_copy, free_port, registry_params

NAME = "aliccp-mmoe"


def register(store, tracked_model, aucs, **metrics):
    run_id = evaluated_copy(store, tracked_model.run_id, aucs, **metrics)
    return gate_and_register(store, tracked_model, run_id)


def gate_and_register(store, tracked_model, run_id):
    decision = pipeline.gate(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, mlflow_run_id=run_id
    )
    return pipeline.register(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, decision=decision
    )


def champion(store) -> str | None:
    aliases = MlflowClient(store.tracking.uri).get_registered_model(NAME).aliases
    return None if T.CHAMPION not in aliases else str(aliases[T.CHAMPION])


def checks_of(result) -> dict[str, str]:
    return dict(reason.split(": ", 1) for reason in result["reasons"])


def test_first_version_clearing_the_floors_becomes_champion(store, tracked_model, tmp_path):
    result = register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    assert result["decision"] == "promoted"
    assert result["version"] == "1"
    assert result["aliases"] == ["challenger", "champion"]
    assert result["test_auc"] == {"click": pytest.approx(0.70), "ctcvr": pytest.approx(0.66)}
    assert checks_of(result)["no_regression"].startswith("pass: no champion")
    written = json.loads(paths.registration_file(tracked_model.data_dir, "aliccp", "mmoe").read_text())
    assert written == result
    version = MlflowClient(store.tracking.uri).get_model_version(NAME, "1")
    assert version.tags[T.DECISION] == "promoted"
    assert version.tags["mtl.gate.floors"].startswith("pass: click AUC 0.7000 >= 0.62")
    assert version.tags[T.COMPLETE] == "complete"
    card = MlflowClient(store.tracking.uri).download_artifacts(
        result["mlflow_run_id"], "model_card.md", str(tmp_path)
    )
    text = Path(card).read_text()
    assert "# aliccp-mmoe version 1" in text
    assert "**Decision: promoted.**" in text
    assert "- **floors**: pass -- click AUC 0.7000 >= 0.62" in text
    model = MlflowClient(store.tracking.uri).get_registered_model(NAME)
    assert "p_click = P(click)" in model.description
    assert "p_ctcvr" in model.description
    assert model.tags["mtl.dataset"] == "aliccp"


def test_first_version_below_a_floor_is_registered_but_not_champion(store, tracked_model):
    result = register(store, tracked_model, {"click": 0.60, "ctcvr": 0.66})
    assert result["decision"] == "not promoted"
    assert result["aliases"] == ["challenger"]
    assert "click AUC 0.6000 below floor 0.62" in checks_of(result)["floors"]
    assert champion(store) is None


def test_better_challenger_is_promoted_and_old_champion_tagged(store, tracked_model):
    register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    result = register(store, tracked_model, {"click": 0.72, "ctcvr": 0.67})
    assert result["decision"] == "promoted"
    assert champion(store) == "2"
    assert "+0.0200, within tolerance" in checks_of(result)["no_regression"]
    old = MlflowClient(store.tracking.uri).get_model_version(NAME, "1")
    assert old.tags[T.PREVIOUS_CHAMPION].endswith("replaced by version 2")


def test_small_drop_within_tolerance_is_promoted_for_a_different_model(store, tracked_model):
    register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    other = evaluated_copy(
        store, tracked_model.run_id, {"click": 0.695, "ctcvr": 0.66}, log_params={"train.lr": "0.002"}
    )
    result = gate_and_register(store, tracked_model, other)
    assert result["decision"] == "promoted"
    assert champion(store) == "2"
    assert checks_of(result)["novelty"] == "pass: differs from champion version 1 in params (train.lr)"


@pytest.mark.parametrize("auc", [0.70, 0.695])
def test_a_reproduction_of_the_champion_that_is_not_better_is_not_promoted(store, tracked_model, auc):
    """Same data, code and params (a second run of the same pipeline): only an improvement promotes."""
    register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    result = register(store, tracked_model, {"click": auc, "ctcvr": 0.66})
    assert result["decision"] == "not promoted"
    assert checks_of(result)["no_regression"].startswith("pass")  # within tolerance, yet ...
    assert checks_of(result)["novelty"].startswith(
        f"fail: reproduces champion version 1 (same data, code and params) without beating it "
        f"(click AUC {auc:.4f} vs 0.7000)"
    )
    assert champion(store) == "1"


def test_a_dirty_tree_is_not_proof_of_the_same_code(store, tracked_model):
    register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    dirty = evaluated_copy(
        store, tracked_model.run_id, {"click": 0.70, "ctcvr": 0.66}, tags={"mtl.git_dirty": "true"}
    )
    result = gate_and_register(store, tracked_model, dirty)
    assert result["decision"] == "promoted"
    assert checks_of(result)["novelty"] == "pass: differs from champion version 1 in code"


def test_worse_challenger_is_not_promoted(store, tracked_model):
    register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    result = register(store, tracked_model, {"click": 0.65, "ctcvr": 0.66})
    assert result["decision"] == "not promoted"
    assert result["aliases"] == ["challenger"]
    assert "-0.0500, beyond tolerance -0.01" in checks_of(result)["no_regression"]
    assert champion(store) == "1"
    assert T.PREVIOUS_CHAMPION not in MlflowClient(store.tracking.uri).get_model_version(NAME, "1").tags


def test_nan_metric_is_rejected(store, tracked_model):
    result = register(store, tracked_model, {"click": math.nan, "ctcvr": 0.66})
    assert result["decision"] == "not promoted"
    reasons = checks_of(result)
    assert reasons["floors"].startswith("fail: click AUC nan below floor")
    assert "non-finite metrics: test_click_auc" in reasons["sanity"]
    assert result["test_auc"]["click"] is None  # JSON-able: no NaN in the result
    json.dumps(result, allow_nan=False)


def test_implausible_prediction_rate_fails_sanity(store, tracked_model):
    result = register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66}, prediction_mean=0.5)
    assert result["decision"] == "not promoted"
    assert "10.00 x the positive rate" in checks_of(result)["sanity"]


def test_retried_registration_is_a_no_op(store, tracked_model):
    run_id = evaluated_copy(store, tracked_model.run_id, {"click": 0.70, "ctcvr": 0.66})
    decision = pipeline.gate(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, mlflow_run_id=run_id
    )
    once = pipeline.register(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, decision=decision
    )
    again = pipeline.register(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, decision=decision
    )
    assert again == once
    client = MlflowClient(store.tracking.uri)
    assert [str(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == ["1"]


def test_leftover_of_a_killed_registration_is_replaced(store, tracked_model):
    run_id = evaluated_copy(store, tracked_model.run_id, {"click": 0.70, "ctcvr": 0.66})
    with connect(store) as tracking:  # `models:/` sources resolve through mlflow's module-level URI
        client = tracking.client
        client.create_registered_model(NAME)
        source = client.get_run(run_id).data.tags["mtl.model_uri"]
        client.create_model_version(NAME, source=source, run_id=run_id)  # no completion tag: a leftover
    decision = pipeline.gate(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, mlflow_run_id=run_id
    )
    result = pipeline.register(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, decision=decision
    )
    versions = client.search_model_versions(f"name='{NAME}' and run_id='{run_id}'")
    assert [str(v.version) for v in versions] == [result["version"]] == ["2"]


def test_failure_mid_registration_leaves_nothing_half_registered(store, tracked_model, monkeypatch):
    register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    run_id = evaluated_copy(store, tracked_model.run_id, {"click": 0.75, "ctcvr": 0.70})
    decision = pipeline.gate(
        "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, mlflow_run_id=run_id
    )
    assert decision["passed"]
    original = MlflowClient.set_registered_model_alias

    def failing(self, name, alias, version):
        if alias == T.CHAMPION:
            raise ConnectionError("tracking server went away")
        return original(self, name, alias, version)

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", failing)
    with pytest.raises(RegistrationError, match=r"rolled back .*tracking server went away"):
        pipeline.register("aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, decision=decision)
    monkeypatch.undo()
    client = MlflowClient(store.tracking.uri)
    assert client.search_model_versions(f"name='{NAME}' and run_id='{run_id}'") == []
    assert client.get_registered_model(NAME).aliases == {"challenger": 1, "champion": 1}
    assert T.PREVIOUS_CHAMPION not in client.get_model_version(NAME, "1").tags


def test_partial_or_failed_runs_are_never_registered(store, tracked_model):
    unevaluated = evaluated_copy(store, tracked_model.run_id, {})
    failed = evaluated_copy(store, tracked_model.run_id, {"click": 0.7, "ctcvr": 0.7}, status="FAILED")
    for run_id, message in ((unevaluated, "has no test metrics for"), (failed, "is FAILED")):
        with pytest.raises(RegistrationError, match=message):
            pipeline.gate(
                "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store, mlflow_run_id=run_id
            )
        with pytest.raises(RegistrationError, match=message):
            pipeline.register(
                "aliccp", "mmoe", data_dir=tracked_model.data_dir, params=store,
                decision={"mlflow_run_id": run_id, "passed": True, "checks": [], "test_auc": {}},
            )  # fmt: skip
    assert MlflowClient(store.tracking.uri).search_registered_models() == []


def test_manual_promote_and_rollback(store, tracked_model):
    from mtl.registry import manage

    register(store, tracked_model, {"click": 0.70, "ctcvr": 0.66})
    register(store, tracked_model, {"click": 0.72, "ctcvr": 0.67})
    register(store, tracked_model, {"click": 0.60, "ctcvr": 0.67})  # below the floor: version 3
    assert champion(store) == "2"

    rolled = manage.rollback(store, NAME, reason="v2 hurts conversions in the A/B test")
    assert rolled == {
        "registered_model": NAME,
        "champion": "1",
        "rolled_back": "2",
        "reason": "v2 hurts conversions in the A/B test",
    }
    client = MlflowClient(store.tracking.uri)
    assert champion(store) == "1"
    assert (
        client.get_model_version(NAME, "2").tags[T.ROLLED_BACK].endswith("hurts conversions in the A/B test")
    )
    assert "hurts conversions" in client.get_model_version(NAME, "1").tags[T.ROLLBACK_REASON]
    with pytest.raises(RegistrationError, match="no previous champion"):
        manage.rollback(store, NAME, reason="again")  # v2 was rolled back from: never a default target

    promoted = manage.promote(store, NAME, "3", reason="floor was too strict for this segment")
    assert promoted["champion"] == "3"
    assert promoted["previous_champion"] == "1"
    assert champion(store) == "3"
    assert "too strict" in client.get_model_version(NAME, "3").tags[T.PROMOTION_REASON]
    assert manage.rollback(store, NAME, reason="back")["champion"] == "1"
    assert manage.rollback(store, NAME, reason="explicit", to="2")["champion"] == "2"
    assert T.ROLLED_BACK not in client.get_model_version(NAME, "2").tags

    rows = manage.list_versions(store)
    assert [(r["version"], r["aliases"]) for r in rows] == [
        ("3", ["challenger"]),
        ("2", ["champion"]),
        ("1", []),
    ]
    shown = manage.show_version(store, NAME, "@champion")
    lineage = client.get_run(tracked_model.run_id).data.tags
    assert shown["version"] == "2"
    assert shown["aliases"] == ["champion"]
    assert shown["data"]["dvc_hash"] == lineage["mtl.data_dvc_hash"]
    assert shown["code"]["git_commit"] == lineage["mtl.git_commit"]
    assert shown["run"]["dag_run_id"] == "manual__2026-11-22T10:00:00+00:00"
    assert shown["gate"][T.DECISION] == "promoted"
    assert shown["metrics"]["test_click_auc"] == pytest.approx(0.72)


def test_unreachable_tracking_server_is_a_clear_error_and_registers_nothing(tracked_model):
    uri = f"http://127.0.0.1:{free_port()}"
    params = registry_params(uri)
    registration = paths.registration_file(tracked_model.data_dir, "aliccp", "mmoe")
    registration.unlink(missing_ok=True)
    for step in (pipeline.gate, pipeline.register):
        with pytest.raises(TrackingError, match=f"MLflow tracking server {uri} is unreachable"):
            step("aliccp", "mmoe", data_dir=tracked_model.data_dir, params=params)
    assert not registration.exists()
    database = "postgresql://mtl:secret@127.0.0.1:1/mlflow"
    with pytest.raises(
        TrackingError, match=r"postgresql\+psycopg2://mtl:\*\*\*@127.0.0.1:1/mlflow is unreachable"
    ) as info:
        pipeline.register("aliccp", "mmoe", data_dir=tracked_model.data_dir, params=registry_params(database))
    assert "secret" not in str(info.value)
