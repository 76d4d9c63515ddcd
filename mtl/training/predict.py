"""Forward passes over a whole split: probabilities per output, labels, row ids, and the mean loss."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mtl.models import MultiTaskModel
from mtl.training.data import SplitSource, eval_batches
from mtl.training.device import Precision


@dataclass
class Predictions:
    labels: np.ndarray  # (n, n_tasks) float32
    probabilities: dict[str, np.ndarray]  # output -> (n,) float32
    row_id: np.ndarray  # (n,) int64
    loss: float  # the model's own training loss (all terms), mean over rows

    def __len__(self) -> int:
        return int(self.row_id.shape[0])


@torch.inference_mode()
def predict(
    model: MultiTaskModel, source: SplitSource, *, batch_size: int, precision: Precision
) -> Predictions:
    """Run ``model`` in eval mode over ``source`` in file order; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    outputs: dict[str, list[torch.Tensor]] = {}
    labels, row_ids = [], []
    loss_sum = torch.zeros((), dtype=torch.float64, device=source.device)
    try:
        for batch in eval_batches(source, batch_size):
            with precision.autocast():
                logits = model(batch.features)
            terms = model.loss_terms(logits, batch.labels)
            loss_sum += torch.stack(list(terms.values())).sum(0).sum().double()
            for name, values in model.probabilities(logits).items():
                outputs.setdefault(name, []).append(values.float().cpu())
            labels.append(batch.labels.cpu())
            row_ids.append(batch.row_id.cpu())
    finally:
        model.train(was_training)
    rows = sum(len(r) for r in row_ids)
    return Predictions(
        labels=torch.cat(labels).numpy() if labels else np.zeros((0, len(model.spec.tasks)), np.float32),
        probabilities={k: torch.cat(v).numpy() for k, v in outputs.items()},
        row_id=torch.cat(row_ids).numpy() if row_ids else np.zeros(0, np.int64),
        loss=float(loss_sum.item() / rows) if rows else float("nan"),
    )
