"""Reading raw text files: blocks of whole lines, CSV chunks, and errors that name the file, line and value.

Row numbers count *data rows* (0-based; no header, no blank lines), as ``RawTable.first_row`` does;
messages give the physical 1-based line, found by ``physical_lines`` (only on the error path).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

from mtl.errors import DataFormatError

BLOCK_BYTES = 4 << 20  # parsing a block takes tens of times its size in temporaries
NEWLINE = 10
CARRIAGE_RETURN = 13


def excerpt(text: str | bytes, limit: int = 80) -> str:
    """A line shortened for an error message, quoted."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (so messages read ``2``, not ``np.int64(2)``)."""
    return value.item() if isinstance(value, np.generic) else value


# --- blocks of whole lines (the byte-level parsers) ---------------------------------------------------


def iter_line_blocks(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, bytes]]:
    """Yield ``(number of the block's first line, 1-based; bytes)`` of whole lines, each ending in a
    newline (one is added after a last line that lacks it). A line longer than a block is kept whole."""
    first_line = 1
    carry = b""
    while data := stream.read(block_bytes):
        buffer = carry + data if carry else data
        cut = buffer.rfind(b"\n")
        if cut < 0:
            carry = buffer
            continue
        block, carry = buffer[: cut + 1], buffer[cut + 1 :]
        yield first_line, block
        first_line += block.count(b"\n")
    if carry:
        yield first_line, carry + b"\n"


def drop_carriage_returns(data: np.ndarray) -> np.ndarray:
    """Bytes without the ``\\r`` of ``\\r\\n`` line ends (files written on Windows)."""
    crlf = np.flatnonzero((data[:-1] == CARRIAGE_RETURN) & (data[1:] == NEWLINE))
    return np.delete(data, crlf) if crlf.size else data


def lines_array(block: bytes, first_line: int, where: str) -> pa.LargeStringArray:
    """The lines of a block (as from ``iter_line_blocks``) as one Arrow string array, without line ends."""
    data = drop_carriage_returns(np.frombuffer(block, dtype=np.uint8))
    newlines = np.flatnonzero(data == NEWLINE)
    lengths = np.diff(newlines, prepend=-1) - 1
    offsets = np.zeros(newlines.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    text = data[data != NEWLINE]
    array = pa.LargeStringArray.from_buffers(newlines.size, pa.py_buffer(offsets), pa.py_buffer(text))
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        bad = next(i for i, line in enumerate(block.split(b"\n")) if not _is_utf8(line))
        raise DataFormatError(f"{where}: line {first_line + bad} is not UTF-8 text") from None
    return array


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- delimited text read with pandas ------------------------------------------------------------------


def physical_lines(path: Path, data_rows: Iterable[int], *, header: bool) -> dict[int, tuple[int, str]]:
    """0-based data row -> (1-based line number, text), skipping a header line and blank lines."""
    wanted = set(data_rows)
    found: dict[int, tuple[int, str]] = {}
    seen, header_pending = -1, header
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if len(found) == len(wanted):
                break
            if not line.strip():
                continue
            if header_pending:
                header_pending = False
                continue
            seen += 1
            if seen in wanted:
                found[seen] = (number, line.rstrip("\r\n"))
    return found


def line_of(path: Path, data_row: int, *, header: bool) -> int:
    return physical_lines(path, [data_row], header=header).get(data_row, (-1, ""))[0]


def require_not_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path} is empty (0 bytes): expected data rows")


def first_lines(path: Path, count: int) -> list[str]:
    """The first ``count`` non-blank lines (fewer if the file is shorter)."""
    lines: list[str] = []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            for line in handle:
                if line.strip():
                    lines.append(line.rstrip("\r\n"))
                    if len(lines) == count:
                        break
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return lines


def read_csv_chunks(
    path: Path, chunk_rows: int, *, header: bool, width: int, names: Sequence[Any] | None = None
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Comma-separated chunks with a fresh index; every line must have exactly ``width`` fields.

    pandas raises on a line with too many fields but pads a short one with NaN, so rows whose last
    column is NaN are re-read as text to tell a truncated line from an empty last value. (The first
    data line is checked up front: with one extra field there, pandas would silently make it an index.)
    """
    require_not_empty(path)
    head = first_lines(path, 2 if header else 1)
    data = head[1:] if header else head
    if not data:
        raise DataFormatError(f"{path} holds no data rows" + (" (only a header)" if head else ""))
    _raise_if(width_error(path, line_of(path, 0, header=header), data[0], width))
    first_row = 0
    try:
        reader = pd.read_csv(
            path, header=0 if header else None, names=names, chunksize=chunk_rows, encoding="utf-8"
        )
        for chunk in reader:
            chunk = chunk.reset_index(drop=True)
            short = np.flatnonzero(chunk[chunk.columns[-1]].isna().to_numpy())[:1000] + first_row
            for _, (number, text) in sorted(physical_lines(path, short, header=header).items()):
                _raise_if(width_error(path, number, text, width))
            yield first_row, chunk
            first_row += len(chunk)
    except pd.errors.ParserError as exc:
        message = " ".join(str(exc).split()).removeprefix("Error tokenizing data. ")
        raise DataFormatError(f"{path}: malformed CSV ({message}; expected {width} fields)") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text ({exc.reason})") from None


def width_error(path: Path, line: int, text: str, width: int) -> DataFormatError | None:
    """The error for a line that does not have exactly ``width`` comma-separated fields, else None."""
    found = text.count(",") + 1
    if found == width:
        return None
    return DataFormatError(
        f"{path} line {line}: expected {width} comma-separated fields, found {found} "
        f"(truncated or malformed line: {excerpt(text.strip())})"
    )


def first_width_error(path: Path, width: int) -> DataFormatError | None:
    """The error for the first non-empty line without exactly ``width`` fields, if there is one."""
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            error = width_error(path, number, text, width) if text else None
            if error is not None:
                return error
    return None


def _raise_if(error: Exception | None) -> None:
    if error is not None:
        raise error


def require_numeric(
    frame: pd.DataFrame,
    columns: Sequence[Any],
    path: Path,
    first_row: int,
    *,
    header: bool,
    shown: pd.DataFrame | None = None,
) -> None:
    """Raise DataFormatError naming the line, column and value (from ``shown``, default ``frame``) of
    the first non-finite numeric cell."""
    columns = list(columns)
    block = frame[columns]
    if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in block.dtypes):
        block = block.apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(block.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        value = plain((frame if shown is None else shown)[columns[col]].iloc[row])
        problem = f"column {columns[col]!r} must be a finite number, got {value!r}"
        raise row_error(path, first_row + row, header, problem)


def require_values(
    frame: pd.DataFrame, column: Any, allowed: Sequence[Any], path: Path, first_row: int, *, header: bool
) -> None:
    """Raise DataFormatError at the first value of ``column`` outside ``allowed``."""
    bad = ~frame[column].isin(allowed).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = plain(frame[column].iloc[row])
        problem = f"column {column!r} must be one of {list(allowed)}, got {value!r}"
        raise row_error(path, first_row + row, header, problem)


def row_error(path: Path, data_row: int, header: bool, problem: str) -> DataFormatError:
    """An error about one data row, naming its physical line."""
    return DataFormatError(f"{path} line {line_of(path, data_row, header=header)}: {problem}")
