"""Look-alike parsing, encoding and validation on hand-built pickles in the published layout."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtl import validation
from mtl.config import Params, load_params
from mtl.datasets import safe_pickle
from mtl.datasets.base import Manifest
from mtl.datasets.encoding import ShiftedIds, encode_slots
from mtl.datasets.lookalike import (
    AD_FIELDS,
    DYNAMIC_FIELDS,
    LENGTH_SUFFIX,
    SPLIT_FILES,
    SPLITS,
    STATIC_FIELDS,
    Lookalike,
)
from mtl.datasets.lookalike.parse import Pickles, find_split_files, raw_tables, to_raw_split
from mtl.datasets.prepared import read_split
from mtl.errors import DataFormatError, DataValidationError
from tests.support.raw_files import layout_frames
from tests.support.raw_files import write_pickles as write_raw

MANIFEST = Manifest(dataset="lookalike", source="paddlerec", format="metaheac-pickles")


def small_params() -> Params:
    return load_params({"datasets.lookalike.validation.min_rows": dict.fromkeys(SPLITS, 1)})


def test_prepare_encodes_the_published_layout(tmp_path: Path) -> None:
    frames = layout_frames()
    write_raw(tmp_path / "raw", frames)
    (tmp_path / "raw" / "train_stage2.pkl").write_bytes(b"not read: the official code ignores it")
    metadata = Lookalike().prepare(tmp_path / "raw", tmp_path / "out", MANIFEST, small_params())

    assert list(metadata.splits) == list(SPLITS)
    vocab = {f.name: f.vocab_size for f in (*metadata.features.sparse, *metadata.features.multi)}
    for split, frame in frames.items():
        arrays = read_split(tmp_path / "out", split, metadata)
        assert metadata.splits[split].rows == len(frame)
        assert arrays.row_id.tolist() == frame.index.tolist()
        assert arrays.group.tolist() == frame["aid"].tolist()
        assert arrays.labels[:, 0].tolist() == frame["label"].tolist()
        names = [f.name for f in metadata.features.sparse]
        assert names == [*STATIC_FIELDS, *AD_FIELDS]
        for j, name in enumerate(names):
            assert arrays.sparse[:, j].tolist() == (frame[name] + 1).tolist()  # 0 is now "unknown"
        for j, (field, width) in enumerate(DYNAMIC_FIELDS.items()):
            kept = np.minimum(frame[field + LENGTH_SUFFIX].to_numpy(), width)
            raw = np.stack(frame[field].to_numpy())
            expected = np.where(np.arange(width) < kept[:, None], raw + 1, 0)
            assert arrays.multi[j].tolist() == expected.tolist()
            assert arrays.multi_lengths[:, j].tolist() == kept.tolist()
    for field, width in DYNAMIC_FIELDS.items():
        kept = [
            cell[:length]
            for frame in frames.values()
            for cell, length in zip(frame[field], np.minimum(frame[field + LENGTH_SUFFIX], width))
        ]
        assert vocab[field] == max(int(ids.max()) for ids in kept if len(ids)) + 2  # padding not counted
    assert vocab["age"] == 2 + 2  # ids 0..2 over every split, shifted by one, plus one
    assert metadata.extra["lengths_clipped"]["kw1"] == 1
    assert metadata.extra["campaigns"]["test_cold_stage2"]["campaigns"] == 2
    assert "oracle" not in metadata.extra  # only the synthetic source has true probabilities
    encoders = json.loads((tmp_path / "out" / "encoders.json").read_text())
    assert encoders["id_shift"] == 1
    assert {field["id_shift"] for field in encoders["sparse"]} == {1}
    assert {field["name"]: field["vocab_size"] for field in encoders["sparse"]} == vocab


def test_encoding_rule_a_served_model_applies() -> None:
    # encoders.json: raw + 1 inside the source's id range, 0 (unknown) outside it
    assert ShiftedIds("f", "f", 6).encode(np.array([-1, 0, 5, 6, 7])).tolist() == [0, 1, 6, 7, 0]
    lists = np.array([[4, 4, 4], [1, 2, 3], [1, 2, 30]])
    ids, kept = encode_slots(ShiftedIds("f", "f", 10, max_len=3), lists, np.array([0, 2, 9]))
    assert ids.tolist() == [[0, 0, 0], [2, 3, 0], [2, 3, 0]]  # past the length and past the range: 0
    assert kept.tolist() == [0, 2, 3]


def test_prepare_reads_pickles_only_through_the_restricted_unpickler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_raw(tmp_path / "raw", layout_frames())

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("an unrestricted unpickler was used")

    unrestricted = [(pickle, "load"), (pickle, "loads"), (pd, "read_pickle"), (pd.io.pickle, "read_pickle")]
    for target, name in unrestricted:
        monkeypatch.setattr(target, name, forbidden)
    sources: list[str] = []
    restricted = safe_pickle.restricted_load

    def spy(file: object, *, source: str) -> object:
        sources.append(Path(source).name)
        return restricted(file, source=source)  # type: ignore[arg-type]

    monkeypatch.setattr(safe_pickle, "restricted_load", spy)
    Lookalike().prepare(tmp_path / "raw", tmp_path / "out", MANIFEST, small_params())
    assert sorted(sources) == sorted(SPLIT_FILES.values())


def test_missing_and_duplicated_split_files(tmp_path: Path) -> None:
    write_raw(tmp_path, layout_frames())
    (tmp_path / "metaheac_data" / "test_cold_stage2.pkl").unlink()
    missing = r"test_cold_stage2\.pkl \(split 'test_cold_stage2'\) not found"
    with pytest.raises(DataFormatError, match=missing):
        find_split_files(tmp_path)
    write_raw(tmp_path, layout_frames())
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "train_stage1.pkl").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"train_stage1\.pkl found 2 times"):
        find_split_files(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", r"is empty \(0 bytes\)"), (b"\x80\x04\x95", r"is empty or truncated|not a valid pickle")],
    ids=["empty", "truncated"],
)
def test_empty_or_truncated_pickle_stops_raw_validation(tmp_path: Path, content: bytes, message: str) -> None:
    write_raw(tmp_path, layout_frames())
    (tmp_path / "metaheac_data" / "test_hot_stage2.pkl").write_bytes(content)
    with pytest.raises(DataFormatError, match=rf"test_hot_stage2\.pkl.*({message})"):
        list(raw_tables(Pickles(), tmp_path, chunk_rows=1000))


def test_parser_names_the_column_and_row_of_bad_data(tmp_path: Path) -> None:
    frame = layout_frames()["train"]
    path = tmp_path / "train_stage1.pkl"
    with pytest.raises(DataFormatError, match=r"missing columns \['topic2_length'\]"):
        to_raw_split(frame.drop(columns="topic2_length"), path)
    with pytest.raises(DataFormatError, match=r"column 'age' has dtype float64, expected int64"):
        to_raw_split(frame.astype({"age": np.float64}), path)
    broken = frame.copy()
    broken.at[broken.index[2], "kw2"] = [1, 2, 3, 4, 5]
    bad_cell = r"'kw2' row 2 \(index 1006\) holds list\[x5\], expected ndarray\[int64x5\]"
    with pytest.raises(DataFormatError, match=bad_cell):
        to_raw_split(broken, path)


def test_raw_validation_names_each_corruption(tmp_path: Path) -> None:
    frames = layout_frames()
    frames["test_hot_stage1"] = frames["test_hot_stage1"].drop(columns="kw1_length")
    frames["train"].loc[frames["train"].index[3], "label"] = 2
    frames["test_cold_stage1"] = frames["test_cold_stage1"].astype({"age": np.float64})
    frames["test_hot_stage2"] = frames["test_hot_stage2"].astype({"LBS": np.float64})
    frames["test_hot_stage2"].loc[frames["test_hot_stage2"].index[1], "LBS"] = np.nan
    frames["test_cold_stage2"].at[frames["test_cold_stage2"].index[0], "topic1"] = [7, 7, 7, 7, 7]
    write_raw(tmp_path / "raw", frames)
    with pytest.raises(DataValidationError) as caught:
        validation.validate_raw(Lookalike(), tmp_path / "raw", MANIFEST, small_params(), tmp_path / "report")
    failures = json.loads(Path(caught.value.report_path).read_text())["failures"]

    def failure(table: str, expectation: str) -> str:
        found = [f for f in failures if f.startswith(table + " (") and f"{expectation}" in f]
        assert found, f"no {table} {expectation} among {failures}"
        return found[0]

    assert "failed" in failure("test_hot_stage1", "expect_column_to_exist(kw1_length)")
    assert "failed on 1 of 6 rows" in failure("train", "expect_column_values_to_be_in_set(label)")
    assert "e.g. [2]" in failure("train", "expect_column_values_to_be_in_set(label)")
    assert "float64" in failure("test_cold_stage1", "expect_column_values_to_be_in_type_list(age)")
    assert "failed on 1 of 3 rows" in failure("test_hot_stage2", "expect_column_values_to_not_be_null(LBS)")
    assert "list[x5]" in failure("test_cold_stage2", "expect_column_values_to_be_in_set(topic1)")
    assert not [f for f in failures if "interest1" in f or "(aid)" in f]  # intact columns pass


def test_overlapping_campaigns_fail_prepared_validation(tmp_path: Path) -> None:
    frames = layout_frames()
    frames["train"]["aid"] = [1, 1, 2, 2, 5, 5]  # campaign 5 is also a hot test campaign
    frames["test_hot_stage2"]["aid"] = [5, 6, 7]  # 7 has no stage1 rows to adapt on
    frames["test_cold_stage1"].index = pd.Index([4000, 4000], dtype=np.int64)  # a repeated row id
    write_raw(tmp_path / "raw", frames)
    params = small_params()
    metadata = Lookalike().prepare(tmp_path / "raw", tmp_path / "out", MANIFEST, params)
    with pytest.raises(DataValidationError) as caught:
        validation.validate_prepared(Lookalike(), tmp_path / "out", metadata, params, tmp_path / "report")
    failures = json.loads(Path(caught.value.report_path).read_text())["failures"]
    assert len(failures) == 3, failures
    overlap, row_ids, missing = sorted(failures)
    assert overlap.startswith("campaign_groups")
    assert "expect_column_values_to_be_unique(aid) failed on 2 of" in overlap
    assert "e.g. [5, 5]" in overlap
    assert row_ids.startswith("row_ids")
    assert "expect_compound_columns_to_be_unique(['split', 'row_id']) failed on 2 of 18 rows" in row_ids
    assert "{'split': 'test_cold_stage1', 'row_id': 4000}" in row_ids
    assert missing.startswith("stage2_campaigns")
    assert "expect_column_values_to_be_in_set(campaign) failed on 1 of" in missing
    assert "e.g. ['test_hot_stage2:7']" in missing
