"""The label-encoded Ali-CCP CSV layout (torch-rechub's preprocessing): ``ali_ccp_{train,val,test}.csv``.

A header ``click,purchase``, the 23 sparse fields (ids already label-encoded, 0 = unknown/absent; one id
per field, even for multi-valued ones) and 8 dense ``D<field>`` columns. We re-index the sparse ids with
our own train vocabularies (raw 0 counts as absent) and standardise the dense values with train statistics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.datasets.aliccp.fields import DENSE_FIELDS, FIELDS, Layout, RawChunk, slot_stats
from mtl.errors import DataFormatError

CSV_FILES = {"train": "ali_ccp_train.csv", "valid": "ali_ccp_val.csv", "test": "ali_ccp_test.csv"}
LABELS = ("click", "purchase")
REQUIRED = (*LABELS, *FIELDS, *DENSE_FIELDS)
RAW_VALUE = "the integer in the field's column; 0 (the file's unknown id) counts as absent"
DENSE_VALUE = "the D<field> column as given (the file's own MinMax-scaled value)"


def csv_frames(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file in DataFrames of ``chunk_rows`` rows, dtypes as pandas infers them (for validation).

    A file with a header and no rows yields one empty frame, so that it shows up as an empty table.
    """
    try:
        with pd.read_csv(path, chunksize=chunk_rows) as reader:
            empty = True
            for frame in reader:
                empty = False
                yield frame
    except pd.errors.EmptyDataError:
        raise DataFormatError(
            f"{path} is empty (expected a header {','.join(REQUIRED[:4])},... and rows)"
        ) from None
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{path} is not a well-formed CSV: {exc}") from None
    if empty:
        yield pd.read_csv(path, nrows=0)


def _fail(path: Path, first_row: int, index: int, column: str, problem: str) -> DataFormatError:
    # data row i of a chunk starting at data row r is on line r + i + 2 (line 1 is the header)
    return DataFormatError(f"{path}: line {first_row + index + 2}, column {column!r}: {problem}")


def _shown(value: object) -> str:
    return "an empty (NaN) value" if pd.isna(value) else repr(str(value))


def _integers(path: Path, frame: pd.DataFrame, column: str, first_row: int) -> np.ndarray:
    values = frame[column]
    if pd.api.types.is_integer_dtype(values.dtype):
        out = values.to_numpy(dtype=np.int64)
    else:
        number = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(number) | (number != np.round(number))
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(path, first_row, i, column, f"{_shown(values.iloc[i])} is not an integer")
        out = number.astype(np.int64)
    if (out < 0).any():
        i = int(np.argmax(out < 0))
        raise _fail(path, first_row, i, column, f"{out[i]} is negative (expected an id >= 0)")
    return out


def _floats(path: Path, frame: pd.DataFrame, column: str, first_row: int) -> np.ndarray:
    number = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(number)
    if bad.any():
        i = int(np.argmax(bad))
        raise _fail(path, first_row, i, column, f"{_shown(frame[column].iloc[i])} is not a finite number")
    return number


def iter_csv_chunks(path: Path, layout: Layout, stats: Counter[str], chunk_rows: int) -> Iterator[RawChunk]:
    """The file as RawChunks; a missing column, non-integer id, NaN or label outside {0,1} is an error."""
    first_row = 0
    for frame in csv_frames(path, chunk_rows):
        missing = [c for c in REQUIRED if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"{path}: missing columns {missing} (the layout needs {', '.join(REQUIRED)})"
            )
        n = len(frame)
        labels = {name: _integers(path, frame, name, first_row) for name in LABELS}
        for name, values in labels.items():
            if (values > 1).any():
                i = int(np.argmax(values > 1))
                raise _fail(path, first_row, i, name, f"label {values[i]} (expected 0 or 1)")
        if (labels["purchase"] > labels["click"]).any():
            i = int(np.argmax(labels["purchase"] > labels["click"]))
            raise _fail(
                path, first_row, i, "purchase", "purchase=1 without a click (expected purchase <= click)"
            )
        ids = np.zeros((n, layout.slots), dtype=np.int64)
        counts = np.zeros((n, len(FIELDS)), dtype=np.int32)
        for index, name in enumerate(FIELDS):
            values = _integers(path, frame, name, first_row)
            ids[:, layout.offsets[index]] = values
            counts[:, index] = values != 0
        stats.update(slot_stats(counts, layout))
        stats["rows"] += n
        yield RawChunk(
            file=path.name,
            row_id=np.arange(first_row, first_row + n, dtype=np.int64),
            click=labels["click"],
            purchase=labels["purchase"],
            ids=ids,
            counts=counts,
            dense=np.column_stack([_floats(path, frame, name, first_row) for name in DENSE_FIELDS]),
        )
        first_row += n
