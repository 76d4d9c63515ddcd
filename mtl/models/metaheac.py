"""MetaHeac (Zhu et al., KDD 2021): meta hybrid experts and critics for look-alike audience expansion.

One task per campaign (``aid``); the network is shared by all campaigns and adapted to each one by
fine-tuning (``mtl.training.meta`` meta-trains it, ``mtl.training.adaptation`` adapts it). Which fields
describe the user and which the ad comes from the dataset's ``field_roles`` (prepared metadata), never
from hand-typed sizes. With ``U`` user fields, ``A`` ad fields, ``d`` = ``embed_dim``:

* user representation: the ``U`` field embeddings (multi-valued fields as the mean over their true
  length) side by side, ``(n, U*d)``;
* task representation: ``[mean of the U user field embeddings, the A ad field embeddings]``,
  ``(n, (A+1)*d)`` -- per row, as in the official code;
* hybrid experts: ``n_experts`` MLPs on the user representation, mixed by a softmax gate on the task
  representation;
* critics: ``n_critics`` sigmoid heads on the mixed expert output, mixed by a second gate on the task
  representation. The prediction is the convex mixture ``p = sum_j w_j sigmoid(z_j)``.

``forward`` returns the mixture's exact logit ``log p - log(1 - p)``, computed from log-sigmoids with
logsumexp, so the shared output convention (``mtl.models.base``: sigmoid for the probability, BCE with
logits for the loss) applies unchanged and stays finite where ``p`` rounds to 0 or 1.

Fast weights need no special layers: ``torch.func.functional_call(model, weights, (features,))`` runs
the network with any set of weights. ``ids`` (see ``FeatureInput.forward``) lets a caller swap in a
compact embedding table holding only the rows a batch uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl.config import MetaheacParams
from mtl.errors import ModelConfigError
from mtl.models.base import ModelSpec, MultiTaskModel
from mtl.models.layers import MLP, ExpertGroup, FeatureBatch, mix_experts

USER_ROLES = ("user_sparse", "user_multi")
AD_ROLE = "ad_sparse"


class Gate(nn.Module):
    """An MLP on the task representation ending in one logit per choice (softmax taken by the caller)."""

    def __init__(self, in_dim: int, dims: list[int], choices: int, dropout: float):
        super().__init__()
        self.mlp = MLP(in_dim, dims, dropout, "none")
        self.head = nn.Linear(self.mlp.output_dim, choices)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.mlp(x))


class MetaHeac(MultiTaskModel):
    name = "metaheac"
    params_class = MetaheacParams

    def __init__(self, spec: ModelSpec, params: MetaheacParams):
        super().__init__(spec, params)
        if len(spec.tasks) != 1:
            raise ModelConfigError(
                f"metaheac predicts one label per campaign; the dataset has tasks {list(spec.tasks)}"
            )
        if spec.features.dense:
            raise ModelConfigError("metaheac embeds id fields only; the dataset has dense fields")
        user, ad = _field_positions(spec)
        self.input = self.feature_input()
        # fast weights are plain tensors (w - lr * grad, stacked per campaign): gradients must be dense;
        # callers keep them small by swapping in a compact table of the rows a batch uses
        self.input.embedding.sparse = False
        self.register_buffer("user_fields", torch.tensor(user), persistent=False)
        self.register_buffer("ad_fields", torch.tensor(ad), persistent=False)
        d = params.embed_dim
        task_dim = (len(ad) + 1) * d
        self.experts = ExpertGroup(
            len(user) * d, params.n_experts, params.expert_dims, params.dropout, "none"
        )
        self.expert_gate = Gate(task_dim, params.gate_dims, params.n_experts, params.dropout)
        self.critics = nn.Linear(self.experts.output_dim, params.n_critics)  # one column per critic
        self.critic_gate = Gate(task_dim, params.gate_dims, params.n_critics, params.dropout)
        self.initialise_weights()  # usable as built: no uninitialised expert weights

    def forward(self, features: FeatureBatch, ids: Tensor | None = None) -> dict[str, Tensor]:
        n = features.multi_lengths.shape[0]
        fields = self.input(features, ids).view(n, -1, self.params.embed_dim)  # (n, fields, d)
        user = fields.index_select(1, self.user_fields)  # (n, U, d)
        ad = fields.index_select(1, self.ad_fields)  # (n, A, d)
        task = torch.cat([user.mean(1, keepdim=True), ad], dim=1).flatten(1)  # (n, (A+1)*d)
        mixed = mix_experts(self.experts(user.flatten(1)), self.expert_gate(task))  # (n, expert_dims[-1])
        critic_logits = self.critics(mixed)  # (n, C)
        log_weights = F.log_softmax(self.critic_gate(task), dim=-1)
        log_p = torch.logsumexp(log_weights + F.logsigmoid(critic_logits), dim=-1)
        log_not_p = torch.logsumexp(log_weights + F.logsigmoid(-critic_logits), dim=-1)
        return {self.spec.tasks[0]: log_p - log_not_p}


def _field_positions(spec: ModelSpec) -> tuple[list[int], list[int]]:
    """Positions of the user and ad fields among the embedded fields (sparse first, then multi-valued)."""
    roles = spec.field_roles or {}
    missing = [role for role in (*USER_ROLES, AD_ROLE) if not roles.get(role)]
    if missing:
        raise ModelConfigError(
            f"metaheac needs the dataset's field roles {[*USER_ROLES, AD_ROLE]} (prepared metadata "
            f"extra.field_roles, as the look-alike dataset writes them); missing or empty: {missing}"
        )
    sparse = [f.name for f in spec.features.sparse]
    multi = [f.name for f in spec.features.multi]
    position = {name: i for i, name in enumerate([*sparse, *multi])}
    expected = {"user_sparse": sparse, "user_multi": multi, AD_ROLE: sparse}
    for role, names in roles.items():
        wrong = [name for name in names if name not in expected.get(role, position)]
        if wrong:
            kind = "multi-valued" if role == "user_multi" else "single-valued"
            raise ModelConfigError(f"field_roles.{role} names {wrong}, which are not {kind} fields")
    user = [position[name] for role in USER_ROLES for name in roles[role]]
    return user, [position[name] for name in roles[AD_ROLE]]
