"""PaddleRec's one-hot Census CSV (``train_data.csv`` / ``test_data.csv``): 501 numeric columns.

Column 0 = marital (1 = never married), column 1 = income (1 = 50000+), columns 2-12 the raw numerics
``age, wage_per_hour, capital_gains, capital_losses, stock_dividends, instance_weight, num_emp,
own_or_self, vet_benefits, weeks_worked, year`` (unscaled), columns 13-500 the 488 one-hot indicators of
29 categoricals (``pd.get_dummies``). PaddleRec's script writes a header row that its reader cannot
read; we accept files with or without one (a header is recognised by a non-numeric first field) and
record its names in encoders.json. Indicators written as ``True``/``False`` (newer pandas) read as 1/0.

Features: the 10 numerics except ``instance_weight`` (column 7, a sampling weight), standardised with
train statistics (log1p first for the money columns), and the 488 indicators as 0/1, all dense.
Our ``valid`` and ``test`` are ``test_data.csv`` split 1:1 with ``split_seed``, the same rule as uci
(PaddleRec's ``test_data.csv`` is already one half of ``census-income.test``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl.datasets.census import schema
from mtl.datasets.census.encode import DenseSpec, FeaturePlan, plan_for
from mtl.datasets.census.layout import HALVES, Layout, RawFile
from mtl.datasets.census.textio import first_lines, read_csv_chunks, require_numeric, require_values
from mtl.errors import DataFormatError

WIDTH = 501
LABEL_INDEX = {"marital": 0, "income": 1}
NUMERIC = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "instance_weight",
    "num_emp", "own_or_self", "vet_benefits", "weeks_worked", "year",
)  # fmt: skip
NUMERIC_INDEX = {name: 2 + i for i, name in enumerate(NUMERIC)}
WEIGHT_INDEX = NUMERIC_INDEX[schema.WEIGHT]  # 7
ONEHOT = range(2 + len(NUMERIC), WIDTH)  # 13..500
CATEGORICALS = 29  # one-hot groups: at most one indicator per group is 1
CODES = {"own_or_self": [0, 1, 2], "vet_benefits": [0, 1, 2], "year": [94, 95]}
MAX_CHUNK_ROWS = 20_000  # 501 float64 columns: ~80 MB per chunk


def header_of(path: Path) -> list[str] | None:
    """The header's column names, or None where the first line is data."""
    lines = first_lines(path, 1)
    if not lines:
        return None
    first = lines[0].split(",")[0].strip()
    try:
        float(first)
    except ValueError:
        return [name.strip() for name in lines[0].split(",")]
    return None


class OnehotLayout(Layout):
    source_format = "paddlerec-onehot-501"
    weighted = True
    files = (("train_data.csv", "train"), ("test_data.csv", HALVES))

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        header = header_of(path) is not None
        chunks = read_csv_chunks(
            path, min(chunk_rows, MAX_CHUNK_ROWS), header=header, width=WIDTH, names=range(WIDTH)
        )
        for first_row, frame in chunks:
            if strict:
                require_numeric(frame, frame.columns, path, first_row, header=header)
                for column in LABEL_INDEX.values():
                    require_values(frame, column, [0, 1], path, first_row, header=header)
            for column in frame.columns:
                if not pd.api.types.is_numeric_dtype(frame[column]):
                    frame[column] = pd.to_numeric(frame[column], errors="coerce")
            yield first_row, frame.astype(np.float64)

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {task: frame[LABEL_INDEX[task]].to_numpy().astype(np.int8) for task in schema.TASKS}

    def plan(self, raw_files: Sequence[RawFile]) -> FeaturePlan:
        numeric = plan_for([], [(n, i) for n, i in NUMERIC_INDEX.items() if n != schema.WEIGHT], schema.LOG1P)
        indicators = tuple(DenseSpec(f"onehot_{i - ONEHOT[0]:03d}", i, "identity") for i in ONEHOT)
        return FeaturePlan(dense=numeric.dense + indicators)

    def weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        return frame[WEIGHT_INDEX].to_numpy(dtype=np.float64)

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        block = frame[list(ONEHOT)].to_numpy()
        return pd.DataFrame(
            {
                **{task: frame[index] for task, index in LABEL_INDEX.items()},
                **{name: frame[index] for name, index in NUMERIC_INDEX.items()},
                "onehot_invalid": (~np.isin(block, (0.0, 1.0))).sum(axis=1),
                "onehot_active": (block == 1.0).sum(axis=1),
            }
        )

    def expectations(self) -> list[Any]:
        import great_expectations.expectations as gxe

        out: list[Any] = []
        for task in schema.TASKS:
            out.append(gxe.ExpectColumnValuesToBeInSet(column=task, value_set=[0, 1]))
        for name in NUMERIC:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=name))
            if name in CODES:
                out.append(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=CODES[name]))
            else:
                low, high = schema.RANGES[name]
                out.append(
                    gxe.ExpectColumnValuesToBeBetween(
                        column=name, min_value=low, max_value=high, strict_min=name == schema.WEIGHT
                    )
                )
        out += [
            gxe.ExpectColumnValuesToBeBetween(column="onehot_invalid", min_value=0, max_value=0),
            gxe.ExpectColumnValuesToBeBetween(column="onehot_active", min_value=1, max_value=CATEGORICALS),
        ]
        return out

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        headers = {f.path.name: header_of(f.path) for f in raw_files}
        named = [h for h in headers.values() if h is not None]
        if any(h != named[0] for h in named):
            raise DataFormatError(
                f"the header rows of {sorted(headers)} differ: the one-hot columns would not line up"
            )
        return {
            "input_format": self.source_format,
            "input_columns": named[0] if named else None,
            "labels": {task: {"column": index, "positive": 1} for task, index in LABEL_INDEX.items()},
            "excluded": {str(WEIGHT_INDEX): "instance_weight: sampling weight, not a feature"},
            "note": "columns are 0-based positions in a 501-column row; onehot_NNN is column 13 + NNN",
        }
