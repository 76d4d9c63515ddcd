"""Look-alike splits grouped by campaign, and compact embedding tables for per-campaign fast weights.

A ``CampaignSplit`` holds a split's rows as tensors sorted by campaign (stable, so file order is kept
inside a campaign), with each campaign's start and row count: a campaign's rows are one slice, and a
sample of them is an index gather, with no per-row Python.

``compact_weights`` serves MetaHeac's fast weights. A campaign's batches touch a few thousand of the
embedding table's rows; copying, differentiating and stepping the whole table for every campaign (as
the official code does) costs O(vocabulary) per step and per campaign. We swap in the rows those
batches use (``FeatureInput.forward(ids=...)``). Rows a campaign never sees get no gradient, so SGD and
Adam leave them unchanged (Adam's update of a row whose gradient was always zero is exactly 0): the
result is the same as stepping the full table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mtl.datasets.prepared import DatasetMetadata, read_split, split_path
from mtl.errors import DataFormatError
from mtl.models.layers import FeatureBatch
from mtl.models.metaheac import MetaHeac
from mtl.training.data import Batch, TensorSplit

EMBEDDING = "input.embedding.weight"  # MetaHeac's one shared embedding table (FeatureInput)


@dataclass
class CampaignSplit:
    """A split's rows sorted by campaign; campaign ``i`` is rows ``starts[i] : starts[i] + counts[i]``."""

    name: str
    data: TensorSplit
    group: np.ndarray  # (n,) campaign of every (sorted) row
    campaigns: np.ndarray  # (C,) distinct campaign ids, ascending
    starts: np.ndarray  # (C,)
    counts: np.ndarray  # (C,)

    @property
    def rows(self) -> int:
        return len(self.data)

    def rows_of(self, index: int) -> Tensor:
        """Row positions (into ``data``) of campaign number ``index``."""
        start = int(self.starts[index])
        return torch.arange(start, start + int(self.counts[index]), device=self.data.row_id.device)

    def position(self, campaign: int) -> int:
        """Index of campaign id ``campaign`` in ``campaigns``."""
        where = int(np.searchsorted(self.campaigns, campaign))
        if where >= len(self.campaigns) or self.campaigns[where] != campaign:
            raise KeyError(campaign)
        return where


def load_campaign_split(
    prepared_dir: Path, split: str, metadata: DatasetMetadata, device: torch.device
) -> CampaignSplit:
    """Read a split whole (look-alike splits fit in memory) and sort it by campaign."""
    if not metadata.group_column:
        raise DataFormatError(f"dataset {metadata.dataset!r} has no campaign (group) column")
    arrays = read_split(prepared_dir, split, metadata)
    order = np.argsort(arrays.group, kind="stable")
    arrays = arrays.take(order)
    group = arrays.group
    campaigns, starts, counts = np.unique(group, return_index=True, return_counts=True)
    data = TensorSplit.from_arrays(arrays, metadata, str(split_path(prepared_dir, split, metadata)))
    return CampaignSplit(split, data.to(device), group, campaigns, starts, counts)


def concat_batches(batches: list[Batch]) -> Batch:
    """Rows of several batches as one batch, in order."""
    return Batch(
        FeatureBatch(*(torch.cat(parts) for parts in zip(*(b.features for b in batches)))),
        torch.cat([b.labels for b in batches]),
        torch.cat([b.row_id for b in batches]),
    )


def compact_ids(model: MetaHeac, features: FeatureBatch) -> tuple[Tensor, Tensor]:
    """(table rows the batch uses, ascending; the batch's ids as positions in those rows)."""
    rows, local = torch.unique(model.input.global_ids(features), return_inverse=True)
    return rows, local


def compact_weights(weights: dict[str, Tensor], rows: Tensor) -> dict[str, Tensor]:
    """``weights`` with the embedding table cut down to ``rows`` (differentiable: a gather)."""
    return {**weights, EMBEDDING: weights[EMBEDDING].index_select(0, rows)}
