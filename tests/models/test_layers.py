"""The shared input layer (true-length pooling), sparse gradients, and the numerically careful losses."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mtl.datasets.prepared import DenseField, FeatureSchema, MultiField, SparseField
from mtl.models.layers import FeatureBatch, FeatureInput, bce_with_log_prob, initialise, log1mexp
from mtl.training.optim import build_optimizers
from mtl.training.row_optim import ROW_OPTIMIZERS
from tests.support.models import small_params

SCHEMA = FeatureSchema(
    sparse=(SparseField("user", 50), SparseField("item", 30)),
    multi=(MultiField("tags", 40, 4), MultiField("cats", 20, 2)),
    dense=(DenseField("age"),),
)


def make_input(pooling: str = "mean") -> FeatureInput:
    layer = FeatureInput(SCHEMA, embed_dim=4, pooling=pooling)
    initialise(layer, embed_init_std=1.0)
    return layer


def batch(tags: list[list[int]], tag_lengths: list[int]) -> FeatureBatch:
    n = len(tags)
    return FeatureBatch(
        sparse=torch.tensor([[1, 2]] * n, dtype=torch.int32),
        multi=torch.tensor([[*t, 3, 0] for t in tags], dtype=torch.int32),  # tags (4 slots), cats (2 slots)
        multi_lengths=torch.tensor([[length, 1] for length in tag_lengths], dtype=torch.int32),
        dense=torch.tensor([[0.5]] * n),
    )


def tag_part(output: torch.Tensor) -> torch.Tensor:
    return output[:, 2 * 4 : 3 * 4]  # [user, item, tags, cats, age] x 4 dims, age is 1 wide


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_padding_ids_do_not_change_the_pooled_output(pooling):
    layer = make_input(pooling)
    clean = layer(batch([[5, 6, 0, 0]], [2]))
    dirty = layer(batch([[5, 6, 17, 39]], [2]))  # garbage past the true length
    torch.testing.assert_close(clean, dirty, rtol=0, atol=0)
    changed = layer(batch([[5, 7, 0, 0]], [2]))  # a real slot
    assert not torch.equal(tag_part(clean), tag_part(changed))


def test_mean_and_sum_pool_over_the_true_length():
    mean_layer = make_input("mean")
    sum_layer = make_input("sum")
    sum_layer.load_state_dict(mean_layer.state_dict())
    table = mean_layer.embedding.weight.detach()
    tags_start = 50 + 30  # row offset of the tags field in the shared table
    total = table[tags_start + 5] + table[tags_start + 6] + table[tags_start + 9]
    x = batch([[5, 6, 9, 0]], [3])
    torch.testing.assert_close(tag_part(mean_layer(x))[0].detach(), total / 3)
    torch.testing.assert_close(tag_part(sum_layer(x))[0].detach(), total)


def test_empty_multi_valued_field_pools_to_zero_and_dense_passes_through():
    layer = make_input()
    out = layer(batch([[5, 6, 9, 1]], [0]))
    assert torch.count_nonzero(tag_part(out)) == 0
    assert out.shape == (1, layer.output_dim)
    assert layer.output_dim == 4 * 4 + 1
    assert out[0, -1].item() == 0.5


def test_embedding_gradients_are_sparse_and_touch_only_batch_rows():
    layer = make_input()
    before = layer.embedding.weight.detach().clone()
    train = small_params().train
    optimizers = build_optimizers(layer, train, sparse=True)
    layer(batch([[5, 6, 0, 0], [7, 0, 0, 0]], [2, 1])).pow(2).sum().backward()
    grad = layer.embedding.weight.grad
    assert grad.is_sparse
    touched = set(grad.coalesce().indices()[0].tolist())
    # user 1, item 50+2, tags 80+{5,6,7} plus 80+0 (padding slots carry weight 0 but are looked up),
    # cats 120+3 (and its padding slot 120+0)
    assert touched == {1, 52, 80, 85, 86, 87, 120, 123}
    assert isinstance(optimizers[-1], ROW_OPTIMIZERS[train.embedding_optimizer])
    for optimizer in optimizers:
        optimizer.step()
    after = layer.embedding.weight.detach()
    changed = set(torch.nonzero((after != before).any(1)).flatten().tolist())
    assert changed <= touched
    assert {1, 52, 85, 86, 87, 123} <= changed
    assert len(changed) < layer.embedding.num_embeddings // 10  # a step does not sweep the table


def test_log1mexp_is_accurate_and_has_finite_gradients_at_the_ends():
    log_p = torch.tensor([-1e-9, -1e-5, -0.5, -0.7, -5.0, -50.0], dtype=torch.float64, requires_grad=True)
    expected = torch.log(1 - torch.exp(log_p.detach().clamp(max=-1e-7)))
    torch.testing.assert_close(log1mexp(log_p), expected)
    log1mexp(log_p).sum().backward()
    assert torch.isfinite(log_p.grad).all()


def test_bce_of_a_product_matches_plain_bce():
    torch.manual_seed(0)
    a, b = torch.randn(100) * 3, torch.randn(100) * 3
    target = (torch.rand(100) < 0.3).float()
    log_p = F.logsigmoid(a) + F.logsigmoid(b)
    plain = F.binary_cross_entropy(torch.sigmoid(a) * torch.sigmoid(b), target, reduction="none")
    torch.testing.assert_close(bce_with_log_prob(log_p, target), plain, rtol=1e-4, atol=1e-5)
    extreme = bce_with_log_prob(torch.tensor([0.0, -200.0]), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(extreme).all()


def test_dot_interaction_appends_every_field_pair_dot_product():
    schema = FeatureSchema(
        sparse=(SparseField("user", 5), SparseField("item", 7)),
        multi=(MultiField("tags", 9, 3),),
        dense=(DenseField("price"),),
    )
    plain, dot = (FeatureInput(schema, 4, "mean", kind) for kind in ("none", "dot"))
    dot.load_state_dict(plain.state_dict())
    batch = FeatureBatch(
        sparse=torch.tensor([[1, 2], [3, 4]], dtype=torch.int32),
        multi=torch.tensor([[1, 2, 0], [5, 0, 0]], dtype=torch.int32),
        multi_lengths=torch.tensor([[2], [1]], dtype=torch.int32),
        dense=torch.tensor([[0.5], [-1.0]]),
    )
    flat = plain(batch)
    out = dot(batch)
    assert dot.output_dim == plain.output_dim + 3 == out.shape[1]  # 3 fields -> 3 pairs
    assert torch.equal(out[:, : plain.output_dim], flat)
    fields = flat[:, :12].view(2, 3, 4)  # user, item, pooled tags
    expected = torch.stack([(fields[:, i] * fields[:, j]).sum(1) for i, j in ((0, 1), (0, 2), (1, 2))], 1)
    torch.testing.assert_close(out[:, plain.output_dim :], expected)


def test_torch_dynamo_loads_only_for_a_compiled_model():
    # importing the models must not import torch._dynamo (about 1 s and 70 MB in every process); the
    # functions torch.compile must not trace are marked when a compile is asked for, and a compiled input
    # layer then gives the eager output and sparse embedding gradients
    code = """
import sys
import torch
from mtl.models import layers
from tests.models.test_layers import batch, make_input
assert "torch._dynamo" not in sys.modules
layer = make_input()
x = batch([[5, 6, 0, 0], [7, 0, 0, 0]], [2, 1])
expected = layer(x)
layers.prepare_for_compile()
layers.prepare_for_compile()  # once: the marked functions are not wrapped again
assert layers._lookup._torchdynamo_disable and not hasattr(layers._lookup.__wrapped__, "__wrapped__")
compiled = torch.compile(layer, backend="eager")
output = compiled(x)
torch.testing.assert_close(output, expected)
output.pow(2).sum().backward()
assert layer.embedding.weight.grad.is_sparse
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
