"""Reading the MetaHeac split pickles (restricted unpickler only) into checkable tables and arrays."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.datasets.base import RawTable, Source, find_once
from mtl.datasets.lookalike import (
    AD_FIELDS,
    ARCHIVE,
    DYNAMIC_FIELDS,
    GROUP,
    INT_COLUMNS,
    LABEL,
    LENGTH_SUFFIX,
    MAX_SUFFIX,
    MIN_SUFFIX,
    ROW_INDEX,
    SPLIT_FILES,
    STATIC_FIELDS,
    cell_kind,
)
from mtl.datasets.safe_pickle import load_dataframe_pickle
from mtl.errors import DataFormatError


@dataclass
class RawSplit:
    """One split as raw (unshifted) id arrays."""

    label: np.ndarray  # (n,)
    aid: np.ndarray  # (n,)
    sparse: dict[str, np.ndarray]  # static and ad fields, (n,)
    multi: dict[str, np.ndarray]  # (n, width)
    lengths: dict[str, np.ndarray]  # (n,) as stored in *_length
    row_id: np.ndarray  # (n,) the pickle's index

    def __len__(self) -> int:
        return len(self.label)


def find_split_files(raw_dir: Path) -> dict[str, Path]:
    """The five split pickles anywhere under ``raw_dir``; other files (train_stage2.pkl) are ignored."""
    hint = f"{ARCHIVE} should hold {', '.join(SPLIT_FILES.values())}"
    return {split: find_once(raw_dir, name, f"split {split!r}", hint) for split, name in SPLIT_FILES.items()}


def load_split(path: Path) -> pd.DataFrame:
    """Unpickle one split through the restricted unpickler (never ``pickle.load``/``read_pickle``)."""
    return load_dataframe_pickle(path)


def describe_cell(cell: object) -> str:
    """What a multi-valued cell is, e.g. ``ndarray[int64x10]``, for the raw suite's value check."""
    if isinstance(cell, np.ndarray):
        return f"ndarray[{cell.dtype}x{'x'.join(map(str, cell.shape))}]"
    if isinstance(cell, (list, tuple)):
        return f"{type(cell).__name__}[x{len(cell)}]"
    return type(cell).__name__


def validation_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with every multi-valued column replaced by its cell description plus per-row min and
    max id, so GX can check it; scalar columns are kept with their dtypes."""
    view = pd.DataFrame({ROW_INDEX: frame.index.to_numpy()})
    for column in frame.columns:
        if column not in DYNAMIC_FIELDS:
            view[column] = frame[column].to_numpy()
    for field, width in DYNAMIC_FIELDS.items():
        if field not in frame.columns:
            continue
        cells = frame[field].to_numpy(dtype=object)
        stacked = _stack_cells(cells, width)
        if stacked is not None:
            view[field] = cell_kind(width)
            view[field + MIN_SUFFIX] = stacked.min(axis=1)
            view[field + MAX_SUFFIX] = stacked.max(axis=1)
            continue
        view[field] = [describe_cell(cell) for cell in cells]
        bounds = np.array([_bounds(cell) for cell in cells], dtype=np.float64).reshape(len(cells), 2)
        view[field + MIN_SUFFIX], view[field + MAX_SUFFIX] = bounds[:, 0], bounds[:, 1]
    return view


class Pickles:
    """The published format's reader: one pickle per split, anywhere under the raw directory."""

    def files(self, raw_dir: Path) -> dict[str, Path]:
        return find_split_files(raw_dir)

    def split(self, path: Path) -> RawSplit:
        return to_raw_split(load_split(path), path)


def reader(source: Source) -> Pickles:
    return Pickles()


def raw_tables(pickles: Pickles, raw_dir: Path, chunk_rows: int) -> Iterator[RawTable]:
    """Each split's validation view in chunks of ``chunk_rows`` (an empty split yields one empty chunk)."""
    for split, path in pickles.files(raw_dir).items():
        view = validation_view(load_split(path))
        for start in range(0, max(len(view), 1), chunk_rows):
            chunk = view.iloc[start : start + chunk_rows].reset_index(drop=True)
            yield RawTable(name=split, path=path, frame=chunk, first_row=start)


def to_raw_split(frame: pd.DataFrame, path: Path) -> RawSplit:
    """Typed arrays of one split; a missing column, a non-integer column or a malformed multi-valued
    cell is a DataFormatError naming the file, the column and the first bad row."""
    missing = [c for c in (*INT_COLUMNS, *DYNAMIC_FIELDS) if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing columns {missing} (see the MetaHeac pickle layout)")
    for column in INT_COLUMNS:
        if not pd.api.types.is_integer_dtype(frame[column].dtype):
            raise DataFormatError(
                f"{path}: column {column!r} has dtype {frame[column].dtype}, expected int64 "
                "(a float dtype usually means missing values)"
            )
    if not pd.api.types.is_integer_dtype(frame.index.dtype):
        raise DataFormatError(
            f"{path}: the index has dtype {frame.index.dtype}, expected int64 row positions"
        )
    multi = {}
    for field, width in DYNAMIC_FIELDS.items():
        cells = frame[field].to_numpy(dtype=object)
        stacked = _stack_cells(cells, width)
        if stacked is None:
            row = next(i for i, cell in enumerate(cells) if describe_cell(cell) != cell_kind(width))
            raise DataFormatError(
                f"{path}: column {field!r} row {row} (index {frame.index[row]}) holds "
                f"{describe_cell(cells[row])}, expected {cell_kind(width)}"
            )
        multi[field] = stacked

    def column(name: str) -> np.ndarray:
        return frame[name].to_numpy(dtype=np.int64)

    return RawSplit(
        label=column(LABEL),
        aid=column(GROUP),
        sparse={field: column(field) for field in (*STATIC_FIELDS, *AD_FIELDS)},
        multi=multi,
        lengths={field: column(field + LENGTH_SUFFIX) for field in DYNAMIC_FIELDS},
        row_id=frame.index.to_numpy(dtype=np.int64),
    )


def _stack_cells(cells: np.ndarray, width: int) -> np.ndarray | None:
    """(n, width) int64 if every cell is an int64 array of that width, else None."""
    shape = (width,)
    if not all(type(c) is np.ndarray and c.dtype == np.int64 and c.shape == shape for c in cells):
        return None
    return np.stack(cells) if len(cells) else np.zeros((0, width), dtype=np.int64)


def _bounds(cell: object) -> tuple[float, float]:
    try:
        values = np.asarray(cell, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.nan, np.nan
    return (float(values.min()), float(values.max())) if values.size else (np.nan, np.nan)
