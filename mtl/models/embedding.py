"""The embedding table every field shares, and the row mode that lets an optimiser update only used rows.

A plain sparse lookup hands the optimiser a gradient with one row per *looked-up id* (``n x fields``
rows, duplicates included), which the optimiser must coalesce -- a sort of every id -- before it can
touch the table. In row mode a training lookup instead gathers the batch's distinct rows into a small
dense tensor ``rows`` (``(u, d)``, a leaf of the graph) and embeds from it; backward accumulates each
row's gradient once, in ``rows.grad``, and ``mtl.training.row_optim`` updates exactly those ``u`` rows
of the table in place. Nothing else changes: evaluation, no-grad lookups and a model that never turns
row mode on use the ordinary ``nn.Embedding`` path, and the table is saved as ``weight`` as before.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mtl.models import row_kernels


class RowEmbedding(nn.Embedding):
    """``nn.Embedding`` (sparse gradients by default) with an optional row mode for row-wise optimisers."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__(num_embeddings, embedding_dim, sparse=True)
        self.capture_rows = False
        # (distinct table rows, the leaf tensor holding them) of every training lookup since the last step
        self.touched: list[tuple[Tensor, Tensor]] = []
        self.marker: Tensor | None = None  # row -> -1 scratch of the C kernel's distinct-row pass

    def forward(self, ids: Tensor, distinct: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``distinct``: as in ``pooled``."""
        if not self._capturing(ids):
            return super().forward(ids)
        rows, inverse = self._capture(ids, distinct)
        return _GatherRows.apply(rows, inverse.reshape(-1)).view(*ids.shape, self.embedding_dim)

    def pooled(
        self,
        ids: Tensor,
        weight: Tensor | None,
        bag: Tensor,
        bags: int,
        distinct: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor | None:
        """Row mode with the C kernels: ``(n, bags, d)``, per row of ``ids`` ``(n, c)`` the sum of its
        looked-up rows over each bag's columns (``bag``: column -> bag), the last ``weight.shape[1]``
        columns weighted by ``weight``; gathered and summed in one pass, backward too. ``distinct``:
        ``ids``' distinct rows and inverse, found ahead (``FeatureInput.plan``). None where that cannot
        run: the caller looks up and pools."""
        if not (
            self._capturing(ids) and row_kernels.native(self.weight, *([] if weight is None else [weight]))
        ):
            return None
        rows, inverse = self._capture(ids, distinct)
        return _PoolRows.apply(rows, inverse, weight, bag, bags)

    def _capturing(self, ids: Tensor) -> bool:
        return self.capture_rows and self.training and torch.is_grad_enabled()

    def _capture(self, ids: Tensor, distinct: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """(the batch's distinct rows, a leaf remembered for the optimiser; each id's index among them).
        ``distinct``: (distinct ids, inverse) of ``ids`` found ahead."""
        unique, inverse = self.distinct_rows(ids) if distinct is None else distinct
        rows = row_kernels.gather_rows(self.weight.detach(), unique).requires_grad_()  # (u, d)
        self.touched.append((unique, rows))
        return rows, inverse

    def distinct_rows(self, ids: Tensor, marker: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(the distinct rows of ``ids``, each id's index among them). On the CPU by the C kernel, whose
        ``marker`` scratch (one int32 per row, all -1) defaults to this table's own: a second thread
        passes one of its own."""
        if ids.device.type == "cpu":
            if marker is None:
                self.marker = marker = self.scratch(self.marker)
            native = row_kernels.unique_rows(ids, marker)
            if native is not None:
                return native
        return torch.unique(ids, return_inverse=True)

    def scratch(self, marker: Tensor | None) -> Tensor:
        """``marker`` if it is a distinct-row scratch for this table (one int32 per row), else a new one."""
        if marker is None or len(marker) != self.num_embeddings:
            marker = torch.full((self.num_embeddings,), -1, dtype=torch.int32)
        return marker

    def take_touched(self) -> tuple[Tensor, Tensor] | None:
        """(distinct row ids, their summed gradients) of the lookups since the last call, then forget them."""
        parts = [(ids, rows.grad) for ids, rows in self.touched if rows.grad is not None]
        self.touched = []
        if self.weight.grad is not None:  # a lookup outside row mode (DDP, fp16): sparse gradient
            grad = self.weight.grad.coalesce() if self.weight.grad.is_sparse else self.weight.grad.to_sparse()
            parts.append((grad.indices()[0], grad.values()))
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0][0].long(), parts[0][1]
        unique, inverse = torch.unique(torch.cat([ids for ids, _ in parts]), return_inverse=True)
        grads = torch.cat([grad for _, grad in parts])
        summed = grads.new_zeros(len(unique), grads.shape[1]).index_add_(0, inverse, grads)
        return unique.long(), summed


class _GatherRows(torch.autograd.Function):
    """``rows[inverse]``, whose backward sums the gradient per distinct row in one pass."""

    @staticmethod
    def forward(ctx, rows: Tensor, inverse: Tensor) -> Tensor:
        ctx.save_for_backward(inverse)
        ctx.distinct = rows.shape[0]
        return rows.index_select(0, inverse)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (inverse,) = ctx.saved_tensors
        grad = grad.contiguous()
        summed = grad.new_zeros(ctx.distinct, grad.shape[1])
        if not row_kernels.sum_rows(grad, inverse, summed):
            summed.index_add_(0, inverse, grad)
        return summed, None


class _PoolRows(torch.autograd.Function):
    """``row_kernels.pool_rows`` with its backward: each distinct row's gradient in one pass."""

    @staticmethod
    def forward(ctx, rows: Tensor, inverse: Tensor, weight: Tensor | None, bag: Tensor, bags: int) -> Tensor:
        ctx.save_for_backward(inverse, weight, bag)
        ctx.distinct = rows.shape[0]
        return row_kernels.pool_rows(rows, inverse, weight, bag, bags)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        inverse, weight, bag = ctx.saved_tensors
        return (
            row_kernels.pool_rows_backward(grad, inverse, weight, bag, ctx.distinct),
            None,
            None,
            None,
            None,
        )


def row_embeddings(model: nn.Module) -> list[RowEmbedding]:
    return [m for m in model.modules() if isinstance(m, RowEmbedding)]


def use_row_mode(model: nn.Module, enabled: bool) -> None:
    """Turn row mode on (or off) for every table of ``model``."""
    for table in row_embeddings(model):
        table.capture_rows = enabled
        table.touched = []
