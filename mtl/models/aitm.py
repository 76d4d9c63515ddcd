"""AITM (Xi et al., KDD 2021): adaptive information transfer along a task sequence, plus a calibrator.

Each task has its own tower over the shared input layer. For task ``t >= 1`` the previous task's final
representation ``z_{t-1}`` passes a transfer layer (Linear + ReLU) into ``p_t``; an attention unit over
the two items ``[q_t, p_t]`` (``q_t`` = task ``t``'s tower output) weighs them by
``softmax(<Q u, K u> / sqrt(d))`` and outputs ``z_t = sum_u w_u V u``. ``z_t`` feeds task ``t``'s head.
The order is the dataset's funnel (click -> purchase) where it has one, else its task order.

The behavioural-expectation calibrator adds ``calibrator_weight * mean_batch(max(p_t - p_{t-1}, 0))`` for
each funnel step, penalising a later funnel step predicted likelier than an earlier one. It applies only
where the metadata declares a funnel: elsewhere the tasks need not be nested, so the penalty would be
wrong (the transfer still runs, in task order).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.config import AitmParams
from mtl.errors import ModelConfigError
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import MLP, FeatureBatch

CALIBRATOR_TERM = "calibrator"


class TransferAttention(nn.Module):
    """Self-attention over a task's own representation and the information transferred to it."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim, bias=False)
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, own: Tensor, transferred: Tensor) -> Tensor:
        items = torch.stack([own, transferred], dim=1)  # (n, 2, d)
        scores = (self.query(items) * self.key(items)).sum(-1) * self.scale  # (n, 2)
        weights = scores.softmax(dim=1).unsqueeze(-1)
        return (weights * self.value(items)).sum(1)  # (n, d)


class AITM(MultiTaskModel):
    name = "aitm"
    params_class = AitmParams

    def __init__(self, spec: ModelSpec, params: AitmParams):
        super().__init__(spec, params)
        if len(spec.tasks) < 2:
            raise ModelConfigError(
                f"aitm transfers information between tasks; {list(spec.tasks)} is one task"
            )
        self.order = (
            list(self.funnel) + [t for t in spec.tasks if t not in self.funnel]
            if self.funnel
            else list(spec.tasks)
        )
        self.input = self.feature_input()
        n = len(self.order)
        self.towers = nn.ModuleList(
            MLP(self.input.output_dim, params.tower_dims, params.dropout, params.norm) for _ in range(n)
        )
        dim = self.towers[0].output_dim
        transfer_dropout = [nn.Dropout(params.dropout)] if params.dropout > 0 else []
        self.transfers = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), *transfer_dropout) for _ in range(n - 1)
        )
        self.attentions = nn.ModuleList(TransferAttention(dim) for _ in range(n - 1))
        self.heads = nn.ModuleList(nn.Linear(dim, 1) for _ in range(n))
        self.initialise_weights()

    def forward(self, features: FeatureBatch) -> dict[str, Tensor]:
        x = self.input(features)
        logits = {}
        previous = None
        for t, task in enumerate(self.order):
            z = self.towers[t](x)
            if previous is not None:
                z = self.attentions[t - 1](z, self.transfers[t - 1](previous))
            logits[task] = self.heads[t](z).squeeze(-1)
            previous = z
        return logits

    def loss_terms(self, logits: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        terms = super().loss_terms(logits, labels)
        if self.funnel and self.params.calibrator_weight > 0:
            earlier, later = (torch.sigmoid(logits[task].float()) for task in self.funnel)
            terms[CALIBRATOR_TERM] = self.params.calibrator_weight * F.relu(later - earlier)
        return terms
