"""The PaddleRec token-CSV parser on hand-written lines in the real format."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mtl.datasets.aliccp import FIELD_INDEX, FIELDS, Layout
from mtl.datasets.aliccp.parse import iter_token_chunks, token_frames
from mtl.errors import DataFormatError

LAYOUT = Layout(3)


def field_ids(chunk, row: int, field: str) -> list[int]:
    """The kept ids of a field in a row (slots up to its count)."""
    index = FIELD_INDEX[field]
    kept = min(int(chunk.counts[row, index]), int(LAYOUT.widths[index]))
    return chunk.ids[row, LAYOUT.field_slots(index)][:kept].tolist()


def parse(tmp_path: Path, text: str, name: str = "traindata_10w.csv", **kwargs) -> tuple[list, Counter]:
    path = tmp_path / name
    path.write_bytes(text.encode())
    stats: Counter[str] = Counter()
    return list(iter_token_chunks(path, LAYOUT, stats, **kwargs)), stats


def test_first_token_is_kept_and_fields_are_placed_in_slots(tmp_path):
    # features[3] is 301:5 -- the only token of field 301, which the public reader drops
    chunks, stats = parse(tmp_path, "7,1,1,301:5,101:12,205:40,210:1,210:2\n8,0,0,210:3,101:13\n")
    (chunk,) = chunks
    assert chunk.row_id.tolist() == [7, 8]
    assert chunk.click.tolist() == [1, 0]
    assert chunk.purchase.tolist() == [1, 0]
    assert field_ids(chunk, 0, "301") == [5]
    assert field_ids(chunk, 0, "101") == [12]
    assert field_ids(chunk, 0, "210") == [1, 2]
    assert field_ids(chunk, 1, "210") == [3]  # the first token of row 2 is also kept
    assert field_ids(chunk, 1, "301") == []
    assert stats["rows"] == 2
    assert stats["tokens"] == 7


def test_multi_valued_fields_keep_the_first_ids_in_order_padded(tmp_path):
    line = "1,0,0,150_14:9,101:1,150_14:8,150_14:7,205:3,150_14:6,150_14:5,853:4\n"
    (chunk,), stats = parse(tmp_path, line)
    index = FIELD_INDEX["150_14"]
    assert chunk.ids[0, LAYOUT.field_slots(index)].tolist() == [9, 8, 7]  # file order, not sorted
    assert chunk.counts[0, index] == 5  # the true count, before truncation
    assert stats["truncated_ids.150_14"] == 2
    index = FIELD_INDEX["853"]
    assert chunk.ids[0, LAYOUT.field_slots(index)].tolist() == [4, 0, 0]  # zero-padded
    assert chunk.counts[0, index] == 1
    assert chunk.counts[0, FIELD_INDEX["109_14"]] == 0


def test_single_valued_field_repeated_keeps_the_first_and_is_counted(tmp_path):
    (chunk,), stats = parse(tmp_path, "1,0,0,205:30,205:31,101:2\n")
    assert field_ids(chunk, 0, "205") == [30]
    assert stats["repeated_single_ids.205"] == 1


def test_unknown_fields_are_ignored_and_counted(tmp_path):
    (chunk,), _stats = parse(tmp_path, "1,0,0,999:5,101:2,abc_1:6,999:7\n")
    assert chunk.counts[0].sum() == 1
    frame = next(token_frames(tmp_path / "traindata_10w.csv"))
    assert frame["unknown_field_tokens"].tolist() == [3]
    assert frame["tokens"].tolist() == [4]


def test_crlf_line_ends_and_a_last_line_without_newline(tmp_path):
    chunks, _ = parse(tmp_path, "1,0,0,101:2\r\n2,1,0,101:3")
    assert [c.row_id.tolist() for c in chunks] == [[1], [2]]  # the unterminated line comes last, whole
    assert field_ids(chunks[0], 0, "101") == [2]
    assert field_ids(chunks[1], 0, "101") == [3]


def test_blocks_split_at_line_boundaries_and_report_global_line_numbers(tmp_path):
    lines = [f"{i},0,0,101:{i},150_14:{i + 100},150_14:{i + 200}" for i in range(1, 41)]
    chunks, stats = parse(tmp_path, "\n".join(lines) + "\n", block_bytes=64)
    assert len(chunks) > 5
    row_id = np.concatenate([c.row_id for c in chunks])
    assert row_id.tolist() == list(range(1, 41))
    assert stats["rows"] == 40
    lines[33] = "34,0,0,101:x"
    with pytest.raises(DataFormatError, match=r"traindata_10w.csv: line 34: feat_id 'x' is not"):
        parse(tmp_path, "\n".join(lines) + "\n", block_bytes=64)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,0,0,101:2\n2,0\n", r"line 2: missing labels"),
        ("1,0,0,101:2\n2,0,0,101:3,205\n", r"line 2: token '205' has no ':'"),  # truncated line
        ("1,0,0,101:2,\n", r"line 1: empty token"),
        ("1,0,0,101:2:3\n", r"line 1: token value '2' is followed by another ':'"),
        ("1,0,0,101:12a\n", r"line 1: feat_id '12a' is not a non-negative integer"),
        ("1,0,0,101:-4\n", r"line 1: feat_id '-4' is not a non-negative integer"),
        ("1,x,0,101:2\n", r"line 1: click 'x' is not"),
        ("1,0,0,101:2\n\n3,0,0,101:2\n", r"line 2: empty line"),
        ("1,2,0,101:2\n", r"line 1: click label is 2, expected 0 or 1"),
        ("1,0,0,101:2\n2,0,1,101:2\n", r"line 2: purchase=1 without a click"),
    ],
)
def test_malformed_lines_name_the_file_and_line(tmp_path, text, message):
    with pytest.raises(DataFormatError, match=message) as failure:
        parse(tmp_path, text)
    assert str(tmp_path / "traindata_10w.csv") in str(failure.value)


def test_empty_file_is_an_error(tmp_path):
    with pytest.raises(DataFormatError, match=r"testdata_10w.csv is empty"):
        parse(tmp_path, "", name="testdata_10w.csv")


def test_validation_frames_keep_out_of_range_labels_for_the_suite(tmp_path):
    (tmp_path / "t.csv").write_text("1,2,0,101:2\n2,0,1,101:2,205:3\n")
    frame = next(token_frames(tmp_path / "t.csv"))
    assert frame["click"].tolist() == [2, 0]
    assert frame["purchase"].tolist() == [0, 1]
    assert frame["fields_present"].tolist() == [1, 2]


def test_every_field_of_the_spec_order_is_recognised(tmp_path):
    line = "1,0,0," + ",".join(f"{name}:{i + 1}" for i, name in enumerate(FIELDS)) + "\n"
    (chunk,), stats = parse(tmp_path, line)
    assert chunk.counts[0].tolist() == [1] * len(FIELDS)
    assert [field_ids(chunk, 0, name) for name in FIELDS] == [[i + 1] for i in range(len(FIELDS))]
    assert not any(key.startswith("unknown") for key in stats)
