"""From parsed raw chunks to the prepared splits, in two streaming passes.

Every source is parsed into ``RawChunk``: raw feature ids laid out in fixed slots (single-valued
fields one slot, multi-valued fields ``max_len`` slots in file order), the true number of ids each row
had per field, labels, and (where the source has them) dense values.

Pass 1 routes every chunk to its split (the train file's rows by a seeded hash of the row id), counts
the raw ids of train rows per field and accumulates dense moments, and stages the raw chunk on disk
(Arrow IPC, compressed). The vocabularies are then fitted on train only. Pass 2 reads the staged splits
back in groups of ``row_group_rows``, maps raw ids to vocabulary ids (rare/unseen -> 0), standardises
dense values with the train moments and writes the splits through ``PreparedWriter``. Memory is
bounded by a chunk, a row group and the vocabularies -- never by the file size.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from mtl.config import AliccpPrepare, Params
from mtl.datasets import expectations as ex
from mtl.datasets.aliccp import (
    DENSE_FIELDS,
    FIELDS,
    MULTI_VALUED,
    SPLITS,
    TASKS,
    TRAIN_AND_VALID,
    TRUTH,
    Layout,
    RawChunk,
    column_matrix,
    slot_columns,
)
from mtl.datasets.base import Manifest, Source
from mtl.datasets.encoding import (
    Moments,
    Scaler,
    ValueCounter,
    Vocabulary,
    encode_slots,
    in_fraction,
    save_encoders,
)
from mtl.datasets.oracle import Oracle, funnel_quality
from mtl.datasets.prepared import (
    DatasetMetadata,
    DenseField,
    FeatureSchema,
    MultiField,
    PreparedWriter,
    SparseField,
    SplitChunk,
)

RULES = {
    "single": "id of the field's first raw value (vocab_file: raw -> id); absent, unseen or rarer than "
    "min_count in train -> 0",
    "multi": "the field's first max_len raw values in source order, each mapped like a single field "
    "(unknown -> 0), zero-padded to max_len; the length column holds how many values were present "
    "(at most max_len), unknown ones included",
}


class Format(Protocol):
    """A source format as ``parse`` reads it."""

    hash_split: bool  # whether the train file's rows are split into train/valid by hash
    raw_value: str  # which raw number a field's id is
    dense_value: str | None  # what a dense value is, where the format has them

    def chunks(
        self, raw_dir: Path, layout: Layout, stats: Counter[str], chunk_rows: int
    ) -> Iterator[tuple[str, RawChunk]]:
        """``(role, chunk)`` for every raw file, train first (role: a split or TRAIN_AND_VALID)."""
        ...


def prepare(
    reader: Format, source: Source, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params
) -> DatasetMetadata:
    """Parse, encode and split the source into ``out_dir``; write encoders.json and metadata."""
    settings = params.datasets.aliccp.prepare
    stats: Counter[str] = Counter()
    layout = Layout(settings.max_multi_len)
    oracle = Oracle.of(source, raw_dir, TRUTH, SPLITS, settings.oracle_max_rows)
    chunks = reader.chunks(raw_dir, layout, stats, params.data.chunk_rows)
    vocabularies, scalers, writer, unknown = _encode(
        chunks, out_dir, settings, params.data.row_group_rows, reader.dense_value is not None, oracle
    )
    header = {"input_format": source.format, "source": source.name, "raw_value": reader.raw_value}
    header |= {"dense_value": reader.dense_value} if reader.dense_value else {}
    save_encoders(out_dir, header | {"rules": RULES}, [vocabularies[f] for f in FIELDS], scalers)
    extra: dict[str, Any] = {
        "field_order": list(FIELDS),
        "multi_valued": [f for f in FIELDS if f in MULTI_VALUED],
        "valid_split": (
            f"seeded hash of the sample id (valid_fraction={settings.valid_fraction}, "
            f"split_seed={settings.split_seed}); test = the test file"
            if reader.hash_split
            else "the file ali_ccp_val.csv"
        ),
        "parse": _nested(stats),
        "unknown_ids": unknown,
        "vocabulary": {
            name: {"size": v.size, "distinct_in_train": v.distinct_in_train}
            for name, v in vocabularies.items()
        },
    }
    if oracle is not None:
        extra["oracle_auc"] = {"max_rows_per_split": settings.oracle_max_rows} | {
            split: funnel_quality(
                TASKS, rows.labels, rows.truth["p_click"], rows.truth["p_purchase_given_click"]
            )
            for split, rows in oracle.joined().items()
            if len(rows.labels)
        }
    return writer.finish(
        dataset="aliccp",
        source=manifest.source,
        funnel=list(TASKS),
        raw_hash=manifest.content_hash,
        prepare_params=settings.model_dump(mode="json"),
        extra=extra,
    )


def _nested(stats: Counter[str]) -> dict[str, Any]:
    """``{"a.b": 1, "c": 2}`` -> ``{"a": {"b": 1}, "c": 2}`` (parse facts for metadata.extra)."""
    out: dict[str, Any] = {}
    for key, value in sorted(stats.items()):
        group, _, name = key.partition(".")
        if name:
            out.setdefault(group, {})[name] = value
        else:
            out[group] = value
    return out


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


def _encode(
    chunks: Iterable[tuple[str, RawChunk]],
    out_dir: Path,
    settings: AliccpPrepare,
    row_group_rows: int,
    has_dense: bool,
    oracle: Oracle | None,
) -> tuple[dict[str, Vocabulary], list[Scaler], PreparedWriter, dict[str, dict[str, float]]]:
    """Route, count, stage (pass 1), fit vocabularies, then encode and write every split (pass 2).
    A role ``train+valid`` chunk is split into train/valid by hash; others go to that split whole."""
    layout = Layout(settings.max_multi_len)
    counters = {name: ValueCounter() for name in FIELDS}
    moments = [Moments() for _ in DENSE_FIELDS]
    work = Path(tempfile.mkdtemp(prefix=".aliccp-stage-", dir=Path(out_dir).parent))
    stage = _Stage(work)
    try:
        for role, chunk in chunks:
            split_index = np.full(len(chunk), 0 if role == TRAIN_AND_VALID else SPLITS.index(role), np.int8)
            if role == TRAIN_AND_VALID:
                split_index[in_fraction(chunk.row_id, settings.valid_fraction, settings.split_seed)] = 1
            for index in np.unique(split_index):
                rows = split_index == index
                part = chunk if rows.all() else chunk.take(rows)
                if oracle is not None:
                    labels = np.column_stack([part.click, part.purchase]).astype(np.int8)
                    oracle.observe(SPLITS[index], part.file, part.row_id, labels)
                if SPLITS[index] == "train":
                    _count(part, layout, counters, moments)
                stage.write(SPLITS[index], part)
        stage.close()
        vocabularies = {
            name: Vocabulary.fit(name, name, counters[name], settings.min_count, _max_len(name, layout))
            for name in FIELDS
        }
        scalers = (
            [Scaler(name, name).fitted(m) for name, m in zip(DENSE_FIELDS, moments)] if has_dense else []
        )
        writer = PreparedWriter(out_dir, _schema(vocabularies, scalers), TASKS, row_group_rows=row_group_rows)
        unknown = {split: _write_split(split, stage, writer, layout, vocabularies, scalers, row_group_rows)
                   for split in SPLITS}  # fmt: skip
    finally:
        stage.close()
        shutil.rmtree(work, ignore_errors=True)
    return vocabularies, scalers, writer, unknown


def _max_len(name: str, layout: Layout) -> int | None:
    return layout.max_len if name in MULTI_VALUED else None


def _schema(vocabularies: dict[str, Vocabulary], scalers: list[Scaler]) -> FeatureSchema:
    return FeatureSchema(
        sparse=tuple(SparseField(f, vocabularies[f].size) for f in FIELDS if f not in MULTI_VALUED),
        multi=tuple(
            MultiField(f, vocabularies[f].size, vocabularies[f].max_len) for f in FIELDS if f in MULTI_VALUED
        ),
        dense=tuple(DenseField(s.name) for s in scalers),
    )


def _count(
    chunk: RawChunk, layout: Layout, counters: dict[str, ValueCounter], moments: list[Moments]
) -> None:
    for index, name in enumerate(FIELDS):
        width = int(layout.widths[index])
        present = np.arange(width)[None, :] < np.minimum(chunk.counts[:, index], width)[:, None]
        counters[name].add(chunk.ids[:, layout.field_slots(index)][present])
    if chunk.dense is not None:
        for j, m in enumerate(moments):
            m.add(chunk.dense[:, j])


def _write_split(
    split: str,
    stage: _Stage,
    writer: PreparedWriter,
    layout: Layout,
    vocabularies: dict[str, Vocabulary],
    scalers: list[Scaler],
    row_group_rows: int,
) -> dict[str, float]:
    """Encode a staged split into whole row groups; return its kept-id and unknown-id counts."""
    writer.open_split(split)
    kept = mapped_to_zero = 0
    pending: list[SplitChunk] = []
    for batch in stage.batches(split):
        chunk, n_kept, n_zero = _encode_batch(batch, layout, vocabularies, scalers)
        kept, mapped_to_zero = kept + n_kept, mapped_to_zero + n_zero
        pending.append(chunk)
        # encoded rows are small: gather them into whole row groups before writing
        if sum(len(c) for c in pending) >= row_group_rows:
            writer.write(split, SplitChunk.concat(pending))
            pending = []
    if pending:
        writer.write(split, SplitChunk.concat(pending))
    return {
        "kept_ids": kept,
        "unknown_ids": mapped_to_zero,
        "unknown_rate": mapped_to_zero / kept if kept else 0.0,
    }


def _encode_batch(
    table: pa.RecordBatch, layout: Layout, vocabularies: dict[str, Vocabulary], scalers: list[Scaler]
) -> tuple[SplitChunk, int, int]:
    """One staged group as an encoded SplitChunk, with its kept-id and unknown-id counts."""
    ids, counts = column_matrix(table, "ids"), column_matrix(table, "counts")
    chunk = SplitChunk(
        labels={task: table.column(task).to_numpy() for task in TASKS},
        row_id=table.column("row_id").to_numpy(),
    )
    kept = zero = 0
    for index, name in enumerate(FIELDS):
        encoded, lengths = encode_slots(
            vocabularies[name], ids[:, layout.field_slots(index)], counts[:, index]
        )
        present = np.arange(encoded.shape[1])[None, :] < lengths[:, None]
        kept += int(present.sum())
        zero += int((present & (encoded == 0)).sum())
        if name in MULTI_VALUED:
            chunk.multi[name] = (encoded, lengths)
        else:
            chunk.sparse[name] = encoded[:, 0]
    if scalers:
        dense = column_matrix(table, "dense")
        chunk.dense = {s.name: s.encode(dense[:, j]) for j, s in enumerate(scalers)}
    return chunk, kept, zero


def prepared_checks(
    reader: Format, prepared_dir: Path, metadata: DatasetMetadata, params: Params
) -> list[tuple[str, pd.DataFrame, list[Any]]]:
    """The validation split's share of the train file is close to ``valid_fraction`` (hash split)."""
    fraction = params.datasets.aliccp.prepare.valid_fraction
    train, valid = (metadata.splits[s].rows for s in ("train", "valid"))
    if not reader.hash_split or train + valid < 1000:  # a file of its own, or too few rows to tell
        return []
    bounds = ex.warning([ex.between("valid_share", 0.5 * fraction, 1.5 * fraction)])  # a split size
    return [ex.one_row_check("split_sizes", {"valid_share": valid / (train + valid)}, bounds)]
