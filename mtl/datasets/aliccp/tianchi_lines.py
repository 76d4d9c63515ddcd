"""Lines of the raw Tianchi Ali-CCP files, parsed a block at a time with Arrow string kernels.

``sample_skeleton_*.csv``: ``sample_id,click,conversion,common_feature_index,feature_num,feature_list``;
``common_features_*.csv``: ``common_feature_index,feature_num,feature_list``. A feature list holds
entries ``field\\x02feature_id\\x03value`` separated by ``\\x01``; a multi-valued field repeats its field.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from mtl.datasets.aliccp.fields import DENSE_SOURCE_FIELDS, FIELD_INDEX, FIELDS, Layout, assemble_slots
from mtl.datasets.aliccp.lines import excerpt, lines_array
from mtl.errors import DataFormatError

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
