"""ESMM (Ma et al., SIGIR 2018): CTR and CVR towers over the entire space, pCTCVR = pCTR x pCVR.

Both towers share the input layer and see every impression. The loss supervises only CTR (label:
click) and CTCVR (label: click and purchase), both over all rows; pCVR has no loss of its own, so its
tower learns only through the CTCVR product -- which removes the sample-selection bias of training CVR
on clicked rows alone. As in every model, ``forward`` returns per task the logit of P(label = 1) over all
rows: ``click`` is the CTR logit, ``purchase`` the CTCVR logit ``logit(pCTR x pCVR)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from mtl.config import EsmmParams
from mtl.errors import ModelConfigError
from mtl.models.base import JOINT_OUTPUT, ModelSpec, MultiTaskModel
from mtl.models.layers import FeatureBatch, Tower, bce_with_log_prob, bce_with_logits, product_logit


class ESMM(MultiTaskModel):
    name = "esmm"
    params_class = EsmmParams

    def __init__(self, spec: ModelSpec, params: EsmmParams):
        super().__init__(spec, params)
        if self.funnel is None or len(spec.tasks) != 2:
            raise ModelConfigError(
                f"esmm needs a dataset whose two tasks form a click -> purchase funnel (metadata "
                f"'funnel'); this one has tasks {list(spec.tasks)} and funnel {spec.funnel}. "
                "Use shared_bottom, mmoe, ple or aitm instead."
            )
        self.click, self.purchase = self.funnel
        self.input = self.feature_input()
        width = self.input.output_dim
        self.ctr_tower = Tower(width, params.tower_dims, params.dropout, params.norm)
        self.cvr_tower = Tower(width, params.tower_dims, params.dropout, params.norm)
        self.initialise_weights()

    def forward(self, features: FeatureBatch) -> dict[str, Tensor]:
        x = self.input(features)
        ctr_logit = self.ctr_tower(x)
        return {self.click: ctr_logit, self.purchase: product_logit(ctr_logit, self.cvr_tower(x))}

    def loss_terms(self, logits: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        click = self.task_label(labels, self.click)
        ctcvr = click * self.task_label(labels, self.purchase)
        return {
            self.click: bce_with_logits(logits[self.click], click),
            JOINT_OUTPUT: bce_with_log_prob(F.logsigmoid(logits[self.purchase].float()), ctcvr),
        }
