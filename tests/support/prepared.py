"""Small prepared datasets with a planted, known signal, written through ``PreparedWriter``.

For tests and benchmarks of the models and the trainer; the real synthetic sources live in
``mtl.datasets``. Labels are drawn from known probabilities (per-id effects of a few fields, the mean
effect of multi-valued fields over their true length, dense slopes and one interaction), so a model's
AUC can be compared with the oracle AUC of those probabilities, stored like the synthetic datasets
store theirs (``metadata.extra["oracle_auc"][split]``, read with ``evaluation.oracle_aucs``).

* ``kind="aliccp"``: tasks click, purchase (funnel click -> purchase; purchase only after a click),
  17 single-valued and 6 multi-valued fields named as in Ali-CCP, no dense fields.
* ``kind="census"``: tasks income, marital (no funnel), 12 categorical fields and 5 dense ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from mtl.datasets.prepared import (
    DatasetMetadata,
    DenseField,
    FeatureSchema,
    MultiField,
    PreparedWriter,
    SparseField,
    SplitChunk,
)
from mtl.evaluation import roc_auc

# Ali-CCP field ids; vocabulary sizes of the full data (PaddleRec AITM config; multi-valued: ours)
ALICCP_SINGLE = {
    "101": 238635, "121": 98, "122": 14, "124": 3, "125": 8, "126": 4, "127": 4, "128": 3, "129": 5,
    "205": 467298, "206": 6929, "207": 263942, "216": 106399, "508": 5888, "509": 104830, "702": 51878,
    "301": 4,
}  # fmt: skip
ALICCP_MULTI = {
    "109_14": 20000,
    "110_14": 200000,
    "127_14": 100000,
    "150_14": 100000,
    "210": 90000,
    "853": 37148,
}
CENSUS_SINGLE = {f"cat{i}": v for i, v in enumerate((9, 17, 52, 24, 7, 10, 6, 3, 2, 43, 5, 8))}
MAX_LEN = 3
Kind = Literal["aliccp", "census"]
DEFAULT_ROWS = {"train": 8000, "valid": 2000, "test": 2000}


def synthetic_schema(kind: Kind, vocab_scale: float = 1.0, min_vocab: int = 3) -> FeatureSchema:
    def size(full: int) -> int:
        return max(min_vocab, min(full, round(full * vocab_scale)))

    if kind == "census":
        return FeatureSchema(
            sparse=tuple(SparseField(n, v) for n, v in CENSUS_SINGLE.items()),
            dense=tuple(DenseField(f"num{i}") for i in range(5)),
        )
    return FeatureSchema(
        sparse=tuple(SparseField(n, size(v)) for n, v in ALICCP_SINGLE.items()),
        multi=tuple(MultiField(n, size(v), MAX_LEN) for n, v in ALICCP_MULTI.items()),
    )


class _Truth:
    """The planted model: per-field id effects, dense slopes and an interaction, for two logits."""

    def __init__(self, schema: FeatureSchema, rng: np.random.Generator, correlation: float):
        fields = [*schema.sparse, *schema.multi]
        scale = rng.choice([0.0, 0.3, 0.6, 1.0], size=len(fields), p=[0.3, 0.3, 0.2, 0.2])
        self.effects = []
        for f, s in zip(fields, scale):
            a = rng.normal(0.0, s, f.vocab_size)
            b = correlation * a + np.sqrt(1 - correlation**2) * rng.normal(0.0, s, f.vocab_size)
            a[0] = b[0] = 0.0  # the unknown id carries no signal
            self.effects.append((a, b))
        self.slopes = rng.normal(0.0, 0.5, (len(schema.dense), 2))
        self.n_sparse = len(schema.sparse)

    def logits(self, chunk: SplitChunk, schema: FeatureSchema) -> np.ndarray:
        n = len(chunk)
        z = np.zeros((n, 2))
        field_values = [chunk.sparse[f.name] for f in schema.sparse]
        for i, values in enumerate(field_values):
            for j in range(2):
                z[:, j] += self.effects[i][j][values]
        for m, f in enumerate(schema.multi):
            ids, lengths = chunk.multi[f.name]
            valid = np.arange(f.max_len)[None, :] < lengths[:, None]
            for j in range(2):
                z[:, j] += (self.effects[self.n_sparse + m][j][ids] * valid).sum(1) / np.maximum(lengths, 1)
        if schema.dense:
            dense = np.stack([chunk.dense[f.name] for f in schema.dense], axis=1)
            z += dense @ self.slopes
        if len(field_values) >= 2:  # one interaction, so that depth can beat a linear model a little
            z[:, 0] += 0.8 * self.effects[0][0][field_values[0]] * self.effects[1][0][field_values[1]]
        return z


def _features(schema: FeatureSchema, n: int, rng: np.random.Generator, row0: int) -> SplitChunk:
    def ids(vocab: int, shape: tuple[int, ...]) -> np.ndarray:
        # power-law popularity over ids 1..vocab-1, 2% unknown (0)
        drawn = 1 + np.floor((vocab - 1) * rng.random(shape) ** 3).astype(np.int32)
        return np.where(rng.random(shape) < 0.02, 0, np.minimum(drawn, vocab - 1)).astype(np.int32)

    multi = {}
    for f in schema.multi:
        lengths = rng.integers(0, f.max_len + 1, n).astype(np.int16)
        values = ids(f.vocab_size, (n, f.max_len))
        values[np.arange(f.max_len)[None, :] >= lengths[:, None]] = 0
        multi[f.name] = (values, lengths)
    return SplitChunk(
        labels={},
        row_id=np.arange(row0, row0 + n, dtype=np.int64),
        sparse={f.name: ids(f.vocab_size, (n,)) for f in schema.sparse},
        multi=multi,
        dense={f.name: rng.normal(0.0, 1.0, n).astype(np.float32) for f in schema.dense},
    )


def _bias_for_rate(z: np.ndarray, rate: float) -> float:
    low, high = -30.0, 30.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if np.mean(1 / (1 + np.exp(-(z + mid)))) < rate else (low, mid)
    return (low + high) / 2


def write_synthetic_prepared(
    out_dir: Path,
    kind: Kind = "aliccp",
    *,
    rows: Mapping[str, int] | None = None,
    vocab_scale: float = 0.001,
    rates: tuple[float, float] | None = None,
    seed: int = 0,
    row_group_rows: int = 262_144,
) -> DatasetMetadata:
    """Write a prepared dataset of ``kind`` into ``out_dir``; returns its metadata.

    ``rates``: (click rate, purchase rate among clicks) for aliccp, (income, marital) rates for census.
    """
    rows = dict(rows or DEFAULT_ROWS)
    rng = np.random.default_rng(seed)
    schema = synthetic_schema(kind, vocab_scale)
    aliccp = kind == "aliccp"
    tasks = ["click", "purchase"] if aliccp else ["income", "marital"]
    rates = rates or ((0.2, 0.25) if aliccp else (0.08, 0.45))
    truth = _Truth(schema, rng, correlation=0.5)
    writer = PreparedWriter(out_dir, schema, tasks, row_group_rows=row_group_rows)
    bias: np.ndarray | None = None
    oracle: dict[str, dict[str, float | None]] = {}
    row0 = 0
    for split, n in rows.items():
        chunk = _features(schema, n, rng, row0)
        row0 += n
        z = truth.logits(chunk, schema)
        if bias is None:
            bias = np.array([_bias_for_rate(z[:, j], rates[j]) for j in range(2)])
        p = 1 / (1 + np.exp(-(z + bias)))
        first = rng.random(n) < p[:, 0]
        second = rng.random(n) < p[:, 1]
        if aliccp:
            second &= first  # a purchase needs a click; p[:, 1] is P(purchase | click)
            oracle[split] = {  # the datasets' convention: tasks over all rows, plus cvr on clicks
                "click": roc_auc(first, p[:, 0]),
                "purchase": roc_auc(second, p[:, 0] * p[:, 1]),
                "cvr": roc_auc(second[first], p[first, 1]),
            }
        else:
            oracle[split] = {"income": roc_auc(first, p[:, 0]), "marital": roc_auc(second, p[:, 1])}
        chunk.labels = {tasks[0]: first.astype(np.int8), tasks[1]: second.astype(np.int8)}
        for start in range(0, n, row_group_rows):
            writer.write(split, _slice(chunk, slice(start, start + row_group_rows)))
        writer.open_split(split)
    return writer.finish(
        dataset=kind,
        source="tests.support.prepared",
        funnel=["click", "purchase"] if aliccp else None,
        prepare_params={"vocab_scale": vocab_scale, "seed": seed},
        extra={"oracle_auc": oracle},
    )


def _slice(chunk: SplitChunk, rows: slice) -> SplitChunk:
    return SplitChunk(
        labels={k: v[rows] for k, v in chunk.labels.items()},
        row_id=chunk.row_id[rows],
        sparse={k: v[rows] for k, v in chunk.sparse.items()},
        multi={k: (ids[rows], lengths[rows]) for k, (ids, lengths) in chunk.multi.items()},
        dense={k: v[rows] for k, v in chunk.dense.items()},
    )
