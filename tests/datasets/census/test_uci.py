"""Census raw UCI format: parsing, encoding, splitting and raw validation on hand-written files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtl import validation
from mtl.config import load_params
from mtl.datasets import census
from mtl.datasets.base import Manifest
from mtl.datasets.census import ROW_ID_STRIDE, Census
from mtl.datasets.census.parse import UciLayout, parse_lines
from mtl.datasets.census.prepare import Encoders
from mtl.datasets.encoding import in_first_half as in_valid_half
from mtl.datasets.prepared import read_split
from mtl.errors import DataFormatError, DataValidationError
from tests.support.raw_files import BASE, CHILD, RICH, uci_line, write_uci
from tests.support.raw_files import UCI_TEST as TEST
from tests.support.raw_files import UCI_TRAIN as TRAIN


def manifest(source: str = "uci") -> Manifest:
    return Manifest(dataset="census", source=source, format="uci-census-42", content_hash="fixture")


def read_all(path: Path, *, strict: bool = True):
    frames = list(UciLayout().read(path, 1000, strict=strict))
    assert len(frames) == 1
    return frames[0][1]


def test_fixture_lines_have_the_raw_shape():
    line = uci_line(CHILD)
    assert line.startswith("9, Not in universe, 0, 0, Children, 0,")
    assert line.endswith(", 0, 95, - 50000.")
    assert line.count(",") == 41


def test_parser_strips_leading_spaces_and_reads_labels(tmp_path):
    frame = read_all(write_uci(tmp_path, TRAIN, TEST) / "census-income.data")
    assert list(frame.columns) == list(census.COLUMNS)
    assert frame.loc[2, "education"] == "Masters degree(MA MS MEng MEd MSW MBA)"
    assert frame.loc[1, "hisp_origin"] == "NA"  # a category, not a missing value
    assert frame.loc[1, "mig_chg_msa"] == "?"
    assert frame.loc[0, "det_ind_code"] == "33"  # coded categoricals stay text
    assert frame["age"].tolist() == [38.0, 9.0, 52.0, 24.0, 45.0, 71.0]
    assert frame.loc[0, "instance_weight"] == pytest.approx(1032.64)
    labels = UciLayout().labels(frame)
    assert labels["income"].tolist() == [0, 0, 1, 0, 0, 0]
    assert labels["marital"].tolist() == [0, 1, 0, 1, 0, 0]
    assert labels["income"].dtype == np.int8


def test_parser_skips_blank_lines_and_chunks_with_row_offsets(tmp_path):
    path = tmp_path / "census-income.data"
    path.write_text(uci_line(BASE) + "\n\n" + uci_line(CHILD) + "\r\n" + uci_line(RICH) + "\n\n")
    chunks = list(UciLayout().read(path, 1, strict=True))
    assert [first for first, _ in chunks] == [0, 1, 2]
    assert [frame.loc[0, "age"] for _, frame in chunks] == [38.0, 9.0, 52.0]
    assert all(frame.index.tolist() == [0] for _, frame in chunks)


def test_wrong_field_count_names_file_and_line(tmp_path):
    path = tmp_path / "census-income.data"
    short = uci_line(BASE).rsplit(",", 1)[0]  # 41 fields: the label is gone
    path.write_text(f"{uci_line(BASE)}\n{uci_line(CHILD)}\n{short}\n{uci_line(RICH)}\n")
    with pytest.raises(DataFormatError, match=r"census-income.data line 3: expected 42 .* found 41"):
        read_all(path)


def test_truncated_last_line_is_an_error(tmp_path):
    path = tmp_path / "census-income.data"
    path.write_text(f"{uci_line(BASE)}\n{uci_line(CHILD)}\n38, Private, 3")
    with pytest.raises(DataFormatError, match=r"line 3: expected 42 comma-separated fields, found 3"):
        read_all(path, strict=False)


def test_empty_and_blank_files_are_errors(tmp_path):
    empty, blank = tmp_path / "empty.data", tmp_path / "blank.data"
    empty.write_text("")
    blank.write_text("\n\n")
    with pytest.raises(DataFormatError, match=r"empty.data is empty \(0 bytes\)"):
        read_all(empty)
    with pytest.raises(DataFormatError, match="no data rows"):
        read_all(blank)


def test_strict_reading_names_unencodable_values(tmp_path):
    path = tmp_path / "census-income.data"
    path.write_text(f"{uci_line(BASE)}\n{uci_line({'weeks_worked': 'abc'})}\n")
    with pytest.raises(
        DataFormatError, match=r"line 2: column 'weeks_worked' must be a finite number, got 'abc'"
    ):
        read_all(path)
    assert np.isnan(read_all(path, strict=False).loc[1, "weeks_worked"])  # left for the expectations
    path.write_text(f"{uci_line(BASE)}\n{uci_line({'income_50k': '50000'})}\n")
    with pytest.raises(DataFormatError, match=r"line 2: column 'income_50k' must be one of .* got '50000'"):
        read_all(path)


def test_files_are_found_in_a_subfolder_once(tmp_path):
    write_uci(tmp_path, TRAIN, TEST, sub="census")
    files = UciLayout().locate(tmp_path)
    assert [f.path.relative_to(tmp_path).as_posix() for f in files] == [
        "census/census-income.data",
        "census/census-income.test",
    ]
    write_uci(tmp_path, TRAIN, TEST, sub="copy")
    with pytest.raises(DataFormatError, match=r"census-income\.data found 2 times"):
        UciLayout().locate(tmp_path)


def prepare(raw_dir: Path, out_dir: Path, *overrides: str):
    params = load_params(list(overrides))
    return Census().prepare(raw_dir, out_dir, manifest(), params)


def test_prepare_encodes_splits_and_keeps_instance_weight_out(tmp_path):
    raw = write_uci(tmp_path / "raw", TRAIN, TEST, sub="census")
    out = tmp_path / "prepared"
    metadata = prepare(raw, out)

    assert [f.name for f in metadata.features.sparse] == list(census.SPARSE)
    assert [f.name for f in metadata.features.dense] == list(census.DENSE)
    columns = pq.read_schema(out / "train.parquet").names
    assert "instance_weight" not in columns
    assert "marital_stat" not in columns
    assert {"income", "marital", "row_id"} <= set(columns)
    assert metadata.splits["train"].rows == 6
    assert metadata.splits["valid"].rows + metadata.splits["test"].rows == 5
    assert abs(metadata.splits["valid"].rows - metadata.splits["test"].rows) <= 1
    assert metadata.extra["instance_weight"]["used_as_feature"] is False

    train, valid, test = (read_split(out, s) for s in ("train", "valid", "test"))
    assert train.row_id.tolist() == list(range(6))
    held_out = np.sort(np.r_[valid.row_id, test.row_id])
    assert held_out.tolist() == [ROW_ID_STRIDE + i for i in range(5)]
    expected_valid = ROW_ID_STRIDE + np.flatnonzero(in_valid_half(np.arange(5), 1))
    assert sorted(valid.row_id.tolist()) == expected_valid.tolist()
    assert train.labels[:, 0].tolist() == [0, 0, 1, 0, 0, 0]  # income
    assert train.labels[:, 1].tolist() == [0, 1, 0, 1, 0, 0]  # marital


def test_unseen_categories_encode_as_zero_and_train_ones_do_not(tmp_path):
    raw = write_uci(tmp_path / "raw", TRAIN, TEST)
    out = tmp_path / "prepared"
    metadata = prepare(raw, out)
    names = [f.name for f in metadata.features.sparse]
    arrays = {s: read_split(out, s) for s in ("train", "valid", "test")}
    assert (arrays["train"].sparse > 0).all()  # min_count 1: every train value has an id
    by_row = {
        int(rid): arrays[s].sparse[i] for s in ("valid", "test") for i, rid in enumerate(arrays[s].row_id)
    }
    education, country = names.index("education"), names.index("country_self")
    assert by_row[ROW_ID_STRIDE + 0][education] == 0  # Doctorate: not in train
    assert by_row[ROW_ID_STRIDE + 3][country] == 0  # Vietnam: not in train
    assert by_row[ROW_ID_STRIDE + 1][education] > 0
    unknown = {**metadata.extra["unknown_ids"]["valid"], **metadata.extra["unknown_ids"]["test"]}
    assert set(unknown) == {"education", "country_self", "citizenship"}


def test_dense_columns_are_standardised_with_train_statistics(tmp_path):
    raw = write_uci(tmp_path / "raw", TRAIN, TEST)
    out = tmp_path / "prepared"
    prepare(raw, out)
    train = read_split(out, "train")
    dense = [f.name for f in Encoders.load(out).schema().dense]
    for name, transform in (("age", lambda x: x), ("capital_gains", np.log1p)):
        raw_values = transform(np.array([float({**BASE, **r}[name]) for r in TRAIN]))
        expected = (raw_values - raw_values.mean()) / raw_values.std()
        np.testing.assert_allclose(train.dense[:, dense.index(name)], expected, rtol=1e-5)
    encoders = json.loads((out / "encoders.json").read_text())
    assert {e["name"] for e in encoders["dense"] if e["log1p"]} == set(census.LOG1P)
    assert "instance_weight" in encoders["excluded"]


def test_encoders_reproduce_prepared_rows_from_raw_lines(tmp_path):
    raw = write_uci(tmp_path / "raw", TRAIN, TEST)
    out = tmp_path / "prepared"
    prepare(raw, out)
    encoders = Encoders.load(out)
    sparse, dense = encoders.encode(parse_lines([" " + uci_line(r) for r in TEST]))  # padded like the file
    for split in ("valid", "test"):
        arrays = read_split(out, split)
        rows = arrays.row_id - ROW_ID_STRIDE
        np.testing.assert_array_equal(arrays.sparse, np.stack([sparse[n] for n in census.SPARSE], 1)[rows])
        np.testing.assert_allclose(arrays.dense, np.stack([dense[n] for n in census.DENSE], 1)[rows])


def test_min_count_maps_rare_train_values_to_unknown(tmp_path):
    raw = write_uci(tmp_path / "raw", TRAIN, TEST)
    metadata = prepare(raw, tmp_path / "prepared", "datasets.census.prepare.min_count=2")
    sizes = {f.name: f.vocab_size for f in metadata.features.sparse}
    assert sizes["education"] == 2  # only 'High school graduate' (3x) is kept, + unknown
    assert sizes["sex"] == 2  # 'Male' appears once
    assert metadata.extra["unknown_ids"]["train"]["education"] == 3  # Children, Masters, 7th and 8th


def test_prepare_is_deterministic_and_the_seed_moves_rows(tmp_path):
    raw = write_uci(tmp_path / "raw", TRAIN, TEST)
    first = prepare(raw, tmp_path / "a")
    second = prepare(raw, tmp_path / "b")
    assert first.content_hash == second.content_hash
    rows = np.arange(1000)
    assert in_valid_half(rows, 1).sum() == 500
    assert (in_valid_half(rows, 1) != in_valid_half(rows, 2)).any()
    pairs = in_valid_half(rows, 7).reshape(-1, 2)
    assert (pairs.sum(axis=1) == 1).all()  # exactly one row of each adjacent pair goes to valid


def test_prepared_checks_count_duplicate_row_ids_and_the_halves_gap(tmp_path):
    raw = write_uci(tmp_path / "raw", TRAIN, TEST)
    out = tmp_path / "prepared"
    metadata = prepare(raw, out)
    ((table, frame, expectations),) = Census().prepared_checks(out, metadata, load_params())
    assert table == "splits"
    assert frame.to_dict("records") == [{"duplicate_row_ids": 0, "valid_test_gap": 1}]
    assert [e.column for e in expectations] == ["duplicate_row_ids", "valid_test_gap"]
    (out / "test.parquet").write_bytes((out / "valid.parquet").read_bytes())  # a split written twice
    ((_, frame, _),) = Census().prepared_checks(out, metadata, load_params())
    assert frame.loc[0, "duplicate_row_ids"] == metadata.splits["valid"].rows


def run_raw_suite(raw: Path, report: Path):
    params = load_params()
    return validation.validate_raw(Census(), raw, manifest(), params, report)


def test_raw_suite_reports_each_corruption_and_passes_real_values(tmp_path):
    corrupted = [
        *TRAIN,
        {"age": "abc"},  # wrong dtype
        {"income_50k": "50000"},  # label outside its set
        {"wage_per_hour": "nan"},  # NaN
        {"weeks_worked": "60"},  # out of range
        {"year": "96"},  # unknown code
    ]
    raw = write_uci(tmp_path / "raw", corrupted, TEST)
    with pytest.raises(DataValidationError) as error:
        run_raw_suite(raw, tmp_path / "report")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    failed = {
        (e["expectation"], e["kwargs"].get("column")): e for e in summary["expectations"] if not e["success"]
    }
    assert set(failed) == {
        ("expect_column_values_to_not_be_null", "age"),
        ("expect_column_values_to_be_in_set", "income_50k"),
        ("expect_column_values_to_not_be_null", "wage_per_hour"),
        ("expect_column_values_to_be_between", "weeks_worked"),
        ("expect_column_values_to_be_in_set", "year"),
    }
    assert failed[("expect_column_values_to_not_be_null", "age")]["rows"] == [6]
    assert failed[("expect_column_values_to_be_in_set", "income_50k")]["examples"] == ["50000"]
    assert failed[("expect_column_values_to_be_between", "weeks_worked")]["examples"] == [60.0]
    assert "census-income.data" in str(error.value)
    assert "income_50k" in str(error.value)
    rows = {"census-income.data": 11, "census-income.test": 5, "summary": 1, "files": 1}  # files: last lines
    assert summary["statistics"]["rows"] == rows
