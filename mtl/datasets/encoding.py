"""Encoders fitted on train and saved beside the prepared splits, and the seeded hash that splits rows.

* ``Vocabulary``: the raw values seen at least ``min_count`` times in train, numbered ``1..V`` most
  frequent first (ties in value order, so the ids never depend on chunking); anything else -- rare,
  unseen in train, missing -- is the unknown id 0. Counted chunk by chunk (``ValueCounter``).
* ``ShiftedIds``: a source's own non-negative integer ids plus one (0 = unknown), for sources whose ids
  are already a label encoding shared by every split (look-alike).
* ``Scaler``: ``(t(x) - mean) / std`` with train moments streamed chunk by chunk (``t = log1p`` for
  heavy-tailed columns, else the identity); ``identity`` columns pass through unchanged.
* ``seeded_hash``: SplitMix64, for splits that depend only on a row's id and a seed.

``save_encoders`` writes ``encoders.json`` -- a header describing the raw input, then ``sparse`` (one
entry per id field: a vocabulary's carries its ``vocab_file``, shifted ids their ``id_shift``) and
``dense`` (one per scaler) -- and ``vocab/<field>.parquet`` (value, id, count); ``load_encoders`` reads
them back, so ``codec.RawCodec`` encodes raw values exactly as prepare did.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mtl.datasets.prepared import ENCODERS_FILE, LENGTH_SUFFIX, write_json_atomic
from mtl.errors import DataFormatError

UNKNOWN_ID = 0
UNKNOWN_RAW_ID = -1  # an integer raw value no vocabulary holds: what the unknown id decodes to
VOCAB_DIR = "vocab"
MERGE_EVERY = 1 << 16  # pending distinct values that trigger a merge even while the counts are small
MIN_STD = 1e-12  # a column this constant scales to 0 rather than to noise


def json_key(column: Hashable) -> Any:
    """A raw column name as encoders.json stores it (integer positions stay integers)."""
    return int(column) if isinstance(column, (int, np.integer)) else str(column)


class ValueCounter:
    """Counts of raw values (integers or text) over a stream of chunks; missing values are not counted.
    Memory grows with the distinct values, not with the rows."""

    def __init__(self) -> None:
        self._values: np.ndarray | None = None
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0
        self._dtype = np.dtype(object)  # of the values added: an empty result keeps it

    def add(self, values: Any) -> None:
        values = np.asarray(values).ravel()
        self._dtype = values.dtype
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        present = codes >= 0
        if not present.any():
            return
        counts = np.bincount(codes[present], minlength=len(uniques)).astype(np.int64)
        self._pending.append((np.asarray(uniques), counts))
        self._pending_size += len(uniques)
        # Merging only once the pending part is as large as the running one keeps the work linear.
        if self._pending_size >= max(len(self._counts), MERGE_EVERY):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        parts = [] if self._values is None else [(self._values, self._counts)]
        parts += self._pending
        codes, uniques = pd.factorize(np.concatenate([values for values, _ in parts]))
        weights = np.concatenate([counts for _, counts in parts])
        self._values = np.asarray(uniques)
        self._counts = np.bincount(codes, weights=weights, minlength=len(uniques)).astype(np.int64)
        self._pending, self._pending_size = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct values in ascending order, their counts)."""
        self._merge()
        if self._values is None:
            return np.empty(0, dtype=self._dtype), np.empty(0, dtype=np.int64)
        order = np.argsort(self._values, kind="stable")
        return self._values[order], self._counts[order]


@dataclass
class Vocabulary:
    """Train values kept by ``min_count``, id ``i + 1`` for ``values[i]`` (most frequent first)."""

    KEY: ClassVar[str] = "vocab_file"  # the encoders.json key that marks this kind of sparse entry

    name: str  # prepared column
    column: Hashable  # raw column
    values: np.ndarray  # id - 1 -> raw value
    counts: np.ndarray  # train occurrences of each kept value
    min_count: int
    distinct_in_train: int
    max_len: int | None = None  # slots of a multi-valued field
    raw_length_column: str | None = None  # a source column that caps a list to its first n values

    @classmethod
    def fit(
        cls, name: str, column: Hashable, counter: ValueCounter, min_count: int, max_len: int | None = None
    ) -> Vocabulary:
        values, counts = counter.result()
        kept = counts >= min_count
        order = np.argsort(-counts[kept], kind="stable")  # most frequent first, ties in value order
        return cls(name, column, values[kept][order], counts[kept][order], min_count, len(values), max_len)

    def __post_init__(self) -> None:
        self._index = pd.Index(self.values)

    @property
    def size(self) -> int:
        return len(self.values) + 1  # + the unknown id 0

    @property
    def integer(self) -> bool:
        """Whether the raw values are integer ids (parsed from lists and strings when serving)."""
        return self.values.dtype.kind in "iu"

    def encode(self, values: Any) -> np.ndarray:
        """Ids (int32, same shape) of raw values; unseen, rare or missing values -> 0."""
        values = np.asarray(values)
        return (self._index.get_indexer(values.ravel()) + 1).astype(np.int32).reshape(values.shape)

    def decode(self, ids: np.ndarray) -> np.ndarray:
        """Raw values of ids; the unknown id gives -1 for integer ids, else None (neither encodes back)."""
        if self.integer:
            return np.r_[UNKNOWN_RAW_ID, self.values].astype(np.int64)[ids]
        table = np.empty(self.size, dtype=object)
        table[1:] = self.values
        return table[ids]

    def to_json(self, out_dir: Path) -> dict[str, Any]:
        """Write ``vocab/<name>.parquet`` and return the field's encoders.json entry."""
        path = f"{VOCAB_DIR}/{self.name}.parquet"
        (out_dir / VOCAB_DIR).mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "value": pa.array(self.values),
                "id": pa.array(np.arange(1, self.size, dtype=np.int32)),
                "count": pa.array(self.counts.astype(np.int64)),
            }
        )
        pq.write_table(table, out_dir / path)
        entry = {"name": self.name, "column": json_key(self.column), "vocab_file": path}
        entry |= {"vocab_size": self.size, "unknown_id": UNKNOWN_ID, "min_count": self.min_count}
        return entry | _slots_to_json(self)

    @classmethod
    def from_json(cls, entry: dict[str, Any], prepared_dir: Path) -> Vocabulary:
        table = pq.read_table(prepared_dir / entry["vocab_file"])
        ids = table.column("id").to_numpy()
        if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
            raise DataFormatError(f"{entry['vocab_file']}: ids are not 1..{len(ids)} in order")
        values = table.column("value").to_numpy(zero_copy_only=False)
        counts = table.column("count").to_numpy()
        return cls(
            entry["name"], entry["column"], values, counts, entry["min_count"], len(values), **_slots(entry)
        )


@dataclass
class ShiftedIds:
    """A source's own ids ``0..source_max_id`` as ``1..source_max_id + 1``; anything else -> 0."""

    KEY: ClassVar[str] = "id_shift"
    SHIFT: ClassVar[int] = 1

    name: str
    column: Hashable
    source_max_id: int | None  # None while preparing: every non-negative id is kept
    max_len: int | None = None
    raw_length_column: str | None = None  # a source column that caps a list to its first n ids

    @property
    def size(self) -> int:
        return (self.source_max_id if self.source_max_id is not None else -1) + 1 + self.SHIFT

    @property
    def integer(self) -> bool:
        return True

    def encode(self, raw: Any) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.int64)
        known = raw >= 0 if self.source_max_id is None else (raw >= 0) & (raw <= self.source_max_id)
        return np.where(known, raw + self.SHIFT, UNKNOWN_ID).astype(np.int32)

    def decode(self, ids: np.ndarray) -> np.ndarray:
        ids = ids.astype(np.int64)
        return np.where(ids > 0, ids - self.SHIFT, UNKNOWN_RAW_ID)

    def to_json(self, out_dir: Path) -> dict[str, Any]:
        entry = {"name": self.name, "column": json_key(self.column), "id_shift": self.SHIFT}
        entry |= {"source_max_id": self.source_max_id, "vocab_size": self.size, "unknown_id": UNKNOWN_ID}
        return entry | _slots_to_json(self)

    @classmethod
    def from_json(cls, entry: dict[str, Any], prepared_dir: Path) -> ShiftedIds:
        if entry["id_shift"] != cls.SHIFT:
            raise DataFormatError(f"{entry['name']}: id_shift {entry['id_shift']}, expected {cls.SHIFT}")
        return cls(entry["name"], entry["column"], int(entry["source_max_id"]), **_slots(entry))


def _slots_to_json(encoder: Vocabulary | ShiftedIds) -> dict[str, Any]:
    """The entry keys of a multi-valued field (none for a single-valued one)."""
    if encoder.max_len is None:
        return {}
    entry = {"max_len": encoder.max_len, "length_column": encoder.name + LENGTH_SUFFIX}
    return entry | ({"raw_length_column": encoder.raw_length_column} if encoder.raw_length_column else {})


def _slots(entry: dict[str, Any]) -> dict[str, Any]:
    return {"max_len": entry.get("max_len"), "raw_length_column": entry.get("raw_length_column")}


def encode_slots(
    encoder: Vocabulary | ShiftedIds, ids: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A multi-valued field: ids of the first ``min(count, width)`` slots of each row, 0 after them,
    and those lengths (int16)."""
    width = ids.shape[1]
    lengths = np.clip(np.asarray(counts, dtype=np.int64), 0, width)
    present = np.arange(width)[None, :] < lengths[:, None]
    return np.where(present, encoder.encode(ids), UNKNOWN_ID).astype(np.int32), lengths.astype(np.int16)


class Moments:
    """Count, mean and sum of squared deviations of one column, merged chunk by chunk (Chan et al.)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0.0, 0.0, 0.0

    def add(self, values: np.ndarray) -> None:
        if len(values) == 0:
            return
        n_b, mean_b = float(len(values)), float(values.mean())
        m2_b = float(((values - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean, self.m2 = self.mean + delta * n_b / n, self.m2 + m2_b + delta**2 * self.n * n_b / n
        self.n = n


@dataclass
class Scaler:
    """A dense column standardised with train moments (log1p first where asked), or passed through."""

    IDENTITY: ClassVar[str] = "identity"

    name: str
    column: Hashable
    transform: str = "standardize"  # or IDENTITY
    log1p: bool = False
    mean: float = 0.0
    std: float = 1.0

    def transformed(self, values: np.ndarray) -> np.ndarray:
        """Raw values as the moments are taken (log1p where asked)."""
        return np.log1p(values) if self.log1p else values

    def fitted(self, moments: Moments) -> Scaler:
        std = float(np.sqrt(moments.m2 / moments.n)) if moments.n else 1.0
        std = std if std > MIN_STD else 1.0
        return Scaler(self.name, self.column, self.transform, self.log1p, float(moments.mean), std)

    def encode(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.transform == self.IDENTITY:
            return values.astype(np.float32)
        return ((self.transformed(values) - self.mean) / self.std).astype(np.float32)

    def decode(self, values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float64)
        if self.transform == self.IDENTITY:
            return values
        values = values * self.std + self.mean
        return np.expm1(values) if self.log1p else values

    def to_json(self, out_dir: Path) -> dict[str, Any]:
        entry = {"name": self.name, "column": json_key(self.column), "transform": self.transform}
        return entry | {"log1p": self.log1p, "mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, entry: dict[str, Any], prepared_dir: Path) -> Scaler:
        return cls(
            entry["name"], entry["column"], entry["transform"], entry["log1p"], entry["mean"], entry["std"]
        )


Encoder = Vocabulary | ShiftedIds | Scaler
SPARSE_KINDS: tuple[type[Vocabulary] | type[ShiftedIds], ...] = (Vocabulary, ShiftedIds)


def save_encoders(
    out_dir: Path, header: dict[str, Any], sparse: Sequence[Vocabulary | ShiftedIds], dense: Sequence[Scaler]
) -> None:
    """Write encoders.json -- ``header`` (what the raw input is), then the id fields' and the dense
    fields' entries -- and the vocabularies' files."""
    out_dir = Path(out_dir)
    entries = {"sparse": [e.to_json(out_dir) for e in sparse], "dense": [e.to_json(out_dir) for e in dense]}
    write_json_atomic(out_dir / ENCODERS_FILE, {**header, **entries})


def load_encoders(prepared_dir: Path) -> dict[str, Encoder]:
    """The encoders of a prepared directory by prepared column name."""
    prepared_dir = Path(prepared_dir)
    path = prepared_dir / ENCODERS_FILE
    try:
        data = json.loads(path.read_text())
        sparse = [_sparse_kind(entry).from_json(entry, prepared_dir) for entry in data["sparse"]]
        dense = [Scaler.from_json(entry, prepared_dir) for entry in data["dense"]]
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise DataFormatError(f"{path}: cannot read the encoders ({exc!r})") from None
    return {encoder.name: encoder for encoder in (*sparse, *dense)}


def _sparse_kind(entry: dict[str, Any]) -> type[Vocabulary] | type[ShiftedIds]:
    """A sparse entry's encoder: the kind whose key it carries (a vocabulary has a vocab file)."""
    return next(kind for kind in SPARSE_KINDS if kind.KEY in entry)


# --- splits by a seeded hash --------------------------------------------------------------------------

GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def seeded_hash(values: Any, seed: int) -> np.ndarray:
    """SplitMix64's output for the state ``value + seed x golden``: a well-mixed uint64 per value."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        x = np.asarray(values).astype(np.uint64) + np.uint64(seed % 2**64) * GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def in_fraction(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows whose id hashes below ``fraction``: deterministic, independent of file order and chunking."""
    return (seeded_hash(ids, seed) >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def in_first_half(rows: np.ndarray, seed: int) -> np.ndarray:
    """One row of each adjacent pair (0,1), (2,3), ... chosen by a seeded hash of the pair number, so a
    file splits 1:1 (to within one row) whatever its chunking."""
    rows = np.asarray(rows).astype(np.uint64)
    coin = seeded_hash((rows >> np.uint64(1)) ^ seeded_hash(np.array([seed % 2**64]), 1), 1) & np.uint64(1)
    return (rows & np.uint64(1)) == coin
