"""MMoE and PLE compute fused: the input layer gathers and pools every field in one kernel (row mode), the
gates join the experts' first matmul, and one kernel mixes the experts of every gate. All of it must give
the numbers a plain per-field, per-expert, per-task reading of the same weights gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from mtl.datasets.prepared import load_metadata, read_split
from mtl.models import build_model, row_kernels
from mtl.models.layers import ExpertGroup, FeatureBatch
from mtl.training.data import TensorSplit
from mtl.training.optim import build_optimizers, use_sparse_embeddings
from tests.support.models import loss_curve, small_params

CASES = [
    ("mmoe", "aliccp", []),
    ("mmoe", "census", []),
    ("ple", "aliccp", ["models.ple.levels=1"]),
    ("ple", "census", ["models.ple.levels=2", "models.ple.expert_dims=[16, 8]"]),
]


def reference_input(layer, x: FeatureBatch) -> Tensor:
    """Every field's rows looked up; a multi-valued field averages (or sums) its first ``length`` slots."""
    # one lookup of all columns: torch sums many sparse lookups of one table into a dense gradient
    rows = F.embedding(layer.global_ids(x), layer.embedding.weight, sparse=layer.embedding.sparse)
    fields = [rows[:, f] for f in range(layer.n_sparse)]
    start = layer.n_sparse
    for m, width in enumerate(layer.multi_lengths):
        slots = rows[:, start : start + width]  # (n, L, d)
        lengths = x.multi_lengths[:, m].long()
        used = (torch.arange(width) < lengths.unsqueeze(1)).to(slots.dtype)  # (n, L)
        pooled = (slots * used.unsqueeze(-1)).sum(1)
        if layer.pooling == "mean":
            pooled = pooled / lengths.clamp(min=1).unsqueeze(1).to(slots.dtype)
        fields.append(pooled)
        start += width
    return layer._output(torch.stack(fields, dim=1), x.dense)  # unchanged: flatten, dense, dot products


def reference_expert(group: ExpertGroup, e: int, x: Tensor) -> Tensor:
    """Expert ``e`` alone: its slice of every layer; batch norm over its own units."""
    for weight, bias, norm in zip(group.weights, group.biases, group.norms):
        h = x @ weight[e] + bias[e]
        width = h.shape[1]
        if isinstance(norm, torch.nn.BatchNorm1d):
            part = slice(e * width, (e + 1) * width)
            h = F.batch_norm(h, None, None, norm.weight[part], norm.bias[part], training=True, eps=norm.eps)
        elif isinstance(norm, torch.nn.LayerNorm):
            h = norm(h)
        x = F.relu(h)
    return x


def mixture(gate_logits: Tensor, experts: list[Tensor]) -> Tensor:
    weights = gate_logits.softmax(dim=-1)
    return sum(weights[:, i : i + 1] * expert for i, expert in enumerate(experts))


def reference_mmoe(model, x: FeatureBatch) -> dict[str, Tensor]:
    inputs = reference_input(model.input, x)
    experts = [reference_expert(model.experts, e, inputs) for e in range(model.experts.n_experts)]
    return {
        task: model.towers[t](mixture(model.gates[t](inputs), experts))
        for t, task in enumerate(model.spec.tasks)
    }


def reference_ple(model, x: FeatureBatch) -> dict[str, Tensor]:
    n_tasks = len(model.spec.tasks)
    s, h = model.params.specific_experts, model.params.shared_experts
    reps = [reference_input(model.input, x)] * (n_tasks + 1)  # per task, then the shared one
    for level in model.levels:
        owner = [k for k in range(n_tasks) for _ in range(s)] + [n_tasks] * h  # whose representation it reads
        experts = [reference_expert(level.experts, e, reps[owner[e]]) for e in range(len(owner))]
        shared = experts[n_tasks * s :]
        next_reps = [
            mixture(gate(reps[k]), experts[k * s : k * s + s] + shared)
            for k, gate in enumerate(level.task_gates)
        ]
        if level.shared_gate is not None:
            next_reps.append(mixture(level.shared_gate(reps[-1]), experts))
        reps = next_reps
    return {task: model.towers[t](reps[t]) for t, task in enumerate(model.spec.tasks)}


REFERENCES = {"mmoe": reference_mmoe, "ple": reference_ple}


def make_model(prepared_root, name: str, dataset: str, overrides: list[str], norm: str):
    metadata = load_metadata(prepared_root / dataset)
    split = TensorSplit.from_arrays(read_split(prepared_root / dataset, "train", metadata), metadata, "train")
    params = small_params(f"models.{name}.norm={norm}", *overrides)
    torch.manual_seed(0)
    return build_model(name, metadata, params).train(), split, params


def batch_loss(model, logits: dict[str, Tensor], labels: Tensor) -> Tensor:
    return torch.stack([t.mean() for t in model.loss_terms(logits, labels).values()]).sum()


@pytest.mark.parametrize("norm", ["none", "batch"])
@pytest.mark.parametrize(("name", "dataset", "overrides"), CASES)
def test_fused_forward_and_gradients_match_the_per_task_reference(
    prepared_root, kernels, name, dataset, overrides, norm
):
    model, split, _ = make_model(prepared_root, name, dataset, overrides, norm)
    batch = split.slice(0, 256)
    use_sparse_embeddings(model, True, rows=True)  # the trainer's mode: row lookups, kernels where built
    fused = model(batch.features)
    batch_loss(model, fused, batch.labels).backward()
    table = model.input.embedding
    ids, row_grads = table.take_touched()
    fused_table_grad = torch.zeros_like(table.weight).index_add_(0, ids, row_grads)
    dense = {k: p for k, p in model.named_parameters() if p is not table.weight}
    fused_grads = {k: p.grad.clone() for k, p in dense.items()}

    use_sparse_embeddings(model, False)
    reference = REFERENCES[name](model, batch.features)
    grads = torch.autograd.grad(batch_loss(model, reference, batch.labels), [table.weight, *dense.values()])
    for task in model.spec.tasks:
        torch.testing.assert_close(fused[task], reference[task], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused_table_grad, grads[0], rtol=1e-4, atol=1e-6)
    for (key, fused_grad), grad in zip(fused_grads.items(), grads[1:]):
        torch.testing.assert_close(fused_grad, grad, rtol=1e-4, atol=1e-6, msg=key)


def losses(prepared_root, name, dataset, overrides, *, fused: bool, steps: int = 25) -> list[float]:
    model, split, params = make_model(prepared_root, name, dataset, overrides, "none")
    # the reference looks up through nn.Embedding: sparse gradients, which the row optimiser also takes
    use_sparse_embeddings(model, True, rows=fused)
    optimizers = build_optimizers(model, params.train, sparse=True)
    forward = model if fused else (lambda features: REFERENCES[name](model, features))
    return loss_curve(model, forward, optimizers, split, steps)


# without batch norm: a bias in front of batch norm has a zero gradient up to rounding, which Adam
# rescales to full-size steps, so any change of summation order (another BLAS blocking) drifts by 1e-3
@pytest.mark.parametrize(("name", "dataset", "overrides"), CASES)
def test_fused_training_follows_the_reference_loss_curve(prepared_root, kernels, name, dataset, overrides):
    fused = losses(prepared_root, name, dataset, overrides, fused=True)
    reference = losses(prepared_root, name, dataset, overrides, fused=False)
    assert fused[-1] < fused[0]  # it trains
    assert max(abs(a - b) for a, b in zip(fused, reference)) < 1e-4


def test_the_kernels_give_the_same_values_on_two_threads(monkeypatch):
    """Loops over independent rows run on torch's thread count: large enough inputs take that path."""
    assert row_kernels.library() is not None, "the C kernels did not build (is a C compiler installed?)"
    generator = torch.Generator().manual_seed(0)
    n, experts, gates, width = 4096, 8, 2, 16
    values = torch.randn(n, experts, width, generator=generator)
    weights = torch.rand(gates, experts, n, generator=generator)
    select = torch.arange(experts).repeat(gates, 1)
    grad = torch.randn(n, gates, width, generator=generator)
    rows = torch.randn(500, 4, generator=generator)
    inverse = torch.randint(0, 500, (n, 12), generator=generator)
    slot_weights = torch.rand(n, 6, generator=generator)
    bag = torch.tensor([0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 7])
    table, moments = torch.randn(1000, 4, generator=generator), torch.rand(1000, 2, 4, generator=generator)
    ids, row_grad = torch.randperm(1000, generator=generator)[:600], torch.randn(600, 4, generator=generator)

    def run(threads: int) -> list[Tensor]:
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        updated, updated_moments = table.clone(), moments.clone()
        row_kernels.adam_rows(
            updated,
            updated_moments,
            ids,
            row_grad,
            step_size=0.01,
            beta1=0.9,
            beta2=0.999,
            eps=1e-8,
            decay=0.1,
        )
        return [
            row_kernels.mix_experts(values, weights, select),
            *row_kernels.mix_experts_backward(grad, weights, values, select),
            row_kernels.pool_rows(rows, inverse, slot_weights, bag, 8),
            updated,
            updated_moments,
        ]

    for one, two in zip(run(1), run(2), strict=True):
        torch.testing.assert_close(one, two, rtol=0, atol=0)
