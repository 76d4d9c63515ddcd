"""The MetaHeac network: fields by role from metadata, the experts/critics mixture, fast weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mtl.datasets.prepared import load_metadata
from mtl.errors import ModelConfigError
from mtl.models import ModelSpec, build_model
from mtl.models.metaheac import MetaHeac
from mtl.training.campaigns import compact_ids, compact_weights, load_campaign_split
from tests.support.metaheac import small_params

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def metadata(lookalike_root):
    return load_metadata(lookalike_root / "prepared" / "lookalike")


@pytest.fixture(scope="module")
def batch(lookalike_root, metadata):
    split = load_campaign_split(
        lookalike_root / "prepared" / "lookalike", "train", metadata, torch.device("cpu")
    )
    return split.data.slice(0, 200)


def model_of(metadata, *overrides: str) -> MetaHeac:
    torch.manual_seed(0)
    return build_model("metaheac", metadata, small_params(*overrides))


def test_fields_come_from_the_metadata_roles(metadata):
    roles = metadata.extra["field_roles"]
    assert len(roles["user_sparse"]) == 7
    assert len(roles["user_multi"]) == 7
    assert len(roles["ad_sparse"]) == 6
    model = model_of(metadata)
    names = [f.name for f in (*metadata.features.sparse, *metadata.features.multi)]
    assert [names[i] for i in model.user_fields] == roles["user_sparse"] + roles["user_multi"]
    assert [names[i] for i in model.ad_fields] == roles["ad_sparse"]
    d = model.params.embed_dim
    assert model.experts.weights[0].shape[1] == 14 * d  # user representation: 14 fields
    assert model.expert_gate.mlp[0].in_features == 7 * d  # task: 6 ad fields + the mean user field
    assert model.input.embedding.num_embeddings == sum(
        f.vocab_size for f in (*metadata.features.sparse, *metadata.features.multi)
    )


def test_the_network_is_initialised_when_constructed(metadata):
    """No ``build_model`` step needed: every weight is drawn in ``__init__`` (seeded, finite, random)."""
    params = small_params().models.metaheac
    models = []
    for _ in range(2):
        torch.manual_seed(3)
        models.append(MetaHeac(ModelSpec.from_metadata(metadata), params))
    first, second = (dict(m.named_parameters()) for m in models)
    for name, weight in first.items():
        assert torch.isfinite(weight).all(), name
        assert torch.equal(weight, second[name]), name
    experts = first["experts.weights.0"]
    bound = (6.0 / (experts.shape[1] + experts.shape[2])) ** 0.5
    assert 0 < experts.abs().max() <= bound  # Xavier-uniform per expert
    assert experts.std() > bound / 4
    embedding_std = first["input.embedding.weight"].std().item()
    assert abs(embedding_std - params.embed_init_std) < 0.2 * params.embed_init_std


def test_a_dataset_without_field_roles_is_a_clear_error(metadata):
    spec = dataclasses.replace(ModelSpec.from_metadata(metadata), field_roles=None)
    with pytest.raises(ModelConfigError, match=r"metaheac needs the dataset's field roles"):
        build_model("metaheac", spec, small_params().models.metaheac.model_dump())
    wrong = {**metadata.extra["field_roles"], "user_multi": ["age"]}
    with pytest.raises(ModelConfigError, match=r"field_roles.user_multi names \['age'\].*not multi-valued"):
        build_model(
            "metaheac",
            dataclasses.replace(ModelSpec.from_metadata(metadata), field_roles=wrong),
            small_params().models.metaheac.model_dump(),
        )


def test_output_is_the_gated_mixture_of_critic_probabilities(metadata, batch):
    model = model_of(metadata)
    with torch.no_grad():
        model.critics.bias.copy_(torch.tensor([-30.0, 0.0, 30.0]))  # saturated critics stay finite
        logit = model(batch.features)["label"]
        n = len(batch.labels)
        fields = model.input(batch.features).view(n, -1, model.params.embed_dim)
        user, ad = fields[:, model.user_fields], fields[:, model.ad_fields]
        task = torch.cat([user.mean(1, keepdim=True), ad], 1).flatten(1)
        experts = model.experts(user.flatten(1))  # (n, E, width)
        mixed = (F.softmax(model.expert_gate(task), -1).unsqueeze(-1) * experts).sum(1)
        critic_weights = F.softmax(model.critic_gate(task), -1)
        expected = (critic_weights * torch.sigmoid(model.critics(mixed))).sum(-1)
    assert torch.isfinite(logit).all()
    assert torch.allclose(torch.sigmoid(logit), expected, atol=1e-6)
    assert ((expected > 0) & (expected < 1)).all()


def test_fast_weights_run_through_functional_call_and_a_compact_table(metadata, batch):
    model = model_of(metadata)
    weights = dict(model.named_parameters())
    full = model(batch.features)["label"]
    rows, local = compact_ids(model, batch.features)
    assert len(rows) < model.input.embedding.num_embeddings / 2  # the batch uses a small part of the table
    compact = functional_call(model, compact_weights(weights, rows), (batch.features,), {"ids": local})[
        "label"
    ]
    assert torch.equal(full, compact)
    # one SGD step as fast weights: the output moves, the module's own parameters do not
    loss = F.binary_cross_entropy_with_logits(full, batch.labels[:, 0])
    grads = torch.autograd.grad(loss, list(weights.values()))
    fast = {name: w - 0.5 * g for (name, w), g in zip(weights.items(), grads)}
    before = {name: w.detach().clone() for name, w in weights.items()}
    stepped = functional_call(model, fast, (batch.features,))["label"]
    assert F.binary_cross_entropy_with_logits(stepped, batch.labels[:, 0]) < loss
    assert all(torch.equal(before[name], w) for name, w in model.named_parameters())


def test_embedding_gradients_are_dense_and_untouched_rows_get_none(metadata, batch):
    model = model_of(metadata)
    model(batch.features)["label"].sum().backward()
    gradient = model.input.embedding.weight.grad
    assert not gradient.is_sparse
    used = torch.unique(model.input.global_ids(batch.features))
    unused = np.setdiff1d(np.arange(gradient.shape[0]), used.numpy())
    assert gradient[unused].abs().sum() == 0
    assert gradient[used].abs().sum() > 0
