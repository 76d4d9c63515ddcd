"""PLE (Tang et al., RecSys 2020): stacked CGC levels of task-specific and shared experts; 1 level = CGC.

Experts of a level are laid out as ``[task 0 specific x s, task 1 specific x s, ..., shared x h]``
(``s = specific_experts``, ``h = shared_experts``). Task ``k``'s gate mixes experts
``k*s .. k*s+s-1`` plus the shared ones -- indexed by ``k * s``, not by ``k * n_tasks`` (the PaddleRec
bug that gives two tasks one expert and leaves another unused). Below the last level a shared gate
mixes every expert into the shared input of the next level. Level 1 experts read the input layer;
at level >= 2, task ``k``'s experts read task ``k``'s output of the level below and shared experts read
the shared output.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl.config import PleParams
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import ExpertGroup, FeatureBatch, Tower, gate_weights, mix_expert_subsets


class _Level(nn.Module):
    def __init__(self, in_dim: int, n_tasks: int, params: PleParams, last: bool):
        super().__init__()
        s, h = params.specific_experts, params.shared_experts
        n_experts = n_tasks * s + h
        self.experts = ExpertGroup(in_dim, n_experts, params.expert_dims, params.dropout, params.norm)
        shared = list(range(n_tasks * s, n_experts))
        # row k: the experts task k's gate mixes; the shared gate mixes all
        select = torch.tensor([[*range(k * s, k * s + s), *shared] for k in range(n_tasks)])
        self.register_buffer("task_select", select, False)
        self.register_buffer("shared_select", torch.arange(n_experts).unsqueeze(0), False)
        # which representation each expert reads at levels >= 2: its task's, or (index n_tasks) the shared
        self.register_buffer(
            "source", torch.tensor([k for k in range(n_tasks) for _ in range(s)] + [n_tasks] * h)
        )
        self.task_gates = nn.ModuleList(nn.Linear(in_dim, s + h) for _ in range(n_tasks))
        self.shared_gate = None if last else nn.Linear(in_dim, n_experts)
        self.n_tasks = n_tasks
        self.output_dim = self.experts.output_dim

    def forward(self, inputs: list[Tensor]) -> list[Tensor]:
        """``inputs``: one tensor per task plus the shared one last (all the same tensor at level 1)."""
        if all(t is inputs[0] for t in inputs):
            experts = self.experts(inputs[0])
        else:
            experts = self.experts(torch.stack(inputs, dim=1).index_select(1, self.source))
        task_weights = gate_weights(self.task_gates, inputs[: self.n_tasks])  # (T, s + h, n)
        outputs = list(mix_expert_subsets(experts, task_weights, self.task_select).unbind(1))
        if self.shared_gate is not None:
            shared_weights = gate_weights([self.shared_gate], inputs[-1:])  # (1, E, n)
            outputs.append(mix_expert_subsets(experts, shared_weights, self.shared_select).squeeze(1))
        return outputs


class PLE(MultiTaskModel):
    name = "ple"
    params_class = PleParams

    def __init__(self, spec: ModelSpec, params: PleParams):
        super().__init__(spec, params)
        self.input = self.feature_input()
        n_tasks = len(spec.tasks)
        levels = []
        width = self.input.output_dim
        for level in range(params.levels):
            levels.append(_Level(width, n_tasks, params, last=level == params.levels - 1))
            width = levels[-1].output_dim
        self.levels = nn.ModuleList(levels)
        self.towers = nn.ModuleList(
            Tower(width, params.tower_dims, params.dropout, params.norm) for _ in spec.tasks
        )
        self.initialise_weights()

    def forward(self, features: FeatureBatch) -> dict[str, Tensor]:
        x = self.input(features)
        representations = [x] * (len(self.spec.tasks) + 1)
        for level in self.levels:
            representations = level(representations)
        return {task: tower(rep) for task, tower, rep in zip(self.spec.tasks, self.towers, representations)}
