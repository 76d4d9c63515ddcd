"""MMoE (Ma et al., KDD 2018): shared experts, one softmax gate per task over all of them, then towers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl.config import MmoeParams
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import ExpertGroup, FeatureBatch, Tower, gate_weights, mix_expert_subsets


class MMoE(MultiTaskModel):
    name = "mmoe"
    params_class = MmoeParams

    def __init__(self, spec: ModelSpec, params: MmoeParams):
        super().__init__(spec, params)
        self.input = self.feature_input()
        width = self.input.output_dim
        self.experts = ExpertGroup(width, params.n_experts, params.expert_dims, params.dropout, params.norm)
        self.gates = nn.ModuleList(nn.Linear(width, params.n_experts) for _ in spec.tasks)
        # every gate mixes all experts
        self.register_buffer("select", torch.arange(params.n_experts).repeat(len(spec.tasks), 1), False)
        self.towers = nn.ModuleList(
            Tower(self.experts.output_dim, params.tower_dims, params.dropout, params.norm) for _ in spec.tasks
        )
        self.initialise_weights()

    def forward(self, features: FeatureBatch) -> dict[str, Tensor]:
        x = self.input(features)
        experts = self.experts(x)  # (n, E, expert_dims[-1])
        weights = gate_weights(self.gates, [x] * len(self.gates))  # (T, E, n)
        mixed = mix_expert_subsets(experts, weights, self.select)  # (n, T, expert_dims[-1])
        return {task: tower(mixed[:, t]) for t, (task, tower) in enumerate(zip(self.spec.tasks, self.towers))}
