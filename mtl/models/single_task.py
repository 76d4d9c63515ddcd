"""Single-task baseline: one independent network per task (its own embeddings, MLP and head)."""

from __future__ import annotations

from torch import Tensor, nn

from mtl.config import SingleTaskParams
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import FeatureBatch, Tower


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
        return {task: net(features) for task, net in zip(self.spec.tasks, self.networks)}
