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
from mtl.datasets.base import Manifest
from mtl.datasets.lookalike.oracle import ranking_quality
from mtl.datasets.lookalike.parse import RawSplit, find_split_files, load_split, to_raw_split
from mtl.datasets.lookalike.schema import (
    AD_FIELDS,
    DYNAMIC_FIELDS,
    GROUP,
    LABEL,
    LENGTH_SUFFIX,
    MAX_SOURCE_ID,
    SPARSE_FIELDS,
    STATIC_FIELDS,
    TRUTH_FILE,
)
from mtl.datasets.prepared import (
    ENCODERS_FILE,
    DatasetMetadata,
    FeatureSchema,
    MultiField,
    PreparedWriter,
    SparseField,
    SplitChunk,
    write_json_atomic,
)
from mtl.errors import DataFormatError

ID_SHIFT = 1


def encode_ids(raw: np.ndarray, max_id: int | None = None) -> np.ndarray:
    """Source ids -> prepared ids: ``raw + 1`` where ``0 <= raw <= max_id``, else 0 (unknown)."""
    raw = np.asarray(raw, dtype=np.int64)
    known = raw >= 0 if max_id is None else (raw >= 0) & (raw <= max_id)
    return np.where(known, raw + ID_SHIFT, 0).astype(np.int32)


def encode_multi(
    ids: np.ndarray, lengths: np.ndarray, max_id: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Encode an (n, width) slot matrix: the first ``min(length, width)`` slots kept, the rest 0."""
    width = ids.shape[1]
    kept = np.clip(np.asarray(lengths, dtype=np.int64), 0, width)
    return np.where(np.arange(width) < kept[:, None], encode_ids(ids, max_id), 0), kept.astype(np.int16)


def prepare_lookalike(
    name: str, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params
) -> DatasetMetadata:
    """Parse, encode and write the five splits with ``PreparedWriter``; write encoders.json."""
    files = find_split_files(raw_dir)
    truth = _load_truth(raw_dir) if manifest.source == "synthetic" else None
    max_ids = dict.fromkeys((*SPARSE_FIELDS, *DYNAMIC_FIELDS), -1)
    writer = PreparedWriter(
        out_dir, _schema(max_ids), [LABEL], group_column=GROUP, row_group_rows=params.data.row_group_rows
    )
    campaigns: dict[str, Any] = {}
    clipped = dict.fromkeys(DYNAMIC_FIELDS, 0)
    oracle: dict[str, Any] = {}
    for split, path in files.items():
        raw = to_raw_split(load_split(path), path)
        writer.open_split(split)
        for start in range(0, len(raw), params.data.chunk_rows):
            writer.write(split, _chunk(raw, slice(start, start + params.data.chunk_rows)))
        _update_max_ids(max_ids, raw)
        for field, width in DYNAMIC_FIELDS.items():
            clipped[field] += int(((raw.lengths[field] > width) | (raw.lengths[field] < 0)).sum())
        campaigns[split] = _campaign_stats(raw)
        if truth is not None:
            oracle[split] = _oracle(raw, truth, split, raw_dir / TRUTH_FILE)
    too_large = {field: max_id for field, max_id in max_ids.items() if max_id > MAX_SOURCE_ID}
    if too_large:
        raise DataFormatError(
            f"{raw_dir}: ids beyond {MAX_SOURCE_ID} do not fit the prepared int32: {too_large}"
        )
    # vocabularies are known only after the last split; names and widths (the Parquet schema) are unchanged
    writer.features = _schema(max_ids)
    write_json_atomic(out_dir / ENCODERS_FILE, _encoders(max_ids))
    extra: dict[str, Any] = {
        "id_shift": ID_SHIFT,
        "field_roles": {
            "user_sparse": list(STATIC_FIELDS),
            "user_multi": list(DYNAMIC_FIELDS),
            "ad_sparse": list(AD_FIELDS),
        },
        "campaigns": campaigns,
        "lengths_clipped": clipped,
        "files": {split: path.relative_to(raw_dir).as_posix() for split, path in files.items()},
    }
    if truth is not None:
        extra["oracle"] = oracle
    return writer.finish(dataset=name, source=manifest.source, raw_hash=manifest.content_hash, extra=extra)


def _chunk(raw: RawSplit, rows: slice) -> SplitChunk:
    multi = {
        field: encode_multi(raw.multi[field][rows], raw.lengths[field][rows]) for field in DYNAMIC_FIELDS
    }
    return SplitChunk(
        labels={LABEL: raw.label[rows]},
        row_id=raw.row_id[rows],
        sparse={field: encode_ids(raw.sparse[field][rows]) for field in SPARSE_FIELDS},
        multi=multi,
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


def _schema(max_ids: dict[str, int]) -> FeatureSchema:
    vocab = {field: max(max_id, -1) + 1 + ID_SHIFT for field, max_id in max_ids.items()}
    return FeatureSchema(
        sparse=tuple(SparseField(field, vocab[field]) for field in SPARSE_FIELDS),
        multi=tuple(MultiField(field, vocab[field], width) for field, width in DYNAMIC_FIELDS.items()),
    )


def _encoders(max_ids: dict[str, int]) -> dict[str, Any]:
    """How a served model encodes raw (source-encoded) values the way this preparation did."""
    fields: dict[str, Any] = {}
    for field in SPARSE_FIELDS:
        role = "user_sparse" if field in STATIC_FIELDS else "ad_sparse"
        fields[field] = {"role": role, "source_max_id": max_ids[field], "vocab_size": max_ids[field] + 2}
    for field, width in DYNAMIC_FIELDS.items():
        fields[field] = {
            "role": "user_multi",
            "source_max_id": max_ids[field],
            "vocab_size": max_ids[field] + 2,
            "width": width,
            "length_column": field + LENGTH_SUFFIX,
        }
    return {
        "kind": "shifted_source_ids",
        "id_shift": ID_SHIFT,
        "unknown_id": 0,
        "rule": "prepared = raw + 1 if 0 <= raw <= source_max_id else 0 (unknown); for multi-valued "
        "fields only the first min(raw *_length, width) slots are kept and later slots are 0",
        "group_column": {"name": GROUP, "encoding": "kept as the source's campaign id"},
        "fields": fields,
    }


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


def _load_truth(raw_dir: Path) -> pd.DataFrame:
    path = raw_dir / TRUTH_FILE
    if not path.is_file():
        raise DataFormatError(
            f"{path} not found: the synthetic source writes it; run `mtl download lookalike`"
        )
    return pd.read_parquet(path)


def _oracle(raw: RawSplit, truth: pd.DataFrame, split: str, path: Path) -> dict[str, Any]:
    """Ranking quality of the true probabilities, and of the shared part alone (what a model that does
    not adapt to the campaign could at best reach), on one split."""
    rows = truth[truth["split"] == split].sort_values("row_id")
    ids = rows["row_id"].to_numpy()
    where = np.minimum(np.searchsorted(ids, raw.row_id), max(len(ids) - 1, 0))
    if len(raw) and (not len(ids) or not np.array_equal(ids[where], raw.row_id)):
        raise DataFormatError(f"{path} does not cover every row of split {split!r}: regenerate the raw data")
    quality = ranking_quality(raw.label, rows["probability"].to_numpy()[where], raw.aid)
    shared = ranking_quality(raw.label, rows["shared_logit"].to_numpy()[where], raw.aid)
    quality["shared_only"] = {"gauc": shared["gauc"], "gauc_weighted": shared["gauc_weighted"]}
    return quality
