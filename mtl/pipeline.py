"""The pipeline steps as plain functions over paths. The CLI, dvc.yaml and the Airflow DAGs call these.

Each step reads and writes files under the paths it is given (``mtl.paths``) and returns a small,
JSON-serialisable result (paths, hashes, metrics) -- what an Airflow task may put in XCom.

``train``/``evaluate`` write the model directory ``models/<dataset>/<model>/``: ``model.json`` (rebuild
config), ``weights.pt``, ``metrics.json`` (training summary + metrics per split and output),
``history.json`` (per epoch), ``checkpoints/last.pt`` and ``eval/<split>/`` (metrics, predictions,
``plots/roc_<output>.json``, ``plots/pr_<output>.json``); the full layout is in
``mtl.training.artifacts``. ``gate``/``register`` decide on and record a trained model in the MLflow
model registry (``mtl.registry``); ``train``/``evaluate`` log to MLflow when ``tracking.enabled``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtl import paths
from mtl.config import Params
from mtl.datasets import get_dataset
from mtl.datasets.base import Manifest, Source
from mtl.datasets.download import extract_archive, fetch_source
from mtl.datasets.hashing import dir_md5
from mtl.datasets.prepared import (
    load_metadata,
    publish_directory,
    staging_directory,
    write_json_atomic,
)
from mtl.errors import ConfigError, TrainingError

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    """What a data step hands to the next one (and to XCom)."""

    dataset: str
    path: str
    content_hash: str = ""
    report: str | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def download(
    dataset: str,
    *,
    data_dir: Path,
    params: Params,
    source: str | None = None,
    location: str | None = None,
) -> StepResult:
    """Fetch (or, for the synthetic source, generate) the raw files into ``raw/<dataset>/``."""
    ds = get_dataset(dataset)
    settings = params.dataset(dataset)
    source_name = source or settings.source
    location = location if location is not None else settings.location
    src = ds.source(source_name)
    raw = paths.raw_dir(data_dir, dataset)
    manifest_path = paths.raw_manifest(data_dir, dataset)

    previous = Manifest.load(manifest_path) if manifest_path.is_file() else None
    wanted_params = ds.synthetic_params(params) if src.kind == "generated" else {"location": location}
    if previous and (previous.source != source_name or previous.params != wanted_params):
        log.info("raw/%s holds source %r; replacing it with %r", dataset, previous.source, source_name)
        shutil.rmtree(raw)
        previous = None

    raw.mkdir(parents=True, exist_ok=True)
    if src.kind == "generated":
        if previous and _files_intact(raw, previous):
            log.info("synthetic %s already generated with these parameters; nothing to do", dataset)
            return StepResult(dataset, str(raw), previous.content_hash)
        manifest_path.unlink(missing_ok=True)
        ds.generate(raw, params)
        files = [_describe(raw / f.name, origin="generated") for f in src.files]
    else:
        files = fetch_source(
            src,
            location,
            raw,
            retries=params.download.retries,
            backoff_seconds=params.download.backoff_seconds,
            timeout_seconds=params.download.timeout_seconds,
            known=previous.files if previous else None,
        )

    extracted = _extract_archives(src, raw, files, previous)

    manifest = Manifest(
        dataset=dataset,
        source=source_name,
        format=src.format,
        files=files,
        extracted=sorted(extracted),
        params=wanted_params,
    )
    manifest.content_hash = _manifest_hash(manifest)
    write_json_atomic(manifest_path, asdict(manifest))
    return StepResult(dataset, str(raw), manifest.content_hash, details={"files": [f["name"] for f in files]})


def validate(dataset: str, *, data_dir: Path, params: Params, stage: str = "raw") -> StepResult:
    """Run the Great Expectations suite of a stage ('raw' or 'prepared'); raises DataValidationError."""
    from mtl import validation

    ds = get_dataset(dataset)
    report_dir = paths.validation_dir(data_dir, dataset, stage)
    if stage == "raw":
        raw = paths.raw_dir(data_dir, dataset)
        manifest = Manifest.load(paths.raw_manifest(data_dir, dataset))
        report = validation.validate_raw(ds, raw, manifest, params, report_dir)
        content_hash = manifest.content_hash
    elif stage == "prepared":
        prepared = paths.prepared_dir(data_dir, dataset)
        metadata = load_metadata(prepared)
        report = validation.validate_prepared(ds, prepared, metadata, params, report_dir)
        content_hash = metadata.content_hash
    else:
        raise ValueError(f"stage must be 'raw' or 'prepared', got {stage!r}")
    return StepResult(
        dataset, str(report_dir), content_hash, report=str(report.summary_path), details=report.statistics
    )


def prepare(dataset: str, *, data_dir: Path, params: Params) -> StepResult:
    """Parse, encode, split and validate into ``prepared/<dataset>/``; published only if valid."""
    from mtl import validation

    ds = get_dataset(dataset)
    raw = paths.raw_dir(data_dir, dataset)
    manifest = Manifest.load(paths.raw_manifest(data_dir, dataset))
    final = paths.prepared_dir(data_dir, dataset)
    staging = staging_directory(final)
    try:
        metadata = ds.prepare(raw, staging, manifest, params)
        report = validation.validate_prepared(
            ds,
            staging,
            metadata,
            params,
            paths.validation_dir(data_dir, dataset, "prepared"),
            replaces=final,  # drift against the version being replaced
        )
        publish_directory(staging, final)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return StepResult(
        dataset,
        str(final),
        metadata.content_hash,
        report=str(report.summary_path),
        details={name: {"rows": s.rows, "label_rates": s.label_rates} for name, s in metadata.splits.items()},
    )


def train(
    dataset: str,
    model: str,
    *,
    data_dir: Path,
    params: Params,
    run_context: dict[str, Any] | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` on ``prepared/<dataset>/`` (train split; selection on the validation split only).

    Writes ``models/<dataset>/<model>/`` (layout: ``mtl.training.artifacts``) and returns paths plus the
    training summary and validation metrics. ``on_epoch_end(epoch, metrics)`` runs after every epoch.
    With ``tracking.enabled`` the training is an MLflow run (``mtl.tracking``): a child of the pipeline
    run's parent (``run_context``: ``dag_id``, ``dag_run_id``, ``dvc_hash``), its id in the result
    (``mlflow_run_id``) and in the model directory's ``tracking.json``.
    """
    from mtl.tracking.runs import forget_run_file

    run_context = {**_environment_run_context(), **(run_context or {})}
    if _launch_torchrun(params):
        return _train_with_torchrun(dataset, model, data_dir=data_dir, params=params, run_context=run_context)
    main_rank = int(os.environ.get("RANK", "0")) == 0
    if main_rank:
        forget_run_file(paths.model_dir(data_dir, dataset, model))
    if not (params.tracking.enabled and main_rank):
        result = _fit(dataset, model, data_dir=data_dir, params=params, on_epoch_end=on_epoch_end)
        return {**result, "model": model, "mlflow_run_id": None}
    from mtl.tracking.training import tracked_train

    return tracked_train(
        _fit,
        dataset,
        model,
        data_dir=data_dir,
        params=params,
        run_context=dict(run_context or {}),
        dvc_hash=lambda: prepared_dvc_hash(data_dir, dataset),
        on_epoch_end=on_epoch_end,
    )


# Lineage that reaches a training launched as a separate process (torchrun ranks): set by the parent.
_RUN_CONTEXT_ENV = {"dag_id": "MTL_DAG_ID", "dag_run_id": "MTL_DAG_RUN_ID"}


def _environment_run_context() -> dict[str, str]:
    return {key: os.environ[var] for key, var in _RUN_CONTEXT_ENV.items() if os.environ.get(var)}


def _launch_torchrun(params: Params) -> bool:
    """More than one process asked for, and this is not already one of torchrun's processes."""
    settings = params.train.distributed
    return (settings.nproc_per_node > 1 or settings.nnodes > 1) and "WORLD_SIZE" not in os.environ


def torchrun_command(
    dataset: str, model: str, *, data_dir: Path, params: Params, params_file: Path
) -> list[str]:
    """``torchrun`` (``python -m torch.distributed.run``) running ``mtl train`` on every process."""
    settings = params.train.distributed
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={settings.nproc_per_node}",
        f"--nnodes={settings.nnodes}",
    ]
    if settings.nnodes > 1:
        if not settings.rdzv_endpoint:
            raise ConfigError(
                "train.distributed.nnodes > 1 needs train.distributed.rdzv_endpoint (host:port)"
            )
        command += [
            f"--node_rank={settings.node_rank}",
            "--rdzv_backend=c10d",
            f"--rdzv_endpoint={settings.rdzv_endpoint}",
        ]
    else:
        command += ["--standalone"]
    return [
        *command,
        "-m",
        "mtl",
        "--params",
        str(params_file),
        "--data-dir",
        str(data_dir),
        "train",
        dataset,
        model,
    ]


def _train_with_torchrun(
    dataset: str, model: str, *, data_dir: Path, params: Params, run_context: dict[str, Any]
) -> dict[str, Any]:
    """Launch DDP training with torchrun (the effective params in a file for every rank), then read the
    trained model's metrics and MLflow run back from the model directory that rank 0 wrote."""
    import subprocess
    import tempfile

    import yaml

    from mtl.tracking.runs import RUN_FILE
    from mtl.training import artifacts

    model_dir = paths.model_dir(data_dir, dataset, model)
    with tempfile.TemporaryDirectory(prefix="mtl-torchrun-") as scratch:
        params_file = Path(scratch) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
        command = torchrun_command(dataset, model, data_dir=data_dir, params=params, params_file=params_file)
        env = dict(os.environ)
        for key, var in _RUN_CONTEXT_ENV.items():
            if run_context.get(key):
                env[var] = str(run_context[key])
        if run_context.get("dag_run_id"):
            env["MTL_PIPELINE_RUN_ID"] = str(run_context["dag_run_id"])
        log.info("launching %s", " ".join(command))
        code = subprocess.run(command, env=env, check=False).returncode
    if code != 0:
        raise TrainingError(f"torchrun training of {dataset}/{model} exited with status {code} (see its log)")
    metrics = json.loads((model_dir / artifacts.METRICS).read_text())
    run_file = model_dir / RUN_FILE
    run_id = json.loads(run_file.read_text()).get("mlflow_run_id") if run_file.is_file() else None
    return {
        "dataset": dataset,
        "model": model,
        "model_dir": str(model_dir),
        "weights": str(model_dir / artifacts.WEIGHTS),
        "metrics_file": str(model_dir / artifacts.METRICS),
        "content_hash": metrics.get("content_hash"),
        "training": metrics.get("training", {}),
        "valid": metrics.get("splits", {}).get(params.train.validation_split),
        "mlflow_run_id": run_id,
    }


def evaluate(
    dataset: str,
    model: str,
    *,
    data_dir: Path,
    params: Params,
    split: str = "test",
    mlflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Score a trained model on one split: metrics, predictions and ROC/PR curves in eval/<split>/.

    With ``tracking.enabled`` the split's final metrics and the plots are logged to the model's
    training run (``mlflow_run_id``, else the one in the model directory's ``tracking.json``).
    """
    if not params.tracking.enabled:
        result = _score(dataset, model, data_dir=data_dir, params=params, split=split)
        return {**result, "model": model, "mlflow_run_id": None}
    from mtl.tracking.results import tracked_evaluate

    return tracked_evaluate(
        _score, dataset, model, data_dir=data_dir, params=params, split=split, run_id=mlflow_run_id
    )


def gate(
    dataset: str, model: str, *, data_dir: Path, params: Params, mlflow_run_id: str | None = None
) -> dict[str, Any]:
    """The promotion decision for a trained, evaluated model (floors, no regression, sanity), before
    registration: ``{dataset, model, mlflow_run_id, passed, checks: [{name, passed, reason}], test_auc}``."""
    from mtl.registry.gate import decide

    return decide(dataset, model, data_dir=data_dir, params=params, run_id=mlflow_run_id)


def register(
    dataset: str, model: str, *, data_dir: Path, params: Params, decision: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Register the model's training run as a version of ``<dataset>-<model>`` (alias ``challenger``)
    and move ``champion`` to it if the gate passed (``decision``, computed when None). Idempotent per
    run; a rejection is a result, not an error. Writes ``registration.json`` into the model directory."""
    from mtl.registry.register import register_run

    return register_run(dataset, model, data_dir=data_dir, params=params, decision=decision)


def _fit(
    dataset: str,
    model: str,
    *,
    data_dir: Path,
    params: Params,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    if model == "metaheac":  # meta-training on campaigns: mtl.training.metaheac_workflow
        from mtl.training.metaheac_workflow import train_metaheac

        return train_metaheac(dataset, data_dir=data_dir, params=params, on_epoch_end=on_epoch_end)
    from mtl.training.workflow import train_model

    return train_model(dataset, model, data_dir=data_dir, params=params, on_epoch_end=on_epoch_end)


def _score(dataset: str, model: str, *, data_dir: Path, params: Params, split: str) -> dict[str, Any]:
    """Score without tracking. MetaHeac's splits are campaign populations (``test_hot``, ``test_cold``):
    each campaign is adapted on its ``<split>_stage1`` rows and scored on its ``<split>_stage2`` rows."""
    if model == "metaheac":
        from mtl.training.metaheac_workflow import evaluate_metaheac

        return evaluate_metaheac(dataset, data_dir=data_dir, params=params, split=split)
    from mtl.training.workflow import evaluate_model

    return evaluate_model(dataset, model, data_dir=data_dir, params=params, split=split)


def prepared_dvc_hash(data_dir: Path, dataset: str) -> str:
    """The md5 DVC records for ``prepared/<dataset>`` (the whole directory, metadata included)."""
    return dir_md5(paths.prepared_dir(data_dir, dataset))


def _extract_archives(
    src: Source, raw: Path, files: list[dict[str, Any]], previous: Manifest | None
) -> list[str]:
    """Unpack the source's archives, skipping it when the same archive was already unpacked intact."""
    if previous and _files_intact(raw, previous):
        before = {f["name"]: f["sha256"] for f in previous.files}
        now = {f["name"]: f["sha256"] for f in files}
        archives = {r.name for r in src.files if r.extract}
        if all(before.get(name) == now.get(name) for name in archives):
            return list(previous.extracted)
    extracted: list[str] = []
    for remote in src.files:
        if remote.extract and (raw / remote.name).is_file():
            extracted += extract_archive(raw / remote.name, raw)
    return extracted


def _describe(path: Path, origin: str) -> dict[str, Any]:
    from mtl.datasets.hashing import file_sha256

    return {"name": path.name, "sha256": file_sha256(path), "size": path.stat().st_size, "origin": origin}


def _files_intact(raw: Path, manifest: Manifest) -> bool:
    return all(
        (raw / f["name"]).is_file() and (raw / f["name"]).stat().st_size == f["size"] for f in manifest.files
    ) and all((raw / name).exists() for name in manifest.extracted)


def _manifest_hash(manifest: Manifest) -> str:
    import hashlib

    payload = json.dumps(
        {"source": manifest.source, "files": sorted((f["name"], f["sha256"]) for f in manifest.files)},
        sort_keys=True,
    )
    return hashlib.md5(payload.encode(), usedforsecurity=False).hexdigest()
