"""Ali-CCP (Alibaba Click and Conversion Prediction): tasks click and purchase, 23 sparse fields.

Declared here: the fields, the sources and their files, and the raw expectations. ``parse`` reads each
source format into the same slot layout (``join`` streams and joins the raw Tianchi archives),
``prepare`` fits train-only vocabularies and writes the ``train``/``valid``/``test`` splits (valid:
a seeded hash of the train file's sample ids, or the CSV layout's own file), ``synthetic`` generates
the PaddleRec token format with the true probabilities beside it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from mtl.config import Params
from mtl.datasets import expectations as ex
from mtl.datasets.base import Dataset, RemoteFile, Source
from mtl.datasets.oracle import TruthFile
from mtl.datasets.prepared import ROW_ID, DatasetMetadata
from mtl.datasets.rechub_csv import RechubCsv
from mtl.errors import ConfigError
from mtl.validation import FINITE

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
TASKS = ("click", "purchase")
SPLITS = ("train", "valid", "test")
TRAIN_AND_VALID = "train+valid"  # role of a train file whose rows are split into train/valid by hash

TOKEN_FILES = {"train": "traindata_10w.csv", "test": "testdata_10w.csv"}
ARCHIVES = {"train": "sample_train.tar.gz", "test": "sample_test.tar.gz"}
PART_ROLES = {"train": TRAIN_AND_VALID, "test": "test"}  # of the token files and the Tianchi archives
CSV = RechubCsv(
    files={"train": "ali_ccp_train.csv", "valid": "ali_ccp_val.csv", "test": "ali_ccp_test.csv"},
    labels={task: task for task in TASKS},
    sparse=FIELDS,  # one id per field, even for multi-valued ones; 0 = the file's unknown id (absent)
    dense=DENSE_FIELDS,
    columns=(*TASKS, *FIELDS, *DENSE_FIELDS),
    dense_range=(-FINITE, FINITE),
)
TRUTH = TruthFile("synthetic_truth.parquet", "file", "sample_id", ("p_click", "p_purchase_given_click"))
TOKEN_FORMAT, TIANCHI_FORMAT, CSV_FORMAT = "paddlerec-esmm-tokens", "tianchi-raw", "aliccp-label-encoded-csv"
PADDLEREC_URL = "https://paddlerec.bj.bcebos.com/esmm/"

SOURCES = {
    "paddlerec": Source(
        name="paddlerec",
        description="PaddleRec's Ali-CCP subset for ESMM: token CSV "
        "'sample_id,click,purchase,field:feat_id ...'",
        files=tuple(RemoteFile(name, url=PADDLEREC_URL + name) for name in TOKEN_FILES.values()),
        format=TOKEN_FORMAT,
    ),
    "tianchi": Source(
        name="tianchi",
        description="The raw Tianchi archives (dataset 408; registration needed: download by hand, pass "
        "--from DIR); sample_skeleton joined with common_features while streaming",
        files=tuple(RemoteFile(name) for name in ARCHIVES.values()),
        kind="local",
        format=TIANCHI_FORMAT,
    ),
    "csv": Source(
        name="csv",
        description="The label-encoded CSV layout of the common Ali-CCP preprocessing (click, purchase, "
        "23 sparse ids, 8 dense D* columns); --from URL or folder",
        files=tuple(RemoteFile(name) for name in CSV.files.values()),
        format=CSV_FORMAT,
    ),
    "synthetic": Source(
        name="synthetic",
        description="Generated in the PaddleRec token format with known click/purchase probabilities",
        files=tuple(RemoteFile(name) for name in (*TOKEN_FILES.values(), TRUTH.name)),
        kind="generated",
        format=TOKEN_FORMAT,
    ),
}

# --- the parsed form every source produces: raw ids laid out in fixed slots per field ---------------------


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
        dense = None if self.dense is None else self.dense[mask]
        return RawChunk(
            self.file,
            self.row_id[mask],
            self.click[mask],
            self.purchase[mask],
            self.ids[mask],
            self.counts[mask],
            dense,
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


def slot_columns(ids: np.ndarray, counts: np.ndarray, dense: np.ndarray | None) -> dict[str, pa.Array]:
    """Slot arrays as Arrow fixed-size-list columns (for staging and join buckets on disk)."""
    columns = {"ids": ids, "counts": counts} | ({} if dense is None else {"dense": dense})
    return {
        name: pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])
        for name, a in columns.items()
    }


def column_matrix(table: pa.Table | pa.RecordBatch, name: str) -> np.ndarray:
    """A fixed-size-list column back as an (n, width) array."""
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size)


# Raw tables are named ``<part>_<kind>``: the token files' per-line facts (``train_tokens``), the CSV
# files as read (``valid_csv``), the Tianchi members' per-line facts (``test_skeleton``).
_LABELS = ex.binary_labels(TASKS)
_FEATURE_LISTS = [
    *ex.not_null(["common_feature_index"]),
    ex.equal("feature_num", "entries"),
    ex.between("unknown_field_entries", high=0, mostly=ex.RARE),
]
RAW_EXPECTATIONS = {
    "tokens": [
        *_LABELS,
        *ex.funnel(TASKS),
        *ex.not_null(["sample_id"]),
        ex.unique("sample_id"),
        ex.between("tokens", 1),
        ex.between("fields_present", 1, len(FIELDS)),
        # the public reader ignores tokens of other fields; more than a few means a different format
        ex.between("unknown_field_tokens", high=0, mostly=ex.RARE),
    ],
    "csv": [*CSV.expectations(), *ex.funnel(TASKS)],
    # The public preprocessors drop click=0 & conversion=1 rows (so do we): a few are expected.
    "skeleton": [*_LABELS, *ex.funnel(TASKS, mostly=ex.RARE), *ex.not_null(["sample_id"]), *_FEATURE_LISTS],
    "common_features": [*_FEATURE_LISTS, ex.unique("common_feature_index")],
}


class AliCCP(Dataset):
    name = "aliccp"
    title = "Ali-CCP (Alibaba Click and Conversion Prediction)"
    tasks = TASKS
    funnel = TASKS
    splits = SPLITS
    sources = SOURCES

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        kind = table.partition("_")[2]
        if kind not in RAW_EXPECTATIONS:
            raise ConfigError(f"aliccp has no raw table {table!r}; tables end in {sorted(RAW_EXPECTATIONS)}")
        return ex.build(RAW_EXPECTATIONS[kind])

    def prepared_expectations(self, metadata: DatasetMetadata, split: str, params: Params) -> list[Any]:
        """Beyond the generic suite: row ids identify rows within a split."""
        return ex.build([ex.unique(ROW_ID)])
