"""PNG plots for the tracking run: ROC and precision-recall curves, and training curves per epoch.

Curves come from the JSON point lists evaluation writes (``eval/<split>/plots/{roc,pr}_<name>.json``),
training curves from ``history.json``. Matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after matplotlib.use: the backend must be chosen first

CURVE_AXES = {"roc": ("fpr", "tpr"), "pr": ("recall", "precision")}
CURVE_LABELS = {
    "roc": ("false positive rate", "true positive rate"),
    "pr": ("recall", "precision"),
}


def curve_png(points_file: Path, out: Path, title: str) -> Path | None:
    """Plot one ``roc_*.json`` / ``pr_*.json`` point list; None when the file holds no points."""
    kind = Path(points_file).name.split("_", 1)[0]
    points = json.loads(Path(points_file).read_text())
    if kind not in CURVE_AXES or not points:
        return None
    x_key, y_key = CURVE_AXES[kind]
    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    try:
        axes.plot([p[x_key] for p in points], [p[y_key] for p in points], linewidth=1.5)
        if kind == "roc":
            axes.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
        axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel=CURVE_LABELS[kind][0], ylabel=CURVE_LABELS[kind][1])
        axes.set_title(title, fontsize=10)
        axes.grid(alpha=0.3)
        return _save(figure, out)
    finally:
        plt.close(figure)


def training_curves_png(history: Sequence[dict[str, Any]], out: Path, title: str) -> Path | None:
    """Train/validation loss and validation AUCs per epoch (two panels); None without epochs."""
    epochs = [r["epoch"] for r in history if "epoch" in r]
    if not epochs:
        return None
    losses = _series(history, lambda key: key in ("train_loss", "valid_loss"))
    aucs = _series(history, lambda key: key.startswith("valid_") and key.endswith("_auc"))
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=100)
    try:
        for axes, series, label in ((left, losses, "loss"), (right, aucs, "validation AUC")):
            for name, values in series.items():
                axes.plot(epochs[: len(values)], values, marker="o", markersize=3, label=name)
            axes.set(xlabel="epoch", ylabel=label)
            axes.grid(alpha=0.3)
            if series:
                axes.legend(fontsize=8)
        figure.suptitle(title, fontsize=10)
        return _save(figure, out)
    finally:
        plt.close(figure)


def _series(history: Sequence[dict[str, Any]], wanted: Any) -> dict[str, list[float]]:
    keys = sorted({k for r in history for k in r if wanted(k)})
    return {k: [float("nan") if r.get(k) is None else float(r[k]) for r in history] for k in keys}


def _save(figure: Any, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out, format="png")
    return out
