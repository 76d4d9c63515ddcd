"""Optimisers: a row-wise optimiser on the embedding rows a step touched, AdamW on everything else.

With sparse gradients a step costs O(rows in the batch), not O(vocabulary): a 1.8M-row table is not
swept every step. ``train.embedding_optimizer`` picks lazy Adam (``RowAdam``, SparseAdam's arithmetic:
moments of untouched rows do not decay, the usual choice for recommendation embeddings) or Adagrad
(``RowAdagrad``); ``train.embedding_weight_decay`` is an L2 term on the touched rows at each use, and
``train.embedding_row_decay`` one per epoch on every row, spread over its uses (``scale_embedding_decay``).
With dense gradients (NCCL) the same choice runs as torch's AdamW/Adagrad over the whole table, decay on
every row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from mtl.config import TrainParams
from mtl.models.embedding import row_embeddings, use_row_mode
from mtl.models.layers import FeatureBatch, FeatureInput
from mtl.training.row_optim import ROW_OPTIMIZERS, RowOptimizer


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


def scale_embedding_decay(
    model: nn.Module,
    optimizers: list[torch.optim.Optimizer],
    params: TrainParams,
    training: Iterable[FeatureBatch],
    rows: int,
    *,
    sparse: bool,
) -> None:
    """``train.embedding_row_decay``: the same L2 per epoch on every embedding row, however rare.

    Sparse gradients: each table's rows are counted over the training split (``training``, the split's
    feature chunks) and a use of a row pulls it by ``row_decay / uses`` on top of ``weight_decay``
    (``RowOptimizer.decay_by_uses``). Dense gradients decay every row at every step: ``row_decay / steps
    per epoch`` is added to the table's ``weight_decay`` then, the same pull per epoch.
    """
    if not params.embedding_row_decay:
        return
    if not sparse:
        tables = {id(weight) for weight in embedding_parameters(model)}
        steps = max(1, math.ceil(rows / params.batch_size))
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                if any(id(p) in tables for p in group["params"]):
                    group["weight_decay"] = params.embedding_weight_decay + params.embedding_row_decay / steps
        return
    inputs = [m for m in model.modules() if isinstance(m, FeatureInput)]
    uses: dict[int, Tensor] = {}
    for features in training:  # one pass over the split, every input counted from the same chunk
        for index, feature_input in enumerate(inputs):
            counted = feature_input.row_uses(features)
            uses[index] = counted if index not in uses else uses[index] + counted
    for optimizer in optimizers:
        if isinstance(optimizer, RowOptimizer):
            for index, feature_input in enumerate(inputs):
                weight = feature_input.embedding.weight
                if id(weight) in optimizer.tables and index in uses:
                    optimizer.decay_by_uses(weight, uses[index], params.embedding_row_decay)
