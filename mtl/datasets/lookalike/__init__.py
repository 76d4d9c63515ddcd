"""Tencent Look-alike 2018 as preprocessed for MetaHeac: one task (label) per campaign (aid)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from mtl.config import Params
from mtl.datasets.base import Dataset, Manifest, RawTable, RemoteFile, Source
from mtl.datasets.lookalike.expectations import campaign_checks, raw_expectations
from mtl.datasets.lookalike.parse import iter_raw_tables
from mtl.datasets.lookalike.prepare import prepare_lookalike
from mtl.datasets.lookalike.raw_codec import LookalikeCodec
from mtl.datasets.lookalike.schema import ARCHIVE, GROUP, LABEL, SPLITS, TRUTH_FILE
from mtl.datasets.lookalike.synthetic import write_synthetic
from mtl.datasets.prepared import DatasetMetadata

FORMAT = "metaheac-pickles: metaheac_data.zip with train_stage1/test_{hot,cold}_stage{1,2}.pkl DataFrames"


class Lookalike(Dataset):
    name = "lookalike"
    title = "Tencent Look-alike 2018 (MetaHeac preprocessing)"
    tasks = (LABEL,)
    splits = SPLITS
    group_column = GROUP
    sources: ClassVar[dict[str, Source]] = {
        "paddlerec": Source(
            name="paddlerec",
            description="PaddleRec's copy of the MetaHeac preprocessed pickles (pandas < 2 DataFrames)",
            files=(
                RemoteFile(
                    ARCHIVE,
                    url="https://paddlerec.bj.bcebos.com/datasets/lookalike/metaheac_data.zip",
                    extract=True,
                ),
            ),
            format=FORMAT,
        ),
        "synthetic": Source(
            name="synthetic",
            description="generated campaigns with shared and campaign-specific signal, in the pickle format",
            files=(RemoteFile(ARCHIVE, extract=True), RemoteFile(TRUTH_FILE)),
            kind="generated",
            format=FORMAT,
        ),
    }

    def generate(self, raw_dir: Path, params: Params) -> None:
        write_synthetic(raw_dir, params.datasets.lookalike.synthetic)

    def raw_tables(self, raw_dir: Path, manifest: Manifest, params: Params) -> Iterator[RawTable]:
        return iter_raw_tables(raw_dir, params.data.chunk_rows)

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        return raw_expectations()

    def prepare(self, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params) -> DatasetMetadata:
        return prepare_lookalike(self.name, raw_dir, out_dir, manifest, params)

    def prepared_checks(self, prepared_dir: Path, metadata: DatasetMetadata, params: Params) -> list[Any]:
        return campaign_checks(prepared_dir, metadata)

    def raw_codec(self, prepared_dir: Path) -> LookalikeCodec:
        return LookalikeCodec(prepared_dir)
