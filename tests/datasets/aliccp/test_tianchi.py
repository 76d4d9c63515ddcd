"""The raw Tianchi source on hand-written archives in the real format (\\x01 / \\x02 / \\x03 separators)."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtl.config import load_params
from mtl.datasets.aliccp import FIELD_INDEX, AliCCP, Layout
from mtl.datasets.aliccp.join import iter_tianchi_chunks, merge_slots
from mtl.datasets.base import Manifest
from mtl.errors import DataFormatError, DataValidationError
from mtl.validation import validate_raw
from tests.support.raw_files import TIANCHI_TRAIN as TRAIN
from tests.support.raw_files import TIANCHI_USERS as USERS
from tests.support.raw_files import entries, skeleton, write_archive, write_tianchi

LAYOUT = Layout(3)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_tianchi(tmp_path / "raw")


def joined(raw: Path, buckets: int) -> tuple[list, Counter]:
    stats: Counter[str] = Counter()
    return list(
        iter_tianchi_chunks(raw / "sample_train.tar.gz", "train", LAYOUT, stats, buckets=buckets)
    ), stats


def by_row(chunks: list) -> dict[int, tuple]:
    out = {}
    for chunk in chunks:
        for i, row in enumerate(chunk.row_id):
            out[int(row)] = (
                chunk.ids[i],
                chunk.counts[i],
                chunk.dense[i],
                int(chunk.click[i]),
                int(chunk.purchase[i]),
            )
    return out


def ids_of(row: tuple, field: str) -> list[int]:
    index = FIELD_INDEX[field]
    kept = min(int(row[1][index]), int(LAYOUT.widths[index]))
    return row[0][LAYOUT.field_slots(index)][:kept].tolist()


def test_join_attaches_common_features_and_drops_purchase_without_click(raw):
    chunks, stats = joined(raw, buckets=1)
    rows = by_row(chunks)
    assert sorted(rows) == [1, 2, 4, 5]  # row 3 (click=0, purchase=1) is dropped
    assert stats["dropped_purchase_without_click"] == 1
    assert ids_of(rows[1], "205") == [1001]
    assert ids_of(rows[1], "101") == [11]
    # a field in both tables: the skeleton's ids first, then the common features' (up to max_len)
    assert ids_of(rows[1], "109_14") == [25, 21, 22]
    assert ids_of(rows[2], "101") == [12]
    assert ids_of(rows[2], "121") == [32]
    assert ids_of(rows[4], "109_14") == [29]
    assert ids_of(rows[4], "101") == []
    assert stats["skeleton_rows_without_common_features"] == 1
    assert stats["unknown_field_entries.999"] == 1
    assert stats["skeleton_rows"] == 5
    assert stats["common_features_rows"] == 2


def test_dense_values_are_log_sums_of_the_entry_values(raw):
    rows = by_row(joined(raw, buckets=1)[0])
    dense = dict(zip(("109_14", "110_14", "127_14", "150_14", "508", "509", "702", "853"), rows[1][2]))
    assert dense["109_14"] == pytest.approx(np.log1p(1.0 + 3.0 + 1.0))  # skeleton and common entries
    assert dense["508"] == pytest.approx(np.log1p(2.5))
    assert dense["509"] == 0.0


def test_merge_slots_appends_the_second_table_and_truncates():
    layout = Layout(3)
    n = 2
    a_ids, b_ids = np.zeros((n, layout.slots), np.int64), np.zeros((n, layout.slots), np.int64)
    a_counts, b_counts = np.zeros((n, 23), np.int32), np.zeros((n, 23), np.int32)
    f = FIELD_INDEX["150_14"]
    start = layout.field_slots(f).start
    a_ids[0, start : start + 2], a_counts[0, f] = [1, 2], 2
    b_ids[0, start : start + 3], b_counts[0, f] = [7, 8, 9], 3
    b_ids[1, start : start + 1], b_counts[1, f] = [5], 1
    ids, counts = merge_slots(a_ids, a_counts, b_ids, b_counts, layout)
    assert ids[0, layout.field_slots(f)].tolist() == [1, 2, 7]
    assert ids[1, layout.field_slots(f)].tolist() == [5, 0, 0]
    assert counts[:, f].tolist() == [5, 1]


def test_hash_partitioning_gives_the_same_rows_as_one_bucket(raw):
    one, many = by_row(joined(raw, buckets=1)[0]), by_row(joined(raw, buckets=3)[0])
    assert sorted(one) == sorted(many)
    for row in one:
        for a, b in zip(one[row], many[row]):
            np.testing.assert_array_equal(a, b)
    assert not list(raw.glob(".aliccp-join-*")), "bucket files must be removed"


def test_prepare_fits_vocabularies_on_train_and_writes_splits(raw, tmp_path):
    params = load_params(
        {"datasets.aliccp.prepare.min_count": 1, "datasets.aliccp.prepare.valid_fraction": 0.01}
    )
    manifest = Manifest(dataset="aliccp", source="tianchi", format="tianchi-raw", content_hash="h")
    out = tmp_path / "prepared"
    metadata = AliCCP().prepare(raw, out, manifest, params)
    assert metadata.extra["parse"]["dropped_purchase_without_click"] == 1
    assert {name: s.rows for name, s in metadata.splits.items()} == {"train": 4, "valid": 0, "test": 2}
    test = pq.read_table(out / "test.parquet").to_pydict()
    vocab = pq.read_table(out / "vocab" / "205.parquet").to_pydict()
    assert vocab["value"] == [1001, 1003]  # 1002 appears only in the dropped row
    assert test["205"][0] == vocab["id"][vocab["value"].index(1001)]
    assert test["205"][1] == 0  # 1777 never seen in train
    assert test["101"][1] == 0  # u3's user id only exists in the test archive
    assert [d.name for d in metadata.features.dense][:2] == ["D109_14", "D110_14"]
    encoders = json.loads((out / "encoders.json").read_text())
    assert encoders["dense_value"].startswith("sign(s) * log1p(|s|)")
    assert encoders["dense"][0]["name"] == "D109_14"


def test_raw_suite_passes_on_good_archives_and_reports_a_feature_count_mismatch(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    # 30 clean rows, one purchase: plausible rates, no dropped rows, known fields only
    good = [
        skeleton(i, int(i % 5 == 0), int(i == 5), f"u{1 + i % 2}", ("205", 1000 + i, 1.0))
        for i in range(1, 31)
    ]
    write_archive(raw / "sample_train.tar.gz", "train", good, USERS)
    write_archive(raw / "sample_test.tar.gz", "test", good, USERS)
    params = load_params()
    manifest = Manifest(dataset="aliccp", source="tianchi", format="tianchi-raw")
    report = validate_raw(AliCCP(), raw, manifest, params, tmp_path / "report")
    assert report.statistics["rows"]["train_skeleton"] == 30
    assert report.statistics["rows"]["test_common_features"] == 2
    bad = [*good[:-1], "30,0,0,u2,3," + entries(("205", 1001, 1.0))]  # claims 3 entries, has 1
    write_archive(raw / "sample_train.tar.gz", "train", bad, USERS)
    with pytest.raises(DataValidationError, match=r"1 of 3\d expectations failed") as failure:
        validate_raw(AliCCP(), raw, manifest, params, tmp_path / "report")
    assert "train_skeleton" in str(failure.value)
    assert "expect_column_pair_values_to_be_equal(feature_num,entries) failed on 1 of 30 rows" in str(
        failure.value
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("6,0,0,u1,1,205\x021001", r"sample_skeleton_train.csv: line 5: feature entry part '1001' is not"),
        (
            "6,0,0,u1,1,2051001\x031.0",
            r"line 5: feature entry part '2051001\\x031.0' is not field\\x02feature_id",
        ),
        ("6,0,0,u1", r"line 5: expected 6 comma-separated columns"),
        ("6,2,0,u1,1," + entries(("205", 1, 1.0)), r"line 5: click is 2, expected 0 or 1"),
        ("6,0,0,u1,1," + entries(("205", "x", 1.0)), r"line 5: feature_id 'x' is not a number"),
        ("6,0,0,u1,1," + entries(("205", 1, "nan")), r"line 5: feature value 'nan' is not finite"),
    ],
)
def test_malformed_skeleton_lines_name_member_and_line(raw, line, message):
    write_archive(raw / "sample_train.tar.gz", "train", [*TRAIN[:4], line], USERS)
    with pytest.raises(DataFormatError, match=message):
        joined(raw, buckets=1)


def test_truncated_or_incomplete_archives_are_reported(raw):
    archive = raw / "sample_train.tar.gz"
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DataFormatError, match=r"sample_train.tar.gz is not a readable tar archive or is truncated"
    ):
        joined(raw, buckets=1)
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("sample_skeleton_train.csv")
        payload = ("\n".join(TRAIN) + "\n").encode()
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DataFormatError, match=r"lacks common_features_train.csv"):
        joined(raw, buckets=1)
