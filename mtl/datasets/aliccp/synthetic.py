"""Synthetic Ali-CCP written in the PaddleRec token format, with the true probabilities beside it.

``generate`` writes ``traindata_10w.csv`` / ``testdata_10w.csv`` exactly as the public files look
(``sample_id,click,purchase,field:feat_id,...``; global feat ids unique per field; fields in a random
order per line, multi-valued ones repeated) and ``synthetic_truth.parquet`` (file, sample_id, p_click,
p_purchase_given_click), chunk by chunk with numpy and Arrow string kernels. ``Oracle`` reads the truth
back during prepare and scores it against the labels: the best AUC any model can reach.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtl.config import AliccpSynthetic
from mtl.datasets.aliccp.encode import SPLITS
from mtl.datasets.aliccp.fields import FIELD_INDEX, FIELDS, RawChunk
from mtl.datasets.aliccp.world import CROSSES, HISTORIES, PROFILE, Impressions, World, gather, probabilities
from mtl.errors import DataFormatError
from mtl.evaluation import roc_auc

TRAIN_FILE, TEST_FILE, TRUTH_FILE = "traindata_10w.csv", "testdata_10w.csv", "synthetic_truth.parquet"
CHUNK_ROWS = 100_000  # rows drawn per random stream; fixed so the output depends on the seed alone
_PREFIXES = pa.array([f"{name}:" for name in FIELDS])
_TRUTH_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("sample_id", pa.int64()),
        ("p_click", pa.float64()),
        ("p_purchase_given_click", pa.float64()),
    ]
)


def global_ids(world: World, seed: int) -> dict[str, np.ndarray]:
    """Local index -> global feat id: each field owns a disjoint id range (ids start at 1), shuffled."""
    rng = np.random.default_rng([seed, 4])
    ids, base = {}, 1
    for name in FIELDS:
        ids[name] = base + rng.permutation(world.sizes[name])
        base += world.sizes[name]
    return ids


def _tokens(world: World, sample: Impressions) -> tuple[np.ndarray, ...]:
    """Every token of the impressions as (row, field index, local value, position within the field)."""
    n = sample.user.size
    rows = np.arange(n)
    parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = [
        ("101", rows, sample.user, None),
        ("205", rows, sample.item, None),
        ("301", rows, sample.position, None),
    ]
    for j, name in enumerate(PROFILE):
        value = world.profile[sample.user, j]
        parts.append((name, rows[value >= 0], value[value >= 0], None))
    for name in HISTORIES:
        parts.append((name, *gather(*world.history[name], sample.user)))
    for name in ("206", "207", "216"):
        parts.append((name, rows, world.item_field[name][sample.item], None))
    parts.append(("210", *gather(*world.item_intents, sample.item)))
    for name, (_, item_field) in CROSSES.items():
        hit = sample.matched[name]
        parts.append(
            (name, rows[hit], world.item_field[item_field][sample.item[hit]] % world.sizes[name], None)
        )
    row, intent = sample.intents
    position = np.arange(row.size) - np.searchsorted(row, row)  # rows are sorted: rank within the row
    parts.append(("853", row, intent % world.sizes["853"], position))
    return tuple(
        np.concatenate(column)
        for column in zip(
            *(
                (r, np.full(r.size, FIELD_INDEX[name]), v, np.zeros(r.size, np.int64) if p is None else p)
                for name, r, v, p in parts
            )
        )
    )


def token_lines(
    world: World,
    ids: dict[str, np.ndarray],
    sample: Impressions,
    sample_id: np.ndarray,
    click: np.ndarray,
    purchase: np.ndarray,
    rng: np.random.Generator,
) -> pa.Buffer:
    """The impressions as newline-terminated token lines (one contiguous buffer)."""
    n = sample.user.size
    row, field, local, position = _tokens(world, sample)
    value = np.empty(row.size, dtype=np.int64)
    for name, index in FIELD_INDEX.items():
        mine = field == index
        value[mine] = ids[name][local[mine]]
    # Fields come in a random order per line (as in the real files); a field's own ids keep their order.
    field_rank = np.argsort(np.argsort(rng.random((n, len(FIELDS))), axis=1), axis=1)
    order = np.argsort((row * len(FIELDS) + field_rank[row, field]) * 16 + position, kind="stable")
    tokens = pc.binary_join_element_wise(
        _PREFIXES.take(pa.array(field[order])), pc.cast(pa.array(value[order]), pa.string()), ""
    )
    offsets = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n))]).astype(np.int32)
    body = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), tokens), ",")
    head = [
        pc.cast(pa.array(column), pa.string())
        for column in (sample_id, click.astype(np.int8), purchase.astype(np.int8))
    ]
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*head, body, ","), "", "\n")
    bounds = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + n + 1]
    return lines.buffers()[2][int(bounds[0]) : int(bounds[-1])]


def _chunk(
    world: World,
    ids: dict[str, np.ndarray],
    seed: int,
    file: str,
    file_index: int,
    chunk_index: int,
    start: int,
    n: int,
) -> tuple[pa.Buffer, pa.Table]:
    """Rows ``start + 1 .. start + n`` of a file: their token lines and their truth rows."""
    rng = np.random.default_rng([seed, 3, file_index, chunk_index])
    sample = world.impressions(rng, n)
    p_click, p_purchase = probabilities(world, sample)
    click = rng.random(n) < p_click
    purchase = click & (rng.random(n) < p_purchase)
    sample_id = np.arange(start + 1, start + n + 1, dtype=np.int64)
    truth = pa.table([pa.array([file] * n), sample_id, p_click, p_purchase], schema=_TRUTH_SCHEMA)
    return token_lines(world, ids, sample, sample_id, click, purchase, rng), truth


def generate(raw_dir: Path, settings: AliccpSynthetic) -> None:
    """Write the two token files and the truth file (under temporary names, renamed once all are done)."""
    world = World(settings)
    ids = global_ids(world, settings.seed)
    rows = {TRAIN_FILE: settings.train_rows, TEST_FILE: settings.test_rows}
    temporary = {name: raw_dir / f".{name}.part" for name in (*rows, TRUTH_FILE)}
    try:
        with pq.ParquetWriter(temporary[TRUTH_FILE], _TRUTH_SCHEMA, compression="zstd") as truth:
            for file_index, (name, total) in enumerate(rows.items()):
                with open(temporary[name], "wb") as out:
                    for chunk_index, start in enumerate(range(0, total, CHUNK_ROWS)):
                        n = min(CHUNK_ROWS, total - start)
                        lines, table = _chunk(
                            world, ids, settings.seed, name, file_index, chunk_index, start, n
                        )
                        out.write(lines)
                        truth.write_table(table)
        for name, path in temporary.items():
            os.replace(path, raw_dir / name)
    finally:
        for path in temporary.values():
            path.unlink(missing_ok=True)


class _TruthStream:
    """The truth rows of one raw file, handed out in file order, one row group in memory at a time."""

    def __init__(self, path: Path, file: str):
        self._parquet = pq.ParquetFile(path)
        self._next_group = 0
        self._file = file
        self._buffer = np.empty((0, 3))

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` rows as columns (sample_id, p_click, p_purchase_given_click)."""
        parts = [self._buffer]
        held = len(self._buffer)
        # row groups one by one: iter_batches would pre-buffer the whole file
        while held < n and self._next_group < self._parquet.num_row_groups:
            group = self._parquet.read_row_group(self._next_group, columns=_TRUTH_SCHEMA.names)
            self._next_group += 1
            group = group.filter(pc.equal(group.column("file"), self._file))
            parts.append(np.column_stack([group.column(c).to_numpy() for c in _TRUTH_SCHEMA.names[1:]]))
            held += group.num_rows
        rows = np.concatenate(parts)
        self._buffer = rows[n:].copy()
        return rows[:n]


class Oracle:
    """Collects true probabilities and labels per split (up to ``max_rows`` each) and scores them."""

    def __init__(self, truth_path: Path, max_rows: int):
        if not truth_path.is_file():
            raise DataFormatError(
                f"{truth_path} not found: the synthetic ground truth is missing (re-run download)"
            )
        self.truth_path = truth_path
        self.max_rows = max_rows
        self._streams: dict[str, _TruthStream] = {}
        self._parts: dict[str, list[tuple[np.ndarray, ...]]] = {split: [] for split in SPLITS}
        self._rows = dict.fromkeys(SPLITS, 0)

    def observe(self, chunk: RawChunk, split_index: np.ndarray) -> None:
        stream = self._streams.setdefault(chunk.file, _TruthStream(self.truth_path, chunk.file))
        truth = stream.take(len(chunk))
        if truth.shape[0] != len(chunk) or not np.array_equal(truth[:, 0].astype(np.int64), chunk.row_id):
            raise DataFormatError(
                f"{self.truth_path} does not match {chunk.file} row for row (was a raw file replaced?)"
            )
        labels = np.column_stack([chunk.click, chunk.purchase]).astype(np.int8)
        for index, split in enumerate(SPLITS):
            mine = np.flatnonzero(split_index == index)[: self.max_rows - self._rows[split]]
            if mine.size:
                self._parts[split].append((truth[mine, 1], truth[mine, 2], labels[mine]))
                self._rows[split] += mine.size

    def report(self) -> dict[str, Any]:
        """Oracle AUCs per split: click, purchase (= ctcvr, over all rows) and cvr (clicked rows only)."""
        out: dict[str, Any] = {"max_rows_per_split": self.max_rows}
        for split, parts in self._parts.items():
            if not parts:
                continue
            p_click, p_purchase, labels = (np.concatenate(column) for column in zip(*parts))
            click, purchase = labels[:, 0], labels[:, 1]
            clicked = click > 0
            out[split] = {
                "rows": int(click.size),
                "click": roc_auc(click, p_click),
                "purchase": roc_auc(purchase, p_click * p_purchase),
                "cvr": roc_auc(purchase[clicked], p_purchase[clicked]),
                "mean_p_click": float(p_click.mean()),
                "click_rate": float(click.mean()),
                "mean_p_purchase": float((p_click * p_purchase).mean()),
                "purchase_rate": float(purchase.mean()),
            }
        return out
