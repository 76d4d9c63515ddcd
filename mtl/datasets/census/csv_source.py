"""torch-rechub's label-encoded Census CSV: ``census_income_{train,val,test}.csv`` with a header.

41 columns in UCI order with the long UCI names, ``instance weight`` dropped: 7 dense columns already
MinMax-scaled to [0, 1], 32 label-encoded integer columns (``year`` among them), and the labels
``marital status`` and ``income`` as 0/1. The val file becomes our ``valid`` split.

Features keep our short names (``schema.COLUMNS``), so a model sees the same fields as with uci: the
dense columns are standardised with train statistics (no log1p: they are already squashed to [0, 1]),
and the integer codes are re-indexed with vocabularies fitted on train (codes not in train -> 0).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl.datasets.census import schema
from mtl.datasets.census.encode import FeaturePlan, plan_for
from mtl.datasets.census.layout import Layout, RawFile
from mtl.datasets.census.textio import (
    first_lines,
    line_of,
    read_csv_chunks,
    require_numeric,
    require_values,
)
from mtl.errors import DataFormatError

LABELS = {"income": "income", "marital": "marital status"}  # task -> column
DENSE = tuple(schema.LONG_NAMES[c] for c in schema.DENSE)
SPARSE = tuple(schema.LONG_NAMES[c] for c in schema.SPARSE)
COLUMNS = tuple(schema.LONG_NAMES[c] for c in schema.COLUMNS if c != schema.WEIGHT)  # the 41, in order
INTEGER_TYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
NUMBER_TYPES = [*INTEGER_TYPES, "float16", "float32", "float64"]


class RechubCsvLayout(Layout):
    source_format = "rechub-census-41"
    files = (
        ("census_income_train.csv", "train"),
        ("census_income_val.csv", "valid"),
        ("census_income_test.csv", "test"),
    )

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        header = first_lines(path, 1)
        width = len(header[0].split(",")) if header else 0
        for first_row, frame in read_csv_chunks(path, chunk_rows, header=True, width=width):
            if strict:
                self._require_encodable(frame, path, first_row)
                frame = frame.astype({c: np.int64 for c in (*SPARSE, *LABELS.values())})
            yield first_row, frame

    @staticmethod
    def _require_encodable(frame: pd.DataFrame, path: Path, first_row: int) -> None:
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"{path}: missing column(s) {missing}; expected the 41 columns {list(COLUMNS)}"
            )
        require_numeric(frame, COLUMNS, path, first_row, header=True)
        for column in (*SPARSE, *LABELS.values()):
            values = frame[column].to_numpy(dtype=np.float64)
            fractional = np.flatnonzero(values != np.round(values))
            if fractional.size:
                row = int(fractional[0])
                raise DataFormatError(
                    f"{path} line {line_of(path, first_row + row, header=True)}: column {column!r} must "
                    f"hold integer codes, got {frame[column].iloc[row].item()!r}"
                )
        for column in LABELS.values():
            require_values(frame, column, [0, 1], path, first_row, header=True)

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {task: frame[column].to_numpy().astype(np.int8) for task, column in LABELS.items()}

    def plan(self, raw_files: Sequence[RawFile]) -> FeaturePlan:
        return plan_for(
            [(c, schema.LONG_NAMES[c]) for c in schema.SPARSE],
            [(c, schema.LONG_NAMES[c]) for c in schema.DENSE],
            frozenset(),
        )

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        if LABELS["marital"] in frame.columns:  # the task's name, for the label-rate check
            return frame.assign(marital=frame[LABELS["marital"]])
        return frame

    def expectations(self) -> list[Any]:
        import great_expectations.expectations as gxe

        out: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in COLUMNS]
        for column in LABELS.values():
            out += [
                gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=INTEGER_TYPES),
                gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[0, 1]),
            ]
        # An integer dtype already rules out NaN and text; any integer code is re-indexed by prepare.
        out += [gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=INTEGER_TYPES) for c in SPARSE]
        for column in DENSE:
            out += [
                gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMBER_TYPES),
                gxe.ExpectColumnValuesToNotBeNull(column=column),
                gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=1),
            ]
        return out

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        return {
            "input_format": self.source_format,
            "input_columns": list(COLUMNS),
            "labels": {task: {"column": column, "positive": 1} for task, column in LABELS.items()},
            "excluded": {},
            "note": "sparse vocabularies map the file's integer codes to our ids (0 = not seen in train)",
        }
