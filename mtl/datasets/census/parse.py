"""The three on-disk Census formats: where the files are, how a file is read in checked chunks, how
labels are read, which columns become which features, and what encoders.json says about the input.

Row numbers (``first_row``) count data rows, 0-based, as in ``text``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from mtl.datasets.base import RawTable, Source, find_once
from mtl.datasets.census import (
    ARCHIVE,
    COLUMNS,
    DENSE,
    FILES,
    INCOME_VALUES,
    LABEL_COLUMNS,
    LOG1P,
    LONG_NAMES,
    MARITAL_VALUES,
    NUMERIC,
    ONEHOT_FILES,
    ONEHOT_FORMAT,
    ONEHOT_LABELS,
    ONEHOT_NUMERIC,
    ONEHOT_WIDTH,
    POSITIVE,
    RECHUB,
    RECHUB_FORMAT,
    SPARSE,
    TASKS,
    UCI_FILES,
    UCI_FORMAT,
    WEIGHT,
)
from mtl.datasets.encoding import Scaler
from mtl.datasets.text import (
    first_lines,
    first_width_error,
    read_csv_chunks,
    require_not_empty,
    require_numeric,
    require_values,
)
from mtl.errors import DataFormatError


@dataclass(frozen=True)
class RawFile:
    path: Path
    role: str  # a split name, or HALVES
    index: int  # position in the format's file list; row ids of this file start at index * ROW_ID_STRIDE


@dataclass(frozen=True)
class Plan:
    """Which parsed columns become which prepared features (encoders not fitted yet)."""

    sparse: tuple[tuple[str, Any], ...]  # (prepared name, parsed column)
    dense: tuple[Scaler, ...]


def plan_for(
    sparse: Iterable[tuple[str, Any]], dense: Iterable[tuple[str, Any]], log1p: frozenset[str]
) -> Plan:
    """A plan from (prepared name, raw column) pairs; dense names in ``log1p`` get log1p first."""
    return Plan(tuple(sparse), tuple(Scaler(name, column, log1p=name in log1p) for name, column in dense))


class Layout:
    format: str
    files: tuple[tuple[str, str], ...]  # (file name, role) in row-id order
    weighted = False  # whether rows carry a sampling weight (``weights``)

    def locate(self, raw_dir: Path) -> list[RawFile]:
        """The format's files in ``raw_dir`` (directly inside it)."""
        found = []
        for index, (name, role) in enumerate(self.files):
            path = Path(raw_dir) / name
            if not path.is_file():
                raise DataFormatError(
                    f"{path} not found: the {self.format} source needs {[n for n, _ in self.files]} "
                    "(run `mtl download census` first)"
                )
            found.append(RawFile(path, role, index))
        return found

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        """Parsed chunks ``(first_row, frame)``. Structural errors (column count, empty or truncated file)
        always raise DataFormatError; with ``strict`` so do values that cannot be encoded (prepare),
        without it they are left for the expectations to report (raw validation)."""
        raise NotImplementedError

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Task -> int8 0/1 labels of a parsed chunk."""
        raise NotImplementedError

    def plan(self) -> Plan:
        raise NotImplementedError

    def weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The rows' sampling weights where the format has them (never a feature)."""
        return None

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The chunk as the raw expectations see it (with integer task columns for label rates)."""
        return frame

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        """What encoders.json says about the raw input before the per-field encoders."""
        return {"input_format": self.format}


# --- raw UCI: census-income.data / .test, 42 columns, leading spaces -----------------------------------
# pyarrow's streaming CSV reader splits lines on commas (no quoting: values never contain commas or
# quotes); a line with the wrong number of fields is then found by a scan so the error names its line.
# Every field is stripped; numerics are parsed as float64, everything else stays text (coded
# categoricals such as ``det_ind_code`` stay strings, ``'0'``). The archive may unpack into a
# sub-folder, so the files are looked for anywhere under the raw dir.

UCI_BLOCK_BYTES = 4 << 20  # pyarrow parses ~12k raw lines per block; blocks are gathered into chunks


def _arrow_options() -> dict[str, Any]:
    return {
        "read_options": pcsv.ReadOptions(column_names=list(COLUMNS), block_size=UCI_BLOCK_BYTES),
        "parse_options": pcsv.ParseOptions(quote_char=False, ignore_empty_lines=True),
        "convert_options": pcsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.string())),
    }


def _tables_of(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Re-cut parsed blocks (sized in bytes) into tables of ``rows`` rows (the last may be shorter)."""
    pending = pa.table({name: pa.array([], pa.string()) for name in COLUMNS})
    for batch in batches:
        pending = pa.concat_tables([pending, pa.Table.from_batches([batch])])
        while pending.num_rows >= rows:
            yield pending.slice(0, rows)
            pending = pending.slice(rows)
    if pending.num_rows:
        yield pending


def _text_frame(table: pa.Table) -> pd.DataFrame:
    """Raw text columns -> a frame of stripped strings ('' becomes missing)."""
    columns = {}
    for name in COLUMNS:
        text = pc.utf8_trim_whitespace(table.column(name))
        columns[name] = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return pa.table(columns).to_pandas()


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as float64 (values that are not numbers become NaN, for the expectations)."""
    frame = frame.copy()
    for name in NUMERIC:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    return frame


def parse_lines(lines: Sequence[str]) -> pd.DataFrame:
    """Raw 42-column lines (e.g. from a serving request) -> a frame ``prepare.encode`` accepts."""
    data = "\n".join(lines).encode("utf-8")
    try:
        table = pcsv.read_csv(io.BytesIO(data), **_arrow_options())
    except pa.ArrowInvalid as exc:
        raise DataFormatError(f"not {len(COLUMNS)}-column UCI Census lines: {exc}") from None
    return typed(_text_frame(table))


class UciLayout(Layout):
    format = UCI_FORMAT
    files = UCI_FILES
    weighted = True

    def locate(self, raw_dir: Path) -> list[RawFile]:
        hint = f"the uci source unpacks {ARCHIVE} there (run `mtl download census --source uci`)"
        return [
            RawFile(find_once(raw_dir, name, "census uci file", hint), role, index)
            for index, (name, role) in enumerate(self.files)
        ]

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        require_not_empty(path)
        first_row = 0
        try:
            for table in _tables_of(pcsv.open_csv(path, **_arrow_options()), chunk_rows):
                text = _text_frame(table)
                frame = typed(text)
                if strict:
                    require_numeric(frame, NUMERIC, path, first_row, header=False, shown=text)
                    require_values(frame, "income_50k", INCOME_VALUES, path, first_row, header=False)
                    require_values(frame, "marital_stat", MARITAL_VALUES, path, first_row, header=False)
                yield first_row, frame
                first_row += len(frame)
        except pa.ArrowInvalid as exc:
            raise first_width_error(path, len(COLUMNS)) or DataFormatError(
                f"{path}: cannot parse ({exc})"
            ) from None
        if first_row == 0:
            raise DataFormatError(f"{path} holds no data rows (only blank lines)")

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {
            task: (frame[LABEL_COLUMNS[task]] == POSITIVE[task]).to_numpy(dtype=np.int8) for task in TASKS
        }

    def plan(self) -> Plan:
        return plan_for([(c, c) for c in SPARSE], [(c, c) for c in DENSE], LOG1P)

    def weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        return frame[WEIGHT].to_numpy(dtype=np.float64)

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        labels = self.labels(frame)
        return frame.assign(**{task: labels[task] for task in TASKS})

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        return {
            "input_format": self.format,
            "input_columns": list(COLUMNS),
            "input_parsing": "split each line on ',', strip every field; numerics as float64, "
            "all other columns as text ('' = missing)",
            "labels": {task: {"column": LABEL_COLUMNS[task], "positive": POSITIVE[task]} for task in TASKS},
            "excluded": {
                WEIGHT: "sampling weight, not a feature",
                **{column: f"label of task {task!r}" for task, column in LABEL_COLUMNS.items()},
            },
        }


# --- PaddleRec one-hot: train_data.csv / test_data.csv, 501 numeric columns ------------------------------
# PaddleRec's script writes a header row that its reader cannot read; we accept files with or without
# one (a header is recognised by a non-numeric first field) and record its names in encoders.json.
# Indicators written as True/False (newer pandas) read as 1/0. Features: the 10 numerics except
# instance_weight (a sampling weight), standardised with train statistics (log1p first for the money
# columns), and the 488 indicators as 0/1, all dense. Our valid and test are test_data.csv split 1:1,
# the same rule as uci (PaddleRec's test_data.csv is already one half of census-income.test).

ONEHOT_NUMERIC_INDEX = {name: 2 + i for i, name in enumerate(ONEHOT_NUMERIC)}
ONEHOT_WEIGHT_INDEX = ONEHOT_NUMERIC_INDEX[WEIGHT]  # 7
ONEHOT_INDICATORS = range(2 + len(ONEHOT_NUMERIC), ONEHOT_WIDTH)  # 13..500
ONEHOT_MAX_CHUNK_ROWS = 20_000  # 501 float64 columns: ~80 MB per chunk


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
    format = ONEHOT_FORMAT
    files = ONEHOT_FILES
    weighted = True

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        header = header_of(path) is not None
        rows = min(chunk_rows, ONEHOT_MAX_CHUNK_ROWS)
        chunks = read_csv_chunks(path, rows, header=header, width=ONEHOT_WIDTH, names=range(ONEHOT_WIDTH))
        for first_row, frame in chunks:
            if strict:
                require_numeric(frame, frame.columns, path, first_row, header=header)
                for column in ONEHOT_LABELS.values():
                    require_values(frame, column, [0, 1], path, first_row, header=header)
            for column in frame.columns:
                if not pd.api.types.is_numeric_dtype(frame[column]):
                    frame[column] = pd.to_numeric(frame[column], errors="coerce")
            yield first_row, frame.astype(np.float64)

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {task: frame[ONEHOT_LABELS[task]].to_numpy().astype(np.int8) for task in TASKS}

    def plan(self) -> Plan:
        numeric = plan_for([], [(n, i) for n, i in ONEHOT_NUMERIC_INDEX.items() if n != WEIGHT], LOG1P)
        indicators = tuple(
            Scaler(f"onehot_{i - ONEHOT_INDICATORS[0]:03d}", i, Scaler.IDENTITY) for i in ONEHOT_INDICATORS
        )
        return Plan((), numeric.dense + indicators)

    def weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        return frame[ONEHOT_WEIGHT_INDEX].to_numpy(dtype=np.float64)

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        block = frame[list(ONEHOT_INDICATORS)].to_numpy()
        return pd.DataFrame(
            {
                **{task: frame[index] for task, index in ONEHOT_LABELS.items()},
                **{name: frame[index] for name, index in ONEHOT_NUMERIC_INDEX.items()},
                "onehot_invalid": (~np.isin(block, (0.0, 1.0))).sum(axis=1),
                "onehot_active": (block == 1.0).sum(axis=1),
            }
        )

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        headers = {f.path.name: header_of(f.path) for f in raw_files}
        named = [h for h in headers.values() if h is not None]
        if any(h != named[0] for h in named):
            raise DataFormatError(
                f"the header rows of {sorted(headers)} differ: the one-hot columns would not line up"
            )
        return {
            "input_format": self.format,
            "input_columns": named[0] if named else None,
            "labels": {task: {"column": index, "positive": 1} for task, index in ONEHOT_LABELS.items()},
            "excluded": {str(ONEHOT_WEIGHT_INDEX): "instance_weight: sampling weight, not a feature"},
            "note": "columns are 0-based positions in a 501-column row; onehot_NNN is column 13 + NNN",
        }


# --- torch-rechub label-encoded CSV: census_income_{train,val,test}.csv ----------------------------------
# 41 columns in UCI order with the long UCI names, instance weight dropped. Features keep our short names,
# so a model sees the same fields as with uci: the dense columns (already MinMax-scaled to [0, 1]) are
# standardised with train statistics, no log1p; the integer codes are re-indexed with train vocabularies.


class RechubLayout(Layout):
    format = RECHUB_FORMAT
    files = FILES[RECHUB_FORMAT]

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        return RECHUB.read(path, chunk_rows, strict=strict)

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {task: frame[column].to_numpy().astype(np.int8) for task, column in RECHUB.labels.items()}

    def plan(self) -> Plan:
        return plan_for(
            [(c, LONG_NAMES[c]) for c in SPARSE], [(c, LONG_NAMES[c]) for c in DENSE], frozenset()
        )

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        return RECHUB.validation_frame(frame)

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        return {
            "input_format": self.format,
            "input_columns": list(RECHUB.columns),
            "labels": {task: {"column": column, "positive": 1} for task, column in RECHUB.labels.items()},
            "excluded": {},
            "note": "sparse vocabularies map the file's integer codes to our ids (0 = not seen in train)",
        }


LAYOUTS: dict[str, Layout] = {
    layout.format: layout for layout in (UciLayout(), OnehotLayout(), RechubLayout())
}


def reader(source: Source) -> Layout:
    return LAYOUTS[source.format]


def raw_tables(layout: Layout, raw_dir: Path, chunk_rows: int) -> Iterator[RawTable]:
    """Each raw file in chunks as its expectations see them, named after the file."""
    for raw in layout.locate(raw_dir):
        for first_row, frame in layout.read(raw.path, chunk_rows, strict=False):
            yield RawTable(raw.path.name, raw.path, layout.validation_frame(frame), first_row)
