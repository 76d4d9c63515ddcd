"""From parsed raw chunks to the prepared splits, in two streaming passes.

Pass 1 routes every chunk to its split (the train file's rows by a seeded hash of the row id), counts
the raw ids of train rows per field and accumulates dense statistics, and stages the raw chunk on disk
(Arrow IPC, compressed). The vocabularies are then fitted on train only. Pass 2 reads the staged splits
back in groups of ``row_group_rows``, maps raw ids to vocabulary ids (rare/unseen -> 0), standardises
dense values with the train statistics and writes the splits through ``PreparedWriter``. Memory is
bounded by a chunk, a row group and the vocabularies -- never by the file size.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from mtl.config import AliccpPrepare
from mtl.datasets.aliccp.fields import (
    DENSE_FIELDS,
    FIELDS,
    MULTI_VALUED,
    Layout,
    RawChunk,
    column_matrix,
    slot_columns,
)
from mtl.datasets.aliccp.vocab import DenseStats, IdCounter, Vocabulary, valid_mask
from mtl.datasets.prepared import (
    DenseField,
    FeatureSchema,
    MultiField,
    PreparedWriter,
    SparseField,
    SplitChunk,
)

SPLITS = ("train", "valid", "test")
TRAIN_AND_VALID = "train+valid"  # role of a train file whose rows are split into train/valid by hash
TASKS = ("click", "purchase")
Observer = Callable[[RawChunk, np.ndarray], None]  # a chunk and the split index (into SPLITS) of each row


@dataclass
class EncodeResult:
    writer: PreparedWriter
    layout: Layout
    vocabularies: dict[str, Vocabulary]
    dense_mean: np.ndarray | None
    dense_std: np.ndarray | None
    unknown_ids: dict[str, dict[str, float]]  # per split: kept ids, those mapped to 0, their rate


def feature_schema(vocabularies: dict[str, Vocabulary], layout: Layout, has_dense: bool) -> FeatureSchema:
    return FeatureSchema(
        sparse=tuple(SparseField(f, vocabularies[f].size) for f in FIELDS if f not in MULTI_VALUED),
        multi=tuple(MultiField(f, vocabularies[f].size, layout.max_len) for f in FIELDS if f in MULTI_VALUED),
        dense=tuple(DenseField(name) for name in DENSE_FIELDS) if has_dense else (),
    )


class _Stage:
    """Raw chunks of each split, staged as compressed Arrow IPC files."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._writers: dict[str, pa.ipc.RecordBatchFileWriter] = {}
        self._sinks: dict[str, pa.NativeFile] = {}

    def write(self, split: str, chunk: RawChunk) -> None:
        batch = pa.record_batch(
            {
                "row_id": pa.array(chunk.row_id, pa.int64()),
                "click": pa.array(chunk.click.astype(np.int8)),
                "purchase": pa.array(chunk.purchase.astype(np.int8)),
                **slot_columns(chunk.ids, chunk.counts, chunk.dense),
            }
        )
        if split not in self._writers:
            self._sinks[split] = pa.OSFile(str(self.directory / f"{split}.arrow"), "wb")
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            self._writers[split] = pa.ipc.new_file(self._sinks[split], batch.schema, options=options)
        self._writers[split].write_batch(batch)

    def close(self) -> None:
        """Finish every staged file (the writers stay known, so the files can be read back)."""
        for split in list(self._sinks):
            self._writers[split].close()
            self._sinks.pop(split).close()

    def batches(self, split: str) -> Iterator[pa.RecordBatch]:
        """The staged chunks of a split, one at a time."""
        if split not in self._writers:
            return
        # plain reads, not a memory map: mapped pages would stay resident and grow with the file
        with pa.OSFile(str(self.directory / f"{split}.arrow")) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)


def _concat(chunks: list[SplitChunk]) -> SplitChunk:
    """Encoded chunks as one (to write whole row groups)."""
    first = chunks[0]
    return SplitChunk(
        labels={task: np.concatenate([c.labels[task] for c in chunks]) for task in first.labels},
        row_id=np.concatenate([c.row_id for c in chunks]),
        sparse={name: np.concatenate([c.sparse[name] for c in chunks]) for name in first.sparse},
        multi={
            name: (
                np.concatenate([c.multi[name][0] for c in chunks]),
                np.concatenate([c.multi[name][1] for c in chunks]),
            )
            for name in first.multi
        },
        dense={name: np.concatenate([c.dense[name] for c in chunks]) for name in first.dense},
    )


def encode_dataset(
    chunks: Iterable[tuple[str, RawChunk]],
    out_dir: Path,
    settings: AliccpPrepare,
    *,
    row_group_rows: int,
    has_dense: bool,
    observe: Observer | None = None,
) -> EncodeResult:
    """Route, count, stage (pass 1), fit vocabularies, then encode and write every split (pass 2).

    ``chunks`` yields ``(role, chunk)``: role ``train+valid`` rows are split into train/valid by hash;
    ``train``, ``valid`` and ``test`` rows go to that split as they are.
    """
    layout = Layout(settings.max_multi_len)
    counters = {name: IdCounter() for name in FIELDS}
    dense_stats = DenseStats(len(DENSE_FIELDS))
    work = Path(tempfile.mkdtemp(prefix=".aliccp-stage-", dir=Path(out_dir).parent))
    stage = _Stage(work)
    try:
        for role, chunk in chunks:
            split_index = np.full(len(chunk), 0 if role == TRAIN_AND_VALID else SPLITS.index(role), np.int8)
            if role == TRAIN_AND_VALID:
                split_index[valid_mask(chunk.row_id, settings.valid_fraction, settings.split_seed)] = 1
            if observe is not None:
                observe(chunk, split_index)
            for index in np.unique(split_index):
                rows = split_index == index
                part = chunk if rows.all() else chunk.take(rows)
                if SPLITS[index] == "train":
                    _count(part, layout, counters)
                    if part.dense is not None:
                        dense_stats.add(part.dense)
                stage.write(SPLITS[index], part)
        stage.close()
        vocabularies = {name: Vocabulary.fit(name, counters[name], settings.min_count) for name in FIELDS}
        mean, std = dense_stats.mean_std() if has_dense else (None, None)
        writer = PreparedWriter(
            out_dir, feature_schema(vocabularies, layout, has_dense), TASKS, row_group_rows=row_group_rows
        )
        unknown: dict[str, dict[str, float]] = {}
        for split in SPLITS:
            writer.open_split(split)
            kept = mapped_to_zero = 0
            pending: list[SplitChunk] = []
            for batch in stage.batches(split):
                chunk, n_kept, n_zero = _encode(batch, layout, vocabularies, mean, std)
                kept, mapped_to_zero = kept + n_kept, mapped_to_zero + n_zero
                pending.append(chunk)
                # encoded rows are small: gather them into whole row groups before writing
                if sum(len(c) for c in pending) >= row_group_rows:
                    writer.write(split, _concat(pending))
                    pending = []
            if pending:
                writer.write(split, _concat(pending))
            unknown[split] = {
                "kept_ids": kept,
                "unknown_ids": mapped_to_zero,
                "unknown_rate": mapped_to_zero / kept if kept else 0.0,
            }
    finally:
        stage.close()
        shutil.rmtree(work, ignore_errors=True)
    return EncodeResult(writer, layout, vocabularies, mean, std, unknown)


def _count(chunk: RawChunk, layout: Layout, counters: dict[str, IdCounter]) -> None:
    for index, name in enumerate(FIELDS):
        width = int(layout.widths[index])
        present = np.arange(width)[None, :] < np.minimum(chunk.counts[:, index], width)[:, None]
        counters[name].add(chunk.ids[:, layout.field_slots(index)][present])


def _encode(
    table: pa.RecordBatch,
    layout: Layout,
    vocabularies: dict[str, Vocabulary],
    mean: np.ndarray | None,
    std: np.ndarray | None,
) -> tuple[SplitChunk, int, int]:
    """One staged group as an encoded SplitChunk, with its kept-id and unknown-id counts."""
    ids, counts = column_matrix(table, "ids"), column_matrix(table, "counts")
    chunk = SplitChunk(
        labels={task: table.column(task).to_numpy() for task in TASKS},
        row_id=table.column("row_id").to_numpy(),
    )
    kept = zero = 0
    for index, name in enumerate(FIELDS):
        width = int(layout.widths[index])
        lengths = np.minimum(counts[:, index], width)
        present = np.arange(width)[None, :] < lengths[:, None]
        encoded = vocabularies[name].encode(ids[:, layout.field_slots(index)]) * present
        kept += int(present.sum())
        zero += int((present & (encoded == 0)).sum())
        if name in MULTI_VALUED:
            chunk.multi[name] = (encoded, lengths.astype(np.int16))
        else:
            chunk.sparse[name] = encoded[:, 0]
    if mean is not None and std is not None:
        dense = (column_matrix(table, "dense") - mean) / std
        chunk.dense = {name: dense[:, j].astype(np.float32) for j, name in enumerate(DENSE_FIELDS)}
    return chunk, kept, zero
