"""Preparation of any Census layout: fit encoders on train, encode every file, split, write, describe.

Two streaming passes over the train file (fit, then encode) and one over each other file, chunk by
chunk, so memory stays bounded by ``data.chunk_rows`` (plus ~10 bytes a row of row ids and labels
for synthetic data, to score the true probabilities). Output goes only through ``PreparedWriter``;
``encoders.json`` and ``vocab/`` are written beside the splits before the content hash is taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mtl.config import Params
from mtl.datasets.census import schema
from mtl.datasets.census.encode import EncoderFitter, Encoders
from mtl.datasets.census.layout import HALVES, Layout, RawFile
from mtl.datasets.census.splits import ROW_ID_STRIDE, in_valid_half, row_ids
from mtl.datasets.prepared import DatasetMetadata, PreparedWriter, SplitChunk
from mtl.errors import DataFormatError
from mtl.evaluation import logloss, roc_auc


@dataclass
class SplitTally:
    """Facts gathered while writing a split: weights, unknown ids, and row ids + labels for the oracle."""

    keep_rows: bool = False  # collect row ids and labels (synthetic data: for the oracle)
    weight: float = 0.0
    weighted_positives: dict[str, float] = field(default_factory=dict)
    unknown_ids: dict[str, int] = field(default_factory=dict)
    row_ids: list[np.ndarray] = field(default_factory=list)
    labels: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, chunk: SplitChunk, weights: np.ndarray | None) -> None:
        if self.keep_rows:
            self.row_ids.append(chunk.row_id)
        for task, values in chunk.labels.items():
            if self.keep_rows:
                self.labels.setdefault(task, []).append(values)
            if weights is not None:
                positive = float(weights[values == 1].sum())
                self.weighted_positives[task] = self.weighted_positives.get(task, 0.0) + positive
        if weights is not None:
            self.weight += float(weights.sum())
        for name, ids in chunk.sparse.items():
            self.unknown_ids[name] = self.unknown_ids.get(name, 0) + int((ids == 0).sum())


def _assign(role: str, rows: np.ndarray, seed: int) -> Iterator[tuple[str, np.ndarray | slice]]:
    if role == HALVES:
        valid = in_valid_half(rows, seed)
        yield "valid", valid
        yield "test", ~valid
    else:
        yield role, slice(None)


def prepare_layout(
    layout: Layout,
    raw_dir: Path,
    out_dir: Path,
    params: Params,
    *,
    source: str,
    raw_hash: str,
    truth: Path | None = None,
) -> DatasetMetadata:
    """Fit on train, encode every file into the three splits, write encoders and metadata."""
    settings = params.datasets.census.prepare
    chunk_rows = params.data.chunk_rows
    raw_files = layout.locate(raw_dir)
    (train,) = [f for f in raw_files if f.role == "train"]
    fitter = EncoderFitter(layout.plan(raw_files), settings.min_count)
    for _, frame in layout.read(train.path, chunk_rows, strict=True):
        fitter.update(frame)
    encoders = fitter.finish()

    writer = PreparedWriter(
        out_dir, encoders.schema(), schema.TASKS, row_group_rows=params.data.row_group_rows
    )
    tallies = {split: SplitTally(keep_rows=truth is not None) for split in schema.SPLITS}
    for split in schema.SPLITS:
        writer.open_split(split)
    files = {}
    for raw in raw_files:
        rows_read = _write_file(layout, raw, encoders, writer, tallies, chunk_rows, settings.split_seed)
        files[raw.path.name] = {
            "rows": rows_read,
            "splits": "valid, test (1:1)" if raw.role == HALVES else raw.role,
            "row_id_offset": raw.index * ROW_ID_STRIDE,
        }

    encoders.save(out_dir, layout.encoder_header(raw_files))
    extra: dict[str, Any] = {
        "format": layout.source_format,
        "raw_files": files,
        "row_id": f"file index x {ROW_ID_STRIDE:,} + 0-based data row of that file (see raw_files)",
        "valid_test": (
            "the test file split 1:1 by a seeded hash of adjacent row pairs "
            f"(split_seed={settings.split_seed})"
            if any(f.role == HALVES for f in raw_files)
            else "the files' own valid and test splits"
        ),
        "dense_log1p": sorted(s.spec.name for s in encoders.scalers if s.spec.log1p),
        "unknown_ids": {
            split: {name: count for name, count in tally.unknown_ids.items() if count}
            for split, tally in tallies.items()
        },
    }
    if layout.weighted:
        extra["instance_weight"] = {
            "used_as_feature": False,
            "total": {split: t.weight for split, t in tallies.items()},
            "weighted_label_rates": {
                split: {task: (t.weighted_positives.get(task, 0.0) / t.weight if t.weight else None)
                        for task in schema.TASKS}
                for split, t in tallies.items()
            },
        }  # fmt: skip
    if truth is not None:
        extra["oracle_auc"], extra["oracle_logloss"] = oracle_scores(truth, tallies)
    return writer.finish(
        dataset="census",
        source=source,
        raw_hash=raw_hash,
        prepare_params=settings.model_dump(mode="json"),
        extra=extra,
    )


def _write_file(
    layout: Layout,
    raw: RawFile,
    encoders: Encoders,
    writer: PreparedWriter,
    tallies: dict[str, SplitTally],
    chunk_rows: int,
    seed: int,
) -> int:
    """Encode one raw file chunk by chunk into its split(s); return its data-row count."""
    rows_read = 0
    for first_row, frame in layout.read(raw.path, chunk_rows, strict=True):
        rows = np.arange(first_row, first_row + len(frame), dtype=np.int64)
        labels = layout.labels(frame)
        sparse, dense = encoders.encode(frame)
        weights = layout.weights(frame)
        ids = row_ids(raw.index, rows)
        for split, mask in _assign(raw.role, rows, seed):
            chunk = SplitChunk(
                labels={task: values[mask] for task, values in labels.items()},
                row_id=ids[mask],
                sparse={name: values[mask] for name, values in sparse.items()},
                dense={name: values[mask] for name, values in dense.items()},
            )
            writer.write(split, chunk)
            tallies[split].add(chunk, None if weights is None else weights[mask])
        rows_read += len(frame)
    return rows_read


def oracle_scores(
    truth_path: Path, tallies: dict[str, SplitTally]
) -> tuple[dict[str, dict[str, float | None]], dict[str, dict[str, float | None]]]:
    """AUC and logloss of the true probabilities per split and task (the best any model can do)."""
    truth = pq.read_table(truth_path)
    truth_ids = truth.column("row_id").to_numpy()
    order = np.argsort(truth_ids)
    auc: dict[str, dict[str, float | None]] = {}
    loss: dict[str, dict[str, float | None]] = {}
    for split, tally in tallies.items():
        ids = np.concatenate(tally.row_ids) if tally.row_ids else np.zeros(0, dtype=np.int64)
        where = order[np.clip(np.searchsorted(truth_ids, ids, sorter=order), 0, len(order) - 1)]
        if len(ids) and not np.array_equal(truth_ids[where], ids):
            raise DataFormatError(f"{truth_path} lacks the true probabilities of some {split} rows")
        auc[split], loss[split] = {}, {}
        for task in schema.TASKS:
            labels = np.concatenate(tally.labels.get(task, [np.zeros(0, np.int8)]))
            if not np.array_equal(truth.column(task).to_numpy()[where], labels):
                raise DataFormatError(f"{truth_path} does not match the raw files: {task} labels differ")
            p = truth.column(f"p_{task}").to_numpy()[where]
            auc[split][task], loss[split][task] = roc_auc(labels, p), logloss(labels, p)
    return auc, loss
