"""What evaluation adds to a training run: the final metrics of a split, and artifacts to read them by.

Metric names, per evaluated split ``S``:

* per-output metrics (Ali-CCP, Census): ``S_<output>_auc``, ``S_<output>_logloss``,
  ``S_<output>_positive_rate``, ``S_<output>_prediction_mean``, ``S_<output>_rows``, and ``S_auc_mean``,
  ``S_logloss_mean``, ``S_loss`` -- e.g. ``test_click_auc``, ``test_purchase_auc`` (CVR AUC on clicked
  rows), ``test_ctcvr_auc``;
* campaign populations (MetaHeac: ``test_hot``, ``test_cold``): the model's own variant as ``S_auc``
  (pooled), ``S_gauc``, ``S_precision_at_5pct``, ``S_recall_at_5pct``, ``S_logloss``, ...; other
  variants as ``S_<variant>_<metric>``; ``S_positive_rate``/``S_prediction_mean`` from the predictions.

So a gated name ``n`` (``gate.<dataset>.floors``) is read as ``test_n_<metric>`` (an output scored on the
test split) or ``n_<metric>`` (a campaign population evaluated as its own split): ``gated_metric``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from mtl import paths
from mtl.config import Params
from mtl.tracking import runs
from mtl.tracking.lineage import log_prepared_input
from mtl.tracking.store import Tracking, connect, errors
from mtl.training import artifacts

log = logging.getLogger(__name__)
TEST_SPLIT = "test"
METRICS_PER_CALL = 1000  # MLflow's log_batch limit
_OUTPUT_KEYS = ("auc", "logloss", "positive_rate", "prediction_mean", "rows", "positives")
_SPLIT_KEYS = ("auc_mean", "logloss_mean", "loss", "rows_per_s")


def split_metrics(split: str, model: str, metrics: dict[str, Any], evaluation: Path) -> dict[str, float]:
    """The MLflow metrics of one evaluated split (names: module docstring); undefined values left out."""
    out: dict[str, float] = {}
    if "variants" in metrics:
        for variant, values in metrics["variants"].items():
            prefix = f"{split}_" if variant == model else f"{split}_{variant}_"
            share = values.get("top_share")
            for key, value in values.items():
                if key.endswith("_at_top") and isinstance(share, (int, float)):
                    key = key.replace("_at_top", f"_at_{share * 100:g}pct")
                _put(out, prefix + key, value)
        out.update(_rates(split, model, evaluation))
        return out
    for key in _SPLIT_KEYS:
        _put(out, f"{split}_{key}", metrics.get(key))
    for output, values in metrics.get("outputs", {}).items():
        for key in _OUTPUT_KEYS:
            _put(out, f"{split}_{output}_{key}", values.get(key))
    return out


def gated_metric(metrics: dict[str, float], name: str, kind: str = "auc") -> float | None:
    """Metric ``kind`` of gated name ``name``: ``test_<name>_<kind>``, else ``<name>_<kind>``."""
    for key in (f"{TEST_SPLIT}_{name}_{kind}", f"{name}_{kind}"):
        if key in metrics:
            return metrics[key]
    return None


def log_evaluation(
    tracking: Tracking,
    run_id: str,
    *,
    dataset: str,
    model: str,
    data_dir: Path,
    split: str,
    metrics: dict[str, Any],
) -> dict[str, float]:
    """Log a split's metrics and the artifacts (metrics JSON, ROC/PR and training-curve PNGs, the
    data-validation summary) to the training run; returns the metrics logged."""
    from mtl.datasets.prepared import load_metadata

    logged = split_metrics(split, model, metrics, paths.evaluation_dir(data_dir, dataset, model, split))
    items = runs.metric_entities(dict(sorted(logged.items())))
    for start in range(0, max(len(items), 1), METRICS_PER_CALL):
        hash_tag = runs.run_tag(f"mtl.eval.{split}.content_hash", metrics.get("content_hash"))
        tracking.client.log_batch(
            run_id, metrics=items[start : start + METRICS_PER_CALL], tags=[] if start else [hash_tag]
        )
    with tempfile.TemporaryDirectory(prefix="mtl-eval-artifacts-") as tmp:
        _stage_artifacts(Path(tmp), dataset, model, data_dir, split)
        tracking.client.log_artifacts(run_id, tmp)
    prepared = paths.prepared_dir(data_dir, dataset)
    log_prepared_input(tracking.client, run_id, dataset, prepared, load_metadata(prepared), "evaluation")
    return logged


def tracked_evaluate(
    score: Callable[..., dict[str, Any]],
    dataset: str,
    model: str,
    *,
    data_dir: Path,
    params: Params,
    split: str,
    run_id: str | None,
) -> dict[str, Any]:
    """``score(dataset, model, data_dir=, params=, split=)``, then log its results to the training run."""
    with connect(params) as tracking:  # before the work: an unreachable store fails fast
        model_dir = paths.model_dir(data_dir, dataset, model)
        run_id = runs.run_id_for(model_dir, tracking, run_id)
        result = score(dataset, model, data_dir=data_dir, params=params, split=split)
        if run_id is None:
            log.warning(
                "%s has no tracking.json (trained with tracking disabled?): %s metrics not logged to MLflow",
                model_dir,
                split,
            )
        else:
            with errors(f"log the {split} evaluation of {dataset}/{model} to run {run_id}"):
                log_evaluation(
                    tracking,
                    run_id,
                    dataset=dataset,
                    model=model,
                    data_dir=data_dir,
                    split=split,
                    metrics=result["metrics"],
                )
        return {**result, "model": model, "mlflow_run_id": run_id}


def _stage_artifacts(out: Path, dataset: str, model: str, data_dir: Path, split: str) -> None:
    from mtl import plots

    model_dir = paths.model_dir(data_dir, dataset, model)
    evaluation = paths.evaluation_dir(data_dir, dataset, model, split)
    target = out / "evaluation" / split
    target.mkdir(parents=True)
    if (evaluation / artifacts.METRICS).is_file():
        shutil.copy2(evaluation / artifacts.METRICS, target / artifacts.METRICS)
    for points in sorted((evaluation / artifacts.PLOTS).glob("*.json")):
        kind, _, name = points.stem.partition("_")
        title = f"{dataset}/{model} {split}: {'ROC' if kind == 'roc' else 'precision-recall'} of {name}"
        plots.curve_png(points, target / f"{points.stem}.png", title)
    history = model_dir / artifacts.HISTORY
    if history.is_file():
        (out / "training").mkdir()
        shutil.copy2(history, out / "training" / artifacts.HISTORY)
        records = json.loads(history.read_text())
        plots.training_curves_png(records, out / "training" / "curves.png", f"{dataset}/{model} training")
    summary = paths.validation_dir(data_dir, dataset, "prepared") / "summary.json"
    if summary.is_file():
        (out / "data").mkdir()
        shutil.copy2(summary, out / "data" / "validation_summary.json")


def _rates(split: str, model: str, evaluation: Path) -> dict[str, float]:
    """Positive rate and mean prediction of a campaign split, from its predictions file."""
    path = evaluation / artifacts.PREDICTIONS
    column = f"p_{model}"
    if not path.is_file() or not {"label", column} <= set(pq.read_schema(path).names):
        return {}
    table = pq.read_table(path, columns=["label", column])
    labels, scores = table.column("label").to_numpy(), table.column(column).to_numpy()
    if not len(labels):
        return {}
    return {f"{split}_positive_rate": float(labels.mean()), f"{split}_prediction_mean": float(scores.mean())}


def _put(out: dict[str, float], key: str, value: Any) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out[key] = float(value)
