"""The synthetic look-alike source: published pickle layout, campaign structure, planted signal, CLI."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mtl.cli import main
from mtl.config import LookalikeSynthetic, load_params
from mtl.datasets import safe_pickle
from mtl.datasets.lookalike import (
    ARCHIVE,
    COLUMNS,
    DYNAMIC_FIELDS,
    INT_COLUMNS,
    SPLIT_FILES,
    SPLITS,
    TRUTH,
    Lookalike,
)
from mtl.datasets.lookalike.legacy_pickle import dumps_legacy_dataframe
from mtl.datasets.lookalike.synthetic import TOKENS, generate, generate_lookalike
from mtl.datasets.oracle import ranking_quality
from mtl.datasets.prepared import read_split
from mtl.errors import ConfigError

SMALL = {
    "datasets.lookalike.synthetic.users": 400,
    "datasets.lookalike.synthetic.train_campaigns": 8,
    "datasets.lookalike.synthetic.hot_campaigns": 3,
    "datasets.lookalike.synthetic.cold_campaigns": 4,
    "datasets.lookalike.synthetic.train_rows": [40, 80],
    "datasets.lookalike.synthetic.hot_rows": [150, 200],
    "datasets.lookalike.synthetic.cold_rows": [12, 30],
}


def settings(**changes: object) -> LookalikeSynthetic:
    overrides = {**SMALL, **{f"datasets.lookalike.synthetic.{k}": v for k, v in changes.items()}}
    return load_params(overrides).datasets.lookalike.synthetic


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        generate(tmp_path / name, settings(seed=seed))
    for file in (ARCHIVE, TRUTH.name):
        assert sha256(tmp_path / "a" / file) == sha256(tmp_path / "b" / file)
        assert sha256(tmp_path / "a" / file) != sha256(tmp_path / "c" / file)
    declared = sorted(f.name for f in Lookalike().sources["synthetic"].files)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == declared  # the manifest covers every file


def test_row_ranges_are_checked_when_parameters_load() -> None:
    with pytest.raises(
        ConfigError, match=r"hot_rows must be \[min, max\] with 1 <= min <= max, got \[300, 30\]"
    ):
        settings(hot_rows=[300, 30])


def test_campaign_structure_and_published_layout() -> None:
    data = generate_lookalike(settings())
    frames = data.frames
    assert list(frames) == list(SPLITS)
    for frame in frames.values():
        assert list(frame.columns) == list(COLUMNS)
        assert all(frame[c].dtype == np.int64 for c in INT_COLUMNS)
        assert frame.index.dtype == np.int64
        for field, width in DYNAMIC_FIELDS.items():
            cells = np.stack(frame[field].to_numpy())
            assert frame[field].dtype == object
            assert cells.dtype == np.int64
            assert cells.shape[1] == width
            inside = np.arange(width) < frame[f"{field}_length"].to_numpy()[:, None]
            assert (cells[~inside] == TOKENS[field]).all()
            assert (cells[inside] < TOKENS[field]).all()
        ads = frame.groupby("aid")[["advertiserId", "campaignId", "adCategoryId", "productType"]].nunique()
        assert (ads == 1).all().all()  # ad features are the campaign's, constant within it
    index = np.concatenate([frame.index.to_numpy() for frame in frames.values()])
    assert len(np.unique(index)) == len(index)  # original row positions, unique everywhere

    aids = {split: set(frame["aid"]) for split, frame in frames.items()}
    assert (len(aids["train"]), len(aids["test_hot_stage1"]), len(aids["test_cold_stage1"])) == (8, 3, 4)
    assert aids["test_hot_stage1"] == aids["test_hot_stage2"]
    assert aids["test_cold_stage1"] == aids["test_cold_stage2"]
    assert not aids["train"] & aids["test_hot_stage1"]
    assert not aids["train"] & aids["test_cold_stage1"]
    assert not aids["test_hot_stage1"] & aids["test_cold_stage1"]

    rows = {split: frame["aid"].value_counts() for split, frame in frames.items()}
    assert rows["test_hot_stage1"].between(150, 200).all()
    assert rows["test_cold_stage1"].between(12, 30).all()
    assert rows["train"].between(40, 80).all()
    assert rows["test_hot_stage2"].sort_index().equals(rows["test_hot_stage1"].sort_index())  # fraction 1.0
    for split in ("test_hot_stage2", "test_cold_stage2"):
        classes = frames[split].groupby("aid")["label"].nunique()
        assert (classes == 2).all(), f"{split}: a campaign with one class cannot be scored per campaign"


def test_planted_signal_is_shared_and_campaign_specific() -> None:
    data = generate_lookalike(
        settings(users=3000, hot_campaigns=6, cold_campaigns=10, hot_rows=[400, 600], cold_rows=[60, 120])
    )
    for split in ("test_hot_stage2", "test_cold_stage2"):
        frame = data.frames[split]
        truth = data.truth[data.truth["split"] == split]
        assert truth["row_id"].tolist() == frame.index.tolist()
        labels, aids = frame["label"].to_numpy(), frame["aid"].to_numpy()
        oracle = ranking_quality(labels, truth["probability"].to_numpy(), aids)
        shared_only = ranking_quality(labels, truth["shared_logit"].to_numpy(), aids)
        assert oracle["auc"] > 0.7, oracle
        assert oracle["gauc"] > 0.7, oracle
        # the campaign-specific part is real signal that only per-campaign adaptation can pick up
        assert oracle["gauc"] > shared_only["gauc"] + 0.03, (oracle, shared_only)
        assert abs(labels.mean() - truth["probability"].mean()) < 0.03  # labels drawn from the truth
        assert 0.1 < labels.mean() < 0.3  # positive_rate 0.2 with campaign-level spread


def test_archive_holds_the_frames_as_legacy_pickles(tmp_path: Path) -> None:
    generate(tmp_path, settings())
    expected = generate_lookalike(settings()).frames
    with zipfile.ZipFile(tmp_path / ARCHIVE) as archive:
        assert sorted(archive.namelist()) == sorted(f"metaheac_data/{name}" for name in SPLIT_FILES.values())
        for split, frame in expected.items():
            data = archive.read(f"metaheac_data/{SPLIT_FILES[split]}")
            assert data == dumps_legacy_dataframe(frame)  # the pandas < 2 layout (test_safe_pickle)
    loaded = safe_pickle.loads_dataframe(data)
    assert loaded.index.tolist() == frame.index.tolist()
    assert loaded.drop(columns=list(DYNAMIC_FIELDS)).equals(frame.drop(columns=list(DYNAMIC_FIELDS)))
    for field in DYNAMIC_FIELDS:
        assert np.array_equal(np.stack(loaded[field].to_numpy()), np.stack(frame[field].to_numpy()))


@pytest.mark.slow  # two Great Expectations suites: about 20-45 s on 2 busy cores
def test_download_validate_prepare_through_the_cli(tmp_path: Path) -> None:
    overrides = [f"--set={key}={json.dumps(value)}" for key, value in SMALL.items()]
    options = ["--data-dir", str(tmp_path), *overrides]
    for command in ("download", "validate", "prepare"):
        assert main([*options, command, "lookalike"]) == 0, command

    prepared = tmp_path / "prepared" / "lookalike"
    metadata = json.loads((prepared / "metadata.json").read_text())
    assert list(metadata["splits"]) == list(SPLITS)
    assert {s: info["groups"] for s, info in metadata["splits"].items()} == {
        "train": 8,
        "test_hot_stage1": 3,
        "test_hot_stage2": 3,
        "test_cold_stage1": 4,
        "test_cold_stage2": 4,
    }
    for info in metadata["splits"].values():
        assert info["rows"] > 0
        assert 0 < info["label_rates"]["label"] < 1
    for split in ("test_hot_stage2", "test_cold_stage2"):
        assert metadata["extra"]["oracle"][split]["auc"] > 0.6
        assert metadata["extra"]["oracle"][split]["campaigns_skipped"] == 0
    assert json.loads((prepared / "encoders.json").read_text())["id_shift"] == 1
    arrays = read_split(prepared, "test_cold_stage1")
    assert arrays.group is not None
    assert len(set(arrays.group.tolist())) == 4
    for stage in ("raw", "prepared"):
        summary = json.loads((tmp_path / "validation" / "lookalike" / stage / "summary.json").read_text())
        assert summary["success"]
        assert summary["statistics"]["evaluated_expectations"] > 20
