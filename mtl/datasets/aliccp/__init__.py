"""Ali-CCP (Alibaba Click and Conversion Prediction): tasks click and purchase, 23 sparse fields.

Every source is parsed into the same slot layout (``fields``), encoded with train-only vocabularies
(``encode``) and written as the ``train``/``valid``/``test`` splits; ``encoders.json`` documents the
raw -> id mapping. See ``sources`` for the sources and ``expectations`` for the validation suites.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtl.config import AliccpParams, Params
from mtl.datasets.aliccp import expectations
from mtl.datasets.aliccp.encode import SPLITS, TASKS, encode_dataset
from mtl.datasets.aliccp.encoders import write_encoders
from mtl.datasets.aliccp.fields import FIELDS, MULTI_VALUED, Layout
from mtl.datasets.aliccp.raw_codec import AliccpCodec
from mtl.datasets.aliccp.sources import DENSE_VALUE, RAW_VALUE, SOURCES, source_chunks
from mtl.datasets.aliccp.synthetic import TRUTH_FILE, Oracle, generate
from mtl.datasets.base import Dataset, Manifest, RawTable
from mtl.datasets.prepared import DatasetMetadata


def _settings(params: Params) -> AliccpParams:
    return params.datasets.aliccp


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


class AliCCP(Dataset):
    name = "aliccp"
    title = "Ali-CCP (Alibaba Click and Conversion Prediction)"
    tasks = TASKS
    funnel = TASKS
    splits = SPLITS
    sources = SOURCES

    def generate(self, raw_dir: Path, params: Params) -> None:
        generate(raw_dir, _settings(params).synthetic)

    def raw_tables(self, raw_dir: Path, manifest: Manifest, params: Params) -> Iterator[RawTable]:
        return expectations.raw_tables(manifest.source, raw_dir, params.data.chunk_rows)

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        return expectations.raw_expectations(table)

    def prepare(self, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params) -> DatasetMetadata:
        settings = _settings(params).prepare
        source = manifest.source
        stats: Counter[str] = Counter()
        layout = Layout(settings.max_multi_len)
        oracle = Oracle(raw_dir / TRUTH_FILE, settings.oracle_max_rows) if source == "synthetic" else None
        result = encode_dataset(
            source_chunks(source, raw_dir, layout, stats, params.data.chunk_rows),
            out_dir,
            settings,
            row_group_rows=params.data.row_group_rows,
            has_dense=source in DENSE_VALUE,
            observe=oracle.observe if oracle else None,
        )
        write_encoders(
            out_dir,
            result,
            source=source,
            min_count=settings.min_count,
            raw_value=RAW_VALUE[source],
            dense_value=DENSE_VALUE.get(source, ""),
        )
        extra: dict[str, Any] = {
            "field_order": list(FIELDS),
            "multi_valued": [f for f in FIELDS if f in MULTI_VALUED],
            "valid_split": (
                "the file ali_ccp_val.csv"
                if source == "csv"
                else f"seeded hash of the sample id (valid_fraction={settings.valid_fraction}, "
                f"split_seed={settings.split_seed}); test = the test file"
            ),
            "parse": _nested(stats),
            "unknown_ids": result.unknown_ids,
            "vocabulary": {
                name: {"size": v.size, "distinct_in_train": v.distinct_in_train}
                for name, v in result.vocabularies.items()
            },
        }
        if oracle is not None:
            extra["oracle_auc"] = oracle.report()
        return result.writer.finish(
            dataset=self.name,
            source=source,
            funnel=list(self.funnel),
            raw_hash=manifest.content_hash,
            prepare_params=settings.model_dump(mode="json"),
            extra=extra,
        )

    def prepared_expectations(self, metadata: DatasetMetadata, split: str, params: Params) -> list[Any]:
        return expectations.prepared_expectations()

    def prepared_checks(self, prepared_dir: Path, metadata: DatasetMetadata, params: Params) -> list[Any]:
        return expectations.prepared_checks(metadata, _settings(params).prepare.valid_fraction)

    def raw_codec(self, prepared_dir: Path) -> AliccpCodec:
        return AliccpCodec(prepared_dir)
