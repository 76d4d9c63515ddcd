"""torch-rechub's label-encoded CSV layout, shared by its Ali-CCP and Census preprocessing.

One file per split with a header row: 0/1 task labels, sparse columns already label-encoded as
integer codes (>= 0), and dense columns of numbers. ``RechubCsv`` names the files and columns of one
dataset's variant; ``read`` yields checked chunks, ``expectations`` the raw suite of a file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.datasets import expectations as ex
from mtl.datasets.text import first_lines, read_csv_chunks, require_numeric, require_values, row_error
from mtl.errors import DataFormatError


@dataclass(frozen=True)
class RechubCsv:
    files: Mapping[str, str]  # split -> file name
    labels: Mapping[str, str]  # task -> column
    sparse: tuple[str, ...]  # integer-coded columns
    dense: tuple[str, ...]
    columns: tuple[str, ...]  # every column a file must have, in file order
    dense_range: tuple[float, float]  # where the dense values lie (expectations)

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        """Chunks ``(first data row, frame)``. Structural errors (line width, empty file, no data rows)
        always raise DataFormatError; with ``strict`` so do values that cannot be encoded (a missing
        column, a non-number, a code that is not an integer >= 0, a label outside {0, 1}), and codes and
        labels come as int64. Without it the frame is as read, for the expectations to judge."""
        header = first_lines(path, 1)
        width = len(header[0].split(",")) if header else 0
        for first_row, frame in read_csv_chunks(path, chunk_rows, header=True, width=width):
            if strict:
                self._require_encodable(frame, path, first_row)
                frame = frame.astype({c: np.int64 for c in (*self.sparse, *self.labels.values())})
            yield first_row, frame

    def _require_encodable(self, frame: pd.DataFrame, path: Path, first_row: int) -> None:
        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            expected = f"the {len(self.columns)} columns {list(self.columns)}"
            raise DataFormatError(f"{path}: missing column(s) {missing}; expected {expected}")
        require_numeric(frame, self.columns, path, first_row, header=True)
        for column in (*self.sparse, *self.labels.values()):
            values = frame[column].to_numpy(dtype=np.float64)
            bad = np.flatnonzero((values != np.round(values)) | (values < 0))
            if bad.size:
                value = frame[column].iloc[int(bad[0])].item()
                problem = f"column {column!r} must hold integer codes >= 0, got {value!r}"
                raise row_error(path, first_row + int(bad[0]), True, problem)
        for column in self.labels.values():
            require_values(frame, column, ex.BINARY, path, first_row, header=True)

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The chunk with a column per task named as the task (for the label-rate check)."""
        aliases = {task: column for task, column in self.labels.items() if task != column and column in frame}
        return frame.assign(**{task: frame[column] for task, column in aliases.items()})

    def expectations(self) -> list[ex.Expect]:
        """Every column exists; labels and codes are integers, labels 0/1; dense values are numbers in range.
        (A negative code is rejected by ``read``, naming line and column.)"""
        out = ex.exist(self.columns)
        for column in self.labels.values():
            out += [*ex.typed([column], ex.INTEGER_TYPES), ex.in_set(column, ex.BINARY)]
        # an integer dtype already rules out NaN and text
        out += ex.typed(self.sparse, ex.INTEGER_TYPES)
        for column in self.dense:
            out += [*ex.typed([column], ex.NUMBER_TYPES), *ex.not_null([column])]
            out.append(ex.between(column, *self.dense_range))
        return out
