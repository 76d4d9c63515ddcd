"""The one oracle: prepared rows joined with a synthetic truth file by (part, row id), split by split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtl.datasets.base import RemoteFile, Source
from mtl.datasets.oracle import Oracle, TruthFile
from mtl.errors import DataFormatError

TRUTH = TruthFile("truth.parquet", "file", "row", ("p",), label_columns=("y",))
GENERATED = Source("synthetic", "", (RemoteFile("truth.parquet"),), kind="generated")


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """Rows 0..5 of file a and 0..3 of file b, written in two row groups, b's first."""
    table = pa.table(
        {
            "file": ["b"] * 4 + ["a"] * 6,
            "row": [3, 2, 1, 0, 0, 1, 2, 3, 4, 5],
            "p": [0.9, 0.8, 0.7, 0.6, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            "y": [1, 1, 0, 0, 0, 0, 1, 0, 1, 1],
        }
    )
    pq.write_table(table, tmp_path / TRUTH.name, row_group_size=5)
    return tmp_path


def labels(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int8)[:, None]


def test_rows_get_their_true_values_in_the_order_observed(raw):
    oracle = Oracle.of(GENERATED, raw, TRUTH, ["train", "test"])
    oracle.observe("train", "a", np.array([5, 0, 3]), labels([1, 0, 0]))
    oracle.observe("test", "b", np.array([0, 3]), labels([0, 1]))
    oracle.observe("train", "b", np.array([1]), labels([0]))
    rows = oracle.joined()
    assert rows["train"].truth["p"].tolist() == [0.5, 0.0, 0.3, 0.7]
    assert rows["train"].labels[:, 0].tolist() == [1, 0, 0, 0]
    assert rows["test"].truth["p"].tolist() == [0.6, 0.9]


def test_max_rows_keeps_the_first_rows_of_each_split(raw):
    oracle = Oracle(raw, TRUTH, ["train"], max_rows=2)
    oracle.observe("train", "a", np.array([1, 2, 3]), labels([0, 1, 0]))
    oracle.observe("train", "a", np.array([4]), labels([1]))
    assert oracle.joined()["train"].truth["p"].tolist() == [0.1, 0.2]


def test_a_row_the_truth_lacks_or_a_label_that_differs_is_an_error(raw):
    oracle = Oracle(raw, TRUTH, ["train"])
    oracle.observe("train", "a", np.array([1, 9]), labels([0, 0]))
    with pytest.raises(DataFormatError, match="lacks the true values of train row 9 of a"):
        oracle.joined()
    oracle = Oracle(raw, TRUTH, ["train"])
    oracle.observe("train", "a", np.array([2]), labels([0]))
    with pytest.raises(DataFormatError, match="y labels differ"):
        oracle.joined()


def test_real_sources_have_no_oracle_and_a_missing_truth_file_is_named(tmp_path):
    assert Oracle.of(Source("uci", "", ()), tmp_path, TRUTH, ["train"]) is None
    with pytest.raises(DataFormatError, match=r"truth.parquet not found"):
        Oracle.of(GENERATED, tmp_path, TRUTH, ["train"])
