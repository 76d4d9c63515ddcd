"""Synthetic Ali-CCP written in the PaddleRec token format, with the true probabilities beside it.

``generate`` writes the train and test token files exactly as the public files look
(``sample_id,click,purchase,field:feat_id,...``; global feat ids unique per field; fields in a random
order per line, multi-valued ones repeated) and the truth file (file, sample_id, p_click,
p_purchase_given_click), chunk by chunk with numpy and Arrow string kernels, from the planted ``world``.
Prepare scores the truth against the labels (``oracle``): the best AUC any model can reach.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mtl.config import AliccpSynthetic
from mtl.datasets.aliccp import FIELD_INDEX, FIELDS, TOKEN_FILES, TRUTH
from mtl.datasets.aliccp.world import CROSSES, HISTORIES, PROFILE, Impressions, World, gather, probabilities
from mtl.datasets.prepared import replacing

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
    rows = {TOKEN_FILES["train"]: settings.train_rows, TOKEN_FILES["test"]: settings.test_rows}
    with ExitStack() as files:
        partial = {name: files.enter_context(replacing(raw_dir / name)) for name in (*rows, TRUTH.name)}
        with pq.ParquetWriter(partial[TRUTH.name], _TRUTH_SCHEMA, compression="zstd") as truth:
            for file_index, (name, total) in enumerate(rows.items()):
                with open(partial[name], "wb") as out:
                    for chunk_index, start in enumerate(range(0, total, CHUNK_ROWS)):
                        n = min(CHUNK_ROWS, total - start)
                        lines, table = _chunk(
                            world, ids, settings.seed, name, file_index, chunk_index, start, n
                        )
                        out.write(lines)
                        truth.write_table(table)
