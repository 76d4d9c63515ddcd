"""The 23 Ali-CCP fields, their slot layout, and the parsed-chunk form every source produces.

Every source (PaddleRec tokens, raw Tianchi, label-encoded CSV, synthetic) is parsed into ``RawChunk``:
raw feature ids laid out in fixed slots (single-valued fields one slot, multi-valued fields
``max_len`` slots in file order), the true number of ids each row had per field, labels, and (where the
source has them) dense values. ``assemble_slots`` turns a flat list of (row, field, id) tokens into
that layout without a per-token Python loop.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# The order of the public ESMM reader (and of the prepared columns).
FIELDS: tuple[str, ...] = (
    "101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127", "128",
    "129", "205", "206", "207", "210", "216", "508", "509", "702", "853", "301",
)  # fmt: skip
MULTI_VALUED: frozenset[str] = frozenset({"109_14", "110_14", "127_14", "150_14", "210", "853"})
# Fields whose raw Tianchi entries carry informative values; the CSV layout ships them as D<field>.
DENSE_SOURCE_FIELDS: tuple[str, ...] = ("109_14", "110_14", "127_14", "150_14", "508", "509", "702", "853")
DENSE_FIELDS: tuple[str, ...] = tuple(f"D{name}" for name in DENSE_SOURCE_FIELDS)
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}


@dataclass(frozen=True)
class Layout:
    """Where each field's ids live in a row of raw slots, for a given ``max_len``."""

    max_len: int

    @property
    def widths(self) -> np.ndarray:
        return np.array([self.max_len if f in MULTI_VALUED else 1 for f in FIELDS], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.widths)[:-1]])

    @property
    def slots(self) -> int:
        return int(self.widths.sum())

    def field_slots(self, index: int) -> slice:
        start = int(self.offsets[index])
        return slice(start, start + int(self.widths[index]))


@dataclass
class RawChunk:
    """Parsed rows of one raw file: raw ids in slots, true per-field id counts, labels, dense values."""

    file: str  # the raw file the rows came from (for errors and the synthetic ground truth)
    row_id: np.ndarray  # (n,) int64
    click: np.ndarray  # (n,) int64
    purchase: np.ndarray  # (n,) int64
    ids: np.ndarray  # (n, layout.slots) int64; slot j of a field is meaningful only if j < its count
    counts: np.ndarray  # (n, len(FIELDS)) int32: ids the row had for the field (may exceed the width)
    dense: np.ndarray | None = None  # (n, len(DENSE_FIELDS)) float64 where the source has dense values

    def __len__(self) -> int:
        return int(self.row_id.shape[0])

    def take(self, mask: np.ndarray) -> RawChunk:
        """The rows where ``mask`` is true."""
        return RawChunk(
            file=self.file,
            row_id=self.row_id[mask],
            click=self.click[mask],
            purchase=self.purchase[mask],
            ids=self.ids[mask],
            counts=self.counts[mask],
            dense=None if self.dense is None else self.dense[mask],
        )


def assemble_slots(
    n_rows: int, rows: np.ndarray, fields: np.ndarray, values: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """Place tokens (row, field index, raw id) -- given in file order -- into slots.

    Each field keeps its first ``width`` ids in file order. Returns ``ids`` (n, slots) and ``counts``
    (n, fields): how many ids the row had for the field, before truncation.
    """
    n_fields = len(FIELDS)
    ids = np.zeros((n_rows, layout.slots), dtype=np.int64)
    if rows.size == 0:
        return ids, np.zeros((n_rows, n_fields), dtype=np.int32)
    # A stable sort on the small field index (radix sort) groups tokens by field, rows still in order.
    order = np.argsort(fields.astype(np.int8), kind="stable")
    f, r, v = fields[order], rows[order], values[order]
    position = np.arange(f.size)
    new_group = np.empty(f.size, dtype=bool)
    new_group[0] = True
    np.not_equal(f[1:], f[:-1], out=new_group[1:])
    new_group[1:] |= r[1:] != r[:-1]
    rank = position - np.maximum.accumulate(np.where(new_group, position, 0))
    keep = rank < layout.widths[f]
    ids[r[keep], (layout.offsets[f] + rank)[keep]] = v[keep]
    counts = np.bincount(r * n_fields + f, minlength=n_rows * n_fields).reshape(n_rows, n_fields)
    return ids, counts.astype(np.int32)


def slot_stats(counts: np.ndarray, layout: Layout) -> Counter[str]:
    """Ids beyond a multi-valued field's width (truncated) and repeats of single-valued fields."""
    stats: Counter[str] = Counter()
    excess = np.maximum(counts - layout.widths[None, :].astype(np.int32), 0).sum(axis=0)
    for index, name in enumerate(FIELDS):
        if excess[index]:
            kind = "truncated_ids" if name in MULTI_VALUED else "repeated_single_ids"
            stats[f"{kind}.{name}"] += int(excess[index])
    return stats


def merge_slots(
    ids_a: np.ndarray, counts_a: np.ndarray, ids_b: np.ndarray, counts_b: np.ndarray, layout: Layout
) -> tuple[np.ndarray, np.ndarray]:
    """Per field, the ids of ``a`` followed by those of ``b`` (truncated to the width)."""
    ids = ids_a.copy()
    widths = layout.widths
    kept_a = np.minimum(counts_a, widths[None, :])
    for index in range(len(FIELDS)):
        start, width = int(layout.offsets[index]), int(widths[index])
        for j in range(width):
            source = j - kept_a[:, index]  # slot of b that lands in slot j where a has run out
            from_b = (source >= 0) & (source < np.minimum(counts_b[:, index], width))
            picked = ids_b[np.arange(len(ids)), start + np.clip(source, 0, width - 1)]
            ids[:, start + j] = np.where(from_b, picked, ids[:, start + j])
    return ids, (counts_a + counts_b).astype(np.int32)


def slot_columns(ids: np.ndarray, counts: np.ndarray, dense: np.ndarray | None) -> dict[str, pa.Array]:
    """Slot arrays as Arrow fixed-size-list columns (for staging and join buckets on disk)."""
    columns = {
        "ids": pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), ids.shape[1]),
        "counts": pa.FixedSizeListArray.from_arrays(pa.array(counts.reshape(-1)), counts.shape[1]),
    }
    if dense is not None:
        columns["dense"] = pa.FixedSizeListArray.from_arrays(pa.array(dense.reshape(-1)), dense.shape[1])
    return columns


def column_matrix(table: pa.Table | pa.RecordBatch, name: str) -> np.ndarray:
    """A fixed-size-list column back as an (n, width) array."""
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)
