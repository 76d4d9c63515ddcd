"""Splits as contiguous tensors, batched by index slices; large splits stream from Parquet in chunks.

A split is read once (``read_split``: one Parquet read, no per-row Python) into a ``TensorSplit``; a
batch is an ``index_select`` of a shuffled index slice, never a per-sample ``__getitem__``. A split with
more rows than ``train.max_in_memory_rows`` streams: chunks of ``train.stream_chunk_rows`` rows are read
in file order and shuffled within the chunk (chunk-local shuffling, the usual trade for streaming).

On CUDA every chunk (the whole split when it fits) is pinned and copied to the GPU once with a
non-blocking transfer; batches are then gathered on the GPU, so no per-step host-to-device copy exists.

Training batches are gathered by a background thread (``prefetched``), one or two ahead of the step, so
building the next batch overlaps with the model's forward and backward; the same thread plans each batch's
input layer (its table ids, slot weights and distinct rows: ``mtl.models.layers.InputPlanner``).

Distributed: every rank draws the same global permutation per epoch (seeded by run seed, epoch and
chunk), cuts the same global batches, and takes its own contiguous shard of each; so N ranks see
exactly the batches one process would.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor

from mtl.datasets.prepared import DatasetMetadata, SplitArrays, iter_split, read_split
from mtl.errors import DataFormatError
from mtl.models.layers import FeatureBatch
from mtl.training.seeding import derive_seed


class Batch(NamedTuple):
    features: FeatureBatch
    labels: Tensor  # (n, n_tasks) float32, metadata task order
    row_id: Tensor  # (n,) int64


@dataclass
class TensorSplit:
    """A split (or a chunk of one) as tensors on one device."""

    features: FeatureBatch
    labels: Tensor
    row_id: Tensor

    def __len__(self) -> int:
        return int(self.row_id.shape[0])

    @classmethod
    def from_arrays(cls, arrays: SplitArrays, metadata: DatasetMetadata, where: str) -> TensorSplit:
        _check_ids(arrays, metadata, where)
        n = len(arrays)
        multi = np.concatenate(arrays.multi, axis=1) if arrays.multi else np.zeros((n, 0), dtype=np.int32)
        features = FeatureBatch(
            sparse=_tensor(arrays.sparse, np.int32),
            multi=_tensor(multi, np.int32),
            multi_lengths=_tensor(arrays.multi_lengths, np.int32),
            dense=_tensor(arrays.dense, np.float32),
        )
        return cls(features, _tensor(arrays.labels, np.float32), _tensor(arrays.row_id, np.int64))

    def to(self, device: torch.device) -> TensorSplit:
        if device.type == "cpu":
            return self

        def move(t: Tensor) -> Tensor:
            return t.pin_memory().to(device, non_blocking=True)

        return TensorSplit(FeatureBatch(*map(move, self.features)), move(self.labels), move(self.row_id))

    def take(self, index: Tensor) -> Batch:
        return Batch(
            FeatureBatch(*(t.index_select(0, index) for t in self.features)),
            self.labels.index_select(0, index),
            self.row_id.index_select(0, index),
        )

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(
            FeatureBatch(*(t[start:stop] for t in self.features)),
            self.labels[start:stop],
            self.row_id[start:stop],
        )


def _tensor(values: np.ndarray, dtype: type) -> Tensor:
    """A contiguous, writable copy-if-needed of an array (Arrow hands out read-only buffers)."""
    values = np.ascontiguousarray(values, dtype=dtype)
    return torch.from_numpy(values if values.flags.writeable else values.copy())


def _check_ids(arrays: SplitArrays, metadata: DatasetMetadata, where: str) -> None:
    """Every id inside its field's vocabulary and every length inside [0, max_len], or a clear error."""
    fields = metadata.features
    columns = [(f.name, arrays.sparse[:, j], f.vocab_size) for j, f in enumerate(fields.sparse)]
    columns += [(f.name, arrays.multi[j], f.vocab_size) for j, f in enumerate(fields.multi)]
    columns += [
        (f"{f.name} length", arrays.multi_lengths[:, j], f.max_len + 1) for j, f in enumerate(fields.multi)
    ]
    for name, values, limit in columns:
        if values.size == 0:
            continue
        bad = (values < 0) | (values >= limit)
        if bad.any():
            first = tuple(np.argwhere(bad)[0])
            row, value = int(first[0]), int(values[first])
            raise DataFormatError(
                f"{where}: field {name!r} has value {value} at row_id {int(arrays.row_id[row])}, outside "
                f"[0, {limit}) from metadata.json; re-run `mtl prepare {metadata.dataset}`"
            )


class SplitSource:
    """One split of a prepared dataset: held in memory (on the training device) or streamed in chunks."""

    def __init__(
        self,
        prepared_dir: Path,
        split: str,
        metadata: DatasetMetadata,
        *,
        device: torch.device,
        max_in_memory_rows: int,
        chunk_rows: int,
    ):
        if split not in metadata.splits:
            raise DataFormatError(
                f"dataset {metadata.dataset!r} has no split {split!r}; it has {sorted(metadata.splits)}"
            )
        self.prepared_dir = Path(prepared_dir)
        self.split = split
        self.metadata = metadata
        self.device = device
        self.rows = metadata.splits[split].rows
        self.streaming = self.rows > max_in_memory_rows
        self.chunk_rows = chunk_rows
        self._cached: TensorSplit | None = None

    def chunks(self) -> Iterator[TensorSplit]:
        where = f"{self.prepared_dir / self.metadata.splits[self.split].file}"
        if self.streaming:
            for arrays in iter_split(self.prepared_dir, self.split, self.chunk_rows, self.metadata):
                yield TensorSplit.from_arrays(arrays, self.metadata, where).to(self.device)
            return
        if self._cached is None:
            arrays = read_split(self.prepared_dir, self.split, self.metadata)
            self._cached = TensorSplit.from_arrays(arrays, self.metadata, where).to(self.device)
        yield self._cached


def train_batches(
    source: SplitSource,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    plan: Callable[[FeatureBatch], FeatureBatch] | None = None,
) -> Iterator[tuple[Batch, int]]:
    """(this rank's shard of a shuffled global batch, global batch rows) for one epoch; ``plan``
    (``mtl.models.layers.InputPlanner``) runs on each batch's features where the batch is built, which
    under ``prefetched`` is the batch thread."""
    for index, chunk in enumerate(source.chunks()):
        generator = torch.Generator().manual_seed(derive_seed(seed, epoch, index))
        order = torch.randperm(len(chunk), generator=generator).to(chunk.row_id.device)
        for start in range(0, len(chunk), batch_size):
            rows = order[start : start + batch_size]
            if rows.numel() < world_size:  # a tail too small to give every rank a row
                continue
            batch = chunk.take(rows.tensor_split(world_size)[rank])
            if plan is not None:
                batch = batch._replace(features=plan(batch.features))
            yield batch, int(rows.numel())


def eval_batches(source: SplitSource, batch_size: int) -> Iterator[Batch]:
    """The split in file order, in contiguous slices (views, no gathering)."""
    for chunk in source.chunks():
        for start in range(0, len(chunk), batch_size):
            yield chunk.slice(start, start + batch_size)


Item = TypeVar("Item")
_END = object()


def prefetched(items: Iterator[Item], depth: int = 2) -> Iterator[Item]:
    """``items`` produced by a background thread, at most ``depth`` ahead; its errors re-raise here."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    threads = torch.get_num_threads()  # the consumer's (the training step's) setting

    def produce() -> None:
        # this thread's torch ops (the gathers) on one OpenMP thread. Left at the default they open an
        # OpenMP team of their own beside the step's: at 2 threads on 2 cores training ran at 0.6-0.85x
        # the speed of 1 thread, and at 1.1-1.3x with this (benchmarks/throughput.py). The OpenMP setting
        # is per thread, but torch also keeps it as the default of threads that start later: restored
        # when this one ends
        torch.set_num_threads(1)
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as error:  # handed to the consumer, raised in its thread
            put((_END, error))
        finally:
            torch.set_num_threads(threads)

    thread = threading.Thread(target=produce, name="mtl-batches", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
