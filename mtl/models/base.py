"""What every model shares: the dataset-facing spec, the output convention and the default loss.

Output convention
-----------------
``forward(features)`` returns **logits** keyed by task: ``logits[task]`` is the logit of P(task label = 1)
over all rows, in every model (on Ali-CCP, ``purchase`` is the logit of P(click and purchase), also in ESMM,
whose CVR tower stays inside the model). ``probabilities(logits)`` turns them into the probabilities that
evaluation scores, keyed by *output* name (see ``mtl.evaluation.evaluation_targets``):

* every task's name, with P(task = 1) over all rows, except on a funnel dataset (metadata ``funnel``,
  e.g. Ali-CCP's ``[click, purchase]``), where
  - ``click`` is pCTR over all rows;
  - ``purchase`` is pCVR = P(purchase | click), scored on clicked rows only;
  - ``ctcvr`` is pCTCVR = P(click and purchase), scored on all rows.

So every model's ``ctcvr`` is its ``purchase`` logit and its pCVR is ``ctcvr / ctr`` clipped to [0, 1]:
Bayes' rule with the model's own two estimates (for ESMM this gives back its CVR tower's output, up to
rounding), which keeps the CVR ranking consistent with the model's CTCVR and CTR.

``loss_terms(logits, labels)`` returns per-row loss terms (each ``(n,)``); the trainer sums the terms,
sums over rows and divides by the global batch size, so the loss is a batch mean and splitting a batch
across DDP ranks does not change it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtl.config import ModelParams
from mtl.datasets.prepared import DatasetMetadata, FeatureSchema
from mtl.errors import ModelConfigError
from mtl.evaluation import JOINT_OUTPUT
from mtl.models.layers import FeatureBatch, FeatureInput, bce_with_logits, initialise


@dataclass(frozen=True)
class ModelSpec:
    """What a model needs to know about its data: the feature schema, the tasks and their funnel."""

    features: FeatureSchema
    tasks: tuple[str, ...]
    funnel: tuple[str, ...] | None = None
    # role -> field names, where the dataset declares them (look-alike: user_sparse, user_multi, ad_sparse)
    field_roles: dict[str, tuple[str, ...]] | None = None

    @classmethod
    def from_metadata(cls, metadata: DatasetMetadata) -> ModelSpec:
        funnel = tuple(metadata.funnel) if metadata.funnel else None
        roles = _roles(metadata.extra.get("field_roles"))
        return cls(metadata.features, tuple(metadata.tasks), funnel, roles)

    def to_json(self) -> dict[str, Any]:
        data = {
            "features": self.features.to_json(),
            "tasks": list(self.tasks),
            "funnel": list(self.funnel) if self.funnel else None,
        }
        if self.field_roles:
            data["field_roles"] = {role: list(names) for role, names in self.field_roles.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelSpec:
        funnel = tuple(data["funnel"]) if data.get("funnel") else None
        features = FeatureSchema.from_json(data["features"])
        return cls(features, tuple(data["tasks"]), funnel, _roles(data.get("field_roles")))

    def two_step_funnel(self, model: str) -> tuple[str, str] | None:
        """The (earlier, later) funnel tasks, or None; a funnel must be two of the dataset's tasks."""
        if not self.funnel:
            return None
        if len(self.funnel) != 2 or not set(self.funnel) <= set(self.tasks):
            raise ModelConfigError(
                f"{model}: the dataset's funnel {list(self.funnel)} must name two of its tasks "
                f"{list(self.tasks)} (earlier step first)"
            )
        return self.funnel[0], self.funnel[1]


def _roles(data: dict[str, list[str]] | None) -> dict[str, tuple[str, ...]] | None:
    return {role: tuple(names) for role, names in data.items()} if data else None


class MultiTaskModel(nn.Module):
    """Base class: subclasses set ``name``/``params_class``, build layers, and implement ``forward``."""

    name: ClassVar[str]
    params_class: ClassVar[type[ModelParams]]

    def __init__(self, spec: ModelSpec, params: ModelParams):
        super().__init__()
        if not spec.tasks:
            raise ModelConfigError(f"{self.name}: the dataset declares no tasks")
        self.spec = spec
        self.params = params
        self.funnel = spec.two_step_funnel(self.name)

    def initialise_weights(self) -> None:
        """Every subclass calls this last in ``__init__``: a constructed model is ready to train."""
        initialise(self, self.params.embed_init_std)

    def feature_input(self) -> FeatureInput:
        return FeatureInput(
            self.spec.features, self.params.embed_dim, self.params.multi_pooling, self.params.interaction
        )

    def forward(self, features: FeatureBatch) -> dict[str, Tensor]:
        raise NotImplementedError

    def task_label(self, labels: Tensor, task: str) -> Tensor:
        return labels[:, self.spec.tasks.index(task)]

    def loss_terms(self, logits: dict[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
        """Per-row BCE of every task's head against its label, over all rows."""
        return {
            task: bce_with_logits(logits[task], self.task_label(labels, task)) for task in self.spec.tasks
        }

    def probabilities(self, logits: dict[str, Tensor]) -> dict[str, Tensor]:
        """Evaluation outputs (see the module docstring): per task, plus pCVR/pCTCVR on a funnel."""
        probs = {task: torch.sigmoid(logits[task].float()) for task in self.spec.tasks}
        if self.funnel:
            earlier, later = self.funnel
            probs[JOINT_OUTPUT] = probs[later]
            probs[later] = (probs[later] / probs[earlier].clamp(min=1e-12)).clamp(0.0, 1.0)
        return probs
