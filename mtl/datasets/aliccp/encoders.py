"""``encoders.json`` and ``vocab/<field>.parquet``: how a served model encodes raw Ali-CCP features itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtl.datasets.aliccp.encode import EncodeResult
from mtl.datasets.aliccp.fields import DENSE_FIELDS, DENSE_SOURCE_FIELDS, FIELDS, MULTI_VALUED
from mtl.datasets.prepared import ENCODERS_FILE, LENGTH_SUFFIX, write_json_atomic

VOCAB_DIR = "vocab"
RULES = {
    "single": "id of the field's first raw value (vocab_file: raw -> id); absent, unseen or rarer than "
    "min_count in train -> 0",
    "multi": "the field's first max_len raw values in source order, each mapped like a single field "
    "(unknown -> 0), zero-padded to max_len; the length column holds how many values were present "
    "(at most max_len), unknown ones included",
}


def write_encoders(
    out_dir: Path, result: EncodeResult, *, source: str, min_count: int, raw_value: str, dense_value: str
) -> None:
    """Write one vocabulary Parquet per field and the JSON that says how to use them."""
    (out_dir / VOCAB_DIR).mkdir(parents=True, exist_ok=True)
    fields: list[dict[str, Any]] = []
    for name in FIELDS:
        vocab = result.vocabularies[name]
        path = f"{VOCAB_DIR}/{name}.parquet"
        table = pa.table(
            {
                "raw": pa.array(vocab.raw, pa.int64()),
                "id": pa.array(np.arange(1, vocab.size, dtype=np.int32)),
                "train_count": pa.array(vocab.counts, pa.int64()),
            }
        )
        pq.write_table(table, out_dir / path, compression="zstd")
        kind = "multi" if name in MULTI_VALUED else "single"
        entry: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "column": name,
            "vocab_file": path,
            "vocab_size": vocab.size,
            "distinct_in_train": vocab.distinct_in_train,
            "rule": RULES[kind],
        }
        if kind == "multi":
            entry |= {"max_len": result.layout.max_len, "length_column": name + LENGTH_SUFFIX}
        fields.append(entry)
    dense: list[dict[str, Any]] = []
    if result.dense_mean is not None and result.dense_std is not None:
        for j, (name, field) in enumerate(zip(DENSE_FIELDS, DENSE_SOURCE_FIELDS)):
            dense.append(
                {
                    "name": name,
                    "field": field,
                    "raw_value": dense_value,
                    "mean": float(result.dense_mean[j]),
                    "std": float(result.dense_std[j]),
                    "rule": "(raw_value - mean) / std, as float32",
                }
            )
    write_json_atomic(
        out_dir / ENCODERS_FILE,
        {
            "dataset": "aliccp",
            "source": source,
            "raw_value": raw_value,
            "unknown_id": 0,
            "padding_id": 0,
            "min_count": min_count,
            "fields": fields,
            "dense": dense,
        },
    )
