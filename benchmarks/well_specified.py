"""The synthetic Ali-CCP generator's own click model, fitted on the training split: what the sample allows.

The true click logit of synthetic Ali-CCP (``mtl/datasets/aliccp/world.py``) is a sum of per-id effects of
some fields, matched-history effects and a rank-``RANK`` product of a user taste (latents of the ``TASTE``
profile fields plus the mean latent of the 109_14 history categories) and the item category's latent.
This model has exactly that form and nothing else, and is fitted by maximum a posteriori: each table's
L2 is the generator's own prior, N(0, sigma) with sigma from ``EFFECTS`` and ``SIGNAL``. Its weights are
those of the epoch with the best validation logloss.

Its test AUC is a reference for any model trained on the same rows: oracle minus it is what the
training sample cannot tell (estimation error of the planted effects); it minus a model is the model's
own shortfall.

    python benchmarks/well_specified.py PREPARED_DIR     # e.g. data/prepared/aliccp
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl.datasets.aliccp.world import CROSSES, EFFECTS, PROFILE, RANK, SIGNAL, TASTE  # noqa: E402
from mtl.datasets.prepared import DatasetMetadata, SplitArrays, load_metadata, read_split  # noqa: E402
from mtl.evaluation import roc_auc  # noqa: E402

HISTORY, CATEGORY = "109_14", "206"
# per-id click effects of the world and the standard deviation of each (before SIGNAL)
LINEAR = {
    **{f: EFFECTS["profile"] for f in PROFILE},
    "101": EFFECTS["user"], "205": EFFECTS["item"], "206": EFFECTS["206"], "207": EFFECTS["207"],
    "216": EFFECTS["216"], "301": float(np.std(EFFECTS["position"])),
    **{cross: EFFECTS["match"][cross][0] for cross in CROSSES},
}  # fmt: skip
MATCHED_INTENTS = "853"  # its click effect is a weight per matched intention: the field's length


class GeneratorModel(nn.Module):
    def __init__(self, metadata: DatasetMetadata):
        super().__init__()
        sparse = [f.name for f in metadata.features.sparse]
        multi = [f.name for f in metadata.features.multi]
        vocab = {f.name: f.vocab_size for f in [*metadata.features.sparse, *metadata.features.multi]}
        linear = [f for f in LINEAR if f in sparse]
        self.linear_columns = [sparse.index(f) for f in linear]
        self.taste_columns = [sparse.index(f) for f in TASTE]
        self.category_column = sparse.index(CATEGORY)
        self.history_column, self.intents_column = multi.index(HISTORY), multi.index(MATCHED_INTENTS)
        self.linear = nn.ModuleList(nn.Embedding(vocab[f], 1) for f in linear)
        self.taste = nn.ModuleList(nn.Embedding(vocab[f], RANK) for f in TASTE)
        self.history = nn.Embedding(vocab[HISTORY], RANK)
        self.category = nn.Embedding(vocab[CATEGORY], RANK)
        self.intent_weight = nn.Parameter(torch.zeros(()))
        self.bias = nn.Parameter(torch.zeros(()))
        # the prior sigma of every table, on the logit scale
        self.priors: list[tuple[Tensor, float]] = [
            (table.weight, SIGNAL * LINEAR[f]) for table, f in zip(self.linear, linear)
        ]
        self.priors += [(table.weight, EFFECTS["taste"]) for table in self.taste]
        self.priors += [
            (self.history.weight, EFFECTS["history_taste"]),
            (self.category.weight, SIGNAL * EFFECTS["affinity"]),
        ]
        for table in self.linear:
            nn.init.zeros_(table.weight)
        for table, sigma in self.priors[len(self.linear) :]:
            nn.init.normal_(table, 0.0, sigma)

    def forward(self, sparse: Tensor, history: Tensor, lengths: Tensor) -> Tensor:
        logit = self.bias + sum(
            table(sparse[:, j]).squeeze(-1) for table, j in zip(self.linear, self.linear_columns)
        )
        logit = logit + self.intent_weight * lengths[:, self.intents_column]
        taste = sum(table(sparse[:, j]) for table, j in zip(self.taste, self.taste_columns))
        length = lengths[:, self.history_column : self.history_column + 1]
        kept = (torch.arange(history.shape[1]) < length).unsqueeze(-1)
        taste = taste + (self.history(history) * kept).sum(1) / length.clamp(min=1)
        return logit + (taste * self.category(sparse[:, self.category_column])).sum(-1)

    def penalty(self) -> Tensor:
        return sum((table**2).sum() / (2 * sigma**2) for table, sigma in self.priors)


def _tensors(arrays: SplitArrays, history_column: int) -> tuple[Tensor, ...]:
    return (
        torch.from_numpy(arrays.sparse.astype(np.int64)),
        torch.from_numpy(arrays.multi[history_column].astype(np.int64)),
        torch.from_numpy(arrays.multi_lengths.astype(np.float32)),
        torch.from_numpy(arrays.labels[:, 0].astype(np.float32)),
    )


def fit(prepared: Path, *, epochs: int = 10, batch: int = 4096, lr: float = 0.01, seed: int = 0) -> float:
    """Test click AUC of the generator's model fitted on train (best validation logloss)."""
    metadata = load_metadata(prepared)
    torch.manual_seed(seed)
    model = GeneratorModel(metadata)
    splits = {
        s: _tensors(read_split(prepared, s, metadata), model.history_column)
        for s in ("train", "valid", "test")
    }
    *inputs, y = splits["train"]
    rows = y.shape[0]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)

    def predict(split: str) -> Tensor:
        with torch.no_grad():
            *x, _ = splits[split]
            return torch.cat([model(*(t[i : i + 65536] for t in x)) for i in range(0, x[0].shape[0], 65536)])

    best_loss, best_auc = np.inf, float("nan")
    for _ in range(epochs):
        order = torch.randperm(rows)
        for start in range(0, rows, batch):
            index = order[start : start + batch]
            loss = F.binary_cross_entropy_with_logits(model(*(t[index] for t in inputs)), y[index])
            loss = loss + model.penalty() / rows
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        valid_loss = F.binary_cross_entropy_with_logits(predict("valid"), splits["valid"][-1]).item()
        if valid_loss < best_loss:
            best_loss = valid_loss
            best_auc = roc_auc(splits["test"][-1].numpy(), predict("test").numpy())
    return best_auc


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(f"well-specified test click AUC: {fit(Path(sys.argv[1])):.4f}")
