"""Names shared by the gate, registration and ``mtl registry``: aliases and version tags."""

from __future__ import annotations

from mtl.errors import TrackingError

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"  # tag on a version the champion alias moved away from

DECISION = "mtl.decision"  # "promoted" | "not promoted"
PROMOTED, NOT_PROMOTED = "promoted", "not promoted"
GATE_PASSED = "mtl.gate.passed"
GATE_CHECK = "mtl.gate."  # + check name: "pass: <reason>" | "fail: <reason>"
TEST_AUC = "mtl.test_auc."  # + gated output name
REGISTERED_AT = "mtl.registered_at"
COMPLETE = "mtl.registration"  # "complete": set last, so a version without it is a leftover
CHAMPION_SINCE = "mtl.champion_since"
PROMOTION_REASON = "mtl.promotion_reason"
ROLLED_BACK = "mtl.rolled_back"  # reason the champion was rolled back away from this version
ROLLBACK_REASON = "mtl.rollback_reason"  # reason the champion was rolled back to this version


class RegistrationError(TrackingError):
    """A run cannot be registered (failed, partial, unknown) or a registry operation was refused."""


def registered_model_name(dataset: str, model: str) -> str:
    return f"{dataset}-{model}"


def utc_now() -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
