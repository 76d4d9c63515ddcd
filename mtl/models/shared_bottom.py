"""Shared-Bottom: one shared bottom MLP over the input layer, then one tower per task."""

from __future__ import annotations

from torch import Tensor, nn

from mtl.config import SharedBottomParams
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import MLP, FeatureBatch, Tower


class SharedBottom(MultiTaskModel):
    name = "shared_bottom"
    params_class = SharedBottomParams

    def __init__(self, spec: ModelSpec, params: SharedBottomParams):
        super().__init__(spec, params)
        self.input = self.feature_input()
        self.bottom = MLP(self.input.output_dim, params.bottom_dims, params.dropout, params.norm)
        self.towers = nn.ModuleList(
            Tower(self.bottom.output_dim, params.tower_dims, params.dropout, params.norm) for _ in spec.tasks
        )
        self.initialise_weights()

    def forward(self, features: FeatureBatch) -> dict[str, Tensor]:
        shared = self.bottom(self.input(features))  # (n, bottom_dims[-1])
        return {task: tower(shared) for task, tower in zip(self.spec.tasks, self.towers)}
