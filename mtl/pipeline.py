"""The pipeline steps as plain functions over paths. The CLI, dvc.yaml and the Airflow DAGs call these.

Each step reads and writes files under the paths it is given (``mtl.paths``) and returns a small,
JSON-serialisable result (paths, hashes, metrics) -- what an Airflow task may put in XCom.

``train``/``evaluate`` write the model directory ``models/<dataset>/<model>/``: ``model.json`` (rebuild
config), ``weights.pt``, ``metrics.json`` (training summary + metrics per split and output),
``history.json`` (per epoch), ``checkpoints/last.pt`` and ``eval/<split>/`` (metrics, predictions,
``plots/roc_<output>.json``, ``plots/pr_<output>.json``); the full layout is in
``mtl.training.artifacts``. ``gate``/``register`` decide on and record a trained model in the MLflow
model registry (``mtl.registry``); ``train``/``evaluate`` log to MLflow when ``tracking.enabled``.

Every step that replaces an output builds it beside the old one and swaps it in only when complete
(``mtl.atomic``): a failure or a kill leaves the previous raw files, report, prepared data, model or
evaluation in place. Models are dispatched through ``mtl.catalog`` (their workflow: supervised, or
meta-training on campaigns), and their names are checked before any folder or MLflow run is created.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

from mtl import atomic, catalog, paths
from mtl.config import Params
from mtl.datasets import get_dataset
from mtl.datasets.base import Manifest, Source
from mtl.datasets.download import check_location, extract_archive, fetch_source
from mtl.datasets.hashing import dir_md5
from mtl.datasets.prepared import load_metadata, write_json_atomic
from mtl.errors import ConfigError, ModelConfigError, TrainingError

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
    """Fetch (or, for the synthetic source, generate) the raw files into ``raw/<dataset>/``.

    The new raw folder is built beside the old one and swapped in only when complete (``mtl.atomic``):
    a failed or killed download leaves the previous raw files as they were.
    """
    ds = get_dataset(dataset)
    settings = params.dataset(dataset)
    source_name = source or settings.source
    location = location if location is not None else settings.location
    src = ds.source(source_name)
    if src.kind != "generated":
        check_location(src, location)  # a bad --from fails before anything is written
    raw = paths.raw_dir(data_dir, dataset)
    salvaged = _salvage_partial_files(raw)
    atomic.recover(raw)
    manifest_path = paths.raw_manifest(data_dir, dataset)

    previous = Manifest.load(manifest_path) if manifest_path.is_file() else None
    wanted_params = ds.synthetic_params(params) if src.kind == "generated" else {"location": location}
    if previous and (previous.source != source_name or previous.params != wanted_params):
        log.info(
            "raw/%s holds source %r; it is replaced by %r once that succeeds",
            dataset,
            previous.source,
            source_name,
        )
        previous = None
    if src.kind == "generated" and previous and _files_intact(raw, previous):
        log.info("synthetic %s already generated with these parameters; nothing to do", dataset)
        return StepResult(dataset, str(raw), previous.content_hash)

    # the remote files already in place are linked (not copied) into the staging folder: every writer
    # below replaces a file by rename, so the old folder's files are never changed through the links
    reuse = previous is not None and src.kind != "generated"
    with atomic.replace_on_success(raw, step="download", copy_current=reuse, link=True) as staging:
        for part in salvaged:
            os.replace(part, staging / part.name)
        if salvaged:
            salvaged[0].parent.rmdir()
        (staging / manifest_path.name).unlink(missing_ok=True)
        if src.kind == "generated":
            ds.generate(staging, params)
            files = [_describe(staging / f.name, origin="generated") for f in src.files]
        else:
            files = fetch_source(
                src,
                location,
                staging,
                retries=params.download.retries,
                backoff_seconds=params.download.backoff_seconds,
                timeout_seconds=params.download.timeout_seconds,
                known=previous.files if previous else None,
            )
        atomic.checkpoint("download", "fetched")
        extracted = _extract_archives(src, staging, files, previous)
        manifest = Manifest(
            dataset=dataset,
            source=source_name,
            format=src.format,
            files=files,
            extracted=sorted(extracted),
            params=wanted_params,
        )
        manifest.content_hash = _manifest_hash(manifest)
        write_json_atomic(staging / manifest_path.name, asdict(manifest))
    return StepResult(dataset, str(raw), manifest.content_hash, details={"files": [f["name"] for f in files]})


def _salvage_partial_files(raw: Path) -> list[Path]:
    """Resumable ``.NAME.part`` files a killed download left in its staging folder, moved aside so that
    the next download resumes them instead of starting over."""
    staging = atomic.staging_path(raw)
    if not staging.is_dir():
        return []
    keep = raw.parent / f".{raw.name}.parts"
    shutil.rmtree(keep, ignore_errors=True)
    parts = sorted(p for p in staging.glob(".*.part*") if p.is_file())
    if not parts:
        return []
    keep.mkdir(parents=True)
    moved = []
    for part in parts:
        os.replace(part, keep / part.name)
        moved.append(keep / part.name)
    return moved


def validate(dataset: str, *, data_dir: Path, params: Params, stage: str = "raw") -> StepResult:
    """Run the Great Expectations suite of a stage ('raw' or 'prepared'); raises DataValidationError.

    The report replaces the previous one when the suite has run (passed or failed), never half-written.
    """
    from mtl import validation

    if stage not in ("raw", "prepared"):
        raise ConfigError(f"stage must be 'raw' or 'prepared', got {stage!r}")
    ds = get_dataset(dataset)
    report_dir = paths.validation_dir(data_dir, dataset, stage)
    _recover_inputs(data_dir, dataset)
    if stage == "raw":
        raw = paths.raw_dir(data_dir, dataset)
        manifest = Manifest.load(paths.raw_manifest(data_dir, dataset))
        report = _write_report(
            report_dir, "validate", lambda out: validation.validate_raw(ds, raw, manifest, params, out)
        )
        content_hash = manifest.content_hash
    else:
        prepared = paths.prepared_dir(data_dir, dataset)
        metadata = load_metadata(prepared)
        report = _write_report(
            report_dir,
            "validate",
            lambda out: validation.validate_prepared(ds, prepared, metadata, params, out),
        )
        content_hash = metadata.content_hash
    return StepResult(
        dataset, str(report_dir), content_hash, report=str(report.summary_path), details=report.statistics
    )


def _write_report(report_dir: Path, step: str, run: Callable[[Path], Any]) -> Any:
    """Run a validation suite into a staging folder; publish its report whether the data passed or
    failed (a failure's report is what the user needs), but not after a crash or a kill."""
    from mtl.errors import DataValidationError

    staging = atomic.begin(report_dir).resolve()  # GX's Data Docs want an absolute folder
    try:
        try:
            report = run(staging)
        except DataValidationError as exc:
            atomic.swap(staging, report_dir, step)
            exc.args = tuple(str(a).replace(str(staging), str(report_dir)) for a in exc.args)
            if exc.report_path:
                exc.report_path = str(exc.report_path).replace(str(staging), str(report_dir))
            raise
        atomic.checkpoint(step, "before-swap")
        atomic.swap(staging, report_dir, step)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    report.summary_path = report_dir / Path(report.summary_path).relative_to(staging)
    if report.docs_path:
        report.docs_path = report_dir / Path(report.docs_path).relative_to(staging)
    return report


def prepare(dataset: str, *, data_dir: Path, params: Params) -> StepResult:
    """Parse, encode, split and validate into ``prepared/<dataset>/``; published only if valid, and
    only whole (built beside the previous version, swapped in at the end)."""
    from mtl import validation

    ds = get_dataset(dataset)
    raw = paths.raw_dir(data_dir, dataset)
    _recover_inputs(data_dir, dataset)
    manifest = Manifest.load(paths.raw_manifest(data_dir, dataset))
    final = paths.prepared_dir(data_dir, dataset)
    with atomic.replace_on_success(final, step="prepare") as staging:
        metadata = ds.prepare(raw, staging, manifest, params)
        atomic.checkpoint("prepare", "written")
        report = _write_report(
            paths.validation_dir(data_dir, dataset, "prepared"),
            "prepare-report",
            lambda out: validation.validate_prepared(
                ds,
                staging,
                metadata,
                params,
                out,
                replaces=final,  # drift against the version replaced
            ),
        )
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
) -> TrainingRun:
    """Train ``model`` on ``prepared/<dataset>/`` (train split; selection on the validation split only).

    Writes ``models/<dataset>/<model>/`` (layout: ``mtl.training.artifacts``) and returns paths plus the
    training summary and validation metrics. ``on_epoch_end(epoch, metrics)`` runs after every epoch.
    With ``tracking.enabled`` the training is an MLflow run (``mtl.tracking``): a child of the pipeline
    run's parent (``run_context``: ``dag_id``, ``dag_run_id``, ``dvc_hash``), its id in the result
    (``mlflow_run_id``) and in the model directory's ``tracking.json``.
    """
    catalog.check(dataset, model)  # before any MLflow run or folder exists
    params = params.for_dataset(dataset)
    _recover_inputs(data_dir, dataset)
    load_metadata(paths.prepared_dir(data_dir, dataset))  # prepared data there: else a clear error
    run_context = {**_environment_run_context(), **(run_context or {})}
    if "WORLD_SIZE" in os.environ:  # one of torchrun's processes: the launcher staged the model dir
        result = _fit_tracked(dataset, model, data_dir, data_dir, params, run_context, on_epoch_end)
        return training_run(
            dataset, model, data_dir, params, result, mlflow_run_id=result.get("mlflow_run_id")
        )
    with _staged_model(data_dir, dataset, model) as root:
        if _launch_torchrun(params):
            result = _train_with_torchrun(
                dataset, model, data_dir=data_dir, root=root, params=params, run_context=run_context
            )
        else:
            result = _fit_tracked(dataset, model, data_dir, root, params, run_context, on_epoch_end)
        atomic.checkpoint("train", "trained")
    return training_run(dataset, model, data_dir, params, result, mlflow_run_id=result.get("mlflow_run_id"))


def _fit_tracked(
    dataset: str,
    model: str,
    data_dir: Path,
    root: Path,
    params: Params,
    run_context: dict[str, Any],
    on_epoch_end: Callable[[int, dict[str, float]], None] | None,
) -> dict[str, Any]:
    """Fit into the data folder ``root``; an MLflow run (on the main process) if tracking is enabled."""
    if not (params.tracking.enabled and int(os.environ.get("RANK", "0")) == 0):
        return _fit(dataset, model, data_dir=root, params=params, on_epoch_end=on_epoch_end)
    from mtl.tracking.training import tracked_train

    def fit_staged(dataset: str, model: str, *, data_dir: Path, **kwargs: Any) -> dict[str, Any]:
        return _fit(dataset, model, data_dir=root, **kwargs)

    return tracked_train(
        fit_staged,
        dataset,
        model,
        data_dir=data_dir,
        params=params,
        run_context=dict(run_context or {}),
        dvc_hash=lambda: prepared_dvc_hash(data_dir, dataset),
        on_epoch_end=on_epoch_end,
    )


def _staged_model_dir(root: Path, data_dir: Path, dataset: str, model: str) -> Path:
    """A data folder at ``root`` with an empty model folder and a link to ``data_dir``'s prepared data,
    for a step that builds a model's outputs beside the published ones; returns the model folder."""
    built = paths.model_dir(root, dataset, model)
    built.mkdir(parents=True)
    prepared = paths.prepared_dir(root, dataset)
    prepared.parent.mkdir(parents=True)
    prepared.symlink_to(paths.prepared_dir(data_dir, dataset).resolve(), target_is_directory=True)
    return built


@contextmanager
def _staged_model(data_dir: Path, dataset: str, model: str) -> Iterator[Path]:
    """A data folder to train into, swapped into ``models/<dataset>/<model>/`` only on success.

    The folder (``models/<dataset>/.<model>.staging/``) holds ``prepared/<dataset>`` (a link to the
    real one) and ``models/<dataset>/<model>/`` (the new model), whose ``checkpoints/`` links to the
    model's own ``checkpoints/``: the resumable state outlives a failed or killed run, so the next one
    resumes, and moves into the new model folder on success, which then replaces the old one whole.
    """
    final = paths.model_dir(data_dir, dataset, model)
    checkpoints = paths.checkpoint_dir(data_dir, dataset, model)
    root = atomic.begin(final)
    created = [d for d in (final, checkpoints) if not d.exists()]
    try:
        built = _staged_model_dir(root, data_dir, dataset, model)
        checkpoints.mkdir(parents=True, exist_ok=True)
        (built / checkpoints.name).symlink_to(checkpoints.resolve(), target_is_directory=True)
        yield root
        atomic.checkpoint("train", "before-swap")
        (built / checkpoints.name).unlink()
        os.replace(checkpoints, built / checkpoints.name)
        atomic.swap(built, final, "train")
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for folder in reversed(created):  # made for this run and still empty: a failure leaves none
            with contextlib.suppress(OSError):
                folder.rmdir()


class TrainingRun(TypedDict):
    """What ``train`` returns, the same whether it trained in this process or under torchrun (and what
    the DAG's train task puts in XCom): where the model is, the training summary, the selected
    epoch's validation metrics (None for a campaign model) and the MLflow run."""

    dataset: str
    model: str
    model_dir: str
    weights: str
    metrics_file: str
    content_hash: str | None
    training: dict[str, Any]
    valid: dict[str, Any] | None
    mlflow_run_id: str | None


def training_run(
    dataset: str,
    model: str,
    data_dir: Path,
    params: Params,
    summary: dict[str, Any],
    *,
    mlflow_run_id: str | None,
) -> TrainingRun:
    """The one result of a training: from a workflow's return value or the model's metrics.json
    (``summary``: ``content_hash``, ``training``, and ``valid`` or ``splits.<validation split>``)."""
    from mtl.training import artifacts

    model_dir = paths.model_dir(data_dir, dataset, model)
    valid = summary.get("valid")
    if valid is None:
        valid = (summary.get("splits") or {}).get(params.train.validation_split)
    return TrainingRun(
        dataset=dataset,
        model=model,
        model_dir=str(model_dir),
        weights=str(model_dir / artifacts.WEIGHTS),
        metrics_file=str(model_dir / artifacts.METRICS),
        content_hash=summary.get("content_hash"),
        training=summary.get("training", {}),
        valid=valid,
        mlflow_run_id=mlflow_run_id,
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
    dataset: str, model: str, *, data_dir: Path, root: Path, params: Params, run_context: dict[str, Any]
) -> dict[str, Any]:
    """Launch DDP training with torchrun (the effective params in a file for every rank), then read the
    trained model's metrics and MLflow run back from the model directory that rank 0 wrote."""
    import subprocess
    import tempfile

    import yaml

    from mtl.tracking.runs import RUN_FILE
    from mtl.training import artifacts

    model_dir = paths.model_dir(root, dataset, model)  # the staged model folder the ranks write
    with tempfile.TemporaryDirectory(prefix="mtl-torchrun-") as scratch:
        params_file = Path(scratch) / "params.yaml"
        params_file.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
        command = torchrun_command(dataset, model, data_dir=root, params=params, params_file=params_file)
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
    return {**metrics, "mlflow_run_id": run_id}


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
    catalog.check(dataset, model, split)
    params = params.for_dataset(dataset)
    _require_trained(data_dir, dataset, model)
    if not params.tracking.enabled:
        result = _score_staged(dataset, model, data_dir=data_dir, params=params, split=split)
        return {**result, "model": model, "mlflow_run_id": None}
    from mtl.tracking.results import tracked_evaluate

    return tracked_evaluate(
        _score_staged, dataset, model, data_dir=data_dir, params=params, split=split, run_id=mlflow_run_id
    )


def gate(
    dataset: str, model: str, *, data_dir: Path, params: Params, mlflow_run_id: str | None = None
) -> dict[str, Any]:
    """The promotion decision for a trained, evaluated model (floors, no regression, sanity), before
    registration: ``{dataset, model, mlflow_run_id, passed, checks: [{name, passed, reason}], test_auc}``."""
    from mtl.registry.gate import decide
    from mtl.registry.runs import require_recorded_run, require_tracking

    catalog.check(dataset, model)
    require_tracking(params)
    if mlflow_run_id is None:
        _recover_inputs(data_dir, dataset, model)
        require_recorded_run(data_dir, dataset, model)
    return decide(dataset, model, data_dir=data_dir, params=params, run_id=mlflow_run_id)


def register(
    dataset: str, model: str, *, data_dir: Path, params: Params, decision: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Register the model's training run as a version of ``<dataset>-<model>`` (alias ``challenger``)
    and move ``champion`` to it if the gate passed (``decision``, computed when None). Idempotent per
    run; a rejection is a result, not an error. Writes ``registration.json`` into the model directory."""
    from mtl.registry.register import register_run
    from mtl.registry.runs import require_recorded_run, require_tracking

    catalog.check(dataset, model)
    require_tracking(params)
    if decision is None or not decision.get("mlflow_run_id"):
        _recover_inputs(data_dir, dataset, model)
        require_recorded_run(data_dir, dataset, model)
    return register_run(dataset, model, data_dir=data_dir, params=params, decision=decision)


def _recover_inputs(data_dir: Path, dataset: str, model: str | None = None) -> None:
    """Put back an output a killed step left aside mid-swap (``mtl.atomic.recover``) before reading it."""
    for folder in (paths.raw_dir(data_dir, dataset), paths.prepared_dir(data_dir, dataset)):
        if atomic.aside_path(folder).exists():
            atomic.recover(folder)
    if model is not None and atomic.aside_path(paths.model_dir(data_dir, dataset, model)).exists():
        atomic.recover(paths.model_dir(data_dir, dataset, model))


def _score_staged(dataset: str, model: str, *, data_dir: Path, params: Params, split: str) -> dict[str, Any]:
    """Score into a staging copy of the model folder, then swap ``eval/<split>/`` in and record the
    split's metrics in metrics.json: a failed or killed evaluation leaves the previous one as it was.

    The copy (``models/<dataset>/.<model>.eval-<split>.staging/``) links the trained model's files and
    the prepared data; it holds its own ``eval/`` and a copy of ``metrics.json``.
    """
    from mtl.training import artifacts

    final = paths.model_dir(data_dir, dataset, model)
    target = paths.evaluation_dir(data_dir, dataset, model, split)
    root = atomic.begin(final.with_name(f"{final.name}.eval-{split}"))
    try:
        built = _staged_model_dir(root, data_dir, dataset, model)
        for entry in final.iterdir():
            if entry.name == artifacts.METRICS:
                shutil.copy2(entry, built / entry.name)
            elif entry.name != "eval" and not entry.name.startswith("."):
                (built / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
        result = _score(dataset, model, data_dir=root, params=params, split=split)
        atomic.checkpoint("evaluate", "scored")
        staged = paths.evaluation_dir(root, dataset, model, split)
        (target.parent).mkdir(parents=True, exist_ok=True)
        atomic.recover(target)
        atomic.swap(staged, target, "evaluate")
        metrics = artifacts.read_json(built / artifacts.METRICS, {}).get("splits", {}).get(split)
        if metrics is not None:
            artifacts.record_split_metrics(final, dataset, model, split, metrics)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return _moved(result, str(built), str(final))


def _moved(value: Any, old: str, new: str) -> Any:
    """``value`` with every path string under ``old`` re-rooted at ``new``."""
    if isinstance(value, str) and value.startswith(old):
        return new + value[len(old) :]
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    return value


def _require_trained(data_dir: Path, dataset: str, model: str) -> None:
    """A clear error, before any MLflow connection, when the model has not been trained here."""
    _recover_inputs(data_dir, dataset, model)
    trained = paths.model_dir(data_dir, dataset, model) / "model.json"
    if not trained.is_file():
        raise ModelConfigError(f"{trained} not found: train the model first (`mtl train {dataset} {model}`)")


def _fit(
    dataset: str,
    model: str,
    *,
    data_dir: Path,
    params: Params,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Train through the model's workflow (``mtl.catalog``): supervised, or meta-training on campaigns."""
    workflow = catalog.model(model).workflow
    return workflow.call("train", dataset, model, data_dir=data_dir, params=params, on_epoch_end=on_epoch_end)


def _score(dataset: str, model: str, *, data_dir: Path, params: Params, split: str) -> dict[str, Any]:
    """Score without tracking, through the model's workflow. A campaign model's splits are campaign
    populations (``test_hot``, ``test_cold``): each campaign is adapted on its ``<split>_stage1`` rows
    and scored on its ``<split>_stage2`` rows."""
    workflow = catalog.model(model).workflow
    return workflow.call("evaluate", dataset, model, data_dir=data_dir, params=params, split=split)


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
