"""Reading a text stream in blocks of whole lines, so memory is bounded by the block, not the file."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from mtl.errors import DataFormatError

BLOCK_BYTES = 4 << 20  # parsing a block takes tens of times its size in temporaries
NEWLINE = 10
CARRIAGE_RETURN = 13


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


def excerpt(text: str | bytes, limit: int = 80) -> str:
    """A line shortened for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return repr(text if len(text) <= limit else text[:limit] + "...")
