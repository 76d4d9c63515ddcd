"""The synthetic sources' ground truth scored against the labels prepare wrote: the best any model can do.

A generator writes every row's true probabilities to a Parquet truth file, keyed by the part of the raw
data the row is in (a file or a split) and its row id there. While preparing, ``Oracle.observe``
records the rows of each split (row ids and labels; the first ``max_rows`` of a split where bounded);
``joined`` then streams the truth file once, row group by row group, and returns each split's true
values in the order its rows were observed. Memory is bounded by the observed rows, not the truth file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtl.datasets.base import Source
from mtl.errors import DataFormatError
from mtl.evaluation import campaign_metrics, logloss, roc_auc


@dataclass(frozen=True)
class TruthFile:
    """What a synthetic source writes beside its raw files: the true values of every row."""

    name: str  # file name in the raw directory
    part: str  # column naming the part of the raw data a row is in (a file or a split)
    row_id: str  # column of the row's id within that part
    columns: tuple[str, ...]  # the true values
    label_columns: tuple[str, ...] = ()  # the drawn labels, where written: they must equal the prepared ones


@dataclass
class TruthRows:
    """One split's observed rows with their true values (aligned row for row)."""

    labels: np.ndarray  # (n, tasks)
    truth: dict[str, np.ndarray]  # truth column -> (n,)
    groups: np.ndarray | None = None


@dataclass
class _Observed:
    split: str
    part: str
    row_ids: np.ndarray
    labels: np.ndarray
    groups: np.ndarray | None
    start: int = 0  # position of the first row among every observed row

    @property
    def positions(self) -> np.ndarray:
        return np.arange(self.start, self.start + len(self.row_ids))


class Oracle:
    """Collects prepared rows per split and joins them with the truth file by (part, row id)."""

    def __init__(self, raw_dir: Path, truth: TruthFile, splits: Sequence[str], max_rows: int | None = None):
        self.path = Path(raw_dir) / truth.name
        if not self.path.is_file():
            raise DataFormatError(
                f"{self.path} not found: the synthetic ground truth is missing (run `mtl download` again)"
            )
        self.splits = list(splits)
        self.part, self.row_id = truth.part, truth.row_id
        self.columns, self.label_columns = list(truth.columns), list(truth.label_columns)
        self.max_rows = max_rows
        self._observed: list[_Observed] = []
        self._rows = dict.fromkeys(splits, 0)

    @classmethod
    def of(
        cls,
        source: Source,
        raw_dir: Path,
        truth: TruthFile,
        splits: Sequence[str],
        max_rows: int | None = None,
    ) -> Oracle | None:
        """The oracle of a generated source's raw data; None for real data (no truth to score)."""
        return cls(raw_dir, truth, splits, max_rows) if source.kind == "generated" else None

    def observe(
        self, split: str, part: str, row_ids: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None
    ) -> None:
        """Rows of ``split`` from ``part`` of the raw data (labels: one column per task)."""
        take = len(row_ids) if self.max_rows is None else max(self.max_rows - self._rows[split], 0)
        if take:
            groups = None if groups is None else groups[:take]
            start = self._observed[-1].start + len(self._observed[-1].row_ids) if self._observed else 0
            self._observed.append(_Observed(split, part, row_ids[:take], labels[:take], groups, start))
            self._rows[split] += len(row_ids[:take])

    def joined(self) -> dict[str, TruthRows]:
        """Every split's observed rows with their true values; a row the truth lacks is an error."""
        total = sum(len(o.row_ids) for o in self._observed)
        lookup = {}  # part -> (its observed ids sorted, where each lands among all observed rows)
        for part in {o.part for o in self._observed}:
            mine = [o for o in self._observed if o.part == part]
            ids = np.concatenate([o.row_ids for o in mine])
            where = np.concatenate([o.positions for o in mine])
            order = np.argsort(ids, kind="stable")
            lookup[part] = (ids[order], where[order])
        columns = [*self.columns, *self.label_columns]
        values = {column: np.full(total, np.nan) for column in columns}
        found = np.zeros(total, dtype=bool)
        parquet = pq.ParquetFile(self.path)
        for index in range(parquet.num_row_groups):  # one row group in memory at a time
            group = parquet.read_row_group(index, columns=[self.part, self.row_id, *columns])
            parts = group.column(self.part)
            ids = group.column(self.row_id).to_numpy()
            for part in lookup.keys() & set(pc.unique(parts).to_pylist()):
                known, where = lookup[part]
                rows = np.flatnonzero(pc.equal(parts, part).to_numpy(zero_copy_only=False))
                at = np.minimum(np.searchsorted(known, ids[rows]), len(known) - 1)
                match = known[at] == ids[rows]
                for column in columns:
                    values[column][where[at[match]]] = group.column(column).to_numpy()[rows[match]]
                found[where[at[match]]] = True
        return {split: self._split_rows(split, values, found) for split in self.splits}

    def _split_rows(self, split: str, values: dict[str, np.ndarray], found: np.ndarray) -> TruthRows:
        mine = [o for o in self._observed if o.split == split]
        for o in mine:
            missing = ~found[o.positions]
            if missing.any():
                raise DataFormatError(
                    f"{self.path} lacks the true values of {split} row {o.row_ids[np.argmax(missing)]} of "
                    f"{o.part} (was a raw file replaced? run `mtl download` again)"
                )
        rows = np.concatenate(
            [np.arange(o.start, o.start + len(o.row_ids)) for o in mine] or [np.zeros(0, int)]
        )
        truth = {column: column_values[rows] for column, column_values in values.items()}
        width = max(len(self.label_columns), 1)
        labels = np.concatenate([o.labels for o in mine]) if mine else np.zeros((0, width), np.int8)
        for j, column in enumerate(self.label_columns):
            if not np.array_equal(truth.pop(column), labels[:, j]):
                raise DataFormatError(f"{self.path} does not match the raw files: {column} labels differ")
        groups = np.concatenate([o.groups for o in mine]) if mine and mine[0].groups is not None else None
        return TruthRows(labels, truth, groups)


# --- what the truth scores ----------------------------------------------------------------------------


def funnel_quality(tasks: Sequence[str], labels: np.ndarray, p_first: np.ndarray, p_next: np.ndarray) -> dict:
    """A two-step funnel: AUC of each step over all rows (the later one is the joint event), of the later
    step on rows past the first (``cvr``), and predicted vs observed rates."""
    first, later = tasks
    reached = labels[:, 0] > 0
    return {
        "rows": len(labels),
        first: roc_auc(labels[:, 0], p_first),
        later: roc_auc(labels[:, 1], p_first * p_next),
        "cvr": roc_auc(labels[:, 1][reached], p_next[reached]),
        f"mean_p_{first}": float(p_first.mean()),
        f"{first}_rate": float(labels[:, 0].mean()),
        f"mean_p_{later}": float((p_first * p_next).mean()),
        f"{later}_rate": float(labels[:, 1].mean()),
    }


def task_quality(labels: np.ndarray, probabilities: np.ndarray) -> tuple[float | None, float | None]:
    """(AUC, logloss) of true probabilities for one task."""
    return roc_auc(labels, probabilities), logloss(labels, probabilities)


def ranking_quality(labels: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    """Pooled AUC, GAUC (unweighted mean of campaign AUCs, as MetaHeac reports it) and its
    row-weighted variant, with how many campaigns were scored and skipped (one class only)."""
    metrics = campaign_metrics(labels, scores, groups)
    return {
        "auc": metrics["auc"],
        "gauc": metrics["gauc"],
        "gauc_weighted": metrics["gauc_weighted"],
        "campaigns_scored": metrics["campaigns_evaluated"],
        "campaigns_skipped": metrics["campaigns_skipped"],
    }
