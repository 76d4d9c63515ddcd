"""Register a training run as a model version: alias ``challenger``, and ``champion`` if the gate passed.

All-or-nothing: every change made (registered model, version, alias moves, tags) is undone when a
later step fails, so a failure never leaves a half-registered version; a version is complete once its
last tag (``mtl.registration``) is set. Idempotent: a run already registered (a retried task) returns
its existing version; a leftover without that tag (a killed task) is replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtl import atomic, paths
from mtl.config import Params
from mtl.datasets.prepared import write_json_atomic
from mtl.registry import tags as T
from mtl.registry.card import model_card, model_description
from mtl.registry.gate import decide, gated_names
from mtl.registry.runs import evaluated_run, require_tracking, training_run_id
from mtl.tracking import lineage
from mtl.tracking.store import Tracking, connect, errors
from mtl.tracking.training import TAG_MODEL_ID, TAG_MODEL_URI

log = logging.getLogger(__name__)
Undo = Callable[[], Any]


def register_run(
    dataset: str, model: str, *, data_dir: Path, params: Params, decision: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Register the model's training run (see the module docstring); returns the registration summary."""
    require_tracking(params)
    with connect(params) as tracking:
        hint = decision.get("mlflow_run_id") if decision else None
        run_id = training_run_id(tracking, dataset, model, data_dir, hint)
        return _register(tracking, dataset, model, data_dir, params, run_id, decision)


def _register(
    tracking: Tracking,
    dataset: str,
    model: str,
    data_dir: Path,
    params: Params,
    run_id: str,
    decision: dict[str, Any] | None,
) -> dict[str, Any]:
    name = T.registered_model_name(dataset, model)
    client = tracking.client
    with errors(f"look up run {run_id} in registered model {name}"):
        existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    for version in existing:
        if version.tags.get(T.COMPLETE) == "complete":
            log.info("run %s is already version %s of %s: nothing registered", run_id, version.version, name)
            return _finish(tracking, data_dir, dataset, model, name, version.version, run_id)
        with errors(f"remove the incomplete version {version.version} of {name}"):
            client.delete_model_version(name, version.version)
    decision = decision or decide(dataset, model, data_dir=data_dir, params=params, run_id=run_id)
    run = evaluated_run(tracking, run_id, dataset, model, gated_names(params.gate.for_dataset(dataset)))
    served = _served_interface(run.data.tags[TAG_MODEL_URI])
    outputs = [column.removeprefix("p_") for column in served["outputs"]]
    description = model_description(dataset, model, outputs, served["input_columns"])
    undo: list[Undo] = []
    try:
        version = _create_version(tracking, name, run, decision, description, undo)
        outcome = T.PROMOTED if decision["passed"] else T.NOT_PROMOTED
        client.log_text(run_id, model_card(name, version, run, decision, outcome, outputs), "model_card.md")
        client.set_model_version_tag(name, version, T.COMPLETE, "complete")
    except Exception as exc:
        _undo(undo)
        raise T.RegistrationError(
            f"registering run {run_id} as {name} failed and was rolled back (no version left behind): "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:400]}"
        ) from exc
    return _finish(tracking, data_dir, dataset, model, name, version, run_id)


def move_champion(client: Any, name: str, version: str, undo: list[Undo] | None = None) -> str | None:
    """Point ``champion`` at ``version``; the version it leaves gets the ``previous-champion`` tag.
    Returns that version (None if there was none); appends the inverse steps to ``undo``."""
    undo = undo if undo is not None else []
    now = T.utc_now()
    old = client.get_registered_model(name).aliases.get(T.CHAMPION)
    old = None if old is None else str(old)
    if old is not None and old != str(version):
        before = client.get_model_version(name, old).tags.get(T.PREVIOUS_CHAMPION)
        client.set_model_version_tag(
            name, old, T.PREVIOUS_CHAMPION, f"until {now}, replaced by version {version}"
        )
        undo.append(lambda: _restore_tag(client, name, old, T.PREVIOUS_CHAMPION, before))
    client.set_registered_model_alias(name, T.CHAMPION, version)
    undo.append(lambda: _restore_alias(client, name, T.CHAMPION, old))
    client.set_model_version_tag(name, version, T.CHAMPION_SINCE, now)
    return old


def _create_version(
    tracking: Tracking, name: str, run: Any, decision: dict[str, Any], description: str, undo: list[Undo]
) -> str:
    client = tracking.client
    run_tags = run.data.tags
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(
            name,
            tags={"mtl.dataset": run_tags[lineage.TAG_DATASET], "mtl.model": run_tags["mtl.model"]},
            description=description,
        )
        undo.append(lambda: client.delete_registered_model(name))
    else:
        client.update_registered_model(name, description=description)
    outcome = T.PROMOTED if decision["passed"] else T.NOT_PROMOTED
    tags = {
        T.DECISION: outcome,
        T.GATE_PASSED: str(bool(decision["passed"])).lower(),
        T.REGISTERED_AT: T.utc_now(),
        **{f"{T.GATE_CHECK}{c['name']}": _check_text(c) for c in decision["checks"]},
        **{
            f"{T.TEST_AUC}{k}": "undefined" if v is None else f"{v:.6f}"
            for k, v in decision["test_auc"].items()
        },
        **{
            tag: run_tags[tag]
            for tag in (
                lineage.TAG_DVC_HASH,
                lineage.TAG_CONTENT_HASH,
                lineage.TAG_GIT_COMMIT,
                lineage.TAG_DAG_RUN_ID,
            )
            if run_tags.get(tag)
        },
    }
    version = client.create_model_version(
        name,
        source=run_tags[TAG_MODEL_URI],
        run_id=run.info.run_id,
        tags=tags,
        description=f"{run_tags['mtl.model']} from run {run.info.run_id} "
        f"(data content {run_tags.get(lineage.TAG_CONTENT_HASH, '?')[:12]}): {outcome}",
        model_id=run_tags.get(TAG_MODEL_ID) or None,
    ).version
    undo.append(lambda: client.delete_model_version(name, version))
    atomic.checkpoint("register", "version-created")  # tests: a kill here leaves an incomplete version
    previous = client.get_registered_model(name).aliases.get(T.CHALLENGER)
    client.set_registered_model_alias(name, T.CHALLENGER, version)
    undo.append(lambda: _restore_alias(client, name, T.CHALLENGER, previous))
    if decision["passed"]:
        move_champion(client, name, version, undo)
    return str(version)


def _finish(
    tracking: Tracking, data_dir: Path, dataset: str, model: str, name: str, version: Any, run_id: str
) -> dict[str, Any]:
    """The registration summary (also written to ``registration.json`` and logged)."""
    client = tracking.client
    with errors(f"read version {version} of {name}"):
        found = client.get_model_version(name, str(version))
        aliases = client.get_registered_model(name).aliases
    checks = sorted(
        (k, v) for k, v in found.tags.items() if k.startswith(T.GATE_CHECK) and k != T.GATE_PASSED
    )
    result = {
        "dataset": dataset,
        "model": model,
        "registered_model": name,
        "version": str(version),
        "model_uri": f"models:/{name}/{version}",
        "aliases": sorted(alias for alias, v in aliases.items() if str(v) == str(version)),
        "decision": found.tags.get(T.DECISION),
        "reasons": [f"{key[len(T.GATE_CHECK) :]}: {text}" for key, text in checks],
        "test_auc": {
            key[len(T.TEST_AUC) :]: None if text == "undefined" else float(text)
            for key, text in found.tags.items()
            if key.startswith(T.TEST_AUC)
        },
        "mlflow_run_id": run_id,
    }
    write_json_atomic(paths.registration_file(data_dir, dataset, model), result)
    log.info(
        "%s version %s: %s (aliases: %s)",
        name,
        version,
        result["decision"],
        ", ".join(result["aliases"]) or "none",
    )
    return result


def _served_interface(model_uri: str) -> dict[str, Any]:
    """The logged model's output and input columns (its MLmodel metadata; no weights downloaded)."""
    import mlflow

    return mlflow.models.get_model_info(model_uri).metadata


def _check_text(check: dict[str, Any]) -> str:
    return f"{'pass' if check['passed'] else 'fail'}: {check['reason']}"[:4900]


def _restore_alias(client: Any, name: str, alias: str, version: Any) -> None:
    if version is None:
        client.delete_registered_model_alias(name, alias)
    else:
        client.set_registered_model_alias(name, alias, version)


def _restore_tag(client: Any, name: str, version: str, key: str, value: str | None) -> None:
    if value is None:
        client.delete_model_version_tag(name, version, key)
    else:
        client.set_model_version_tag(name, version, key, value)


def _undo(steps: list[Undo]) -> None:
    for step in reversed(steps):
        try:
            step()
        except Exception:  # keep undoing: each step is independent of the ones after it
            log.warning("could not undo a registration step", exc_info=True)
