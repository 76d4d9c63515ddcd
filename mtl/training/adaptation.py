"""Per-campaign adaptation (MetaHeac's test protocol), one campaign at a time or many at once.

For each campaign of an evaluation split (official ``run.py::test_stage``): start from the given
weights, fine-tune every parameter with a fresh optimiser (``optimizer``: ``adam`` as the official
code, or ``sgd``, which mirrors the meta-training's inner loop; ``lr``, no weight decay) for ``epochs``
passes over the campaign's stage1 rows in mini-batches of ``batch_size`` (reshuffled every epoch),
then score its stage2 rows. Campaigns never share state: each gets its own copy of the weights and of Adam's
moments, so adapting one cannot leak into another, and the order of campaigns does not matter.

* ``adapt_sequential``: the reference loop, one campaign after another with ``torch.optim.Adam``.
* ``adapt_batched``: ``group_size`` campaigns at once. Their weights are stacked along a new first
  dimension and ``torch.func.vmap(torch.func.grad(...))`` computes every campaign's gradient in one
  pass; a functional Adam (the same arithmetic as ``torch.optim.Adam``'s single-tensor path) or SGD
  steps the stacked weights. Campaigns are sorted by stage1 size, largest first, and grouped with campaigns
  of similar batch width, so the campaigns still training at any step are a prefix of the group
  (finished campaigns drop out instead of taking no-op steps) and a step's batches are padded (with
  zero loss weight) by at most a third, up to the widest batch among the campaigns still training.

Both draw each campaign's epoch order from (seed, campaign id, epoch) and fine-tune on compact
embedding tables (``campaigns.compact_weights``); they give the same predictions up to float rounding.
On one CPU thread the work is compute-bound and batching runs at 0.6-1.5x the sequential speed
(``benchmarks/metaheac.py``); it pays where per-operation overhead dominates: many small campaigns,
several threads on a busy machine, a GPU (``metaheac.adaptation.batched: auto`` batches on CUDA only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, grad, vmap

from mtl.config import AdaptationParams
from mtl.errors import DataFormatError
from mtl.models.layers import FeatureBatch
from mtl.models.metaheac import MetaHeac
from mtl.training.campaigns import EMBEDDING, CampaignSplit, compact_ids, compact_weights, concat_batches
from mtl.training.meta import batch_loss
from mtl.training.seeding import derive_seed

ADAPT_STREAM = 3
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.Adam's defaults, as the official code uses them
GROUP_FILL = 0.75  # a campaign joins a group if its batches are at least this share of the widest's


@dataclass
class Campaign:
    """One campaign of an evaluation split: its stage1 and stage2 rows, and its compact embedding ids."""

    campaign: int
    stage1: Tensor  # row positions in the stage1 split
    stage2: Tensor  # row positions in the stage2 split
    table_rows: Tensor  # embedding rows used by its stage1 and stage2 rows
    ids1: Tensor  # (stage1 rows, S + K) positions in table_rows
    ids2: Tensor  # (stage2 rows, S + K)


def stage1_positions(stage1: CampaignSplit, stage2: CampaignSplit) -> list[int]:
    """For every stage2 campaign, its position in stage1 (every campaign must have rows to adapt on)."""
    positions = []
    for campaign in stage2.campaigns:
        try:
            positions.append(stage1.position(int(campaign)))
        except KeyError:
            raise DataFormatError(
                f"campaign {int(campaign)} has rows in {stage2.name!r} but none in {stage1.name!r} to "
                "adapt on; re-run `mtl prepare lookalike` (its checks require stage1 rows)"
            ) from None
    return positions


def campaign_at(
    model: MetaHeac, stage1: CampaignSplit, stage2: CampaignSplit, index1: int, index2: int
) -> Campaign:
    """Campaign number ``index2`` of stage2 (``index1`` of stage1) with its compact embedding ids."""
    rows1, rows2 = stage1.rows_of(index1), stage2.rows_of(index2)
    both = concat_batches([stage1.data.take(rows1), stage2.data.take(rows2)])
    table_rows, ids = compact_ids(model, both.features)
    campaign = int(stage2.campaigns[index2])
    return Campaign(campaign, rows1, rows2, table_rows, ids[: len(rows1)], ids[len(rows1) :])


def batch_plan(campaign: int, rows: int, settings: AdaptationParams, seed: int) -> list[Tensor]:
    """The campaign's fine-tuning batches: positions into its stage1 rows, epoch after epoch."""
    plan = []
    for epoch in range(1, settings.epochs + 1):
        generator = torch.Generator().manual_seed(derive_seed(seed, ADAPT_STREAM, campaign, epoch))
        order = torch.randperm(rows, generator=generator)
        plan += list(order.split(settings.batch_size))
    return plan


@torch.no_grad()
def score(model: MetaHeac, weights: dict[str, Tensor], data: CampaignSplit, batch_size: int) -> np.ndarray:
    """Probabilities of every row of ``data`` under ``weights`` (full embedding table), in row order."""
    out = [
        torch.sigmoid(forward_logits(model, weights, data.data.slice(start, start + batch_size).features))
        for start in range(0, data.rows, batch_size)
    ]
    return torch.cat(out).cpu().numpy() if out else np.zeros(0, np.float32)


def forward_logits(
    model: MetaHeac, weights: dict[str, Tensor], features: FeatureBatch, ids: Tensor | None = None
) -> Tensor:
    """The label logits of ``features`` under ``weights``."""
    return functional_call(model, weights, (features,), {"ids": ids})[model.spec.tasks[0]].float()


def adapt_sequential(
    model: MetaHeac,
    weights: dict[str, Tensor],
    stage1: CampaignSplit,
    stage2: CampaignSplit,
    settings: AdaptationParams,
    *,
    seed: int,
    eval_batch_size: int,
) -> np.ndarray:
    """Adapted probabilities of every stage2 row (stage2 row order), one campaign after another."""
    predictions = torch.zeros(stage2.rows)
    for index2, index1 in enumerate(stage1_positions(stage1, stage2)):
        campaign = campaign_at(model, stage1, stage2, index1, index2)
        fast = {
            name: w.detach().clone().requires_grad_()
            for name, w in compact_weights(weights, campaign.table_rows).items()
        }
        if settings.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(fast.values(), lr=settings.lr)
        else:
            optimizer = torch.optim.Adam(fast.values(), lr=settings.lr, betas=BETAS, eps=EPS)
        for positions in batch_plan(campaign.campaign, len(campaign.stage1), settings, seed):
            batch = stage1.data.take(campaign.stage1[positions.to(campaign.stage1.device)])
            loss = batch_loss(model, fast, batch, campaign.ids1[positions.to(campaign.ids1.device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            for part, ids in zip(
                campaign.stage2.split(eval_batch_size), campaign.ids2.split(eval_batch_size)
            ):
                logits = forward_logits(model, fast, stage2.data.take(part).features, ids)
                predictions[part.cpu()] = torch.sigmoid(logits).cpu()
    return predictions.numpy()


def adapt_batched(
    model: MetaHeac,
    weights: dict[str, Tensor],
    stage1: CampaignSplit,
    stage2: CampaignSplit,
    settings: AdaptationParams,
    *,
    seed: int,
    eval_batch_size: int,
) -> np.ndarray:
    """Adapted probabilities of every stage2 row (stage2 row order), ``group_size`` campaigns at once."""
    predictions = torch.zeros(stage2.rows)
    positions = stage1_positions(stage1, stage2)
    sizes = [int(stage1.counts[index1]) for index1 in positions]
    for members in _groups(sizes, stage2.campaigns, settings):
        # compact ids are built a group at a time: memory grows with the group, not with the split
        group = [campaign_at(model, stage1, stage2, positions[i], i) for i in members]
        fast = _stack_weights(weights, group)
        plans = [batch_plan(c.campaign, len(c.stage1), settings, seed) for c in group]
        _fine_tune_group(model, fast, group, plans, stage1, settings)
        _score_group(model, fast, group, stage2, predictions, max(1, eval_batch_size // len(group)))
    return predictions.numpy()


def _groups(sizes: list[int], campaigns: np.ndarray, settings: AdaptationParams) -> list[list[int]]:
    """Campaigns (indices) by stage1 size, largest first, cut into groups of at most ``group_size`` whose
    batches are within ``GROUP_FILL`` of the group's widest: padding costs at most 1/GROUP_FILL."""
    ordered = sorted(range(len(sizes)), key=lambda i: (-sizes[i], int(campaigns[i])))
    groups: list[list[int]] = []
    for index in ordered:
        width = min(sizes[index], settings.batch_size)
        if (
            groups
            and len(groups[-1]) < settings.group_size
            and width >= GROUP_FILL * min(sizes[groups[-1][0]], settings.batch_size)
        ):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def _stack_weights(weights: dict[str, Tensor], group: list[Campaign]) -> dict[str, Tensor]:
    """Per-campaign copies stacked on a new first dimension; compact tables padded to the longest."""
    stacked = {
        name: w.detach().unsqueeze(0).repeat(len(group), *([1] * w.dim()))
        for name, w in weights.items()
        if name != EMBEDDING
    }
    table = weights[EMBEDDING].detach()
    longest = max(len(c.table_rows) for c in group)
    tables = table.new_zeros(len(group), longest, table.shape[1])
    for i, campaign in enumerate(group):
        tables[i, : len(campaign.table_rows)] = table.index_select(0, campaign.table_rows)
    stacked[EMBEDDING] = tables
    return stacked


def _fine_tune_group(
    model: MetaHeac,
    fast: dict[str, Tensor],
    group: list[Campaign],
    plans: list[list[Tensor]],
    stage1: CampaignSplit,
    settings: AdaptationParams,
) -> None:
    """Adam on every campaign of the group at once; campaign i takes ``len(plans[i])`` steps."""

    def masked_loss(w: dict[str, Tensor], features: FeatureBatch, ids: Tensor, labels: Tensor, mask: Tensor):
        terms = model.loss_terms(functional_call(model, w, (features,), {"ids": ids}), labels)
        per_row = torch.stack(list(terms.values())).sum(0)
        return (per_row * mask).sum() / mask.sum()

    gradients = vmap(grad(masked_loss))
    first_moment = {name: torch.zeros_like(w) for name, w in fast.items()}
    second_moment = {name: torch.zeros_like(w) for name, w in fast.items()}
    for step in range(len(plans[0])):
        active = sum(len(plan) > step for plan in plans)  # a prefix: plans are sorted longest first
        batches = [plans[i][step] for i in range(active)]
        width = max(len(b) for b in batches)
        rows, ids, mask = [], [], []
        for campaign, positions in zip(group, batches):
            padded = torch.cat([positions, positions[:1].expand(width - len(positions))])
            padded = padded.to(campaign.stage1.device)
            rows.append(campaign.stage1[padded])
            ids.append(campaign.ids1[padded])
            mask.append((torch.arange(width) < len(positions)).float())
        batch = stage1.data.take(torch.cat(rows))
        device = batch.labels.device
        features = FeatureBatch(*(t.view(active, width, *t.shape[1:]) for t in batch.features))
        labels = batch.labels.view(active, width, -1)
        grads = gradients(
            {name: w[:active] for name, w in fast.items()},
            features,
            torch.stack(ids),
            labels,
            torch.stack(mask).to(device),
        )
        if settings.optimizer == "sgd":
            with torch.no_grad():
                for name, g in grads.items():
                    fast[name][:active].sub_(g, alpha=settings.lr)
        else:
            _adam_step(fast, grads, first_moment, second_moment, active, step + 1, settings.lr)


@torch.no_grad()
def _adam_step(
    weights: dict[str, Tensor],
    grads: dict[str, Tensor],
    first_moment: dict[str, Tensor],
    second_moment: dict[str, Tensor],
    active: int,
    step: int,
    lr: float,
) -> None:
    """``torch.optim.Adam``'s single-tensor update on the first ``active`` campaigns, in place."""
    beta1, beta2 = BETAS
    step_size = lr / (1 - beta1**step)
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    for name, g in grads.items():
        m, v, w = first_moment[name][:active], second_moment[name][:active], weights[name][:active]
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        w.addcdiv_(m, (v.sqrt() / bias_correction2_sqrt).add_(EPS), value=-step_size)


@torch.no_grad()
def _score_group(
    model: MetaHeac,
    fast: dict[str, Tensor],
    group: list[Campaign],
    stage2: CampaignSplit,
    predictions: Tensor,
    rows_per_campaign: int,
) -> None:
    """Stage2 probabilities of every campaign in the group under its own adapted weights."""
    forward = vmap(lambda w, features, ids: forward_logits(model, w, features, ids))
    longest = max(len(c.stage2) for c in group)
    for start in range(0, longest, rows_per_campaign):
        parts = [c.stage2[start : start + rows_per_campaign] for c in group]
        keep = [i for i, part in enumerate(parts) if len(part)]
        width = max(len(parts[i]) for i in keep)
        rows, ids = [], []
        for i in keep:
            positions = torch.arange(start, start + width).clamp(max=len(group[i].stage2) - 1)
            positions = positions.to(group[i].stage2.device)
            rows.append(group[i].stage2[positions])
            ids.append(group[i].ids2[positions])
        batch = stage2.data.take(torch.cat(rows))
        features = FeatureBatch(*(t.view(len(keep), width, *t.shape[1:]) for t in batch.features))
        index = torch.tensor(keep, device=batch.labels.device)
        logits = forward({n: w.index_select(0, index) for n, w in fast.items()}, features, torch.stack(ids))
        for row, i in enumerate(keep):
            predictions[parts[i].cpu()] = torch.sigmoid(logits[row, : len(parts[i])]).cpu()
