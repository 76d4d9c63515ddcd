"""Preparation of any Census format: fit encoders on train, encode every file, split, write, describe.

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
import pandas as pd

from mtl.config import Params
from mtl.datasets import expectations as ex
from mtl.datasets.base import Manifest, Source
from mtl.datasets.census import HALVES, ROW_ID_STRIDE, SPLITS, TASKS, TRUTH
from mtl.datasets.census.parse import Layout, RawFile
from mtl.datasets.encoding import (
    Moments,
    Scaler,
    ValueCounter,
    Vocabulary,
    in_first_half,
    load_encoders,
    save_encoders,
)
from mtl.datasets.oracle import Oracle, task_quality
from mtl.datasets.prepared import (
    ROW_ID,
    DatasetMetadata,
    DenseField,
    FeatureSchema,
    PreparedWriter,
    SparseField,
    SplitChunk,
)


@dataclass
class Encoders:
    """The fitted encoders of one preparation, in prepared column order."""

    vocabularies: list[Vocabulary]
    scalers: list[Scaler]

    def schema(self) -> FeatureSchema:
        return FeatureSchema(
            sparse=tuple(SparseField(v.name, v.size) for v in self.vocabularies),
            dense=tuple(DenseField(s.name) for s in self.scalers),
        )

    @classmethod
    def load(cls, prepared_dir: Path) -> Encoders:
        """The encoders a prepared directory holds (encoders.json and vocab/)."""
        encoders = load_encoders(prepared_dir).values()
        return cls(
            [e for e in encoders if isinstance(e, Vocabulary)], [e for e in encoders if isinstance(e, Scaler)]
        )

    def encode(self, frame: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Parsed raw columns -> (sparse ids, scaled dense values), keyed by prepared field name."""
        sparse = {v.name: v.encode(frame[v.column]) for v in self.vocabularies}
        return sparse, {s.name: s.encode(frame[s.column]) for s in self.scalers}


def fit(reader: Layout, train: RawFile, chunk_rows: int, min_count: int) -> Encoders:
    """Vocabularies and scalers fitted on the train file, streamed chunk by chunk."""
    plan = reader.plan()
    counters = {name: ValueCounter() for name, _ in plan.sparse}
    moments = {s.name: Moments() for s in plan.dense}
    for _, frame in reader.read(train.path, chunk_rows, strict=True):
        for name, column in plan.sparse:
            counters[name].add(frame[column])
        for scaler in plan.dense:
            if scaler.transform != Scaler.IDENTITY:
                moments[scaler.name].add(scaler.transformed(frame[scaler.column].to_numpy(dtype=np.float64)))
    return Encoders(
        [Vocabulary.fit(name, column, counters[name], min_count) for name, column in plan.sparse],
        [scaler.fitted(moments[scaler.name]) for scaler in plan.dense],
    )


@dataclass
class SplitTally:
    """Facts gathered while writing a split: weights and unknown ids."""

    weight: float = 0.0
    weighted_positives: dict[str, float] = field(default_factory=dict)
    unknown_ids: dict[str, int] = field(default_factory=dict)

    def add(self, chunk: SplitChunk, weights: np.ndarray | None) -> None:
        for task, values in chunk.labels.items():
            if weights is not None:
                positive = float(weights[values == 1].sum())
                self.weighted_positives[task] = self.weighted_positives.get(task, 0.0) + positive
        if weights is not None:
            self.weight += float(weights.sum())
        for name, ids in chunk.sparse.items():
            self.unknown_ids[name] = self.unknown_ids.get(name, 0) + int((ids == 0).sum())


def _assign(role: str, rows: np.ndarray, seed: int) -> Iterator[tuple[str, np.ndarray | slice]]:
    if role == HALVES:
        valid = in_first_half(rows, seed)
        yield "valid", valid
        yield "test", ~valid
    else:
        yield role, slice(None)


def prepare(
    reader: Layout, source: Source, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params
) -> DatasetMetadata:
    """Fit on train, encode every file into the three splits, write encoders and metadata."""
    settings = params.datasets.census.prepare
    chunk_rows = params.data.chunk_rows
    raw_files = reader.locate(raw_dir)
    (train,) = [f for f in raw_files if f.role == "train"]
    encoders = fit(reader, train, chunk_rows, settings.min_count)

    writer = PreparedWriter(out_dir, encoders.schema(), TASKS, row_group_rows=params.data.row_group_rows)
    tallies = {split: SplitTally() for split in SPLITS}
    oracle = Oracle.of(source, raw_dir, TRUTH, SPLITS)
    for split in SPLITS:
        writer.open_split(split)
    files = {}
    for raw in raw_files:
        rows_read = _write_file(
            reader, raw, encoders, writer, tallies, oracle, chunk_rows, settings.split_seed
        )
        files[raw.path.name] = {
            "rows": rows_read,
            "splits": "valid, test (1:1)" if raw.role == HALVES else raw.role,
            "row_id_offset": raw.index * ROW_ID_STRIDE,
        }

    save_encoders(out_dir, reader.encoder_header(raw_files), encoders.vocabularies, encoders.scalers)
    extra: dict[str, Any] = {
        "format": reader.format,
        "raw_files": files,
        "row_id": f"file index x {ROW_ID_STRIDE:,} + 0-based data row of that file (see raw_files)",
        "valid_test": (
            "the test file split 1:1 by a seeded hash of adjacent row pairs "
            f"(split_seed={settings.split_seed})"
            if any(f.role == HALVES for f in raw_files)
            else "the files' own valid and test splits"
        ),
        "dense_log1p": sorted(s.name for s in encoders.scalers if s.log1p),
        "unknown_ids": {
            split: {name: count for name, count in tally.unknown_ids.items() if count}
            for split, tally in tallies.items()
        },
    }
    if reader.weighted:
        extra["instance_weight"] = {
            "used_as_feature": False,
            "total": {split: t.weight for split, t in tallies.items()},
            "weighted_label_rates": {
                split: {task: (t.weighted_positives.get(task, 0.0) / t.weight if t.weight else None)
                        for task in TASKS}
                for split, t in tallies.items()
            },
        }  # fmt: skip
    if oracle is not None:
        scores = {split: _oracle_quality(rows.labels, rows.truth) for split, rows in oracle.joined().items()}
        extra["oracle_auc"] = {split: auc for split, (auc, _) in scores.items()}
        extra["oracle_logloss"] = {split: loss for split, (_, loss) in scores.items()}
    return writer.finish(
        dataset="census",
        source=manifest.source,
        raw_hash=manifest.content_hash,
        prepare_params=settings.model_dump(mode="json"),
        extra=extra,
    )


def _write_file(
    reader: Layout,
    raw: RawFile,
    encoders: Encoders,
    writer: PreparedWriter,
    tallies: dict[str, SplitTally],
    oracle: Oracle | None,
    chunk_rows: int,
    seed: int,
) -> int:
    """Encode one raw file chunk by chunk into its split(s); return its data-row count."""
    rows_read = 0
    for first_row, frame in reader.read(raw.path, chunk_rows, strict=True):
        rows = np.arange(first_row, first_row + len(frame), dtype=np.int64)
        labels = reader.labels(frame)
        sparse, dense = encoders.encode(frame)
        weights = reader.weights(frame)
        ids = np.int64(raw.index) * ROW_ID_STRIDE + rows
        for split, mask in _assign(raw.role, rows, seed):
            chunk = SplitChunk(
                labels={task: values[mask] for task, values in labels.items()},
                row_id=ids[mask],
                sparse={name: values[mask] for name, values in sparse.items()},
                dense={name: values[mask] for name, values in dense.items()},
            )
            writer.write(split, chunk)
            tallies[split].add(chunk, None if weights is None else weights[mask])
            if oracle is not None:
                oracle.observe(
                    split, raw.path.name, chunk.row_id, np.column_stack([chunk.labels[t] for t in TASKS])
                )
        rows_read += len(frame)
    return rows_read


def _oracle_quality(
    labels: np.ndarray, truth: dict[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """AUC and logloss of the true probabilities per task (the best any model can do)."""
    scores = {task: task_quality(labels[:, j], truth[f"p_{task}"]) for j, task in enumerate(TASKS)}
    return {t: auc for t, (auc, _) in scores.items()}, {t: loss for t, (_, loss) in scores.items()}


def prepared_checks(
    reader: Layout, prepared_dir: Path, metadata: DatasetMetadata, params: Params
) -> list[tuple[str, pd.DataFrame, list[Any]]]:
    """Row ids unique across splits; where the test file was halved, valid and test within one row."""
    ids = [ex.split_column(prepared_dir, metadata, split, ROW_ID) for split in metadata.splits]
    all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    row: dict[str, int] = {"duplicate_row_ids": int(len(all_ids) - len(np.unique(all_ids)))}
    checks = [ex.between("duplicate_row_ids", high=0)]
    if HALVES in dict(reader.files).values():
        sizes = {name: info.rows for name, info in metadata.splits.items()}
        row["valid_test_gap"] = abs(sizes.get("valid", 0) - sizes.get("test", 0))
        checks += ex.warning([ex.between("valid_test_gap", high=1)])  # a split size
    return [ex.one_row_check("splits", row, checks)]
