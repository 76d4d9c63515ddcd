"""Single-task baseline: one independent network per task (its own embeddings, MLP and head).

On a funnel dataset (Ali-CCP: click -> purchase) the later task's network is, with ``funnel_cvr:
clicked``, the ESMM paper's BASE: a pCVR network trained on clicked rows only, its CTCVR output pCTR x
pCVR with the click network's pCTR (so the model's pCVR, ``ctcvr / ctr``, is that network's output).
With ``funnel_cvr: all`` it is a pCTCVR network trained on every row (MTReclib's singletask), whose pCVR
is the ratio of two independent networks.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from mtl.config import SingleTaskParams
from mtl.evaluation import JOINT_OUTPUT
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import FeatureBatch, Tower, bce_with_log_prob, bce_with_logits, log1mexp


class _TaskNetwork(nn.Module):
    def __init__(self, model: MultiTaskModel, params: SingleTaskParams):
        super().__init__()
        self.input = model.feature_input()
        self.tower = Tower(self.input.output_dim, params.tower_dims, params.dropout, params.norm)

    def forward(self, features: FeatureBatch) -> Tensor:
        return self.tower(self.input(features))


class SingleTask(MultiTaskModel):
    """No sharing at all: trained jointly only for convenience, each task sees its own parameters."""

    name = "single_task"
    params_class = SingleTaskParams

    def __init__(self, spec: ModelSpec, params: SingleTaskParams):
        super().__init__(spec, params)
        self.networks = nn.ModuleList(_TaskNetwork(self, params) for _ in spec.tasks)
        self.initialise_weights()

    def forward(self, features: FeatureBatch) -> dict[str, Tensor]:
        logits = {task: net(features) for task, net in zip(self.spec.tasks, self.networks)}
        if self.funnel and self.params.funnel_cvr == "clicked":
            click, purchase = self.funnel
            # the purchase network gives pCVR; the output is the CTCVR logit, logit(pCTR x pCVR)
            log_ctcvr = F.logsigmoid(logits[click].float()) + F.logsigmoid(logits[purchase].float())
            logits[purchase] = log_ctcvr - log1mexp(log_ctcvr)
        return logits

    def loss_terms(self, logits: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        if not (self.funnel and self.params.funnel_cvr == "clicked"):
            return super().loss_terms(logits, labels)
        click, purchase = self.funnel
        clicked = self.task_label(labels, click)
        # log pCVR = log pCTCVR - log pCTR: the purchase network's own log-probability (the click
        # network's part cancels), its BCE counted on clicked rows only
        log_cvr = (F.logsigmoid(logits[purchase].float()) - F.logsigmoid(logits[click].float())).clamp(
            max=0.0
        )
        return {
            click: bce_with_logits(logits[click], clicked),
            JOINT_OUTPUT: clicked * bce_with_log_prob(log_cvr, self.task_label(labels, purchase)),
        }
