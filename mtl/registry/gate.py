"""The promotion gate: may a trained, evaluated model become ``champion``? Three checks, all must pass.

1. ``floors``: every gated name's test AUC >= its floor (``gate.<dataset>.floors``);
2. ``no_regression``: the primary AUC (``gate.<dataset>.primary``) may not drop more than ``tolerance``
   below the current champion's. On the same test data version (same prepared-data hash tags) the
   logged test AUCs are compared; otherwise both models are re-scored through their served form on the
   challenger's test data (``rescore``) and those AUCs compared;
3. ``sanity``: every test metric finite, each gated AUC defined and in [0, 1], and each gated output's
   mean prediction within ``prediction_rate_ratio`` x its positive rate;
4. ``novelty``: a challenger that reproduces the champion -- same prepared data, same code commit, same
   parameters -- must beat it on the primary AUC. Re-running the same pipeline (a second ``mtl run``)
   therefore promotes nothing that is not better, while a new model (other code or params, within
   tolerance) or fresher data (re-scored, within tolerance) still can be.

A gated name is an output scored on the test split (``click``) or a campaign population evaluated as
its own split (look-alike ``test_hot``); see ``mtl.tracking.results``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtl import paths
from mtl.config import GateDataset, Params
from mtl.datasets.prepared import load_metadata
from mtl.registry.rescore import served_auc
from mtl.registry.runs import evaluated_run, require_tracking, training_run_id
from mtl.registry.tags import CHAMPION, registered_model_name
from mtl.tracking.lineage import TAG_CONTENT_HASH, TAG_DVC_HASH, TAG_GIT_COMMIT, TAG_GIT_DIRTY, UNKNOWN
from mtl.tracking.results import TEST_SPLIT, gated_metric
from mtl.tracking.store import Tracking, connect
from mtl.tracking.training import TAG_MODEL_URI

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    reason: str


def decide(
    dataset: str, model: str, *, data_dir: Path, params: Params, run_id: str | None = None
) -> dict[str, Any]:
    """The gate decision for the model's training run (``run_id``, else its ``tracking.json``)."""
    require_tracking(params)
    with connect(params) as tracking:
        run_id = training_run_id(tracking, dataset, model, data_dir, run_id)
        return _decide(tracking, dataset, model, data_dir, params, run_id)


def _decide(
    tracking: Tracking, dataset: str, model: str, data_dir: Path, params: Params, run_id: str
) -> dict[str, Any]:
    settings = params.gate.for_dataset(dataset)
    names = gated_names(settings)
    run = evaluated_run(tracking, run_id, dataset, model, names)
    metrics = run.data.metrics
    checks = [
        floors(metrics, settings),
        no_regression(tracking, dataset, model, run, settings, data_dir),
        sanity(metrics, names, settings),
        novelty(tracking, dataset, model, run, settings),
    ]
    decision = {
        "dataset": dataset,
        "model": model,
        "mlflow_run_id": run_id,
        "passed": all(c.passed for c in checks),
        "checks": [asdict(c) for c in checks],
        "test_auc": {name: _finite_or_none(gated_metric(metrics, name)) for name in names},
    }
    log.info(
        "gate %s/%s (run %s): %s -- %s",
        dataset,
        model,
        run_id,
        "passed" if decision["passed"] else "failed",
        "; ".join(f"{c.name}: {c.reason}" for c in checks),
    )
    return decision


def gated_names(settings: GateDataset) -> list[str]:
    """The names the gate reads: every floor's output, then the primary if it has no floor."""
    return list(dict.fromkeys([*settings.floors, settings.primary]))


def floors(metrics: dict[str, float], settings: GateDataset) -> Check:
    parts, passed = [], True
    for name, floor in settings.floors.items():
        auc = gated_metric(metrics, name)
        if auc is None or not math.isfinite(auc) or auc < floor:
            passed = False
            shown = "undefined" if auc is None else f"{auc:.4f}"
            parts.append(f"{name} AUC {shown} below floor {floor}")
        else:
            parts.append(f"{name} AUC {auc:.4f} >= {floor}")
    return Check("floors", passed, "; ".join(parts) or "no floors configured")


def no_regression(
    tracking: Tracking, dataset: str, model: str, run: Any, settings: GateDataset, data_dir: Path
) -> Check:
    """The primary AUC versus the champion's, on the same test data version (re-scored if it differs)."""
    name = registered_model_name(dataset, model)
    champion = _champion(tracking, name)
    if champion is None:
        return Check("no_regression", True, f"no champion of {name} yet: nothing to regress from")
    if champion.run_id == run.info.run_id:
        return Check("no_regression", True, f"this run is already the champion (version {champion.version})")
    champion_run = tracking.client.get_run(champion.run_id)
    primary, tolerance = settings.primary, settings.tolerance
    if _same_data(run.data.tags, champion_run.data.tags):
        mine = gated_metric(run.data.metrics, primary)
        theirs = gated_metric(champion_run.data.metrics, primary)
        basis = f"both evaluated on test data {run.data.tags.get(TAG_DVC_HASH, '?')[:12]}"
    else:
        prepared = paths.prepared_dir(data_dir, dataset)
        if load_metadata(prepared).content_hash != run.data.tags.get(TAG_CONTENT_HASH):
            return Check(
                "no_regression",
                False,
                f"{prepared} changed since run {run.info.run_id} was trained: re-train or re-evaluate it",
            )
        try:
            mine = served_auc(run.data.tags[TAG_MODEL_URI], dataset, prepared, primary)
            theirs = served_auc(f"models:/{name}/{champion.version}", dataset, prepared, primary)
        except Exception as exc:  # fail closed: no comparison, no promotion
            reason = f"could not re-score the champion (version {champion.version}) on the new test data"
            return Check("no_regression", False, f"{reason}: {type(exc).__name__}: {exc}"[:1000])
        basis = "both re-scored on the new test data (the champion was evaluated on other data)"
    if mine is None or theirs is None or not (math.isfinite(mine) and math.isfinite(theirs)):
        return Check("no_regression", False, f"{primary} AUC undefined ({mine} vs {theirs}); {basis}")
    passed = mine >= theirs - tolerance
    return Check(
        "no_regression",
        passed,
        f"{primary} AUC {mine:.4f} vs champion version {champion.version} {theirs:.4f} ({basis}): "
        f"change {mine - theirs:+.4f}, {'within' if passed else 'beyond'} tolerance -{tolerance}",
    )


def sanity(metrics: dict[str, float], names: list[str], settings: GateDataset) -> Check:
    """Finite test metrics, defined AUCs, plausible prediction rates."""
    low, high = settings.prediction_rate_ratio
    prefixes = tuple(f"{n}_" for n in (TEST_SPLIT, *names))
    broken = sorted(k for k, v in metrics.items() if k.startswith(prefixes) and not math.isfinite(v))
    problems = [f"non-finite metrics: {', '.join(broken[:6])}"] if broken else []
    ratios = []
    for name in names:
        auc = gated_metric(metrics, name)
        rate = gated_metric(metrics, name, "positive_rate")
        mean = gated_metric(metrics, name, "prediction_mean")
        if auc is None:
            problems.append(f"{name} AUC undefined (a single class in its test labels)")
        elif math.isfinite(auc) and not 0.0 <= auc <= 1.0:
            problems.append(f"{name} AUC {auc} outside [0, 1]")
        if rate is None or mean is None or not (math.isfinite(rate) and math.isfinite(mean)):
            problems.append(f"{name}: mean prediction or positive rate not recorded")
        elif rate <= 0.0:
            problems.append(f"{name}: no positives in the test labels")
        elif not low <= mean / rate <= high:
            problems.append(
                f"{name}: mean prediction {mean:.4g} is {mean / rate:.2f} x the positive rate {rate:.4g}, "
                f"outside [{low}, {high}]"
            )
        else:
            ratios.append(f"{name} {mean / rate:.2f}")
    if problems:
        return Check("sanity", False, "; ".join(problems))
    return Check(
        "sanity",
        True,
        f"test metrics finite, AUCs defined; mean prediction / positive rate {', '.join(ratios)} "
        f"within [{low}, {high}]",
    )


def novelty(tracking: Tracking, dataset: str, model: str, run: Any, settings: GateDataset) -> Check:
    """A reproduction of the champion (same data, code and params) must improve on it to replace it."""
    name = registered_model_name(dataset, model)
    champion = _champion(tracking, name)
    if champion is None or champion.run_id == run.info.run_id:
        return Check("novelty", True, "no other champion to compare with")
    theirs_run = tracking.client.get_run(champion.run_id)
    differences = _lineage_differences(run, theirs_run)
    if differences:
        return Check("novelty", True, f"differs from champion version {champion.version} in {differences}")
    mine = gated_metric(run.data.metrics, settings.primary)
    theirs = gated_metric(theirs_run.data.metrics, settings.primary)
    comparable = mine is not None and theirs is not None and math.isfinite(mine) and math.isfinite(theirs)
    if comparable and mine > theirs:
        return Check(
            "novelty",
            True,
            f"same data, code and params as champion version {champion.version}, and better "
            f"({settings.primary} AUC {mine:.4f} > {theirs:.4f})",
        )
    shown = "undefined" if mine is None else f"{mine:.4f}"
    return Check(
        "novelty",
        False,
        f"reproduces champion version {champion.version} (same data, code and params) without beating it "
        f"({settings.primary} AUC {shown} vs {theirs if theirs is None else f'{theirs:.4f}'}): nothing new "
        "to promote",
    )


def _lineage_differences(mine: Any, theirs: Any) -> str:
    """What sets two training runs apart: "data", "code", "params" (comma-separated), or ""."""
    parts = []
    if not _same_data(mine.data.tags, theirs.data.tags):
        parts.append("data")
    commits = [run.data.tags.get(TAG_GIT_COMMIT, UNKNOWN) for run in (mine, theirs)]
    dirty = [run.data.tags.get(TAG_GIT_DIRTY, UNKNOWN) for run in (mine, theirs)]
    if UNKNOWN in commits or commits[0] != commits[1] or "true" in dirty:
        parts.append("code")  # an unknown commit or a dirty tree cannot prove the code is the same
    mine_params, theirs_params = _model_params(mine.data.params), _model_params(theirs.data.params)
    if mine_params != theirs_params:
        changed = sorted(
            k for k in mine_params.keys() | theirs_params.keys() if mine_params.get(k) != theirs_params.get(k)
        )
        parts.append(f"params ({', '.join(changed[:4])}{', ...' if len(changed) > 4 else ''})")
    return ", ".join(parts)


# Logged params that do not change the trained model: the gate itself, where runs are tracked, how the
# DAG is scheduled, which models a run trains, and the data's drift against the version before it (the
# data itself is compared by its hash).
_NOT_MODEL_PARAMS = re.compile(r"^(gate|tracking|orchestration|data\.drift)\.|^datasets\.[a-z]+\.models$")


def _model_params(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if not _NOT_MODEL_PARAMS.match(k)}


def _champion(tracking: Tracking, name: str) -> Any | None:
    """The version holding the champion alias, or None (no alias, or no registered model yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return tracking.client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def _same_data(mine: dict[str, str], theirs: dict[str, str]) -> bool:
    """Same prepared data: equal DVC hashes, or equal content hashes (re-preparing changes only the
    metadata's timestamp, hence the DVC hash, not the data)."""
    return any(mine.get(tag) and mine.get(tag) == theirs.get(tag) for tag in (TAG_DVC_HASH, TAG_CONTENT_HASH))


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
