"""Reading each Ali-CCP source format into ``prepare.RawChunk`` (prepare) and per-row facts (raw validation).

* PaddleRec tokens (``paddlerec``, ``synthetic``): ``sample_id,click,purchase,field:feat_id,...`` per
  line, parsed straight from the bytes with numpy: the separators ``,`` ``:`` and newline cut every
  line into spans, the separator after each span says what the span is, and integers are read digit
  by digit over all spans at once. Every token is kept -- including ``features[3]``, the first token,
  which the public reader skips -- and any malformed line is reported with its file and line number.
* The label-encoded CSV (``csv``): ``rechub_csv``, one id per field (0 = absent) and 8 dense columns.
* The raw Tianchi archives (``tianchi``): ``join``.

``FORMATS`` maps each declared source format to its reader.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.datasets.aliccp import (
    ARCHIVES,
    CSV,
    CSV_FORMAT,
    DENSE_FIELDS,
    FIELDS,
    PART_ROLES,
    TIANCHI_FORMAT,
    TOKEN_FILES,
    TOKEN_FORMAT,
    Layout,
    RawChunk,
    assemble_slots,
    slot_stats,
)
from mtl.datasets.aliccp.join import DENSE_VALUE as TIANCHI_DENSE_VALUE
from mtl.datasets.aliccp.join import SKELETON, iter_tianchi_chunks, parsed_blocks
from mtl.datasets.base import RawTable, Source, require_file
from mtl.datasets.text import BLOCK_BYTES, drop_carriage_returns, excerpt, iter_line_blocks, row_error
from mtl.errors import DataFormatError

# --- PaddleRec tokens ----------------------------------------------------------------------------------

COMMA, COLON, NEWLINE = ord(","), ord(":"), ord("\n")
MAX_DIGITS = 18  # every 18-digit number fits in int64
FORMAT = "sample_id,click,purchase,field:feat_id,..."
_HEADER = ("sample id", "click", "purchase")


def _pack(name: bytes) -> int:
    return int.from_bytes(name, "big")


_BY_KEY = sorted((_pack(name.encode()), index) for index, name in enumerate(FIELDS))
_KNOWN = np.array([key for key, _ in _BY_KEY], dtype=np.int64)
_KNOWN_INDEX = np.array([index for _, index in _BY_KEY], dtype=np.int64)


@dataclass
class TokenBlock:
    """The lines of one block: labels, and the tokens of known fields in file order."""

    first_line: int
    sample_id: np.ndarray
    click: np.ndarray
    purchase: np.ndarray
    rows: np.ndarray  # per known-field token: line index within the block
    fields: np.ndarray  # per known-field token: index into FIELDS
    values: np.ndarray  # per known-field token: raw feat_id
    tokens_per_row: np.ndarray
    unknown_per_row: np.ndarray
    unknown_fields: Counter[str]

    def __len__(self) -> int:
        return int(self.sample_id.shape[0])


def _read_integers(
    padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Decimal value of every span and whether it is a well-formed non-negative integer."""
    values = np.zeros(starts.size, dtype=np.int64)
    ok = (lengths > 0) & (lengths <= MAX_DIGITS)
    for j in range(min(int(lengths.max(initial=0)), MAX_DIGITS)):
        inside = lengths > j
        digit = padded[starts + j].astype(np.int64) - ord("0")
        ok &= ~inside | ((digit >= 0) & (digit <= 9))
        values = np.where(inside, values * 10 + digit, values)
    return values, ok


def _field_index(
    padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index into FIELDS of every field-name span (-1 if unknown) and the packed name bytes."""
    # The 8 bytes from each span's start as one big-endian word; shifting drops the bytes past its end.
    words = np.lib.stride_tricks.sliding_window_view(padded, 8)[starts].copy().view(">u8").ravel()
    short = (lengths > 0) & (lengths <= 8)
    shift = (8 * (8 - np.where(short, lengths, 8))).astype(np.uint64)
    keys = np.where(short, (words >> shift).astype(np.int64), -1)
    position = np.minimum(np.searchsorted(_KNOWN, keys), _KNOWN.size - 1)
    return np.where(_KNOWN[position] == keys, _KNOWN_INDEX[position], -1), keys


def parse_token_block(block: bytes, first_line: int, path: Path) -> TokenBlock:
    """Parse whole lines (ending in a newline); raise DataFormatError naming the line if one is malformed."""
    data = drop_carriage_returns(np.frombuffer(block, dtype=np.uint8))
    padded = np.concatenate([data, np.zeros(MAX_DIGITS + 8, dtype=np.uint8)])  # reads past a span stay inside
    ends = np.flatnonzero((data == COMMA) | (data == COLON) | (data == NEWLINE))
    separator = data[ends]
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts
    newline = separator == NEWLINE
    line = np.cumsum(newline) - newline
    line_start = np.flatnonzero(np.r_[True, newline[:-1]])
    k = np.arange(ends.size) - line_start[line]

    def fail(span: int, problem: str) -> DataFormatError:
        i = int(line[span])
        text = data[starts[line_start[i]] : ends[np.flatnonzero(newline)[i]]].tobytes()
        return DataFormatError(
            f"{path}: line {first_line + i}: {problem} (expected {FORMAT}); the line reads {excerpt(text)}"
        )

    is_field = (k >= 3) & ((k - 3) % 2 == 0)
    is_value = (k >= 3) & ~is_field
    well_placed = np.where(
        k < 2,
        separator == COMMA,
        np.where(is_field, separator == COLON, separator != COLON),
    )
    if not well_placed.all():
        span = int(np.argmin(well_placed))
        text = data[starts[span] : ends[span]].tobytes().decode("utf-8", errors="replace")
        if k[span] == 0 and lengths[span] == 0:
            raise fail(span, "empty line")
        if k[span] < 3:
            if separator[span] == NEWLINE:
                raise fail(span, "missing labels: a line needs sample_id,click,purchase before its tokens")
            raise fail(span, f"{_HEADER[k[span]]} {text!r} is followed by ':' instead of ','")
        if is_field[span]:
            raise fail(span, f"token {text!r} has no ':'" if text else "empty token (a stray comma?)")
        raise fail(span, f"token value {text!r} is followed by another ':'")

    numeric = np.flatnonzero((k < 3) | is_value)
    numbers, ok = _read_integers(padded, starts[numeric], lengths[numeric])
    if not ok.all():
        span = int(numeric[np.argmin(ok)])
        what = _HEADER[k[span]] if k[span] < 3 else "feat_id"
        text = data[starts[span] : ends[span]].tobytes().decode("utf-8", errors="replace")
        raise fail(span, f"{what} {text!r} is not a non-negative integer of at most {MAX_DIGITS} digits")
    value_of = np.zeros(ends.size, dtype=np.int64)
    value_of[numeric] = numbers

    field_spans = np.flatnonzero(is_field)
    field_index, keys = _field_index(padded, starts[field_spans], lengths[field_spans])
    rows = line[field_spans]
    n_lines = int(newline.sum())
    known = field_index >= 0
    unknown_fields: Counter[str] = Counter()
    if not known.all():
        _, first, count = np.unique(keys[~known], return_index=True, return_counts=True)
        for span, n in zip(field_spans[~known][first], count):
            unknown_fields[data[starts[span] : ends[span]].tobytes().decode("utf-8", "replace")] += int(n)
    return TokenBlock(
        first_line=first_line,
        sample_id=value_of[k == 0],
        click=value_of[k == 1],
        purchase=value_of[k == 2],
        rows=rows[known],
        fields=field_index[known],
        values=value_of[field_spans[known] + 1],
        tokens_per_row=np.bincount(rows, minlength=n_lines),
        unknown_per_row=np.bincount(rows[~known], minlength=n_lines),
        unknown_fields=unknown_fields,
    )


def iter_token_blocks(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[TokenBlock]:
    """Every block of a token file, parsed; an empty file is an error."""
    empty = True
    with open(path, "rb") as stream:
        for first_line, block in iter_line_blocks(stream, block_bytes):
            empty = False
            yield parse_token_block(block, first_line, path)
    if empty:
        raise DataFormatError(f"{path} is empty (expected lines of {FORMAT})")


def check_token_labels(path: Path, block: TokenBlock) -> None:
    """Labels must be 0/1 and a purchase needs a click; name the first offending line."""
    for name, labels in (("click", block.click), ("purchase", block.purchase)):
        bad = np.flatnonzero(labels > 1)
        if bad.size:
            raise DataFormatError(
                f"{path}: line {block.first_line + int(bad[0])}: {name} label is {int(labels[bad[0]])}, "
                f"expected 0 or 1 ({bad.size} such lines in this block)"
            )
    bad = np.flatnonzero(block.purchase > block.click)
    if bad.size:
        raise DataFormatError(
            f"{path}: line {block.first_line + int(bad[0])}: purchase=1 without a click "
            f"({bad.size} such lines in this block); the funnel requires purchase <= click"
        )


def iter_token_chunks(
    path: Path, layout: Layout, stats: Counter[str], block_bytes: int = BLOCK_BYTES
) -> Iterator[RawChunk]:
    """A token file as RawChunks with labels checked (prepare); parse facts are added to ``stats``."""
    for block in iter_token_blocks(path, block_bytes):
        check_token_labels(path, block)
        ids, counts = assemble_slots(len(block), block.rows, block.fields, block.values, layout)
        stats.update(slot_stats(counts, layout))
        stats["rows"] += len(block)
        stats["tokens"] += int(block.tokens_per_row.sum())
        for name, n in block.unknown_fields.items():
            stats[f"unknown_field_tokens.{name}"] += n
        yield RawChunk(
            file=path.name,
            row_id=block.sample_id,
            click=block.click,
            purchase=block.purchase,
            ids=ids,
            counts=counts,
        )


def token_frames(path: Path, block_bytes: int = BLOCK_BYTES) -> Iterator[pd.DataFrame]:
    """Per-line facts of each block, for raw validation (labels not checked: the suite reports them)."""
    for block in iter_token_blocks(path, block_bytes):
        yield pd.DataFrame(
            {
                "sample_id": block.sample_id,
                "click": block.click,
                "purchase": block.purchase,
                "tokens": block.tokens_per_row,
                "unknown_field_tokens": block.unknown_per_row,
                "fields_present": np.bincount(
                    np.unique(block.rows * len(FIELDS) + block.fields) // len(FIELDS), minlength=len(block)
                ),
            }
        )


def csv_chunks(path: Path, layout: Layout, stats: Counter[str], chunk_rows: int) -> Iterator[RawChunk]:
    """A label-encoded CSV file as RawChunks (``RechubCsv.read`` checks values; a purchase needs a click)."""
    for first_row, frame in CSV.read(path, chunk_rows, strict=True):
        n = len(frame)
        click, purchase = frame["click"].to_numpy(), frame["purchase"].to_numpy()
        if (purchase > click).any():
            problem = "purchase=1 without a click (expected purchase <= click)"
            raise row_error(path, first_row + int(np.argmax(purchase > click)), True, problem)
        ids = np.zeros((n, layout.slots), dtype=np.int64)
        counts = np.zeros((n, len(FIELDS)), dtype=np.int32)
        for index, name in enumerate(FIELDS):
            values = frame[name].to_numpy()
            ids[:, layout.offsets[index]] = values
            counts[:, index] = values != 0
        stats.update(slot_stats(counts, layout))
        stats["rows"] += n
        dense = np.column_stack([frame[name].to_numpy(dtype=np.float64) for name in DENSE_FIELDS])
        rows = np.arange(first_row, first_row + n, dtype=np.int64)
        yield RawChunk(path.name, rows, click, purchase, ids, counts, dense)


# --- the formats ----------------------------------------------------------------------------------------


class Tokens:
    hash_split = True
    raw_value = "the integer feat_id of each token '<field>:<feat_id>' of the line"
    dense_value = None

    def chunks(
        self, raw_dir: Path, layout: Layout, stats: Counter[str], chunk_rows: int
    ) -> Iterator[tuple[str, RawChunk]]:
        for part, name in TOKEN_FILES.items():
            for chunk in iter_token_chunks(require_file(raw_dir / name, "aliccp"), layout, stats):
                yield PART_ROLES[part], chunk

    def frames(self, raw_dir: Path, chunk_rows: int) -> Iterator[tuple[str, Path, pd.DataFrame]]:
        for part, name in TOKEN_FILES.items():
            path = require_file(raw_dir / name, "aliccp")
            for frame in token_frames(path):
                yield f"{part}_tokens", path, frame


class Csv:
    hash_split = False  # the layout ships its own valid file
    raw_value = "the integer in the field's column; 0 (the file's unknown id) counts as absent"
    dense_value = "the D<field> column as given (the file's own MinMax-scaled value)"

    def chunks(
        self, raw_dir: Path, layout: Layout, stats: Counter[str], chunk_rows: int
    ) -> Iterator[tuple[str, RawChunk]]:
        for split, name in CSV.files.items():
            for chunk in csv_chunks(require_file(raw_dir / name, "aliccp"), layout, stats, chunk_rows):
                yield split, chunk

    def frames(self, raw_dir: Path, chunk_rows: int) -> Iterator[tuple[str, Path, pd.DataFrame]]:
        for split, name in CSV.files.items():
            path = require_file(raw_dir / name, "aliccp")
            for _, frame in CSV.read(path, chunk_rows, strict=False):
                yield f"{split}_csv", path, frame


class Tianchi:
    hash_split = True
    raw_value = (
        "the integer feature_id of each entry '<field>\\x02<feature_id>\\x03<value>' (skeleton, then common "
        "features)"
    )
    dense_value = TIANCHI_DENSE_VALUE

    def chunks(
        self, raw_dir: Path, layout: Layout, stats: Counter[str], chunk_rows: int
    ) -> Iterator[tuple[str, RawChunk]]:
        for part, name in ARCHIVES.items():
            for chunk in iter_tianchi_chunks(require_file(raw_dir / name, "aliccp"), part, layout, stats):
                yield PART_ROLES[part], chunk

    def frames(self, raw_dir: Path, chunk_rows: int) -> Iterator[tuple[str, Path, pd.DataFrame]]:
        layout = Layout(1)  # the validation frames need entry counts, not ids
        for part, name in ARCHIVES.items():
            path = require_file(raw_dir / name, "aliccp")
            for kind, _, block in parsed_blocks(path, part, layout):
                frame = {
                    "common_feature_index": block.key.to_numpy(zero_copy_only=False).astype(str),
                    "feature_num": block.columns["feature_num"],
                    "entries": block.entries,
                    "unknown_field_entries": block.unknown_per_row,
                }
                if kind == SKELETON:
                    labels = {"click": block.columns["click"], "purchase": block.columns["conversion"]}
                    frame = {"sample_id": block.columns["sample_id"], **labels} | frame
                yield f"{part}_{kind}", path, pd.DataFrame(frame)


FORMATS = {TOKEN_FORMAT: Tokens(), CSV_FORMAT: Csv(), TIANCHI_FORMAT: Tianchi()}


def reader(source: Source) -> Tokens | Csv | Tianchi:
    return FORMATS[source.format]


def raw_tables(format_reader: Tokens | Csv | Tianchi, raw_dir: Path, chunk_rows: int) -> Iterator[RawTable]:
    """The format's per-row facts regrouped into tables of about ``chunk_rows`` rows, with row offsets."""
    pending: dict[str, list[pd.DataFrame]] = {}
    offsets: dict[str, int] = {}
    paths: dict[str, Path] = {}

    def flush(table: str) -> RawTable:
        frame = pd.concat(pending.pop(table), ignore_index=True)
        first = offsets.get(table, 0)
        offsets[table] = first + len(frame)
        return RawTable(table, paths[table], frame, first_row=first)

    for table, path, frame in format_reader.frames(raw_dir, chunk_rows):
        if table in pending and paths[table] != path:
            yield flush(table)
        paths[table] = path
        pending.setdefault(table, []).append(frame)
        if sum(len(f) for f in pending[table]) >= chunk_rows:
            yield flush(table)
    for table in list(pending):
        yield flush(table)
