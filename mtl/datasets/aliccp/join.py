"""The raw Tianchi Ali-CCP archives: parse, stream, hash-partition, join, with memory bounded whatever
their size.

``sample_skeleton_*.csv``: ``sample_id,click,conversion,common_feature_index,feature_num,feature_list``;
``common_features_*.csv``: ``common_feature_index,feature_num,feature_list``. A feature list holds
entries ``field\\x02feature_id\\x03value`` separated by ``\\x01``; a multi-valued field repeats its
field. Lines are parsed a block at a time with Arrow string kernels.

Both members of an archive are read straight out of the compressed tar stream (nothing is extracted).
Each block of lines is parsed into slots and appended to one of ``B`` bucket files chosen by a hash of
the ``common_feature_index`` -- the skeleton rows and the common (user) features of the same index land
in the same bucket. The join then takes one bucket at a time: its common features in memory, its
skeleton rows streamed past them. ``B`` grows with the archive size, so a bucket stays small.

Per the public preprocessors, rows with click=0 and conversion=1 are dropped (and counted). A field's ids
come from the skeleton first, then from the common features. Dense ``D<field>`` values are
``sign(s) * log1p(|s|)`` of ``s`` = the sum of the ``\\x03`` values of the field's entries in the row (0 if
absent): one order-free number per field that, unlike the last entry's value, does not depend on how
many entries a row has; the log tames the heavy tail of count-like values.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mtl.datasets.aliccp import (
    DENSE_SOURCE_FIELDS,
    FIELD_INDEX,
    FIELDS,
    Layout,
    RawChunk,
    assemble_slots,
    column_matrix,
    slot_columns,
    slot_stats,
)
from mtl.datasets.text import BLOCK_BYTES, excerpt, iter_line_blocks, lines_array
from mtl.errors import DataFormatError

# --- lines of the two members ---------------------------------------------------------------------------

SKELETON_COLUMNS = ("sample_id", "click", "conversion", "common_feature_index", "feature_num", "feature_list")
COMMON_COLUMNS = ("common_feature_index", "feature_num", "feature_list")
_FIELD_NAMES = pa.array(FIELDS)
_DENSE_POSITION = np.full(len(FIELDS), -1)
_DENSE_POSITION[[FIELD_INDEX[f] for f in DENSE_SOURCE_FIELDS]] = np.arange(len(DENSE_SOURCE_FIELDS))


@dataclass
class FeatureBlock:
    """Parsed lines of one block: the named columns and the feature lists laid out in slots."""

    first_line: int
    columns: dict[str, np.ndarray]  # integer columns of the line (sample_id, click, ..., feature_num)
    key: pa.Array  # common_feature_index (string)
    ids: np.ndarray
    counts: np.ndarray
    dense: np.ndarray  # (n, len(DENSE_SOURCE_FIELDS)): sum of the entry values of each dense source field
    entries: np.ndarray  # entries per line
    unknown_per_row: np.ndarray
    unknown_fields: Counter[str]

    def __len__(self) -> int:
        return int(self.entries.shape[0])


class _Where:
    """Names a line of the file in errors."""

    def __init__(self, where: str, first_line: int, lines: pa.Array):
        self.where, self.first_line, self.lines = where, first_line, lines

    def error(self, row: int, problem: str) -> DataFormatError:
        line = self.lines[int(row)].as_py()
        return DataFormatError(
            f"{self.where}: line {self.first_line + int(row)}: {problem}; the line reads {excerpt(line)}"
        )

    def numbers(self, values: pa.Array, rows: np.ndarray, kind: pa.DataType, what: str) -> np.ndarray:
        """``values`` cast to ``kind``; a value that does not parse is reported with its line."""
        try:
            out = pc.cast(values, kind).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            convert = int if pa.types.is_integer(kind) else float
            for i, text in enumerate(values.to_pylist()):
                try:
                    convert(text)
                except (TypeError, ValueError):
                    raise self.error(rows[i], f"{what} {text!r} is not a number") from None
            raise
        if out.dtype.kind == "f" and not np.isfinite(out).all():
            i = int(np.argmin(np.isfinite(out)))
            raise self.error(rows[i], f"{what} {values[i].as_py()!r} is not finite")
        return out


def _pieces(at: _Where, values: pa.Array, rows: np.ndarray, separator: str, expected: str) -> pa.Array:
    """``values`` split once at ``separator``; every value must contain it."""
    pieces = pc.split_pattern(values, separator, max_splits=1)
    bad = np.flatnonzero(pc.list_value_length(pieces).to_numpy() != 2)
    if bad.size:
        raise at.error(rows[bad[0]], f"feature entry part {values[int(bad[0])].as_py()!r} is not {expected}")
    return pieces


def parse_block(block: bytes, first_line: int, where: str, layout: Layout, skeleton: bool) -> FeatureBlock:
    """Parse whole lines of a skeleton (``skeleton=True``) or common-features file."""
    lines = lines_array(block, first_line, where)
    at = _Where(where, first_line, lines)
    names = SKELETON_COLUMNS if skeleton else COMMON_COLUMNS
    parts = pc.split_pattern(lines, ",", max_splits=len(names) - 1)
    n = len(lines)
    short = np.flatnonzero(pc.list_value_length(parts).to_numpy() != len(names))
    if short.size:
        raise at.error(short[0], f"expected {len(names)} comma-separated columns ({','.join(names)})")
    row = np.arange(n)
    column = {name: pc.list_element(parts, i) for i, name in enumerate(names)}
    integers = {
        name: at.numbers(column[name], row, pa.int64(), name)
        for name in names
        if name not in ("common_feature_index", "feature_list")
    }

    entries = pc.split_pattern(column["feature_list"], "\x01")
    parent = pc.list_parent_indices(entries).to_numpy()
    flat = pc.list_flatten(entries)
    nonempty = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)  # an empty feature list has no entries
    flat, parent = flat.filter(pa.array(nonempty)), parent[nonempty]
    field_rest = _pieces(at, flat, parent, "\x02", "field\\x02feature_id\\x03value")
    id_value = _pieces(at, pc.list_element(field_rest, 1), parent, "\x03", "feature_id\\x03value")
    field_index = pc.index_in(pc.list_element(field_rest, 0), value_set=_FIELD_NAMES)
    known = pc.is_valid(field_index).to_numpy(zero_copy_only=False)
    feature = at.numbers(pc.list_element(id_value, 0), parent, pa.int64(), "feature_id")
    value = at.numbers(pc.list_element(id_value, 1), parent, pa.float64(), "feature value")

    fields = pc.fill_null(field_index, -1).to_numpy().astype(np.int64)
    ids, counts = assemble_slots(n, parent[known], fields[known], feature[known], layout)
    dense_position = _DENSE_POSITION[fields]
    is_dense = known & (dense_position >= 0)
    width = len(DENSE_SOURCE_FIELDS)
    dense = np.bincount(
        parent[is_dense] * width + dense_position[is_dense], weights=value[is_dense], minlength=n * width
    ).reshape(n, width)
    unknown_fields: Counter[str] = Counter()
    if not known.all():
        names_unknown = pc.list_element(field_rest, 0).filter(pa.array(~known))
        for item in pc.value_counts(names_unknown).to_pylist():
            unknown_fields[item["values"]] += item["counts"]
    return FeatureBlock(
        first_line=first_line,
        columns=integers,
        key=column["common_feature_index"],
        ids=ids,
        counts=counts,
        dense=dense,
        entries=np.bincount(parent, minlength=n),
        unknown_per_row=np.bincount(parent[~known], minlength=n),
        unknown_fields=unknown_fields,
    )


# --- the archives, streamed and joined ------------------------------------------------------------------

SKELETON, COMMON = "skeleton", "common_features"
ARCHIVE_BYTES_PER_BUCKET = 64 << 20
MAX_BUCKETS = 256  # bucket files open at once while partitioning one member
DENSE_VALUE = (
    "sign(s) * log1p(|s|), s = sum of the \\x03 values of the field's entries in the row (0 if absent)"
)


def member_names(part: str) -> dict[str, str]:
    return {f"sample_skeleton_{part}.csv": SKELETON, f"common_features_{part}.csv": COMMON}


def bucket_count(archive: Path) -> int:
    return int(np.clip(np.ceil(archive.stat().st_size / ARCHIVE_BYTES_PER_BUCKET), 1, MAX_BUCKETS))


def archive_blocks(
    archive: Path, part: str, block_bytes: int = BLOCK_BYTES
) -> Iterator[tuple[str, str, int, bytes]]:
    """``(kind, member name, first line, block)`` for both members, read from the compressed stream."""
    wanted = member_names(part)
    seen: set[str] = set()
    try:
        with tarfile.open(archive, mode="r|*") as tar:
            for member in tar:
                name = PurePosixPath(member.name).name
                if not member.isfile() or name not in wanted:
                    continue
                if name in seen:
                    raise DataFormatError(f"{archive} holds {name} twice")
                seen.add(name)
                stream = tar.extractfile(member)
                assert stream is not None
                empty = True
                for first_line, block in iter_line_blocks(stream, block_bytes):
                    empty = False
                    yield wanted[name], name, first_line, block
                if empty:
                    raise DataFormatError(f"{archive}: member {name} is empty")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataFormatError(f"{archive} is not a readable tar archive or is truncated: {exc}") from None
    missing = sorted(set(wanted) - seen)
    if missing:
        raise DataFormatError(f"{archive} lacks {', '.join(missing)} (expected members {', '.join(wanted)})")


def parsed_blocks(archive: Path, part: str, layout: Layout) -> Iterator[tuple[str, str, FeatureBlock]]:
    for kind, name, first_line, block in archive_blocks(archive, part):
        yield kind, name, parse_block(block, first_line, f"{archive}:{name}", layout, kind == SKELETON)


def check_labels(where: str, block: FeatureBlock) -> None:
    for name in ("click", "conversion"):
        labels = block.columns[name]
        bad = np.flatnonzero(labels > 1)
        if bad.size:
            line = block.first_line + int(bad[0])
            raise DataFormatError(f"{where}: line {line}: {name} is {int(labels[bad[0]])}, expected 0 or 1")


def _buckets_of(keys: pa.Array, buckets: int) -> np.ndarray:
    if buckets == 1:
        return np.zeros(len(keys), dtype=np.int64)
    hashes = pd.util.hash_array(np.asarray(keys.to_numpy(zero_copy_only=False), dtype=object))
    return (hashes % np.uint64(buckets)).astype(np.int64)


def partition(
    archive: Path, part: str, layout: Layout, work: Path, buckets: int, stats: Counter[str]
) -> None:
    """Parse both members and append their rows to the bucket files of ``work``."""
    writers: dict[tuple[str, int], pa.ipc.RecordBatchStreamWriter] = {}
    current = None
    try:
        for kind, name, block in parsed_blocks(archive, part, layout):
            if kind != current:  # one member at a time: close the previous member's buckets
                for writer in writers.values():
                    writer.close()
                writers, current = {}, kind
            where = f"{archive}:{name}"
            columns: dict[str, pa.Array] = {"key": block.key}
            if kind == SKELETON:
                check_labels(where, block)
                columns |= {
                    "row_id": pa.array(block.columns["sample_id"]),
                    "click": pa.array(block.columns["click"].astype(np.int8)),
                    "purchase": pa.array(block.columns["conversion"].astype(np.int8)),
                }
            stats[f"{kind}_rows"] += len(block)
            stats["feature_num_mismatch_rows"] += int((block.columns["feature_num"] != block.entries).sum())
            for field, n in block.unknown_fields.items():
                stats[f"unknown_field_entries.{field}"] += n
            table = pa.table(columns | slot_columns(block.ids, block.counts, block.dense))
            bucket = _buckets_of(block.key, buckets)
            order = np.argsort(bucket, kind="stable")
            table, bucket = table.take(order), bucket[order]
            bounds = np.searchsorted(bucket, np.arange(buckets + 1))
            for b in np.flatnonzero(np.diff(bounds)):
                if (kind, b) not in writers:
                    writers[kind, b] = pa.ipc.new_stream(str(work / f"{kind}-{b}.arrow"), table.schema)
                writers[kind, b].write_table(table.slice(bounds[b], bounds[b + 1] - bounds[b]))
    finally:
        for writer in writers.values():
            writer.close()


def _read_bucket(path: Path) -> Iterator[pa.RecordBatch]:
    if path.is_file():
        with pa.OSFile(str(path)) as source:
            yield from pa.ipc.open_stream(source)


def join_buckets(
    work: Path, buckets: int, file: str, layout: Layout, stats: Counter[str]
) -> Iterator[RawChunk]:
    """Join each bucket's skeleton rows with its common features; drop click=0 & purchase=1 rows."""
    for b in range(buckets):
        batches = list(_read_bucket(work / f"{COMMON}-{b}.arrow"))
        common = pa.Table.from_batches(batches).combine_chunks() if batches else None
        keys = common.column("key").chunk(0) if common else pa.array([], pa.string())
        stats["duplicate_common_feature_index"] += len(keys) - len(pc.unique(keys))
        if common:
            user_ids, user_counts = column_matrix(common, "ids"), column_matrix(common, "counts")
            user_dense = column_matrix(common, "dense")
        for batch in _read_bucket(work / f"{SKELETON}-{b}.arrow"):
            n = batch.num_rows
            index = pc.fill_null(pc.index_in(batch.column("key"), value_set=keys), -1).to_numpy()
            found = index >= 0
            stats["skeleton_rows_without_common_features"] += int((~found).sum())
            ids, counts, dense = (
                column_matrix(batch, "ids"),
                column_matrix(batch, "counts"),
                column_matrix(batch, "dense"),
            )
            if found.any():
                take = np.where(found, index, 0)
                other_counts = np.where(found[:, None], user_counts[take], 0)
                ids, counts = merge_slots(ids, counts, user_ids[take], other_counts, layout)
                dense = dense + np.where(found[:, None], user_dense[take], 0.0)
            click, purchase = batch.column("click").to_numpy(), batch.column("purchase").to_numpy()
            keep = ~((click == 0) & (purchase == 1))
            stats["dropped_purchase_without_click"] += int(n - keep.sum())
            stats.update(slot_stats(counts[keep], layout))
            stats["rows"] += int(keep.sum())
            yield RawChunk(
                file=file,
                row_id=batch.column("row_id").to_numpy()[keep],
                click=click[keep].astype(np.int64),
                purchase=purchase[keep].astype(np.int64),
                ids=ids[keep],
                counts=counts[keep],
                dense=(np.sign(dense) * np.log1p(np.abs(dense)))[keep],
            )


def iter_tianchi_chunks(
    archive: Path, part: str, layout: Layout, stats: Counter[str], buckets: int | None = None
) -> Iterator[RawChunk]:
    """One archive as joined RawChunks (bucket files live in a temporary sibling directory)."""
    buckets = buckets or bucket_count(archive)
    work = Path(tempfile.mkdtemp(prefix=".aliccp-join-", dir=archive.parent))
    try:
        partition(archive, part, layout, work, buckets, stats)
        yield from join_buckets(work, buckets, archive.name, layout, stats)
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
