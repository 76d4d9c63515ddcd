"""Building blocks every model shares: the input layer, MLPs, expert groups, towers and initialisation.

Shapes use ``n`` = rows, ``S`` = single-valued sparse fields, ``M`` = multi-valued fields, ``K`` = the sum
of their ``max_len`` slots, ``D`` = dense fields, ``d`` = embedding size, ``E`` = experts.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mtl.datasets.prepared import FeatureSchema
from mtl.models import row_kernels
from mtl.models.embedding import RowEmbedding

Norm = Literal["none", "batch", "layer"]


class FeatureBatch(NamedTuple):
    """Model input: the feature columns of a batch as contiguous tensors."""

    sparse: Tensor  # (n, S) int32 ids
    multi: Tensor  # (n, K) int32 ids, every multi-valued field's max_len slots side by side
    multi_lengths: Tensor  # (n, M) int32 true lengths
    dense: Tensor  # (n, D) float32


class InputPlan(NamedTuple):
    """The input layer's work that depends on the batch alone (``FeatureInput.plan``), done ahead of the
    step on the batch thread (``InputPlanner``)."""

    ids: Tensor  # (n, S + K) rows of the shared table
    weight: Tensor | None  # (n, K) slot weights; None without multi-valued fields
    distinct: tuple[Tensor, Tensor] | None  # row mode: (the distinct rows, each id's index among them)


class PlannedBatch(FeatureBatch):
    """A ``FeatureBatch`` with the plans built for it ahead of the step, one per input layout (``plans``).
    Anything that iterates, slices or moves it sees the same four tensors; what it derives (a slice, a
    ``_replace``, a pytree map) carries no plans, or (a copy) the same tensors, so the input layer plans a
    derived batch itself: a plan never outlives the tensors it was built from."""

    plans: dict[tuple, InputPlan]


class FeatureInput(nn.Module):
    """Embeds every field of a schema into one flat vector: [sparse, pooled multi-valued, dense].

    All fields share one embedding table (each field owns a row range, so a step updates one table; see
    ``mtl.models.embedding`` for the row mode the trainer uses). A multi-valued field is pooled over its
    true length only: slots past the length carry padding and get weight 0, so padding ids never change
    the output.
    """

    def __init__(
        self,
        features: FeatureSchema,
        embed_dim: int,
        pooling: Literal["mean", "sum"],
        interaction: Literal["none", "dot"] = "none",
    ):
        super().__init__()
        vocab = [f.vocab_size for f in features.sparse] + [f.vocab_size for f in features.multi]
        starts = [0, *torch.tensor(vocab, dtype=torch.int64).cumsum(0).tolist()][: len(vocab)]
        n_sparse = len(features.sparse)
        lengths = [f.max_len for f in features.multi]
        self.n_sparse, self.n_multi, self.n_dense = n_sparse, len(lengths), len(features.dense)
        self.embed_dim = embed_dim
        self.pooling = pooling
        self.embedding = RowEmbedding(max(sum(vocab), 1), embed_dim)
        field_of_slot = torch.repeat_interleave(
            torch.arange(len(lengths)), torch.tensor(lengths, dtype=torch.int64)
        )
        slot = torch.cat([torch.arange(k) for k in lengths]) if lengths else torch.zeros(0, dtype=torch.int64)
        self.register_buffer("sparse_offsets", torch.tensor(starts[:n_sparse], dtype=torch.int32), False)
        self.register_buffer(
            "multi_offsets", torch.tensor(starts[n_sparse:], dtype=torch.int32)[field_of_slot], False
        )
        self.register_buffer("field_of_slot", field_of_slot, False)
        self.register_buffer("slot", slot.to(torch.int32), False)
        # the field each column of global_ids pools into: sparse fields alone, slots into their field
        field_of_column = torch.cat([torch.arange(n_sparse), n_sparse + field_of_slot])
        self.register_buffer("field_of_column", field_of_column, False)
        self.multi_lengths = lengths
        # what a plan depends on besides the batch (and the table's dtype and row mode, checked where a plan
        # is made and used): equal layouts (single_task's per-task inputs) share one
        self.layout = (tuple(vocab), n_sparse, tuple(lengths), pooling)
        n_fields = n_sparse + self.n_multi
        # interaction "dot": the dot product of every pair of field vectors joins the output (the
        # factorisation machine's terms, as in DLRM); an MLP on the concatenation learns such products
        # only slowly and from many more rows
        pairs = (
            torch.triu_indices(n_fields, n_fields, offset=1) if interaction == "dot" else torch.zeros(2, 0)
        )
        self.register_buffer("pair_index", (pairs[0] * n_fields + pairs[1]).to(torch.int64), False)
        self.output_dim = n_fields * embed_dim + self.n_dense + self.pair_index.numel()

    def global_ids(self, x: FeatureBatch) -> Tensor:
        """Every field's ids shifted into its row range of the shared table: ``(n, S + K)``."""
        return torch.cat([x.sparse + self.sparse_offsets, x.multi + self.multi_offsets], dim=1)

    def row_uses(self, x: FeatureBatch, slice_rows: int = 8192) -> Tensor:
        """How many times ``x`` uses each row of the shared table (padding slots of multi-valued fields
        do not count): ``(rows,)`` int64. Counted ``slice_rows`` rows at a time, so the temporaries stay
        a few MB whatever the split's size (the count itself is one int64 per table row)."""
        counts = torch.zeros(self.embedding.num_embeddings, dtype=torch.int64, device=x.sparse.device)
        for start in range(0, x.sparse.shape[0], slice_rows):
            part = FeatureBatch(*(t[start : start + slice_rows] for t in x))
            ids = self.global_ids(part).reshape(-1).long()
            if self.n_multi:  # a slot past its field's true length adds 0
                lengths = part.multi_lengths.index_select(1, self.field_of_slot)
                used = torch.cat([torch.ones_like(part.sparse, dtype=torch.bool), self.slot < lengths], dim=1)
                uses = used.reshape(-1).long()
            else:
                uses = torch.ones(1, dtype=torch.int64, device=counts.device).expand(ids.numel())
            counts.index_add_(0, ids, uses)
        return counts

    def plan(self, x: FeatureBatch, marker: Tensor | None = None) -> InputPlan:
        """What ``forward`` computes from ``x`` alone: the table ids, the slot weights and, given a ``marker``
        scratch for the distinct-row kernel (one int32 per table row, all -1), the distinct rows."""
        ids = self.global_ids(x)
        weight = self._slot_weights(x) if self.n_multi else None
        distinct = None if marker is None else self.embedding.distinct_rows(ids, marker)
        return InputPlan(ids, weight, distinct)

    def forward(self, x: FeatureBatch, ids: Tensor | None = None) -> Tensor:
        """``ids`` replaces ``global_ids(x)``: rows of a compact table swapped in for ``embedding.weight``.
        A ``PlannedBatch`` brings its plan for this layout, which saves recomputing it here."""
        plan = self._plan_of(x) if ids is None else None
        if plan is None:
            weight = self._slot_weights(x) if self.n_multi else None  # (n, K)
            plan = InputPlan(self.global_ids(x) if ids is None else ids, weight, None)
        ids, weight = plan.ids, plan.weight
        fields = self.embedding.pooled(
            ids, weight, self.field_of_column, self.n_sparse + self.n_multi, distinct=plan.distinct
        )
        if fields is not None:  # row mode: gathered and pooled by one kernel
            return self._output(fields, x.dense)  # fields: (n, S + M, d)
        emb = _lookup(self.embedding, ids, plan.distinct)  # (n, S + K, d)
        if not self.n_multi:  # no slicing at all: a slice's backward fills a zero (n, S + K, d) tensor
            return self._output(emb, x.dense)
        single, multi = emb.split([self.n_sparse, emb.shape[1] - self.n_sparse], dim=1)
        slots = multi * weight.unsqueeze(-1)  # (n, K, d)
        # one sum per field over its slots: 2-4x faster (forward + backward) than a matmul of the
        # transposed (n, d, K) slots with a (K, M) 0/1 matrix, which runs as n small products
        pooled = torch.stack([part.sum(1) for part in slots.split(self.multi_lengths, dim=1)], dim=1)
        return self._output(torch.cat([single, pooled], dim=1), x.dense)

    def _plan_of(self, x: FeatureBatch) -> InputPlan | None:
        plan = getattr(x, "plans", {}).get(self.layout)
        if plan is None or (plan.weight is not None and plan.weight.dtype != self.embedding.weight.dtype):
            return None  # (a model converted to another dtype after planning: weights of the old one)
        return plan

    def _slot_weights(self, x: FeatureBatch) -> Tensor:
        """``(n, K)``: each multi-valued slot's weight in its field's pool, 0 past the true length."""
        lengths = x.multi_lengths.index_select(1, self.field_of_slot)  # (n, K)
        weight = (self.slot < lengths).to(self.embedding.weight.dtype)
        if self.pooling == "mean":
            weight = weight / lengths.clamp(min=1).to(weight.dtype)
        return weight

    def _output(self, fields: Tensor, dense: Tensor) -> Tensor:
        """``fields``: ``(n, S + M, d)`` field vectors -> ``[flat fields, dense, pairwise dots]``."""
        n = fields.shape[0]
        parts = [fields.reshape(n, -1), dense.to(fields.dtype)]
        if self.pair_index.numel():
            dots = torch.bmm(fields, fields.transpose(1, 2)).reshape(n, -1)  # (n, F * F)
            parts.append(dots.index_select(1, self.pair_index))
        return torch.cat(parts, dim=1)


class InputPlanner:
    """Plans a model's batches ahead of its step (``FeatureInput.plan``), for the batch thread to run: the
    step then starts from the table ids, the slot weights and, in row mode, the distinct rows (+6-7% rows/s
    for ESMM, MMoE and PLE at full Ali-CCP vocabulary on one thread). One plan per distinct input layout;
    the distinct-row kernel gets a marker of the planner's own, so the step's lookups keep theirs. CPU
    batches only: on a GPU the step does this work itself, where it costs little."""

    def __init__(self, model: nn.Module):
        self.inputs: dict[tuple, FeatureInput] = {}
        for module in model.modules():
            if isinstance(module, FeatureInput):
                self.inputs.setdefault(module.layout, module)
        self.markers: dict[tuple, Tensor] = {}

    def __call__(self, features: FeatureBatch) -> FeatureBatch:
        if not self.inputs or features.sparse.device.type != "cpu":
            return features
        planned = PlannedBatch(*features)
        planned.plans = {
            layout: module.plan(features, self._marker(layout, module))
            for layout, module in self.inputs.items()
        }
        return planned

    def _marker(self, layout: tuple, module: FeatureInput) -> Tensor | None:
        table = module.embedding
        if not table.capture_rows:  # the distinct rows serve row mode only
            return None
        self.markers[layout] = marker = table.scratch(self.markers.get(layout))
        return marker


def _lookup(embedding: RowEmbedding, ids: Tensor, distinct: tuple[Tensor, Tensor] | None) -> Tensor:
    """Eager even under ``torch.compile``: Inductor cannot produce sparse gradients."""
    return embedding(ids, distinct)


# run eagerly inside a torch.compile'd model (see prepare_for_compile)
_EAGER_UNDER_COMPILE = ("_lookup", "_mix_natively", "_batch_norm_relu_natively")


def prepare_for_compile() -> None:
    """Wraps the functions that ``torch.compile`` must not trace (sparse gradients, the C kernels) in
    ``torch.compiler.disable``, once; the trainer calls it before compiling. Not a decorator at import:
    that imports ``torch._dynamo`` into every process (about 1 s and 70 MB of peak memory) while only a
    compiled model needs it."""
    module = sys.modules[__name__]
    for name in _EAGER_UNDER_COMPILE:
        function = getattr(module, name)
        if not getattr(function, "_torchdynamo_disable", False):
            setattr(module, name, torch.compiler.disable(function))


def _norm(kind: Norm, width: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


def norm_relu(norm: nn.Module, x: Tensor) -> Tensor:
    """``relu(norm(x))``. A training ``BatchNorm1d`` (affine, with running stats) on a contiguous float32
    ``(n, C)`` CPU batch runs as one C kernel forward and one backward, two passes over the activation
    each (its channel sums, then the output), where torch's batch norm and ReLU make a pass or more each.
    Anything else, eval mode and ``torch.compile`` included, runs the torch modules. The fused backward
    is not itself differentiable (no second-order gradients through a batch-norm MLP: MetaHeac, which
    needs them, has no norm layers), and forward hooks on the BatchNorm1d and ReLU modules do not fire."""
    if not _fusable(norm, x):
        return F.relu(norm(x))
    norm.num_batches_tracked.add_(1)  # as BatchNorm1d.forward: momentum None is the cumulative average
    momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    return _batch_norm_relu_natively(x, norm, momentum)


def _fusable(norm: nn.Module, x: Tensor) -> bool:
    return (
        isinstance(norm, nn.BatchNorm1d)
        and norm.training
        and norm.affine
        and norm.track_running_stats
        and x.dim() == 2
        and x.shape[0] > 1  # one row: torch's own error
        and x.is_contiguous()
        and not torch.compiler.is_compiling()  # Inductor fuses these itself
        and row_kernels.native(x, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    )


def _batch_norm_relu_natively(x: Tensor, norm: nn.BatchNorm1d, momentum: float) -> Tensor:
    stats = (norm.running_mean, norm.running_var)
    return _BatchNormReLU.apply(x, norm.weight, norm.bias, *stats, momentum, norm.eps)


class _BatchNormReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float) -> Tensor:
        out, stats = row_kernels.batch_norm_relu(
            x, weight, bias, running_mean, running_var, momentum=momentum, eps=eps
        )
        ctx.save_for_backward(x, weight, stats)  # not out: the backward recomputes ReLU's mask from x
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, stats = ctx.saved_tensors
        grad_x, grad_weight, grad_bias = row_kernels.batch_norm_relu_backward(grad, x, weight, stats)
        return grad_x, grad_weight, grad_bias, None, None, None, None


class MLP(nn.Sequential):
    """Linear -> norm -> ReLU -> dropout for every width in ``dims``; ``dims=[]`` is the identity. A norm
    and the ReLU after it run as ``norm_relu`` (the modules stay, and with them the state_dict keys)."""

    def __init__(self, in_dim: int, dims: list[int], dropout: float, norm: Norm):
        layers: list[nn.Module] = []
        for width in dims:
            layers += [nn.Linear(in_dim, width), _norm(norm, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        super().__init__(*layers)
        self.output_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        layers = iter(self)
        for layer in layers:
            if isinstance(layer, nn.Linear):  # then its norm and the ReLU
                norm, _ = next(layers), next(layers)
                x = norm_relu(norm, layer(x))
            else:
                x = layer(x)
        return x


class Tower(nn.Module):
    """An MLP ending in one logit per row."""

    def __init__(self, in_dim: int, dims: list[int], dropout: float, norm: Norm):
        super().__init__()
        self.mlp = MLP(in_dim, dims, dropout, norm)
        self.head = nn.Linear(self.mlp.output_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.mlp(x)).squeeze(-1)  # (n,)


class ExpertGroup(nn.Module):
    """``E`` independent MLP experts evaluated together with batched matmuls instead of a Python loop.

    Weights are stacked as ``(E, in, out)``; expert ``e`` is slice ``[e]`` of every parameter. The input
    is either shared, ``(n, in)``, or one per expert, ``(n, E, in)``; the output is ``(n, E, out)``.
    """

    def __init__(self, in_dim: int, n_experts: int, dims: list[int], dropout: float, norm: Norm):
        super().__init__()
        self.n_experts = n_experts
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.norms = nn.ModuleList()
        for width in dims:
            self.weights.append(nn.Parameter(torch.empty(n_experts, in_dim, width)))
            self.biases.append(nn.Parameter(torch.zeros(n_experts, width)))
            # batch norm over the flattened (E * width) units normalises each unit of each expert alone
            self.norms.append(_norm(norm, n_experts * width) if norm == "batch" else _norm(norm, width))
            in_dim = width
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output_dim = in_dim

    def forward(self, x: Tensor) -> Tensor:
        for layer, (weight, bias, norm) in enumerate(zip(self.weights, self.biases, self.norms)):
            if layer == 0 and x.dim() == 2:  # shared input: all experts in one (n, in) x (in, E*out) matmul
                h = torch.addmm(bias.reshape(-1), x, weight.transpose(0, 1).reshape(weight.shape[1], -1))
            else:  # one input per expert: a batched matmul over experts
                h = torch.baddbmm(bias.unsqueeze(1), x.transpose(0, 1), weight).transpose(0, 1)
            # batch norm on the contiguous (n, E*out): on a strided view its CPU kernel is 5-7x slower
            if isinstance(norm, nn.BatchNorm1d):
                h = h.reshape(h.shape[0], -1)
            else:
                h = h.reshape(h.shape[0], self.n_experts, -1)
            x = self.dropout(norm_relu(norm, h)).view(h.shape[0], self.n_experts, -1)
        return x


def mix_experts(experts: Tensor, gate_logits: Tensor) -> Tensor:
    """Softmax-gated sum of experts: ``(n, E, d)`` x ``(n, E)`` -> ``(n, d)`` (twice differentiable)."""
    weights = gate_logits.softmax(dim=-1).to(experts.dtype)
    # a broadcast product and a sum: a bmm here runs n separate (1, E) x (E, d) products (3-5x slower)
    return (weights.unsqueeze(-1) * experts).sum(1)


def gate_weights(gates: Sequence[nn.Linear], inputs: Sequence[Tensor]) -> Tensor:
    """Every gate's softmax over its experts, gate-major: ``(T, G, n)`` for ``T`` gates of width ``G``.

    Gate ``t`` reads ``inputs[t]`` ``(n, in)``; gates reading the same tensor share one matmul. The layout
    puts rows last: torch's CPU softmax over a last dimension of 8 costs 20x its ``exp`` (AVX-512), over a
    middle one it runs vectorised across rows.
    """
    runs: list[tuple[list[nn.Linear], Tensor]] = []  # consecutive gates on one input
    for gate, x in zip(gates, inputs, strict=True):
        if runs and runs[-1][1] is x:
            runs[-1][0].append(gate)
        else:
            runs.append(([gate], x))
    logits = [  # (run width, n): W x^T + b
        torch.addmm(torch.cat([g.bias for g in run]).unsqueeze(1), torch.cat([g.weight for g in run]), x.t())
        for run, x in runs
    ]
    return torch.cat(logits).view(len(gates), -1, inputs[0].shape[0]).softmax(dim=1)


def mix_expert_subsets(experts: Tensor, weights: Tensor, select: Tensor) -> Tensor:
    """Several gates at once: gate ``t``'s ``weights[t]`` ``(G, n)`` mix experts ``select[t]``.

    ``experts`` ``(n, E, d)``, ``weights`` ``(T, G, n)`` (``gate_weights``), ``select`` ``(T, G)`` expert
    indices -> ``(n, T, d)``. On the CPU in float32 one C kernel, forward and backward (torch runs the
    broadcast product and its backward as several passes); elsewhere the same arithmetic in torch. Once
    differentiable on the kernel's path: for MMoE/PLE, not MetaHeac.
    """
    if row_kernels.native(experts, weights):
        return _mix_natively(experts, weights.to(experts.dtype), select)
    chosen = experts.index_select(1, select.reshape(-1)).view(experts.shape[0], *select.shape, -1)
    return (weights.permute(2, 0, 1).to(experts.dtype).unsqueeze(-1) * chosen).sum(2)


def _mix_natively(experts: Tensor, weights: Tensor, select: Tensor) -> Tensor:
    return _MixExpertSubsets.apply(experts, weights, select)


class _MixExpertSubsets(torch.autograd.Function):
    @staticmethod
    def forward(ctx, experts: Tensor, weights: Tensor, select: Tensor) -> Tensor:
        ctx.save_for_backward(weights, experts, select)
        return row_kernels.mix_experts(experts, weights, select)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        weights, experts, select = ctx.saved_tensors
        grad_weights, grad_experts = row_kernels.mix_experts_backward(grad, weights, experts, select)
        return grad_experts, grad_weights, None


def initialise(module: nn.Module, embed_init_std: float) -> None:
    """The one place weights are initialised: random, so no two units or experts start out equal.

    Linear and expert weights: Xavier-uniform (each expert on its own ``(in, out)`` slice); biases: 0;
    embeddings: N(0, ``embed_init_std``); norm layers: identity (scale 1, shift 0).
    """
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, mean=0.0, std=embed_init_std)
        elif isinstance(sub, ExpertGroup):
            for weight, bias in zip(sub.weights, sub.biases):
                bound = math.sqrt(6.0 / (weight.shape[1] + weight.shape[2]))
                nn.init.uniform_(weight, -bound, bound)
                nn.init.zeros_(bias)
        elif isinstance(sub, (nn.BatchNorm1d, nn.LayerNorm)):
            sub.reset_parameters()


def log1mexp(log_p: Tensor) -> Tensor:
    """``log(1 - exp(log_p))`` for ``log_p < 0``, accurate near both ends (Maechler 2012)."""
    log_p = log_p.clamp(max=-1e-7)  # p == 1 in float32 would give log(0)
    near_zero = log_p > -math.log(2.0)
    # each branch sees only inputs where it is finite, so masked-out branches cannot poison gradients
    safe_near = torch.where(near_zero, log_p, torch.full_like(log_p, -1.0))
    safe_far = torch.where(near_zero, torch.full_like(log_p, -1.0), log_p)
    return torch.where(near_zero, torch.log(-torch.expm1(safe_near)), torch.log1p(-torch.exp(safe_far)))


def product_logit(first: Tensor, second: Tensor) -> Tensor:
    """``logit(sigmoid(first) x sigmoid(second))`` in float32, through the log-probabilities (a funnel's
    pCTCVR from its pCTR and pCVR logits)."""
    log_p = F.logsigmoid(first.float()) + F.logsigmoid(second.float())
    return log_p - log1mexp(log_p)


def bce_with_log_prob(log_p: Tensor, target: Tensor) -> Tensor:
    """Per-row binary cross-entropy of a probability given as its log (for products of probabilities)."""
    return -(target * log_p + (1.0 - target) * log1mexp(log_p))


def bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Per-row binary cross-entropy of logits, in float32 whatever the autocast dtype."""
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
