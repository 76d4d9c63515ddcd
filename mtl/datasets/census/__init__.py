"""Census-Income (KDD): tasks income > 50k and never married, from four sources in three formats.

* ``uci``: UCI's ``census.tar.gz`` (raw 42-column text); our own encoding, ``uci.py``.
* ``paddlerec``: PaddleRec's one-hot 501-column CSV, ``onehot.py``.
* ``csv``: torch-rechub's 41-column label-encoded CSV (``--from`` a URL or folder), ``csv_source.py``.
* ``synthetic``: generated raw UCI files with known probabilities, ``synthetic.py``; parsed as uci.

Splits ``train`` / ``valid`` / ``test``: the train file, then the test file split 1:1 with
``split_seed`` (uci, paddlerec, synthetic) or the files' own val/test (csv). Raw tables are named after
their files; row ids are ``file index x 1e9 + data row`` (``splits.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mtl.config import Params
from mtl.datasets.base import Dataset, Manifest, RawTable, RemoteFile, Source
from mtl.datasets.census import schema
from mtl.datasets.census.csv_source import RechubCsvLayout
from mtl.datasets.census.layout import HALVES, Layout
from mtl.datasets.census.onehot import OnehotLayout
from mtl.datasets.census.prepare import prepare_layout
from mtl.datasets.census.raw_codec import CensusCodec
from mtl.datasets.census.synthetic import ARCHIVE, TRUTH_FILE, generate_census
from mtl.datasets.census.uci import UciLayout
from mtl.datasets.prepared import ROW_ID, DatasetMetadata, split_path
from mtl.errors import ConfigError

UCI_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/census.tar.gz"
PADDLEREC_URL = "https://paddlerec.bj.bcebos.com/mmoe/"

UCI, ONEHOT, RECHUB = UciLayout(), OnehotLayout(), RechubCsvLayout()
LAYOUTS: dict[str, Layout] = {"uci": UCI, "synthetic": UCI, "paddlerec": ONEHOT, "csv": RECHUB}
LAYOUT_OF_TABLE = {name: layout for layout in (UCI, ONEHOT, RECHUB) for name, _ in layout.files}

SOURCES = {
    "uci": Source(
        "uci",
        "UCI census.tar.gz: census-income.data (train) and census-income.test, 42 raw columns",
        (RemoteFile(ARCHIVE, url=UCI_URL, extract=True),),
        format=UCI.source_format,
    ),
    "paddlerec": Source(
        "paddlerec",
        "PaddleRec MMoE one-hot CSV: marital, income, 499 features (train_data.csv, test_data.csv)",
        tuple(RemoteFile(name, url=PADDLEREC_URL + name) for name, _ in ONEHOT.files),
        format=ONEHOT.source_format,
    ),
    "csv": Source(
        "csv",
        "torch-rechub label-encoded CSV, 39 features + marital status + income (pass --from)",
        tuple(RemoteFile(name) for name, _ in RECHUB.files),
        format=RECHUB.source_format,
    ),
    "synthetic": Source(
        "synthetic",
        "generated raw UCI files (census.tar.gz) with the true probabilities beside them",
        (RemoteFile(ARCHIVE, extract=True), RemoteFile(TRUTH_FILE)),
        kind="generated",
        format=UCI.source_format,
    ),
}


class Census(Dataset):
    name = "census"
    title = "Census-Income (KDD)"
    tasks = schema.TASKS
    splits = schema.SPLITS
    sources = SOURCES

    @staticmethod
    def layout(source: str) -> Layout:
        if source not in LAYOUTS:
            raise ConfigError(f"census has no source {source!r}; choose one of {sorted(LAYOUTS)}")
        return LAYOUTS[source]

    def generate(self, raw_dir: Path, params: Params) -> None:
        generate_census(raw_dir, params.datasets.census.synthetic)

    def raw_tables(self, raw_dir: Path, manifest: Manifest, params: Params) -> Iterator[RawTable]:
        layout = self.layout(manifest.source)
        for raw in layout.locate(raw_dir):
            for first_row, frame in layout.read(raw.path, params.data.chunk_rows, strict=False):
                yield RawTable(raw.path.name, raw.path, layout.validation_frame(frame), first_row)

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        if table not in LAYOUT_OF_TABLE:
            raise ConfigError(f"census has no raw table {table!r}; known: {sorted(LAYOUT_OF_TABLE)}")
        return LAYOUT_OF_TABLE[table].expectations()

    def prepare(self, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params) -> DatasetMetadata:
        source = self.source(manifest.source)
        return prepare_layout(
            self.layout(manifest.source),
            raw_dir,
            out_dir,
            params,
            source=manifest.source,
            raw_hash=manifest.content_hash,
            truth=raw_dir / TRUTH_FILE if source.kind == "generated" else None,
        )

    def prepared_checks(self, prepared_dir: Path, metadata: DatasetMetadata, params: Params) -> list[Any]:
        """Row ids unique across splits; where the test file was halved, valid and test within one row."""
        import great_expectations.expectations as gxe

        ids = [
            pq.read_table(split_path(prepared_dir, split, metadata), columns=[ROW_ID]).column(0).to_numpy()
            for split in metadata.splits
        ]
        all_ids = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        row: dict[str, int] = {"duplicate_row_ids": int(len(all_ids) - len(np.unique(all_ids)))}
        expectations = [gxe.ExpectColumnValuesToBeBetween(column="duplicate_row_ids", max_value=0)]
        if HALVES in dict(self.layout(metadata.source).files).values():
            sizes = {name: info.rows for name, info in metadata.splits.items()}
            row["valid_test_gap"] = abs(sizes.get("valid", 0) - sizes.get("test", 0))
            expectations.append(gxe.ExpectColumnValuesToBeBetween(column="valid_test_gap", max_value=1))
        return [("splits", pd.DataFrame([row]), expectations)]

    def raw_codec(self, prepared_dir: Path) -> CensusCodec:
        return CensusCodec(prepared_dir)
