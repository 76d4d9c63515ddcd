"""Row-wise optimisers for embedding tables: each step updates, in place, only the rows a batch used.

``RowAdam`` is lazy Adam with ``torch.optim.SparseAdam``'s arithmetic (moments of untouched rows do not
decay; one step count per table), ``RowAdagrad`` is ``torch.optim.Adagrad`` restricted to the touched
rows. Both read the rows and their summed gradients from ``RowEmbedding.take_touched`` (row mode, or a
sparse gradient when a lookup ran outside it, as under DDP) and apply ``weight_decay`` as an L2 term on
the touched rows only. The state (full-table moments) checkpoints like any ``torch.optim`` state. A C
kernel (``mtl.models.row_kernels``) does the update in one pass where it can; the torch path otherwise.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mtl.models import row_kernels
from mtl.models.embedding import RowEmbedding


class RowOptimizer(torch.optim.Optimizer):
    """Base: gathers each table's touched rows, lets ``update_rows`` change them, writes them back."""

    def __init__(self, tables: list[RowEmbedding], defaults: dict):
        super().__init__([table.weight for table in tables], defaults)
        self.tables = {id(table.weight): table for table in tables}
        self.row_decay: dict[int, Tensor] = {}  # per-row L2 of a table (decay_by_uses), else the group's
        for table in tables:  # now, not in the first step: zeroing a large table's state takes a while
            self.init_state(self.state[table.weight], table.weight)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for weight in group["params"]:
                touched = self.tables[id(weight)].take_touched()
                if touched is None:
                    continue
                ids, grad = touched[0], touched[1].contiguous()
                state = self.state[weight]
                if not state:
                    self.init_state(state, weight)
                state["step"] += 1
                decay = self.row_decay.get(id(weight))  # per-row L2 strengths, or None: the group's
                if self.update_native(weight, ids, grad, state, group, decay):
                    continue
                rows = weight.index_select(0, ids)
                if decay is not None:
                    grad = grad.addcmul(rows, decay.index_select(0, ids).unsqueeze(1))
                elif group["weight_decay"]:
                    grad = grad.add(rows, alpha=group["weight_decay"])
                weight.index_copy_(0, ids, self.update_rows(rows, grad, ids, state, group))
        return None

    def decay_by_uses(self, weight: Tensor, uses: Tensor, per_epoch: float) -> None:
        """Frequency-scaled L2 on ``weight`` on top of the group's ``weight_decay`` (at each use): a row
        used ``n`` times per epoch is also pulled by ``per_epoch / n`` at each use, so every row gets
        ``per_epoch`` per epoch however rare (ridge on the whole training split, spread over the steps that
        see the row), which the per-use term alone does not give the ids seen a handful of times."""
        group = next(g for g in self.param_groups if any(p is weight for p in g["params"]))
        self.row_decay[id(weight)] = group["weight_decay"] + per_epoch / uses.to(weight.dtype).clamp(min=1)

    def init_state(self, state: dict, weight: Tensor) -> None:
        raise NotImplementedError

    def update_native(
        self, weight: Tensor, ids: Tensor, grad: Tensor, state: dict, group: dict, row_decay: Tensor | None
    ) -> bool:
        """The same update by a C kernel (``mtl.models.row_kernels``); False where none can run."""
        raise NotImplementedError

    def update_rows(self, rows: Tensor, grad: Tensor, ids: Tensor, state: dict, group: dict) -> Tensor:
        """The new values of ``rows`` (table rows ``ids``); updates the per-row state in place."""
        raise NotImplementedError


class RowAdam(RowOptimizer):
    def __init__(self, tables, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(tables, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    def init_state(self, state: dict, weight: Tensor) -> None:
        state["step"] = 0
        # a row's first and second moments side by side: one memory access per row, not two
        state["moments"] = weight.new_zeros(weight.shape[0], 2, weight.shape[1])

    def update_native(
        self, weight: Tensor, ids: Tensor, grad: Tensor, state: dict, group: dict, row_decay: Tensor | None
    ) -> bool:
        beta1, beta2 = group["betas"]
        return row_kernels.adam_rows(
            weight, state["moments"], ids, grad,
            step_size=_adam_step_size(group, state["step"]), beta1=beta1, beta2=beta2, eps=group["eps"],
            decay=group["weight_decay"], row_decay=row_decay,
        )  # fmt: skip

    def update_rows(self, rows: Tensor, grad: Tensor, ids: Tensor, state: dict, group: dict) -> Tensor:
        beta1, beta2 = group["betas"]
        moments = state["moments"].index_select(0, ids)  # (u, 2, d)
        exp_avg, exp_avg_sq = moments[:, 0], moments[:, 1]
        exp_avg.add_(grad.sub(exp_avg).mul_(1 - beta1))  # SparseAdam's order of operations
        exp_avg_sq.add_(grad.square().sub_(exp_avg_sq).mul_(1 - beta2))
        state["moments"].index_copy_(0, ids, moments)
        step_size = _adam_step_size(group, state["step"])
        return rows.sub_(exp_avg.div_(exp_avg_sq.sqrt_().add_(group["eps"])).mul_(step_size))


class RowAdagrad(RowOptimizer):
    def __init__(self, tables, lr: float, eps: float = 1e-10, weight_decay: float = 0.0):
        super().__init__(tables, {"lr": lr, "eps": eps, "weight_decay": weight_decay})

    def init_state(self, state: dict, weight: Tensor) -> None:
        state["step"] = 0
        state["sum"] = torch.zeros_like(weight)

    def update_native(
        self, weight: Tensor, ids: Tensor, grad: Tensor, state: dict, group: dict, row_decay: Tensor | None
    ) -> bool:
        return row_kernels.adagrad_rows(
            weight,
            state["sum"],
            ids,
            grad,
            lr=group["lr"],
            eps=group["eps"],
            decay=group["weight_decay"],
            row_decay=row_decay,
        )

    def update_rows(self, rows: Tensor, grad: Tensor, ids: Tensor, state: dict, group: dict) -> Tensor:
        total = state["sum"].index_select(0, ids).addcmul_(grad, grad)
        state["sum"].index_copy_(0, ids, total)
        return rows.addcdiv_(grad, total.sqrt_().add_(group["eps"]), value=-group["lr"])


def _adam_step_size(group: dict, step: int) -> float:
    beta1, beta2 = group["betas"]
    return group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)


ROW_OPTIMIZERS: dict[str, type[RowOptimizer]] = {"adam": RowAdam, "adagrad": RowAdagrad}
