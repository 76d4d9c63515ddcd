"""Optimisers: SparseAdam on embedding rows a step touched, AdamW on everything else.

With sparse gradients a step costs O(rows in the batch), not O(vocabulary): a 500k-id table is not
swept every step. SparseAdam is "lazy" Adam (moments of untouched rows do not decay), the usual choice
for recommendation embeddings; it applies no weight decay.
"""

from __future__ import annotations

import torch
from torch import nn

from mtl.config import TrainParams


def embedding_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, nn.Embedding)]


def use_sparse_embeddings(model: nn.Module, sparse: bool) -> None:
    """Switch every embedding table to sparse (or dense) gradients."""
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            module.sparse = sparse


def build_optimizers(model: nn.Module, params: TrainParams, *, sparse: bool) -> list[torch.optim.Optimizer]:
    """[SparseAdam(embeddings), AdamW(rest)] with sparse gradients, else one AdamW with two groups."""
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
    if sparse and embeddings:
        optimizers.append(torch.optim.SparseAdam(embeddings, lr=params.embedding_lr))
    elif embeddings:
        groups.append({"params": embeddings, "weight_decay": 0.0, "lr": params.embedding_lr})
    on_cuda = any(p.is_cuda for p in others)
    # fused AdamW: one kernel for all parameters on CUDA (dense gradients only, which these are)
    groups = [g for g in groups if g["params"]]
    if groups:
        optimizers.insert(0, torch.optim.AdamW(groups, lr=params.lr, fused=on_cuda or None))
    return optimizers
