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
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import FeatureBatch, Tower, bce_with_log_prob, product_logit


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
            logits[purchase] = product_logit(logits[click], logits[purchase])
        return logits

    def loss_terms(self, logits: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        """Every task's BCE over all rows; with ``funnel_cvr: clicked`` the purchase term is instead pCVR's
        BCE on the clicked rows (0 on the others). Like every term it is summed over rows and divided by
        all of the batch's rows, so next to the L2 terms it weighs about the click rate's share."""
        terms = super().loss_terms(logits, labels)
        if not (self.funnel and self.params.funnel_cvr == "clicked"):
            return terms
        click, purchase = self.funnel
        # log pCVR = log pCTCVR - log pCTR: the purchase network's own log-probability (the click network's
        # part cancels, up to float rounding)
        log_ctr = F.logsigmoid(logits[click].float())
        log_cvr = (F.logsigmoid(logits[purchase].float()) - log_ctr).clamp(max=0.0)
        clicked = self.task_label(labels, click)
        terms[purchase] = clicked * bce_with_log_prob(log_cvr, self.task_label(labels, purchase))
        return terms
