"""The serving hooks: prepared rows decode to raw feature columns that encode back to the same arrays,
and raw input in any accepted form (lists, strings, unseen or malformed values) encodes without error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mtl.datasets import get_dataset
from mtl.datasets.codec import RawCodec
from mtl.datasets.prepared import load_metadata, read_split
from mtl.errors import DataFormatError

SPLITS = {"aliccp": "test", "census": "test", "lookalike": "test_cold_stage2"}


@pytest.mark.parametrize("dataset", sorted(SPLITS))
def test_decode_then_encode_gives_the_prepared_arrays(data_root, dataset):
    prepared = data_root / "prepared" / dataset
    ds = get_dataset(dataset)
    expected = read_split(prepared, SPLITS[dataset])
    frame = ds.raw_feature_frame(prepared, SPLITS[dataset])
    assert list(frame.columns) == ds.raw_codec(prepared).columns()
    assert len(frame) == len(expected) > 0
    encoded = ds.encode_raw(frame, prepared)
    np.testing.assert_array_equal(encoded.sparse, expected.sparse)
    assert len(encoded.multi) == len(expected.multi)
    for got, want in zip(encoded.multi, expected.multi):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(encoded.multi_lengths, expected.multi_lengths)
    np.testing.assert_allclose(encoded.dense, expected.dense, rtol=1e-5, atol=1e-5)
    if dataset == "aliccp":  # ids rarer than min_count: the round trip covers the unknown id too
        assert (expected.sparse == 0).any()
        first = load_metadata(prepared).features.sparse[0].name
        np.testing.assert_array_equal(frame[first].to_numpy() == -1, expected.sparse[:, 0] == 0)


def test_aliccp_accepts_lists_strings_and_unknown_values(data_root):
    prepared = data_root / "prepared" / "aliccp"
    codec = get_dataset("aliccp").raw_codec(prepared)
    frame = codec.decode(read_split(prepared, "test").take(slice(0, 4)))
    multi = codec.multi_valued()[0]
    single = codec.metadata.features.sparse[0].name
    as_text = frame.copy()
    as_text[multi] = [" ".join(map(str, ids)) for ids in frame[multi]]
    np.testing.assert_array_equal(codec.encode(as_text).multi[0], codec.encode(frame).multi[0])

    odd = frame.copy()
    odd[single] = [None, "not-an-id", 10**15, np.nan]
    odd[multi] = [None, "", "x 3", [10**15]]
    encoded = codec.encode(odd)
    assert (encoded.sparse[:, 0] == 0).all()
    index = codec.multi_valued().index(multi)
    np.testing.assert_array_equal(encoded.multi_lengths[:, index], [0, 0, 2, 1])
    assert (encoded.multi[index] == 0).all()


def test_census_unseen_categories_map_to_unknown(data_root):
    prepared = data_root / "prepared" / "census"
    codec = get_dataset("census").raw_codec(prepared)
    frame = codec.decode(read_split(prepared, "test").take(slice(0, 3)))
    frame["education"] = ["Postdoc in astrophysics", None, frame["education"][2]]
    frame["age"] = ["n/a", 40, 41]
    encoded = codec.encode(frame)
    column = [f.name for f in codec.metadata.features.sparse].index("education")
    assert list(encoded.sparse[:2, column]) == [0, 0]
    assert encoded.sparse[2, column] > 0
    assert np.isfinite(encoded.dense).all()


def test_lookalike_length_column_caps_the_padded_lists(data_root):
    prepared = data_root / "prepared" / "lookalike"
    codec = get_dataset("lookalike").raw_codec(prepared)
    frame = codec.decode(read_split(prepared, "train").take(slice(0, 2)))
    frame["interest1"] = [[5, 6, 7, 0, 0], [1]]
    frame["interest1_length"] = [3, 1]
    encoded = codec.encode(frame)
    index = codec.multi_valued().index("interest1")
    np.testing.assert_array_equal(encoded.multi_lengths[:, index], [3, 1])
    np.testing.assert_array_equal(encoded.multi[index][0, :4], [6, 7, 8, 0])


def test_missing_feature_columns_are_a_clear_error(data_root):
    prepared = data_root / "prepared" / "census"
    codec = get_dataset("census").raw_codec(prepared)
    with pytest.raises(DataFormatError, match=r"census input lacks the feature columns \['age'\]"):
        codec.encode(pd.DataFrame({c: [] for c in codec.columns() if c != "age"}))


@pytest.mark.parametrize("dataset", sorted(SPLITS))
def test_one_codec_reads_every_dataset_from_its_encoders_json(data_root, dataset):
    prepared = data_root / "prepared" / dataset
    codec = get_dataset(dataset).raw_codec(prepared)
    assert type(codec) is RawCodec
    encoders = json.loads((prepared / "encoders.json").read_text())
    columns = {e["name"]: str(e["column"]) for e in (*encoders["sparse"], *encoders["dense"])}
    assert codec.columns() == [columns[name] for name in codec.metadata.features.names()]


def test_a_field_without_an_encoder_is_a_clear_error(data_root, tmp_path):
    prepared = tmp_path / "aliccp"
    shutil.copytree(data_root / "prepared" / "aliccp", prepared)
    encoders = json.loads((prepared / "encoders.json").read_text())
    encoders["sparse"] = encoders["sparse"][1:]
    (prepared / "encoders.json").write_text(json.dumps(encoders))
    with pytest.raises(
        DataFormatError, match=r"encoders.json has no encoder for the prepared fields \['101'\]"
    ):
        RawCodec(prepared)
