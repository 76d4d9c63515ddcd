"""Metrics: exact ROC AUC in one vectorised pass, logloss, curves. Undefined AUC is None, never 0.5.

What is scored on a dataset comes from its tasks and funnel alone (``evaluation_targets``), so every
model is scored the same way: on Ali-CCP, CTR AUC over all rows, CVR AUC over clicked rows only and
CTCVR AUC over all rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Exact ROC AUC (Mann-Whitney U with average ranks for ties); None if only one class is present."""
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    # average rank of each run of tied scores (ranks are 1-based)
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], s.size]
    run_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float | None:
    """Mean binary cross-entropy of probabilities (clipped to [eps, 1-eps]); None for no rows."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.clip(np.asarray(probabilities, dtype=np.float64).reshape(-1), eps, 1.0 - eps)
    if y.size == 0:
        return None
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


# --- what is scored -----------------------------------------------------------------------------------

JOINT_OUTPUT = "ctcvr"  # on a funnel dataset: P(every step), e.g. P(click and purchase), over all rows


class UndefinedMetricWarning(UserWarning):
    """A metric cannot be computed on these labels (e.g. AUC with one class); it is reported as None."""


@dataclass(frozen=True)
class Target:
    """One scored output: its label is the product of ``label_tasks``, over rows where ``given`` is 1."""

    output: str
    label_tasks: tuple[str, ...]
    given: str | None = None  # condition rows on this task's label (None: all rows)


def evaluation_targets(tasks: Sequence[str], funnel: Sequence[str] | None) -> list[Target]:
    """Per task over all rows; on a two-step funnel the later step is conditional and ``ctcvr`` is added.

    Ali-CCP (funnel click -> purchase): ``click`` (CTR AUC, all rows), ``purchase`` (CVR AUC on clicked
    rows only, as in the ESMM paper) and ``ctcvr`` (label click and purchase, all rows).
    """
    if not funnel:
        return [Target(task, (task,)) for task in tasks]
    earlier, later = funnel
    targets = [Target(task, (task,), given=earlier if task == later else None) for task in tasks]
    targets.append(Target(JOINT_OUTPUT, (earlier, later)))
    return targets


def oracle_aucs(
    extra: Mapping[str, Any], split: str, tasks: Sequence[str], funnel: Sequence[str] | None
) -> dict[str, float | None]:
    """The data generator's oracle AUC of every scored output (None where unknown, e.g. real data).

    Synthetic datasets write ``metadata.extra["oracle_auc"][split]`` keyed by task, each over all rows
    (so on a funnel the later task is the joint event, our ``ctcvr``), plus ``cvr`` for the later step
    on clicked rows (our funnel ``purchase`` output).
    """
    table = extra.get("oracle_auc", {}).get(split, {})
    if not funnel:
        return {task: table.get(task) for task in tasks}
    earlier, later = funnel
    return {earlier: table.get(earlier), later: table.get("cvr"), JOINT_OUTPUT: table.get(later)}


def target_labels(target: Target, labels: np.ndarray, tasks: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, row mask) of a target from the (n, n_tasks) label matrix."""
    columns = [labels[:, list(tasks).index(t)] > 0.5 for t in target.label_tasks]
    y = np.logical_and.reduce(columns).astype(np.float64)
    mask = labels[:, list(tasks).index(target.given)] > 0.5 if target.given else np.ones(len(y), dtype=bool)
    return y, mask


def output_metrics(labels: np.ndarray, probabilities: np.ndarray, *, name: str) -> dict[str, Any]:
    """AUC (None plus a warning when one class only), logloss, positive rate and prediction mean."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    auc = roc_auc(y, p)
    if auc is None:
        classes = (
            "no rows" if y.size == 0 else f"only {'positive' if y.size and y[0] > 0.5 else 'negative'} labels"
        )
        warnings.warn(
            f"AUC of {name!r} is undefined: {classes} ({y.size} rows)", UndefinedMetricWarning, stacklevel=2
        )
    return {
        "auc": auc,
        "logloss": logloss(y, p),
        "positive_rate": float(y.mean()) if y.size else None,
        "prediction_mean": float(p.mean()) if p.size else None,
        "rows": int(y.size),
        "positives": int(y.sum()),
    }


def evaluate_predictions(
    tasks: Sequence[str],
    funnel: Sequence[str] | None,
    labels: np.ndarray,
    probabilities: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Metrics of every target plus ``auc_mean``/``logloss_mean`` over the defined ones."""
    outputs = {}
    for target in evaluation_targets(tasks, funnel):
        y, mask = target_labels(target, labels, tasks)
        outputs[target.output] = output_metrics(
            y[mask], probabilities[target.output][mask], name=target.output
        )
    aucs = [m["auc"] for m in outputs.values() if m["auc"] is not None]
    losses = [m["logloss"] for m in outputs.values() if m["logloss"] is not None]
    return {
        "auc_mean": float(np.mean(aucs)) if aucs else None,
        "logloss_mean": float(np.mean(losses)) if losses else None,
        "outputs": outputs,
    }


# --- curves -------------------------------------------------------------------------------------------


def _threshold_counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, false positives, threshold) at every distinct score, highest threshold first."""
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = last_of_run + 1 - tps
    return tps.astype(np.float64), fps.astype(np.float64), s[last_of_run]


def _downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along the curve's length (ends kept)."""
    if x.size <= max_points:
        return np.arange(x.size)
    length = np.r_[0.0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    picks = np.searchsorted(length, np.linspace(0.0, length[-1], max_points))
    return np.unique(np.r_[0, np.clip(picks, 0, x.size - 1), x.size - 1])


def roc_curve_points(labels: np.ndarray, scores: np.ndarray, max_points: int = 300) -> list[dict[str, Any]]:
    """ROC curve as ``[{fpr, tpr, threshold}]`` from (0, 0) to (1, 1); [] when AUC is undefined."""
    tps, fps, thresholds = _threshold_counts(labels, scores)
    if tps.size == 0 or tps[-1] == 0 or fps[-1] == 0:
        return []
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    cut = np.r_[np.inf, thresholds]
    return [
        {"fpr": float(fpr[i]), "tpr": float(tpr[i]), "threshold": None if i == 0 else float(cut[i])}
        for i in _downsample(fpr, tpr, max_points)
    ]


def precision_recall_points(
    labels: np.ndarray, scores: np.ndarray, max_points: int = 300
) -> list[dict[str, Any]]:
    """Precision-recall curve as ``[{recall, precision, threshold}]``, recall rising; [] without positives."""
    tps, fps, thresholds = _threshold_counts(labels, scores)
    if tps.size == 0 or tps[-1] == 0:
        return []
    recall = tps / tps[-1]
    precision = tps / (tps + fps)
    return [
        {"recall": float(recall[i]), "precision": float(precision[i]), "threshold": float(thresholds[i])}
        for i in _downsample(recall, precision, max_points)
    ]


# --- per-campaign (group) metrics: look-alike audiences ---------------------------------------------


def group_slices(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[slice]]:
    """(stable order sorting rows by group, distinct groups, each group's slice of the sorted rows)."""
    groups = np.asarray(groups).reshape(-1)
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if ordered.size else np.zeros(0, int)
    stops = np.r_[starts[1:], ordered.size]
    return order, ordered[starts], [slice(a, b) for a, b in zip(starts, stops)]


def top_share_precision_recall(labels: np.ndarray, scores: np.ndarray, share: float) -> tuple[float, float]:
    """Precision and recall of the top ``max(1, int(share * n))`` rows by score (ties: earlier row first).

    MetaHeac's measure of an expanded audience: k = int(0.05 n); we keep at least one row so that small
    campaigns are scored instead of dividing by zero. Recall needs a positive (caller's check).
    """
    y = np.asarray(labels).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    k = max(1, int(share * y.size))
    hits = int(y[np.argsort(-s, kind="stable")[:k]].sum())
    return hits / k, hits / int(y.sum())


def campaign_table(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, top_share: float
) -> dict[str, np.ndarray]:
    """Per campaign: ``group, rows, positives, auc, precision, recall`` (NaN where a campaign has one
    class only: its AUC is undefined, so it is skipped for every per-campaign mean)."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not y.shape == s.shape == np.asarray(groups).reshape(-1).shape:
        raise ValueError(f"labels, scores and groups differ in length: {y.size}, {s.size}, {np.size(groups)}")
    order, names, slices = group_slices(groups)
    y, s = y[order], s[order]
    table = {key: np.full(len(names), np.nan) for key in ("auc", "precision", "recall")}
    table["group"] = names
    table["rows"] = np.array([part.stop - part.start for part in slices], dtype=np.int64)
    table["positives"] = np.array([int(y[part].sum()) for part in slices], dtype=np.int64)
    for i, part in enumerate(slices):
        auc = roc_auc(y[part], s[part])
        if auc is not None:
            table["auc"][i] = auc
            table["precision"][i], table["recall"][i] = top_share_precision_recall(
                y[part], s[part], top_share
            )
    return table


def campaign_metrics(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, top_share: float = 0.05
) -> dict[str, Any]:
    """Pooled AUC and logloss over all rows; per campaign (mean over campaigns with both classes): GAUC
    unweighted (MetaHeac's "GAUC") and weighted by rows (impression-weighted), precision and recall at
    the top ``top_share``; how many campaigns were evaluated and skipped (one class only)."""
    table = campaign_table(labels, scores, groups, top_share=top_share)
    scored = ~np.isnan(table["auc"])

    def mean(values: np.ndarray, weights: np.ndarray | None = None) -> float | None:
        if not scored.any():
            return None
        return float(np.average(values[scored], weights=None if weights is None else weights[scored]))

    return {
        "auc": roc_auc(labels, scores),
        "logloss": logloss(labels, scores),
        "gauc": mean(table["auc"]),
        "gauc_weighted": mean(table["auc"], table["rows"]),
        "precision_at_top": mean(table["precision"]),
        "recall_at_top": mean(table["recall"]),
        "top_share": top_share,
        "campaigns_evaluated": int(scored.sum()),
        "campaigns_skipped": int((~scored).sum()),
        "rows": int(np.size(labels)),
    }
