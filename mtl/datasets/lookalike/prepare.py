"""Look-alike preparation: the five splits kept apart, ids shifted so that 0 means unknown/padding.

The published pickles are label-encoded over seed and non-seed rows together, so id 0 is a real value
and each field has one id space across every split. We add 1 to every id (0 = unknown/padding), zero the
multi-valued slots past ``min(*_length, width)`` and size each field's vocabulary as the largest id
seen in any split + 2, as the official ``max_idxs`` do. Sizing over the test splits is not leakage: the
ids are arbitrary codes assigned by the source without labels, the size only fixes the embedding table,
and an id seen only in test keeps its untrained initial embedding either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl.config import Params
from mtl.datasets import expectations as ex
from mtl.datasets.base import Manifest, Source
from mtl.datasets.encoding import ShiftedIds, encode_slots, save_encoders
from mtl.datasets.lookalike import (
    CAMPAIGN_GROUPS,
    DYNAMIC_FIELDS,
    FIELD_ROLES,
    FORMAT,
    GROUP,
    LABEL,
    LENGTH_SUFFIX,
    MAX_SOURCE_ID,
    SPARSE_FIELDS,
    SPLITS,
    TRUTH,
)
from mtl.datasets.lookalike.parse import Pickles, RawSplit
from mtl.datasets.oracle import Oracle, TruthRows, ranking_quality
from mtl.datasets.prepared import (
    ROW_ID,
    DatasetMetadata,
    FeatureSchema,
    MultiField,
    PreparedWriter,
    SparseField,
    SplitChunk,
)
from mtl.errors import DataFormatError

HEADER = {
    "input_format": FORMAT,
    "id_shift": ShiftedIds.SHIFT,
    "rule": "prepared = raw + 1 if 0 <= raw <= source_max_id else 0 (unknown); for multi-valued fields only "
    "the first min(raw *_length, width) slots are kept and later slots are 0",
    "group_column": {"name": GROUP, "encoding": "kept as the source's campaign id"},
}


def _encoders(max_ids: dict[str, int | None]) -> list[ShiftedIds]:
    """The fields' encoders (``None``: every non-negative id, as while the splits are read)."""
    single = [ShiftedIds(field, field, max_ids[field]) for field in SPARSE_FIELDS]
    return single + [
        ShiftedIds(field, field, max_ids[field], width, field + LENGTH_SUFFIX)
        for field, width in DYNAMIC_FIELDS.items()
    ]


def _schema(encoders: list[ShiftedIds]) -> FeatureSchema:
    return FeatureSchema(
        sparse=tuple(SparseField(e.name, e.size) for e in encoders if e.max_len is None),
        multi=tuple(MultiField(e.name, e.size, e.max_len) for e in encoders if e.max_len is not None),
    )


def prepare(
    pickles: Pickles, source: Source, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params
) -> DatasetMetadata:
    """Parse, encode and write the five splits with ``PreparedWriter``; write encoders.json."""
    files = pickles.files(raw_dir)
    oracle = Oracle.of(source, raw_dir, TRUTH, SPLITS)
    unbounded = _encoders(dict.fromkeys((*SPARSE_FIELDS, *DYNAMIC_FIELDS)))
    writer = PreparedWriter(
        out_dir, _schema(unbounded), [LABEL], group_column=GROUP, row_group_rows=params.data.row_group_rows
    )
    max_ids = dict.fromkeys((*SPARSE_FIELDS, *DYNAMIC_FIELDS), -1)
    campaigns: dict[str, Any] = {}
    clipped = dict.fromkeys(DYNAMIC_FIELDS, 0)
    for split, path in files.items():
        raw = pickles.split(path)
        writer.open_split(split)
        for start in range(0, len(raw), params.data.chunk_rows):
            writer.write(split, _chunk(raw, slice(start, start + params.data.chunk_rows), unbounded))
        _update_max_ids(max_ids, raw)
        for field, width in DYNAMIC_FIELDS.items():
            clipped[field] += int(((raw.lengths[field] > width) | (raw.lengths[field] < 0)).sum())
        campaigns[split] = _campaign_stats(raw)
        if oracle is not None:
            oracle.observe(split, split, raw.row_id, raw.label[:, None], raw.aid)
    too_large = {field: max_id for field, max_id in max_ids.items() if max_id > MAX_SOURCE_ID}
    if too_large:
        raise DataFormatError(
            f"{raw_dir}: ids beyond {MAX_SOURCE_ID} do not fit the prepared int32: {too_large}"
        )
    # vocabularies are known only after the last split; names and widths (the Parquet schema) are unchanged
    encoders = _encoders(dict(max_ids))
    writer.features = _schema(encoders)
    save_encoders(out_dir, HEADER, encoders, [])
    extra: dict[str, Any] = {
        "id_shift": ShiftedIds.SHIFT,
        "field_roles": {role: list(fields) for role, fields in FIELD_ROLES.items()},
        "campaigns": campaigns,
        "lengths_clipped": clipped,
        "files": {split: path.relative_to(raw_dir).as_posix() for split, path in files.items()},
    }
    if oracle is not None:
        extra["oracle"] = {split: _oracle_quality(rows) for split, rows in oracle.joined().items()}
    return writer.finish(
        dataset="lookalike", source=manifest.source, raw_hash=manifest.content_hash, extra=extra
    )


def _chunk(raw: RawSplit, rows: slice, encoders: list[ShiftedIds]) -> SplitChunk:
    by_name = {e.name: e for e in encoders}
    return SplitChunk(
        labels={LABEL: raw.label[rows]},
        row_id=raw.row_id[rows],
        sparse={field: by_name[field].encode(raw.sparse[field][rows]) for field in SPARSE_FIELDS},
        multi={
            field: encode_slots(by_name[field], raw.multi[field][rows], raw.lengths[field][rows])
            for field in DYNAMIC_FIELDS
        },
        group=raw.aid[rows],
    )


def _update_max_ids(max_ids: dict[str, int], raw: RawSplit) -> None:
    """Largest id per field over the values the prepared data keeps (not the padding past a length)."""
    if not len(raw):
        return
    for field in SPARSE_FIELDS:
        max_ids[field] = max(max_ids[field], int(raw.sparse[field].max()))
    for field, width in DYNAMIC_FIELDS.items():
        kept = np.arange(width) < np.clip(raw.lengths[field], 0, width)[:, None]
        if kept.any():
            max_ids[field] = max(max_ids[field], int(raw.multi[field][kept].max()))


def _campaign_stats(raw: RawSplit) -> dict[str, Any]:
    aids, rows = np.unique(raw.aid, return_counts=True)
    if not len(aids):
        return {"campaigns": 0}
    positives = np.bincount(np.searchsorted(aids, raw.aid), weights=raw.label, minlength=len(aids))
    return {
        "campaigns": len(aids),
        "rows_per_campaign": {
            "min": int(rows.min()),
            "median": float(np.median(rows)),
            "mean": float(rows.mean()),
            "max": int(rows.max()),
        },
        "campaigns_with_both_classes": int(((positives > 0) & (positives < rows)).sum()),
    }


def _oracle_quality(rows: TruthRows) -> dict[str, Any]:
    """Ranking quality of the true probabilities, and of the shared part alone (what a model that does
    not adapt to the campaign could at best reach), on one split."""
    labels = rows.labels[:, 0]
    quality = ranking_quality(labels, rows.truth["probability"], rows.groups)
    shared = ranking_quality(labels, rows.truth["shared_logit"], rows.groups)
    quality["shared_only"] = {"gauc": shared["gauc"], "gauc_weighted": shared["gauc_weighted"]}
    return quality


def prepared_checks(
    pickles: Pickles, prepared_dir: Path, metadata: DatasetMetadata, params: Params
) -> list[tuple[str, pd.DataFrame, list[Any]]]:
    """Cross-split rules as three small derived tables: a campaign belongs to one of train / hot /
    cold; every stage2 campaign has stage1 rows to adapt on; row ids are unique within a split."""
    campaigns = {
        split: np.unique(ex.split_column(prepared_dir, metadata, split, GROUP)) for split in metadata.splits
    }
    by_group = pd.DataFrame(
        [
            {GROUP: int(aid), "group": group}
            for group, splits in CAMPAIGN_GROUPS.items()
            for aid in np.unique(np.concatenate([campaigns[s] for s in splits]))
        ],
        columns=[GROUP, "group"],
    )
    # "<stage2 split>:<aid>" for every stage2 campaign, against those with stage1 rows
    stage_pairs = [splits for splits in CAMPAIGN_GROUPS.values() if len(splits) == 2]
    stage2 = [f"{second}:{aid}" for _, second in stage_pairs for aid in campaigns[second]]
    adaptable = [f"{second}:{aid}" for first, second in stage_pairs for aid in campaigns[first]]
    row_ids = pd.DataFrame(
        {
            "split": np.concatenate(
                [np.full(metadata.splits[s].rows, s, dtype=object) for s in metadata.splits]
            ),
            ROW_ID: np.concatenate(
                [ex.split_column(prepared_dir, metadata, s, ROW_ID) for s in metadata.splits]
            ),
        }
    )
    return [
        ("campaign_groups", by_group, ex.build([ex.unique(GROUP)])),
        (
            "stage2_campaigns",
            pd.DataFrame({"campaign": stage2}, dtype=object),
            ex.build([ex.in_set("campaign", adaptable)]),
        ),
        ("row_ids", row_ids, ex.build([ex.unique_together(["split", ROW_ID])])),
    ]
