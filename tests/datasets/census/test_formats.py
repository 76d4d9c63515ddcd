"""Census PaddleRec one-hot (501 columns) and torch-rechub label-encoded CSV (41 columns) sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mtl import validation
from mtl.config import load_params
from mtl.datasets import census
from mtl.datasets.base import Manifest
from mtl.datasets.census import RECHUB, ROW_ID_STRIDE, Census
from mtl.datasets.census.parse import OnehotLayout
from mtl.datasets.prepared import read_split
from mtl.errors import DataFormatError, DataValidationError
from tests.support.raw_files import CSV_TEST, CSV_TRAIN, CSV_VAL, write_onehot
from tests.support.raw_files import write_census_csv as write_csv

CSV_COLUMNS = RECHUB.columns

# --- PaddleRec one-hot: marital, income, 11 raw numerics, 488 indicators (one per categorical group) ---


def manifest(source: str) -> Manifest:
    return Manifest(dataset="census", source=source, format="", content_hash="fixture")


def prepare(raw: Path, out: Path, source: str):
    return Census().prepare(raw, out, manifest(source), load_params())


def test_onehot_labels_come_from_columns_0_and_1(tmp_path):
    raw = write_onehot(tmp_path)
    (first_row, frame), *_ = OnehotLayout().read(raw / "train_data.csv", 100, strict=True)
    labels = OnehotLayout().labels(frame)
    assert first_row == 0
    assert labels["marital"].tolist() == [0, 1, 0, 0]
    assert labels["income"].tolist() == [0, 0, 1, 0]
    assert frame.shape == (4, 501)


def test_onehot_prepare_drops_instance_weight_and_keeps_indicators(tmp_path):
    metadata = prepare(write_onehot(tmp_path / "raw"), tmp_path / "out", "paddlerec")
    names = [f.name for f in metadata.features.dense]
    assert len(names) == 498  # 499 features minus instance_weight
    assert "instance_weight" not in names
    assert names[:10] == ["age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends",
                          "num_emp", "own_or_self", "vet_benefits", "weeks_worked", "year"]  # fmt: skip
    assert metadata.features.sparse == ()
    train = read_split(tmp_path / "out", "train")
    ages = np.array([38.0, 9, 52, 73])
    np.testing.assert_allclose(train.dense[:, 0], (ages - ages.mean()) / ages.std(), rtol=1e-5)
    gains = np.log1p([0.0, 0, 15024, 0])
    np.testing.assert_allclose(train.dense[:, 2], (gains - gains.mean()) / gains.std(), rtol=1e-5)
    assert set(np.unique(train.dense[:, 10:])) == {0.0, 1.0}
    assert (train.dense[:, 10:].sum(axis=1) == 29).all()
    assert metadata.splits["valid"].rows + metadata.splits["test"].rows == 3
    held_out = np.r_[
        read_split(tmp_path / "out", "valid").row_id, read_split(tmp_path / "out", "test").row_id
    ]
    assert sorted(held_out.tolist()) == [ROW_ID_STRIDE + i for i in range(3)]
    weights = metadata.extra["instance_weight"]["total"]
    assert weights["train"] == pytest.approx(1032.64 + 1758.14 + 991.95 + 1700.09)


def test_onehot_header_row_and_boolean_indicators_are_optional(tmp_path):
    plain = prepare(write_onehot(tmp_path / "plain"), tmp_path / "out_plain", "paddlerec")
    headed = prepare(
        write_onehot(tmp_path / "headed", header=(True, False)), tmp_path / "out_headed", "paddlerec"
    )
    boolean = prepare(write_onehot(tmp_path / "bools", bools=True), tmp_path / "out_bools", "paddlerec")
    for other, out in ((headed, "out_headed"), (boolean, "out_bools")):
        assert other.splits == plain.splits
        for split in census.SPLITS:
            a, b = read_split(tmp_path / "out_plain", split), read_split(tmp_path / out, split)
            np.testing.assert_array_equal(a.dense, b.dense)
            np.testing.assert_array_equal(a.row_id, b.row_id)
    encoders = json.loads((tmp_path / "out_headed" / "encoders.json").read_text())
    assert encoders["input_columns"][:3] == ["marital_stat", "income_50k", "age"]
    assert encoders["excluded"] == {"7": "instance_weight: sampling weight, not a feature"}


def test_onehot_headers_must_agree(tmp_path):
    raw = write_onehot(tmp_path / "raw", header=(True, True))
    text = (raw / "test_data.csv").read_text().replace("group0_ value0", "group0_ other", 1)
    (raw / "test_data.csv").write_text(text)
    with pytest.raises(DataFormatError, match=r"header rows of .* differ"):
        prepare(raw, tmp_path / "out", "paddlerec")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("cut", r"test_data.csv line 2: expected 501 comma-separated fields, found 300"),
        ("long_first", r"test_data.csv line 1: expected 501 comma-separated fields, found 502"),
        ("long_later", r"test_data.csv: malformed CSV \(C error: Expected 501 fields in line 3, saw 502"),
    ],
)
def test_onehot_lines_with_the_wrong_width_are_errors(tmp_path, line, message):
    raw = write_onehot(tmp_path / "raw")
    lines = (raw / "test_data.csv").read_text().splitlines()
    if line == "cut":
        lines[1] = ",".join(lines[1].split(",")[:300])
    else:
        index = 0 if line == "long_first" else 2
        lines[index] += ",0"
    (raw / "test_data.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=message):
        prepare(raw, tmp_path / "out", "paddlerec")


def test_onehot_raw_suite_reports_each_corruption(tmp_path):
    raw = write_onehot(tmp_path / "raw")
    lines = (raw / "train_data.csv").read_text().splitlines()
    cells = lines[1].split(",")
    cells[1] = "2"  # income label outside {0, 1}
    cells[20] = "3"  # an indicator that is not 0/1
    cells[7] = "-5"  # negative instance weight
    lines[1] = ",".join(cells)
    (raw / "train_data.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError):
        validation.validate_raw(Census(), raw, manifest("paddlerec"), load_params(), tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    failed = {
        (e["expectation"], e["kwargs"].get("column")) for e in summary["expectations"] if not e["success"]
    }
    assert failed == {
        ("expect_column_values_to_be_in_set", "income"),
        ("expect_column_values_to_be_between", "onehot_invalid"),
        ("expect_column_values_to_be_between", "instance_weight"),
    }


# --- torch-rechub label-encoded CSV: header, 7 MinMax dense + 32 codes + 2 labels ----------------------


def test_csv_prepare_reindexes_codes_with_train_vocabularies(tmp_path):
    metadata = prepare(write_csv(tmp_path / "raw"), tmp_path / "out", "csv")
    assert [f.name for f in metadata.features.sparse] == list(census.SPARSE)  # our short names
    assert [f.name for f in metadata.features.dense] == list(census.DENSE)
    assert {s: i.rows for s, i in metadata.splits.items()} == {"train": 4, "valid": 2, "test": 3}
    train, valid, test = (read_split(tmp_path / "out", s) for s in census.SPLITS)
    assert valid.row_id.tolist() == [ROW_ID_STRIDE, ROW_ID_STRIDE + 1]
    assert test.row_id.tolist() == [2 * ROW_ID_STRIDE + i for i in range(3)]
    education, race = census.SPARSE.index("education"), census.SPARSE.index("race")
    assert train.sparse[:, education].tolist() == [1, 2, 3, 1]  # code 12 (2x) first, then 10, 16
    assert valid.sparse[:, education].tolist() == [0, 1]  # code 9 never seen in train
    assert valid.sparse[:, race].tolist() == [0, 1]
    assert test.sparse[:, education].tolist() == [3, 1, 1]
    assert test.labels[:, 0].tolist() == [1, 0, 0]  # income
    assert valid.labels[:, 1].tolist() == [0, 1]  # marital
    ages = np.array([0.3111, 0.0667, 0.4778, 0.7])
    np.testing.assert_allclose(
        valid.dense[:, 0], (np.array([0.3111, 0.1222]) - ages.mean()) / ages.std(), rtol=1e-5
    )
    assert "instance_weight" not in metadata.extra


@pytest.mark.parametrize(
    ("train_row", "message"),
    [
        ({"education": "1.5"}, r"census_income_train.csv line 6: column 'education' must hold integer codes"),
        ({"income": "2"}, r"census_income_train.csv line 6: column 'income' must be one of \[0, 1\], got 2"),
        ({"age": ""}, r"census_income_train.csv line 6: column 'age' must be a finite number"),
    ],
)
def test_csv_values_that_cannot_be_encoded_stop_prepare(tmp_path, train_row, message):
    raw = write_csv(tmp_path / "raw", train=[*CSV_TRAIN, train_row])
    with pytest.raises(DataFormatError, match=message):
        prepare(raw, tmp_path / "out", "csv")


def test_csv_empty_or_header_only_files_are_errors(tmp_path):
    raw = write_csv(tmp_path / "raw")
    (raw / "census_income_val.csv").write_text(",".join(CSV_COLUMNS) + "\n")
    with pytest.raises(DataFormatError, match=r"census_income_val\.csv holds no data rows \(only a header\)"):
        prepare(raw, tmp_path / "out", "csv")
    (raw / "census_income_val.csv").write_text("")
    with pytest.raises(DataFormatError, match=r"census_income_val\.csv is empty"):
        prepare(raw, tmp_path / "out", "csv")


def test_csv_missing_column_and_truncated_line_stop_prepare(tmp_path):
    raw = write_csv(tmp_path / "raw", drop="education")
    with pytest.raises(DataFormatError, match=r"census_income_val.csv: missing column\(s\) \['education'\]"):
        prepare(raw, tmp_path / "out", "csv")
    raw = write_csv(tmp_path / "raw2")
    text = (raw / "census_income_test.csv").read_text().rstrip("\n")
    (raw / "census_income_test.csv").write_text(text[: text.rfind(",", 0, len(text) - 20)])
    with pytest.raises(DataFormatError, match=r"census_income_test.csv line 4: expected 41 .* found 3[0-9]"):
        prepare(raw, tmp_path / "out", "csv")


def test_csv_raw_suite_reports_each_corruption(tmp_path):
    raw = write_csv(
        tmp_path / "raw",
        drop="education",  # val lacks a column
        train=[*CSV_TRAIN, {"income": "2"}],  # label outside {0, 1}
        val=[*CSV_VAL, {"age": ""}],  # NaN
        test=[*CSV_TEST, {"race": "White"}],  # text in a code column: wrong dtype
    )
    with pytest.raises(DataValidationError):
        validation.validate_raw(Census(), raw, manifest("csv"), load_params(), tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    failed = {(e["table"], e["expectation"], e["kwargs"].get("column")): e
              for e in summary["expectations"] if not e["success"]}  # fmt: skip
    assert set(failed) == {
        ("census_income_train.csv", "expect_column_values_to_be_in_set", "income"),
        ("census_income_val.csv", "expect_column_to_exist", "education"),
        ("census_income_val.csv", "expect_column_values_to_be_in_type_list", "education"),
        ("census_income_val.csv", "expect_column_values_to_not_be_null", "age"),
        ("census_income_test.csv", "expect_column_values_to_be_in_type_list", "race"),
    }
    assert failed[("census_income_train.csv", "expect_column_values_to_be_in_set", "income")]["examples"] == [
        2
    ]
    assert failed[("census_income_val.csv", "expect_column_values_to_not_be_null", "age")]["rows"] == [2]
    assert (
        failed[("census_income_test.csv", "expect_column_values_to_be_in_type_list", "race")]["observed"]
        == "str"
    )
