"""The raw UCI format: ``census-income.data`` / ``census-income.test``, 42 columns, leading spaces.

pyarrow's streaming CSV reader splits lines on commas (no quoting: values never contain commas or
quotes); a line with the wrong number of fields is then found by a scan so the error names its line.
Every field is stripped; numerics are parsed as float64, everything else stays text (coded categoricals
such as ``det_ind_code`` stay strings, ``'0'``).
The archive may unpack into a sub-folder, so the two files are looked for anywhere under the raw dir.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from mtl.datasets.census import schema
from mtl.datasets.census.encode import FeaturePlan, plan_for
from mtl.datasets.census.layout import HALVES, Layout, RawFile
from mtl.datasets.census.textio import require_not_empty, require_numeric, require_values, width_error
from mtl.errors import DataFormatError

TRAIN_FILE = "census-income.data"
TEST_FILE = "census-income.test"
BLOCK_BYTES = 4 << 20  # pyarrow parses ~12k raw lines per block; blocks are gathered into chunks


def _arrow_options() -> dict[str, Any]:
    return {
        "read_options": pcsv.ReadOptions(column_names=list(schema.COLUMNS), block_size=BLOCK_BYTES),
        "parse_options": pcsv.ParseOptions(quote_char=False, ignore_empty_lines=True),
        "convert_options": pcsv.ConvertOptions(column_types=dict.fromkeys(schema.COLUMNS, pa.string())),
    }


def _tables_of(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.Table]:
    """Re-cut parsed blocks (sized in bytes) into tables of ``rows`` rows (the last may be shorter)."""
    pending = pa.table({name: pa.array([], pa.string()) for name in schema.COLUMNS})
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
    for name in schema.COLUMNS:
        text = pc.utf8_trim_whitespace(table.column(name))
        columns[name] = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return pa.table(columns).to_pandas()


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as float64 (values that are not numbers become NaN, for the expectations)."""
    frame = frame.copy()
    for name in schema.NUMERIC:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(np.float64)
    return frame


def parse_lines(lines: Sequence[str]) -> pd.DataFrame:
    """Raw 42-column lines (e.g. from a serving request) -> a frame ``Encoders.encode`` accepts."""
    data = "\n".join(lines).encode("utf-8")
    try:
        table = pcsv.read_csv(io.BytesIO(data), **_arrow_options())
    except pa.ArrowInvalid as exc:
        raise DataFormatError(f"not {len(schema.COLUMNS)}-column UCI Census lines: {exc}") from None
    return typed(_text_frame(table))


def _wrong_width(path: Path) -> DataFormatError | None:
    """The error for the first non-empty line without exactly 42 fields, if there is one."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            error = width_error(path, number, text, len(schema.COLUMNS)) if text else None
            if error is not None:
                return error
    return None


class UciLayout(Layout):
    source_format = "uci-census-42"
    weighted = True
    files = ((TRAIN_FILE, "train"), (TEST_FILE, HALVES))

    def locate(self, raw_dir: Path) -> list[RawFile]:
        found = []
        for index, (name, role) in enumerate(self.files):
            matches = sorted(p for p in Path(raw_dir).rglob(name) if p.is_file())
            if len(matches) != 1:
                problem = "not found" if not matches else f"found {len(matches)} times ({matches[:3]})"
                raise DataFormatError(
                    f"{name} {problem} under {raw_dir}: the uci source unpacks census.tar.gz there "
                    "(run `mtl download census --source uci`)"
                )
            found.append(RawFile(matches[0], role, index))
        return found

    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        require_not_empty(path)
        first_row = 0
        try:
            for table in _tables_of(pcsv.open_csv(path, **_arrow_options()), chunk_rows):
                text = _text_frame(table)
                frame = typed(text)
                if strict:
                    self._require_encodable(frame, text, path, first_row)
                yield first_row, frame
                first_row += len(frame)
        except pa.ArrowInvalid as exc:
            raise _wrong_width(path) or DataFormatError(f"{path}: cannot parse ({exc})") from None
        if first_row == 0:
            raise DataFormatError(f"{path} holds no data rows (only blank lines)")

    @staticmethod
    def _require_encodable(frame: pd.DataFrame, text: pd.DataFrame, path: Path, first_row: int) -> None:
        require_numeric(frame, schema.NUMERIC, path, first_row, header=False, shown=text)
        require_values(frame, "income_50k", schema.INCOME_VALUES, path, first_row, header=False)
        require_values(frame, "marital_stat", schema.MARITAL_VALUES, path, first_row, header=False)

    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        return {
            task: (frame[schema.LABEL_COLUMNS[task]] == schema.POSITIVE[task]).to_numpy(dtype=np.int8)
            for task in schema.TASKS
        }

    def plan(self, raw_files: Sequence[RawFile]) -> FeaturePlan:
        return plan_for([(c, c) for c in schema.SPARSE], [(c, c) for c in schema.DENSE], schema.LOG1P)

    def weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        return frame[schema.WEIGHT].to_numpy(dtype=np.float64)

    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        labels = self.labels(frame)
        return frame.assign(**{task: labels[task] for task in schema.TASKS})

    def expectations(self) -> list[Any]:
        import great_expectations.expectations as gxe

        out: list[Any] = [
            gxe.ExpectTableColumnsToMatchSet(column_set=[*schema.COLUMNS, *schema.TASKS], exact_match=True),
            gxe.ExpectColumnValuesToBeInSet(column="income_50k", value_set=list(schema.INCOME_VALUES)),
            gxe.ExpectColumnValuesToBeInSet(column="marital_stat", value_set=list(schema.MARITAL_VALUES)),
            gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=["Female", "Male"]),
        ]
        for column in schema.NUMERIC:
            low, high = schema.RANGES[column]
            out += [
                gxe.ExpectColumnValuesToNotBeNull(column=column),
                gxe.ExpectColumnValuesToBeBetween(
                    column=column, min_value=low, max_value=high, strict_min=column == schema.WEIGHT
                ),
            ]
        for column in schema.SPARSE:
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
            if column in schema.CODED:
                out.append(
                    gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(schema.CODED[column]))
                )
        return out

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        return {
            "input_format": self.source_format,
            "input_columns": list(schema.COLUMNS),
            "input_parsing": "split each line on ',', strip every field; numerics as float64, "
            "all other columns as text ('' = missing)",
            "labels": {
                task: {"column": schema.LABEL_COLUMNS[task], "positive": schema.POSITIVE[task]}
                for task in schema.TASKS
            },
            "excluded": {
                schema.WEIGHT: "sampling weight, not a feature",
                **{column: f"label of task {task!r}" for task, column in schema.LABEL_COLUMNS.items()},
            },
        }
