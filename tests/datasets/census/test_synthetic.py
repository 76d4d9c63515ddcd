"""Synthetic Census: raw UCI format, determinism, a planted learnable signal, and the CLI end to end."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from mtl.cli import main
from mtl.config import load_params
from mtl.datasets import census
from mtl.datasets.census import ARCHIVE, SOURCES, TRUTH, synthetic
from mtl.datasets.census.parse import UciLayout
from mtl.evaluation import roc_auc


def generate(raw: Path, rows: int = 3000, seed: int = 11) -> None:
    overrides = {
        "datasets.census.synthetic.train_rows": rows,
        "datasets.census.synthetic.test_rows": rows // 2,
        "datasets.census.synthetic.seed": seed,
    }
    synthetic.generate(raw, load_params(overrides).datasets.census.synthetic)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def members(raw: Path) -> dict[str, str]:
    with tarfile.open(raw / ARCHIVE) as tar:
        return {m.name: tar.extractfile(m).read().decode("ascii") for m in tar.getmembers()}


def test_generation_is_deterministic_and_writes_only_declared_files(tmp_path):
    generate(tmp_path / "a")
    generate(tmp_path / "b")
    generate(tmp_path / "c", seed=12)
    declared = {f.name for f in SOURCES["synthetic"].files}
    assert {p.name for p in (tmp_path / "a").iterdir()} == declared == {ARCHIVE, TRUTH.name}
    for name in declared:
        assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name)
        assert digest(tmp_path / "a" / name) != digest(tmp_path / "c" / name)


def test_files_are_raw_uci_lines_that_the_uci_parser_reads(tmp_path):
    generate(tmp_path)
    files = members(tmp_path)
    assert set(files) == {"census-income.data", "census-income.test"}
    lines = files["census-income.data"].splitlines()
    assert len(lines) == 3000
    assert len(files["census-income.test"].splitlines()) == 1500
    fields = [line.split(",") for line in lines]
    assert {len(f) for f in fields} == {42}
    assert all(f[0].isdigit() for f in fields)  # age first, unpadded
    assert all(v.startswith(" ") and not v.startswith("  ") for f in fields for v in f[1:])
    assert {f[-1] for f in fields} == {" - 50000.", " 50000+."}

    truth = pq.read_table(tmp_path / TRUTH.name).to_pandas()
    train_truth = truth[truth["file"] == "census-income.data"].sort_values("row")
    assert [f[7] == " Never married" for f in fields] == train_truth["marital"].astype(bool).tolist()
    path = tmp_path / "census-income.data"
    path.write_text(files["census-income.data"])
    (_, frame), *_ = UciLayout().read(path, 10_000, strict=True)
    labels = UciLayout().labels(frame)
    for task in census.TASKS:
        np.testing.assert_array_equal(labels[task], train_truth[task].to_numpy())
    assert (frame["instance_weight"] > 0).all()
    assert frame["age"].between(0, 90).all()
    assert frame["weeks_worked"].between(0, 52).all()
    assert set(frame["year"]) == {"94", "95"}
    test_truth = truth[truth["file"] == "census-income.test"]
    assert test_truth["row_id"].tolist() == (1_000_000_000 + test_truth["row"]).tolist()


def test_planted_signal_has_the_documented_rates_and_is_learnable(tmp_path):
    generate(tmp_path, rows=10_000)
    truth = pq.read_table(tmp_path / TRUTH.name).to_pandas()
    params = load_params().datasets.census.synthetic
    assert truth["p_income"].mean() == pytest.approx(params.income_rate, abs=1e-4)  # solved intercept
    assert truth["p_marital"].mean() == pytest.approx(params.never_married_rate, abs=1e-4)
    assert truth["income"].mean() == pytest.approx(params.income_rate, abs=0.01)
    assert truth["marital"].mean() == pytest.approx(params.never_married_rate, abs=0.02)
    for task in census.TASKS:
        assert 0.9 < roc_auc(truth[task], truth[f"p_{task}"]) < 0.99

    # A plain logistic regression on a few raw columns recovers much of it: the signal is in the features.
    path = tmp_path / "census-income.data"
    path.write_text(members(tmp_path)["census-income.data"])
    (_, frame), *_ = UciLayout().read(path, 100_000, strict=True)
    labels = UciLayout().labels(frame)
    numeric = frame[["age", "weeks_worked"]].assign(
        age2=frame["age"] ** 2,
        gains=np.log1p(frame["capital_gains"]),
        dividends=np.log1p(frame["stock_dividends"]),
    )
    categorical = pd.get_dummies(
        frame[["education", "major_occ_code", "sex", "det_hh_fam_stat", "tax_filer_stat"]]
    )
    x = pd.concat([(numeric - numeric.mean()) / numeric.std(), categorical], axis=1).to_numpy(dtype=float)
    fit, held = slice(0, 7_500), slice(7_500, None)
    for task, floor in (("income", 0.88), ("marital", 0.93)):
        model = LogisticRegression(solver="newton-cholesky").fit(x[fit], labels[task][fit])
        assert roc_auc(labels[task][held], model.predict_proba(x[held])[:, 1]) > floor
    child = frame["age"] < 15
    assert truth.loc[truth["file"] == "census-income.data", "p_marital"].to_numpy()[child].mean() > 0.9
    assert truth.loc[truth["file"] == "census-income.data", "p_income"].to_numpy()[child].max() < 0.01


@pytest.mark.slow  # two Great Expectations suites: ~20-30 s on 2 cores
def test_download_validate_prepare_through_the_cli(tmp_path):
    common = [
        "--data-dir", str(tmp_path),
        "--set", "datasets.census.synthetic.train_rows=3000",
        "--set", "datasets.census.synthetic.test_rows=1000",
    ]  # fmt: skip
    assert main([*common, "download", "census"]) == 0
    assert main([*common, "validate", "census"]) == 0
    assert main([*common, "prepare", "census"]) == 0

    prepared = tmp_path / "prepared" / "census"
    metadata = json.loads((prepared / "metadata.json").read_text())
    assert metadata["source"] == "synthetic"
    assert metadata["tasks"] == ["income", "marital"]
    splits = metadata["splits"]
    assert splits["train"]["rows"] == 3000
    assert splits["valid"]["rows"] == splits["test"]["rows"] == 500
    for split in census.SPLITS:
        assert set(splits[split]["label_rates"]) == {"income", "marital"}
        assert 0.0 < splits[split]["label_rates"]["income"] < 0.2
        for task in census.TASKS:
            assert 0.85 < metadata["extra"]["oracle_auc"][split][task] <= 1.0
    features = [f["name"] for kind in ("sparse", "dense") for f in metadata["features"][kind]]
    assert len(features) == 39
    assert "instance_weight" not in features
    assert (prepared / "encoders.json").is_file()
    assert (prepared / "vocab" / "education.parquet").is_file()
    raw_report = json.loads((tmp_path / "validation" / "census" / "raw" / "summary.json").read_text())
    assert raw_report["success"]
    assert raw_report["statistics"]["rows"]["census-income.data"] == 3000
