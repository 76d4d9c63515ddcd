"""Optimisers: a row-wise optimiser on the embedding rows a step touched, AdamW on everything else.

With sparse gradients a step costs O(rows in the batch), not O(vocabulary): a 1.8M-row table is not
swept every step. ``train.embedding_optimizer`` picks lazy Adam (``RowAdam``, SparseAdam's arithmetic:
moments of untouched rows do not decay, the usual choice for recommendation embeddings) or Adagrad
(``RowAdagrad``); ``train.embedding_weight_decay`` is an L2 term on the touched rows. With dense
gradients (NCCL) the same choice runs as torch's AdamW/Adagrad over the whole table, decay on every row.
"""

from __future__ import annotations

import torch
from torch import nn

from mtl.config import TrainParams
from mtl.models.embedding import row_embeddings, use_row_mode
from mtl.training.row_optim import ROW_OPTIMIZERS


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]


def use_sparse_embeddings(model: nn.Module, sparse: bool, *, rows: bool = False) -> None:
    """Switch every embedding table to sparse (or dense) gradients; ``rows``: row mode on top of sparse."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            module.sparse = sparse
    use_row_mode(model, sparse and rows)


def build_optimizers(model: nn.Module, params: TrainParams, *, sparse: bool) -> list[torch.optim.Optimizer]:
    """[AdamW(rest), Row{Adam,Adagrad}(tables)] with sparse gradients, else AdamW (+ Adagrad)."""
    embeddings = embedding_parameters(model)
    embedding_ids = {id(p) for p in embeddings}
    others = [p for p in model.parameters() if id(p) not in embedding_ids and p.requires_grad]
    decay = [p for p in others if p.dim() >= 2]
    no_decay = [p for p in others if p.dim() < 2]
    groups: list[dict] = [
        {"params": decay, "weight_decay": params.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizers: list[torch.optim.Optimizer] = []
    table_settings = {"lr": params.embedding_lr, "weight_decay": params.embedding_weight_decay}
    if sparse and embeddings:
        optimizers.append(ROW_OPTIMIZERS[params.embedding_optimizer](row_embeddings(model), **table_settings))
    elif embeddings and params.embedding_optimizer == "adagrad":
        optimizers.append(torch.optim.Adagrad(embeddings, **table_settings))
    elif embeddings:
        groups.append({"params": embeddings, **table_settings})
    # fused AdamW: one kernel for all parameters, on CUDA and on the CPU (4-5x the per-parameter loop
    # there); dense gradients only, which these are
    groups = [g for g in groups if g["params"]]
    if groups:
        optimizers.insert(0, torch.optim.AdamW(groups, lr=params.lr, fused=True))
    return optimizers
