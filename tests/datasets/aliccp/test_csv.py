"""The label-encoded CSV source on hand-written files in the shared layout (click, purchase, 23 ids, 8 D*)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtl.config import load_params
from mtl.datasets.aliccp import AliCCP
from mtl.datasets.base import Manifest
from mtl.errors import DataFormatError, DataValidationError
from mtl.validation import validate_raw
from tests.support.raw_files import ALICCP_CSV_HEADER as HEADER
from tests.support.raw_files import aliccp_csv_row as row
from tests.support.raw_files import write_aliccp_csv
from tests.support.raw_files import write_aliccp_csv_file as write

MANIFEST = Manifest(dataset="aliccp", source="csv", format="aliccp-label-encoded-csv")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    return write_aliccp_csv(tmp_path / "raw")


def test_val_file_becomes_valid_split_and_ids_are_reindexed_on_train(raw, tmp_path):
    params = load_params({"datasets.aliccp.prepare.min_count": 2})
    out = tmp_path / "prepared"
    metadata = AliCCP().prepare(raw, out, MANIFEST, params)
    assert {name: s.rows for name, s in metadata.splits.items()} == {"train": 41, "valid": 20, "test": 20}
    assert metadata.splits["valid"].label_rates["click"] == pytest.approx(5 / 20)
    vocab = pq.read_table(out / "vocab" / "205.parquet").to_pydict()
    assert vocab["value"] == [1, 2, 3, 4, 5]  # 99 was seen once: below min_count
    train = pq.read_table(out / "train.parquet").to_pydict()
    test = pq.read_table(out / "test.parquet").to_pydict()
    assert train["205"][40] == 0
    assert test["205"][0] == 0
    assert test["205"][1] == vocab["id"][vocab["value"].index(2)]
    assert train["853__len"][0] == 0
    assert train["853"][0] == [0, 0, 0]
    assert train["109_14__len"][0] == 1
    assert train["109_14"][0][1:] == [0, 0]
    assert train["row_id"][:3] == [0, 1, 2]


def test_dense_columns_are_standardised_with_train_statistics(raw, tmp_path):
    out = tmp_path / "prepared"
    AliCCP().prepare(raw, out, MANIFEST, load_params())
    train = np.asarray(pq.read_table(out / "train.parquet").column("D508").to_numpy(), dtype=np.float64)
    assert train.mean() == pytest.approx(0.0, abs=1e-6)
    assert train.std() == pytest.approx(1.0, abs=1e-5)
    encoders = json.loads((out / "encoders.json").read_text())
    scale = next(d for d in encoders["dense"] if d["name"] == "D508")
    valid = pq.read_table(out / "valid.parquet").column("D508").to_numpy()
    assert valid[1] == pytest.approx((0.1 - scale["mean"]) / scale["std"], rel=1e-5)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda r: r.pop("206"), r"missing column\(s\) \['206'\]"),
        (lambda r: r.update({"207": "abc"}), r"line 5: column '207' must be a finite number, got 'abc'"),
        (lambda r: r.update({"D702": ""}), r"line 5: column 'D702' must be a finite number, got nan"),
        (lambda r: r.update({"click": 2}), r"line 5: column 'click' must be one of \[0, 1\], got 2"),
        (lambda r: r.update({"207": -3}), r"line 5: column '207' must hold integer codes >= 0, got -3"),
        (lambda r: r.update({"click": 0, "purchase": 1}), r"line 5: purchase=1 without a click"),
    ],
)
def test_prepare_rejects_corrupt_rows_naming_line_and_column(raw, tmp_path, corrupt, message):
    rows = [row(i) for i in range(10)]
    corrupt(rows[3])
    header = HEADER.replace(",206,", ",") if "206" not in rows[3] else HEADER
    write(raw / "ali_ccp_train.csv", rows, header)
    with pytest.raises(DataFormatError, match=message) as failure:
        AliCCP().prepare(raw, tmp_path / "prepared", MANIFEST, load_params())
    assert "ali_ccp_train.csv" in str(failure.value)


def test_empty_file_is_an_error(raw, tmp_path):
    (raw / "ali_ccp_test.csv").write_text("")
    with pytest.raises(DataFormatError, match=r"ali_ccp_test.csv is empty"):
        AliCCP().prepare(raw, tmp_path / "prepared", MANIFEST, load_params())


def test_raw_suite_reports_each_corruption_with_column_and_examples(raw, tmp_path):
    rows = [row(i) for i in range(40)]
    rows[3].update({"click": 2})  # label 2
    rows[5].update({"click": 0, "purchase": 1})  # purchase without click
    rows[7].update({"D702": ""})  # NaN in a dense column
    rows[9].update({"207": "abc"})  # wrong dtype
    write(raw / "ali_ccp_train.csv", rows)
    write(
        raw / "ali_ccp_val.csv", [row(i) for i in range(20)], HEADER.replace(",206,", ",")
    )  # missing column
    with pytest.raises(DataValidationError) as failure:
        validate_raw(AliCCP(), raw, MANIFEST, load_params(), tmp_path / "report")
    text = str(failure.value)
    assert "train_csv" in text
    assert "ali_ccp_train.csv" in text
    in_set = "expect_column_values_to_be_in_set(click) failed on 1 of 40 rows, expected {'value_set': [0, 1]}"
    assert in_set + ", e.g. [2]" in text
    assert "expect_column_pair_values_a_to_be_greater_than_b(click,purchase) failed on 1 of 40 rows" in text
    assert "expect_column_values_to_not_be_null(D702) failed on 1 of 40 rows" in text
    assert "expect_column_values_to_be_in_type_list(207)" in text
    assert "valid_csv" in text
    assert "expect_column_to_exist(206)" in text
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    clean = [e for e in summary["expectations"] if e["table"] == "test_csv"]
    assert len(clean) > 60
    assert all(e["success"] for e in clean)  # the clean file passes every expectation
    in_set = next(
        e
        for e in summary["expectations"]
        if e["expectation"] == "expect_column_values_to_be_in_set"
        and e["kwargs"]["column"] == "click"
        and not e["success"]
    )
    assert in_set["rows"] == [3]
