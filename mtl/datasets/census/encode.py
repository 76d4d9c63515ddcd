"""Encoders fitted on the train file: categorical vocabularies and dense scalers, saved beside the data.

* A categorical value seen at least ``min_count`` times in train gets an id in ``1..V`` (most frequent
  first, ties by value); anything else -- rare, unseen in train, missing -- maps to 0 (unknown).
* A dense column becomes ``(t(x) - mean) / std`` with ``t = log1p`` for heavy-tailed money columns and
  the identity otherwise; mean and std are over train rows (``std`` 0 is replaced by 1). ``identity``
  columns (PaddleRec's one-hot indicators) are passed through unchanged.

``Encoders.save`` writes ``encoders.json`` plus ``vocab/<field>.parquet`` (value, id, count), and
``Encoders.load`` reads them back, so a served model encodes raw values exactly as prepare did.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mtl.datasets.prepared import (
    ENCODERS_FILE,
    DenseField,
    FeatureSchema,
    SparseField,
    write_json_atomic,
)
from mtl.errors import DataFormatError

VOCAB_DIR = "vocab"
UNKNOWN_ID = 0


@dataclass(frozen=True)
class SparseSpec:
    name: str  # prepared column name
    column: Hashable  # column of the parsed raw frame


@dataclass(frozen=True)
class DenseSpec:
    name: str
    column: Hashable
    transform: str = "standardize"  # "standardize" | "identity"
    log1p: bool = False


@dataclass(frozen=True)
class FeaturePlan:
    sparse: tuple[SparseSpec, ...] = ()
    dense: tuple[DenseSpec, ...] = ()


@dataclass
class Vocabulary:
    spec: SparseSpec
    values: pd.Index  # id - 1 -> raw value
    counts: np.ndarray  # train count per value
    min_count: int

    @property
    def size(self) -> int:
        return len(self.values) + 1  # + the unknown id 0

    def encode(self, column: pd.Series) -> np.ndarray:
        codes = self.values.get_indexer(column)  # -1 where unknown
        return (codes + 1).astype(np.int32)


@dataclass
class Scaler:
    spec: DenseSpec
    mean: float = 0.0
    std: float = 1.0

    def encode(self, column: pd.Series) -> np.ndarray:
        values = column.to_numpy(dtype=np.float64)
        if self.spec.transform == "identity":
            return values.astype(np.float32)
        if self.spec.log1p:
            values = np.log1p(values)
        return ((values - self.mean) / self.std).astype(np.float32)


class EncoderFitter:
    """Accumulates value counts and moments over train chunks (bounded memory), then fits."""

    def __init__(self, plan: FeaturePlan, min_count: int):
        self.plan = plan
        self.min_count = min_count
        self._counts: dict[str, pd.Series] = {}
        self._moments = {s.name: np.zeros(3) for s in plan.dense}  # n, mean, M2 (Chan et al. merge)

    def update(self, frame: pd.DataFrame) -> None:
        for spec in self.plan.sparse:
            counts = frame[spec.column].value_counts(dropna=True)
            previous = self._counts.get(spec.name)
            self._counts[spec.name] = counts if previous is None else previous.add(counts, fill_value=0)
        for spec in self.plan.dense:
            if spec.transform == "identity" or len(frame) == 0:
                continue
            values = frame[spec.column].to_numpy(dtype=np.float64)
            if spec.log1p:
                values = np.log1p(values)
            n_b, mean_b = float(len(values)), float(values.mean())
            m2_b = float(((values - mean_b) ** 2).sum())
            n_a, mean_a, m2_a = self._moments[spec.name]
            n = n_a + n_b
            delta = mean_b - mean_a
            self._moments[spec.name] = np.array(
                [n, mean_a + delta * n_b / n, m2_a + m2_b + delta**2 * n_a * n_b / n]
            )

    def finish(self) -> Encoders:
        vocabularies = []
        for spec in self.plan.sparse:
            counts = self._counts.get(spec.name, pd.Series(dtype=np.int64))
            kept = counts[counts >= self.min_count]
            # Most frequent first, ties in value order: the ids never depend on chunking.
            value_rank = np.argsort(np.argsort(kept.index.to_numpy(), kind="stable"), kind="stable")
            order = np.lexsort((value_rank, -kept.to_numpy()))
            kept = kept.iloc[order]
            vocabularies.append(
                Vocabulary(spec, pd.Index(kept.index), kept.to_numpy().astype(np.int64), self.min_count)
            )
        scalers = []
        for spec in self.plan.dense:
            n, mean, m2 = self._moments[spec.name]
            std = float(np.sqrt(m2 / n)) if n else 1.0
            scalers.append(Scaler(spec, float(mean), std if std > 0 else 1.0))
        return Encoders(vocabularies, scalers)


@dataclass
class Encoders:
    vocabularies: list[Vocabulary]
    scalers: list[Scaler]

    def schema(self) -> FeatureSchema:
        return FeatureSchema(
            sparse=tuple(SparseField(v.spec.name, v.size) for v in self.vocabularies),
            dense=tuple(DenseField(s.spec.name) for s in self.scalers),
        )

    def encode(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Raw parsed columns -> (sparse ids, scaled dense values), keyed by prepared field name."""
        missing = [
            str(s.spec.column) for s in (*self.vocabularies, *self.scalers) if s.spec.column not in frame
        ]
        if missing:
            raise DataFormatError(f"cannot encode: input lacks the columns {missing[:10]}")
        sparse = {v.spec.name: v.encode(frame[v.spec.column]) for v in self.vocabularies}
        dense = {s.spec.name: s.encode(frame[s.spec.column]) for s in self.scalers}
        return sparse, dense

    def save(self, out_dir: Path, header: dict[str, Any]) -> None:
        """Write encoders.json (``header`` first: input format, labels, excluded columns) + vocab files."""
        out_dir = Path(out_dir)
        (out_dir / VOCAB_DIR).mkdir(parents=True, exist_ok=True)
        sparse = []
        for v in self.vocabularies:
            path = f"{VOCAB_DIR}/{v.spec.name}.parquet"
            table = pa.table(
                {
                    "value": pa.array(v.values.to_numpy()),
                    "id": pa.array(np.arange(1, v.size, dtype=np.int32)),
                    "count": pa.array(v.counts),
                }
            )
            pq.write_table(table, out_dir / path)
            sparse.append(
                {
                    "name": v.spec.name,
                    "column": _json_key(v.spec.column),
                    "vocab_file": path,
                    "vocab_size": v.size,
                    "unknown_id": UNKNOWN_ID,
                    "min_count": v.min_count,
                }
            )
        dense = [
            {
                "name": s.spec.name,
                "column": _json_key(s.spec.column),
                "transform": s.spec.transform,
                "log1p": s.spec.log1p,
                "mean": s.mean,
                "std": s.std,
            }
            for s in self.scalers
        ]
        write_json_atomic(out_dir / ENCODERS_FILE, {**header, "sparse": sparse, "dense": dense})

    @classmethod
    def load(cls, prepared_dir: Path) -> Encoders:
        """Read encoders.json and its vocab files from a prepared directory."""
        prepared_dir = Path(prepared_dir)
        path = prepared_dir / ENCODERS_FILE
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataFormatError(f"{path}: cannot read the encoders ({exc})") from None
        vocabularies = []
        for entry in data["sparse"]:
            table = pq.read_table(prepared_dir / entry["vocab_file"])
            ids = table.column("id").to_numpy()
            if not np.array_equal(ids, np.arange(1, len(ids) + 1)):
                raise DataFormatError(f"{entry['vocab_file']}: ids are not 1..{len(ids)} in order")
            vocabularies.append(
                Vocabulary(
                    SparseSpec(entry["name"], entry["column"]),
                    pd.Index(table.column("value").to_pylist()),
                    table.column("count").to_numpy(),
                    entry["min_count"],
                )
            )
        scalers = [
            Scaler(DenseSpec(e["name"], e["column"], e["transform"], e["log1p"]), e["mean"], e["std"])
            for e in data["dense"]
        ]
        return cls(vocabularies, scalers)


def plan_for(
    sparse: Sequence[tuple[str, Hashable]], dense: Sequence[tuple[str, Hashable]], log1p: frozenset[str]
) -> FeaturePlan:
    """A plan from (prepared name, raw column) pairs; dense names in ``log1p`` get log1p first."""
    return FeaturePlan(
        sparse=tuple(SparseSpec(name, column) for name, column in sparse),
        dense=tuple(DenseSpec(name, column, log1p=name in log1p) for name, column in dense),
    )


def _json_key(column: Hashable) -> Any:
    return int(column) if isinstance(column, (int, np.integer)) else str(column)
