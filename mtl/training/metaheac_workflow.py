"""Train and evaluate MetaHeac on a look-alike dataset; ``pipeline.train``/``evaluate`` dispatch here.

The model directory (``paths.model_dir``) follows ``artifacts`` (``model.json``, ``weights.pt`` = the
meta-trained network, ``history.json`` = one record per checkpoint, ``metrics.json``,
``checkpoints/last.pt``), plus, when ``metaheac.baselines.enabled`` or ``metaheac.meta.start: plain``,
``plain/``: the same network trained without meta-learning (``mtl.training.plain``), a model directory
of its own (its checkpoint ``checkpoints/plain.pt`` beside the meta-training's), trained first; with
``start: plain`` the meta-training refines it (otherwise it starts from the same initialisation as the
baseline).

An evaluation split is a campaign population with two stages, ``<split>_stage1`` (rows to adapt on) and
``<split>_stage2`` (rows to score): ``test_hot`` and ``test_cold``, each evaluated by its own call, so
the two can run (and fail, and be retried) independently. ``eval/<split>/`` then holds

* ``metrics.json``: per variant -- ``metaheac`` (meta-trained, adapted per campaign),
  ``metaheac_unadapted``, and with baselines ``plain`` and ``plain_adapted`` -- pooled AUC, logloss,
  GAUC (unweighted, as MetaHeac reports it) and row-weighted, precision/recall at the top share, the
  campaigns evaluated and skipped; the adaptation settings and speed; the synthetic data's oracle;
* ``predictions.parquet`` (row_id, aid, label, ``p_<variant>``), ``campaigns.parquet`` (per campaign:
  rows, positives, and AUC/precision/recall of every variant), ``plots/{roc,pr}_<variant>.json``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mtl import paths
from mtl.config import MetaheacTrainingParams, Params
from mtl.datasets.prepared import DatasetMetadata, load_metadata, write_json_atomic
from mtl.errors import ConfigError, ModelConfigError
from mtl.evaluation import campaign_metrics, campaign_table, precision_recall_points, roc_curve_points
from mtl.models import ModelSpec, build_model
from mtl.training import artifacts
from mtl.training.adaptation import adapt_batched, adapt_sequential, score
from mtl.training.campaigns import CampaignSplit, load_campaign_split
from mtl.training.checkpoint import code_version
from mtl.training.device import resolve_device
from mtl.training.meta import EpochCallback, MetaTrainer
from mtl.training.plain import train_plain
from mtl.training.seeding import seed_everything
from mtl.training.trainer import CHECKPOINT_FILE

log = logging.getLogger(__name__)
MODEL = "metaheac"
PLAIN = "plain"
PLAIN_MODEL = f"{MODEL}/{PLAIN}"  # the baseline's model directory lies inside MetaHeac's
# trained network -> (name of its scores without adaptation, name of its scores after adaptation)
VARIANTS = {MODEL: (f"{MODEL}_unadapted", MODEL), PLAIN: (PLAIN, f"{PLAIN}_adapted")}
CAMPAIGNS = "campaigns.parquet"
PLAIN_CHECKPOINT = "plain.pt"
TRAIN_SPLIT = "train"
# settings that cannot change the weights, or (epochs) that a resumed run may extend: a checkpoint written
# under other values still resumes, unless it is past the run's end (meta.load_resumable)
_NOT_IN_FINGERPRINT = {"epochs", "checkpoint_every", "enabled"}


def train_metaheac(
    dataset: str, *, data_dir: Path, params: Params, on_epoch_end: EpochCallback | None = None
) -> dict[str, Any]:
    """Meta-train on the train split (and train the plain baseline if enabled); write the model dir."""
    prepared = paths.prepared_dir(data_dir, dataset)
    metadata = load_metadata(prepared)
    device = _device(params)
    settings = params.metaheac
    seed_everything(params.seed)
    model = build_model(MODEL, metadata, params).to(device)
    initial = {k: v.clone() for k, v in model.state_dict().items()}  # the baseline starts from the same
    train = load_campaign_split(prepared, TRAIN_SPLIT, metadata, device)
    model_dir = paths.model_dir(data_dir, dataset, MODEL)
    training: dict[str, Any] = {"meta": None, "baseline": None}
    if settings.baselines.enabled or settings.meta.start == "plain":
        plain = train_plain(
            model,
            train.data,
            settings.baselines,
            seed=params.seed,
            # beside the meta-training's, in the folder a training step links to the model's own: an
            # interrupted run resumes the baseline too, and a later one reuses or extends it
            checkpoint_path=paths.checkpoint_dir(data_dir, dataset, MODEL) / PLAIN_CHECKPOINT,
            fingerprint=_fingerprint(model, metadata, params.seed, "plain", settings.baselines.model_dump()),
            resume=params.train.resume,
            progress=params.train.progress,
        )
        training["baseline"] = {k: v for k, v in vars(plain).items() if k != "history"}
        _save(
            paths.model_dir(data_dir, dataset, PLAIN_MODEL),
            model,
            metadata,
            params,
            plain.history,
            {"baseline": training["baseline"]},
        )
        if settings.meta.start == "fresh":
            model.load_state_dict(initial)
    trainer = MetaTrainer(
        model,
        settings.meta,
        seed=params.seed,
        checkpoint_path=paths.checkpoint_dir(data_dir, dataset, MODEL) / CHECKPOINT_FILE,
        fingerprint=_fingerprint(model, metadata, params.seed, "meta", _meta_settings(settings)),
        resume=params.train.resume,
        progress=params.train.progress,
        on_epoch_end=on_epoch_end,
    )
    result = trainer.fit(train)
    meta = {k: v for k, v in vars(result).items() if k != "history"}
    meta.update(device=str(device), train_rows=train.rows, train_campaigns=len(train.campaigns))
    training["meta"] = meta
    _save(model_dir, model, metadata, params, result.history, {"meta": meta})
    summary = {
        "dataset": dataset,
        "model": MODEL,
        "content_hash": metadata.content_hash,
        "training": training,
    }
    write_json_atomic(model_dir / artifacts.METRICS, {**summary, "splits": {}})
    return {
        **summary,
        "model_dir": str(model_dir),
        "weights": str(model_dir / artifacts.WEIGHTS),
        "metrics_file": str(model_dir / artifacts.METRICS),
    }


def evaluate_metaheac(dataset: str, *, data_dir: Path, params: Params, split: str) -> dict[str, Any]:
    """Adapt to every campaign of ``split`` (``test_hot`` or ``test_cold``) and score its stage2 rows."""
    prepared = paths.prepared_dir(data_dir, dataset)
    metadata = load_metadata(prepared)
    stage1_name, stage2_name = _stages(metadata, split)
    device = _device(params)
    model_dir = paths.model_dir(data_dir, dataset, MODEL)
    variants = {MODEL: _load(model_dir, metadata, device)}
    baseline_note = None
    if params.metaheac.baselines.enabled:
        plain_dir = paths.model_dir(data_dir, dataset, PLAIN_MODEL)
        if (plain_dir / artifacts.MODEL_CONFIG).is_file():
            variants[PLAIN] = _load(plain_dir, metadata, device)
        else:
            baseline_note = "not trained: run `mtl train` with metaheac.baselines.enabled=true"
            log.warning("metaheac: the plain baseline is %s", baseline_note)
    stage1 = load_campaign_split(prepared, stage1_name, metadata, device)
    stage2 = load_campaign_split(prepared, stage2_name, metadata, device)
    adaptation = params.metaheac.adaptation
    batched = adaptation.batched is True or (adaptation.batched == "auto" and device.type == "cuda")
    adapt = adapt_batched if batched else adapt_sequential
    probabilities: dict[str, np.ndarray] = {}
    speed: dict[str, float] = {}
    eval_rows = params.train.eval_batch_size
    for name, model in variants.items():
        unadapted, adapted = VARIANTS[name]
        weights = {k: v.detach() for k, v in model.named_parameters()}
        probabilities[unadapted] = score(model, weights, stage2, eval_rows)
        started = time.perf_counter()
        probabilities[adapted] = adapt(
            model, weights, stage1, stage2, adaptation, seed=params.seed, eval_batch_size=eval_rows
        )
        speed[name] = time.perf_counter() - started
    labels = stage2.data.labels[:, 0].cpu().numpy()
    metrics = {
        "dataset": dataset,
        "model": MODEL,
        "split": split,
        "stage1": stage1_name,
        "stage2": stage2_name,
        "content_hash": metadata.content_hash,
        "campaigns": len(stage2.campaigns),
        "stage1_rows": stage1.rows,
        "stage2_rows": stage2.rows,
        "adaptation": {
            **adaptation.model_dump(),
            "mode": "batched" if batched else "sequential",
            "seconds": speed[MODEL],
            "campaigns_per_s": len(stage2.campaigns) / speed[MODEL] if speed[MODEL] > 0 else None,
            "device": str(device),
        },
        "variants": {
            name: campaign_metrics(labels, p, stage2.group, top_share=adaptation.top_fraction)
            for name, p in sorted(probabilities.items())
        },
        "baselines": baseline_note or ("evaluated" if PLAIN in variants else "disabled"),
        "oracle": metadata.extra.get("oracle", {}).get(stage2_name),
    }
    out = paths.evaluation_dir(data_dir, dataset, MODEL, split)
    plots = _write_evaluation(out, stage1, stage2, labels, probabilities, adaptation.top_fraction)
    write_json_atomic(out / artifacts.METRICS, metrics)
    artifacts.record_split_metrics(model_dir, dataset, MODEL, split, metrics)
    return {
        "dataset": dataset,
        "model": MODEL,
        "split": split,
        "model_dir": str(model_dir),
        "metrics_file": str(out / artifacts.METRICS),
        "predictions": str(out / artifacts.PREDICTIONS),
        "campaigns_file": str(out / CAMPAIGNS),
        "plots": plots,
        "metrics": metrics,
    }


def evaluation_splits(metadata: DatasetMetadata) -> list[str]:
    """Campaign populations with an adaptation and a scoring stage (look-alike: test_cold, test_hot)."""
    return sorted(
        name[: -len("_stage1")]
        for name in metadata.splits
        if name.endswith("_stage1") and f"{name[: -len('_stage1')]}_stage2" in metadata.splits
    )


def _stages(metadata: DatasetMetadata, split: str) -> tuple[str, str]:
    choices = evaluation_splits(metadata)
    if split not in choices:
        raise ConfigError(
            "metaheac evaluates a campaign population with stage1 (adaptation) and stage2 (scored) rows; "
            f"--split {split!r} is not one; choose one of {', '.join(choices) or 'none (no *_stage1/2)'}"
        )
    return f"{split}_stage1", f"{split}_stage2"


def _device(params: Params) -> torch.device:
    if params.train.num_threads:
        torch.set_num_threads(params.train.num_threads)
    return resolve_device(params.train.device)


def _meta_settings(settings: MetaheacTrainingParams) -> dict[str, Any]:
    """What the meta-training depends on: its settings, and the baseline's when it starts from it."""
    value = settings.meta.model_dump()
    if settings.meta.start == "plain":
        value["plain"] = {k: v for k, v in settings.baselines.model_dump().items() if k != "enabled"}
    return value


def _fingerprint(
    model: torch.nn.Module, metadata: DatasetMetadata, seed: int, kind: str, settings: dict[str, Any]
) -> dict[str, Any]:
    """What must match for a checkpoint to resume: a JSON round trip so it compares equal after loading."""
    value = {
        "kind": kind,
        "hyperparameters": model.params.model_dump(mode="json"),
        "content_hash": metadata.content_hash,
        "seed": seed,
        "code": code_version(),
        "settings": {k: v for k, v in settings.items() if k not in _NOT_IN_FINGERPRINT},
    }
    return json.loads(json.dumps(value, sort_keys=True))


def _save(
    model_dir: Path,
    model: torch.nn.Module,
    metadata: DatasetMetadata,
    params: Params,
    history: list[dict[str, Any]],
    training: dict[str, Any],
) -> None:
    extra = {"seed": params.seed, "metaheac": params.metaheac.model_dump(mode="json"), "training": training}
    artifacts.save_trained_model(model_dir, model, artifacts.model_config(model, metadata, extra))
    write_json_atomic(model_dir / artifacts.HISTORY, history)


def _load(model_dir: Path, metadata: DatasetMetadata, device: torch.device) -> torch.nn.Module:
    model, config = artifacts.load_trained_model(model_dir)
    if ModelSpec.from_metadata(metadata).to_json() != config["spec"]:
        raise ModelConfigError(
            f"{model_dir} was trained on a different feature schema than the prepared data now has; "
            f"retrain it (`mtl train {metadata.dataset} {MODEL}`)"
        )
    if config["content_hash"] != metadata.content_hash:
        trained_on = config["content_hash"]
        log.warning(
            "%s was trained on data %s; evaluating on %s", model_dir, trained_on, metadata.content_hash
        )
    return model.to(device)


def _write_evaluation(
    out: Path,
    stage1: CampaignSplit,
    stage2: CampaignSplit,
    labels: np.ndarray,
    probabilities: dict[str, np.ndarray],
    top_share: float,
) -> list[str]:
    """predictions.parquet, campaigns.parquet and the pooled ROC/PR curve of every variant."""
    columns = {
        "row_id": pa.array(stage2.data.row_id.cpu().numpy()),
        "aid": pa.array(stage2.group),
        "label": pa.array(labels.astype(np.int8)),
    }
    columns.update({f"p_{name}": pa.array(p.astype(np.float32)) for name, p in sorted(probabilities.items())})
    campaigns: dict[str, Any] = {}
    for name, p in sorted(probabilities.items()):
        table = campaign_table(labels, p, stage2.group, top_share=top_share)
        campaigns.setdefault("aid", table["group"])
        campaigns.setdefault("stage2_rows", table["rows"])
        campaigns.setdefault("positives", table["positives"])
        campaigns.update({f"{key}_{name}": table[key] for key in ("auc", "precision", "recall")})
    first = np.searchsorted(stage1.campaigns, campaigns["aid"])
    campaigns["stage1_rows"] = stage1.counts[first]
    out.mkdir(parents=True, exist_ok=True)
    for name, data in ((artifacts.PREDICTIONS, columns), (CAMPAIGNS, campaigns)):
        tmp = out / f".{name}.tmp"
        pq.write_table(pa.table(data), tmp, compression="zstd")
        tmp.replace(out / name)
    written = []
    for name, p in sorted(probabilities.items()):
        for kind, points in (
            ("roc", roc_curve_points(labels, p)),
            ("pr", precision_recall_points(labels, p)),
        ):
            path = out / artifacts.PLOTS / f"{kind}_{name}.json"
            write_json_atomic(path, points)
            written.append(str(path))
    return written
