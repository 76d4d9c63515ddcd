"""``mtl registry``: list registered models, show a version's lineage, promote or roll back by hand.

Manual changes move the ``champion`` alias directly (no gate: a person decided) and record who-why as
version tags: the promoted version gets ``mtl.promotion_reason``; a rollback tags the version it leaves
``mtl.rolled_back`` (so later rollbacks skip it) and the version it returns to ``mtl.rollback_reason``.
By default a rollback returns to the most recent ``previous-champion`` not itself rolled back.
"""

from __future__ import annotations

from typing import Any

from mtl.config import Params
from mtl.registry import tags as T
from mtl.registry.register import move_champion
from mtl.tracking import lineage
from mtl.tracking.runs import TAG_MODEL, TAG_PIPELINE_RUN
from mtl.tracking.store import Tracking, connect, errors


def list_versions(params: Params) -> list[dict[str, Any]]:
    """One row per version of every mtl registered model: aliases, decision, test AUCs, data, run."""
    rows = []
    with connect(params) as tracking, errors("list registered models"):
        for model in tracking.client.search_registered_models(max_results=1000):
            if "mtl.dataset" not in model.tags:
                continue
            by_version: dict[str, list[str]] = {}
            for alias, version in model.aliases.items():
                by_version.setdefault(str(version), []).append(alias)
            for version in tracking.client.search_model_versions(f"name='{model.name}'", max_results=1000):
                tags = version.tags
                rows.append(
                    {
                        "name": model.name,
                        "version": str(version.version),
                        "aliases": sorted(by_version.get(str(version.version), [])),
                        "decision": tags.get(T.DECISION, "incomplete"),
                        "test_auc": {
                            k[len(T.TEST_AUC) :]: v for k, v in tags.items() if k.startswith(T.TEST_AUC)
                        },
                        # the prepared data's content hash, the one `mtl prepare` prints
                        "data": tags.get(lineage.TAG_CONTENT_HASH, ""),
                        "data_dvc_md5": tags.get(lineage.TAG_DVC_HASH, ""),
                        "run_id": version.run_id,
                        "created": version.creation_timestamp,
                    }
                )
    return sorted(rows, key=lambda r: (r["name"], -int(r["version"])))


def show_version(params: Params, name: str, reference: str | None = None) -> dict[str, Any]:
    """One version's lineage: run, params, data hashes, git commit, dag run, metrics, gate decision.

    ``reference``: a version number, ``@alias``, or None for the champion.
    """
    with connect(params) as tracking, errors(f"show {name} {reference or '@champion'}"):
        version = _resolve(tracking, name, reference)
        run = tracking.client.get_run(version.run_id)
        aliases = tracking.client.get_registered_model(name).aliases
    tags, model = run.data.tags, run.data.tags.get(TAG_MODEL, "")
    wanted = ("seed", "train.", f"models.{model}.", f"gate.{tags.get(lineage.TAG_DATASET)}.")
    return {
        "registered_model": name,
        "version": str(version.version),
        "aliases": sorted(a for a, v in aliases.items() if str(v) == str(version.version)),
        "source": version.source,
        "created": version.creation_timestamp,
        "run": {
            "run_id": run.info.run_id,
            "status": run.info.status,
            "experiment_id": run.info.experiment_id,
            "parent_run_id": tags.get("mlflow.parentRunId"),
            "pipeline_run_id": tags.get(TAG_PIPELINE_RUN),
            "dag_id": tags.get(lineage.TAG_DAG_ID),
            "dag_run_id": tags.get(lineage.TAG_DAG_RUN_ID),
        },
        "data": {
            "dataset": tags.get(lineage.TAG_DATASET),
            "source": tags.get(lineage.TAG_SOURCE),
            "dvc_hash": tags.get(lineage.TAG_DVC_HASH),
            "content_hash": tags.get(lineage.TAG_CONTENT_HASH),
        },
        "code": {
            "git_commit": tags.get(lineage.TAG_GIT_COMMIT),
            "git_dirty": tags.get(lineage.TAG_GIT_DIRTY),
        },
        "params": {k: v for k, v in sorted(run.data.params.items()) if k.startswith(wanted)},
        "metrics": {
            k: v
            for k, v in sorted(run.data.metrics.items())
            if k.startswith(("test", "best_valid", "training_"))
        },
        "gate": {k: v for k, v in sorted(version.tags.items()) if k.startswith(("mtl.gate", "mtl.decision"))},
        "history": {
            k: v
            for k, v in version.tags.items()
            if k
            in (T.PREVIOUS_CHAMPION, T.CHAMPION_SINCE, T.PROMOTION_REASON, T.ROLLED_BACK, T.ROLLBACK_REASON)
        },
    }


def promote(params: Params, name: str, version: str, reason: str) -> dict[str, Any]:
    """Make ``version`` the champion by hand, recording ``reason``."""
    with connect(params) as tracking, errors(f"promote {name} version {version}"):
        target = _resolve(tracking, name, version)
        _require_complete(target)
        client = tracking.client
        previous = move_champion(client, name, str(target.version))
        client.set_model_version_tag(name, target.version, T.PROMOTION_REASON, f"{T.utc_now()}: {reason}")
        client.delete_model_version_tag(name, target.version, T.ROLLED_BACK)
    return {
        "registered_model": name,
        "champion": str(target.version),
        "previous_champion": previous,
        "reason": reason,
    }


def rollback(params: Params, name: str, reason: str, to: str | None = None) -> dict[str, Any]:
    """Move the champion back to ``to`` or, by default, to the most recent previous champion."""
    with connect(params) as tracking, errors(f"roll back {name}"):
        client = tracking.client
        current = client.get_registered_model(name).aliases.get(T.CHAMPION)
        if current is None:
            raise T.RegistrationError(f"{name} has no champion to roll back")
        target = _resolve(tracking, name, to) if to else _previous_champion(tracking, name, str(current))
        if str(target.version) == str(current):
            raise T.RegistrationError(f"version {current} of {name} is already the champion")
        _require_complete(target)
        move_champion(client, name, str(target.version))
        client.set_model_version_tag(name, str(current), T.ROLLED_BACK, f"{T.utc_now()}: {reason}")
        client.delete_model_version_tag(name, target.version, T.ROLLED_BACK)
        client.set_model_version_tag(name, target.version, T.ROLLBACK_REASON, f"{T.utc_now()}: {reason}")
    return {
        "registered_model": name,
        "champion": str(target.version),
        "rolled_back": str(current),
        "reason": reason,
    }


def _previous_champion(tracking: Tracking, name: str, current: str) -> Any:
    """The version most recently replaced as champion, skipping the current one and rolled-back ones."""
    candidates = [
        v
        for v in tracking.client.search_model_versions(f"name='{name}'", max_results=1000)
        if T.PREVIOUS_CHAMPION in v.tags and T.ROLLED_BACK not in v.tags and str(v.version) != current
    ]
    if not candidates:
        raise T.RegistrationError(f"{name} has no previous champion to roll back to; pass --to VERSION")
    # the tag reads "until <UTC timestamp>, ...": ISO timestamps sort in time order
    return max(candidates, key=lambda v: (v.tags[T.PREVIOUS_CHAMPION], int(v.version)))


def _resolve(tracking: Tracking, name: str, reference: str | None) -> Any:
    """A version by number, ``@alias``, or the champion (None)."""
    from mlflow.exceptions import MlflowException

    client = tracking.client
    try:
        if reference is None or reference.startswith("@"):
            return client.get_model_version_by_alias(name, (reference or f"@{T.CHAMPION}")[1:])
        if not reference.isdigit():
            raise T.RegistrationError(f"{reference!r} is neither a version number nor an @alias")
        return client.get_model_version(name, reference)
    except MlflowException as exc:
        raise T.RegistrationError(f"{name} {reference or '@champion'}: {exc.message}") from None


def _require_complete(version: Any) -> None:
    if version.tags.get(T.COMPLETE) != "complete":
        raise T.RegistrationError(
            f"version {version.version} of {version.name} is not a complete registration"
        )
