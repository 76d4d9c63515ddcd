"""The one vocabulary, scaler, split hash and encoders.json format that every dataset prepares with."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl.datasets.encoding import (
    Moments,
    Scaler,
    ShiftedIds,
    ValueCounter,
    Vocabulary,
    encode_slots,
    in_first_half,
    in_fraction,
    load_encoders,
    save_encoders,
)
from mtl.errors import DataFormatError


def fitted(chunks: list, min_count: int = 1, **kwargs) -> Vocabulary:
    counter = ValueCounter()
    for chunk in chunks:
        counter.add(chunk)
    return Vocabulary.fit("f", "f", counter, min_count, **kwargs)


@pytest.mark.parametrize(
    "chunks",
    [
        [np.array([30, 10, 20, 10, 30, 40, 30, 50, 50])],
        [
            np.array([30, 10]),
            np.array([20, 10, 30]),
            np.array([], dtype=np.int64),
            np.array([40, 30, 50, 50]),
        ],
    ],
)
def test_ids_go_most_frequent_first_with_ties_in_value_order(chunks):
    vocabulary = fitted(chunks)
    assert vocabulary.values.tolist() == [30, 10, 50, 20, 40]  # 3x, 2x, 2x, then the singles by value
    assert vocabulary.counts.tolist() == [3, 2, 2, 1, 1]
    assert vocabulary.encode(np.array([[30, 40], [99, 10]])).tolist() == [[1, 5], [0, 2]]  # 99: unknown


def test_text_values_follow_the_same_order_and_missing_values_are_not_counted():
    vocabulary = fitted([np.array(["b", None, "a", "c", "b", np.nan, "c", "d"], dtype=object)], min_count=2)
    assert vocabulary.values.tolist() == ["b", "c"]  # a and d are rarer than min_count
    assert vocabulary.distinct_in_train == 4
    assert vocabulary.encode(pd.Series(["c", None, "a", "b"])).tolist() == [2, 0, 0, 1]
    assert vocabulary.decode(np.array([0, 1, 2])).tolist() == [None, "b", "c"]


def test_integer_ids_decode_the_unknown_id_to_minus_one():
    vocabulary = fitted([np.array([7, 7, 5])])
    assert vocabulary.decode(np.array([2, 0, 1])).tolist() == [5, -1, 7]
    assert vocabulary.encode(vocabulary.decode(np.array([2, 0, 1]))).tolist() == [2, 0, 1]


def test_value_counter_merges_many_chunks_like_one(monkeypatch):
    monkeypatch.setattr("mtl.datasets.encoding.MERGE_EVERY", 3)
    rng = np.random.default_rng(1)
    chunks = [rng.choice(["x", "y", "z", "w"], 17) for _ in range(12)]
    in_chunks, at_once = fitted(chunks), fitted([np.concatenate(chunks)])
    assert in_chunks.values.tolist() == at_once.values.tolist()
    assert in_chunks.counts.tolist() == at_once.counts.tolist()


def test_shifted_ids_and_slots():
    shifted = ShiftedIds("f", "f", source_max_id=6, max_len=3)
    assert shifted.size == 8
    assert shifted.encode(np.array([-1, 0, 6, 7])).tolist() == [0, 1, 7, 0]
    assert shifted.decode(np.array([0, 1, 7])).tolist() == [-1, 0, 6]
    ids, lengths = encode_slots(shifted, np.array([[1, 2, 3], [4, 5, 6]]), np.array([2, 9]))
    assert ids.tolist() == [[2, 3, 0], [5, 6, 7]]
    assert lengths.tolist() == [2, 3]


def test_streamed_moments_equal_the_whole_column_and_a_constant_column_scales_to_zero():
    rng = np.random.default_rng(2)
    values = rng.lognormal(3.0, 1.0, 1000)
    moments, unfitted = Moments(), Scaler("x", "x", log1p=True)
    for chunk in np.array_split(values, 7):
        moments.add(unfitted.transformed(chunk))  # log1p, as prepare takes them
    scaler = unfitted.fitted(moments)
    assert scaler.mean == pytest.approx(np.log1p(values).mean(), rel=1e-12)
    assert scaler.std == pytest.approx(np.log1p(values).std(), rel=1e-9)
    np.testing.assert_allclose(scaler.decode(scaler.encode(values)), values, rtol=1e-5)
    constant = Moments()
    constant.add(np.full(10, 0.1))
    assert Scaler("c", "c").fitted(constant).encode(np.full(3, 0.1)).tolist() == [0.0, 0.0, 0.0]


def test_seeded_splits_are_deterministic_and_independent_of_order():
    ids = np.arange(50_000)
    mask = in_fraction(ids, 0.2, 3)
    assert abs(mask.mean() - 0.2) < 0.01
    assert np.array_equal(in_fraction(ids[::-1], 0.2, 3), mask[::-1])
    halves = in_first_half(np.arange(1001), 5)
    assert halves.sum() in (500, 501)
    assert (halves[:1000].reshape(-1, 2).sum(axis=1) == 1).all()


def test_encoders_json_round_trip(tmp_path: Path):
    vocabulary = fitted([np.array([3, 3, 8])], max_len=2)
    shifted = ShiftedIds("s", "raw_s", 4, max_len=2, raw_length_column="s_length")
    scaler = Scaler("d", 5, mean=1.5, std=2.0)
    save_encoders(tmp_path, {"input_format": "test"}, [vocabulary, shifted], [scaler])
    data = json.loads((tmp_path / "encoders.json").read_text())
    assert list(data) == ["input_format", "sparse", "dense"]
    assert [e["name"] for e in data["sparse"]] == ["f", "s"]
    assert data["sparse"][0]["length_column"] == "f__len"
    assert data["dense"][0]["column"] == 5  # an integer column position stays an integer
    loaded = load_encoders(tmp_path)
    assert loaded["f"].values.tolist() == [3, 8]
    assert (loaded["s"].source_max_id, loaded["s"].raw_length_column) == (4, "s_length")
    assert (loaded["d"].mean, loaded["d"].std) == (1.5, 2.0)
    (tmp_path / "encoders.json").write_text(json.dumps({"sparse": [{"name": "x"}], "dense": []}))
    with pytest.raises(DataFormatError, match="cannot read the encoders"):
        load_encoders(tmp_path)
