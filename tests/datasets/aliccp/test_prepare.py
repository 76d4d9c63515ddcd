"""Preparing the PaddleRec token source: train-only vocabularies, hash split, encoders, metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtl.config import load_params
from mtl.datasets.aliccp import AliCCP
from mtl.datasets.base import Manifest
from mtl.datasets.encoding import ValueCounter, in_fraction
from mtl.datasets.prepared import load_metadata, read_split
from tests.support.raw_files import TOKEN_FRACTION as FRACTION
from tests.support.raw_files import TOKEN_SEED as SEED
from tests.support.raw_files import write_tokens

MANIFEST = Manifest(dataset="aliccp", source="paddlerec", format="paddlerec-esmm-tokens", content_hash="raw1")


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """30 train lines (items 1..3 common, item 500 only on valid rows, item 600 once), 4 test lines."""
    raw = tmp_path / "raw"
    valid = write_tokens(raw)
    params = load_params(
        {
            "datasets.aliccp.prepare.min_count": 2,
            "datasets.aliccp.prepare.valid_fraction": FRACTION,
            "datasets.aliccp.prepare.split_seed": SEED,
        }
    )
    out = tmp_path / "prepared"
    AliCCP().prepare(raw, out, MANIFEST, params)
    return out, valid


def vocabulary(out: Path, field: str) -> dict[int, int]:
    table = pq.read_table(out / "vocab" / f"{field}.parquet").to_pydict()
    return dict(zip(table["value"], table["id"]))


def test_splits_follow_the_seeded_hash_of_the_sample_id(prepared):
    out, valid = prepared
    metadata = json.loads((out / "metadata.json").read_text())
    assert {k: v["rows"] for k, v in metadata["splits"].items()} == {
        "train": int((~valid).sum()),
        "valid": int(valid.sum()),
        "test": 4,
    }
    assert (
        sorted(pq.read_table(out / "valid.parquet").column("row_id").to_pylist())
        == (np.flatnonzero(valid) + 1).tolist()
    )
    assert metadata["funnel"] == ["click", "purchase"]
    assert metadata["raw_hash"] == "raw1"
    assert metadata["splits"]["test"]["label_rates"] == {"click": 0.25, "purchase": 0.0}


def test_vocabularies_are_fitted_on_train_rows_only_with_min_count(prepared):
    out, _ = prepared
    items = vocabulary(out, "205")
    assert sorted(items) == [1, 2, 3]  # 500 only on a valid row, 600 once in train
    assert sorted(items.values()) == [1, 2, 3]
    test = pq.read_table(out / "test.parquet").to_pydict()
    assert test["205"] == [0, items[2], 0, 0]  # 700 unseen, row 3 has no item, 500 never in train
    valid = pq.read_table(out / "valid.parquet").to_pydict()
    assert 0 in valid["205"]  # the valid row carrying item 500
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["extra"]["unknown_ids"]["test"]["unknown_ids"] == 3  # 700, 555 and 500
    assert metadata["extra"]["vocabulary"]["205"] == {"size": 4, "distinct_in_train": 4}


def test_multi_valued_ids_are_truncated_in_order_then_encoded_with_lengths(prepared):
    out, _ = prepared
    interests = vocabulary(out, "150_14")
    assert sorted(interests) == [71, 72, 73]  # 74 and 999 lie past max_len=3: never kept, never counted
    split = read_split(out, "test")
    position = [f.name for f in load_metadata(out).features.multi].index("150_14")
    assert split.multi[position][1].tolist() == [interests[72], 0, 0]  # 555 unknown -> 0, still counted
    assert split.multi_lengths[1, position] == 2
    assert split.multi_lengths[0, position] == 0
    assert split.multi[position][0].tolist() == [0, 0, 0]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["extra"]["parse"]["truncated_ids"]["150_14"] == 30 + 15


def test_encoders_json_maps_raw_values_to_the_prepared_ids(prepared):
    out, _ = prepared
    encoders = json.loads((out / "encoders.json").read_text())
    assert [f["name"] for f in encoders["sparse"]][:3] == ["101", "109_14", "110_14"]
    assert {f["unknown_id"] for f in encoders["sparse"]} == {0}
    assert {f["min_count"] for f in encoders["sparse"]} == {2}
    users = next(f for f in encoders["sparse"] if f["name"] == "101")
    mapping = vocabulary(out, "101")
    assert users["vocab_size"] == len(mapping) + 1 == 3
    # encode the raw test rows with the published mapping alone and compare with the prepared column
    raw_users = [10, 11, 10, None]
    expected = [mapping.get(u, 0) if u is not None else 0 for u in raw_users]
    assert pq.read_table(out / "test.parquet").column("101").to_pylist() == expected
    multi = next(f for f in encoders["sparse"] if f["name"] == "150_14")
    assert multi["max_len"] == 3
    assert multi["length_column"] == "150_14__len"


def test_valid_mask_is_deterministic_seeded_and_near_the_fraction():
    ids = np.arange(1, 200_001)
    mask = in_fraction(ids, 0.1, 7)
    assert np.array_equal(mask, in_fraction(ids, 0.1, 7))
    assert abs(mask.mean() - 0.1) < 0.005
    assert not np.array_equal(mask, in_fraction(ids, 0.1, 8))
    assert np.array_equal(in_fraction(ids[::-1], 0.1, 7), mask[::-1])  # independent of file order


def test_id_counter_merges_chunks_exactly(monkeypatch):
    monkeypatch.setattr("mtl.datasets.encoding.MERGE_EVERY", 4)
    rng = np.random.default_rng(0)
    chunks = [rng.integers(0, 50, 30) for _ in range(20)]
    counter = ValueCounter()
    for chunk in chunks:
        counter.add(chunk)
    keys, counts = counter.result()
    expected_keys, expected_counts = np.unique(np.concatenate(chunks), return_counts=True)
    assert keys.tolist() == expected_keys.tolist()
    assert counts.tolist() == expected_counts.tolist()
