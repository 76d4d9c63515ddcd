"""Synthetic Ali-CCP: the real token format, determinism, planted rates and signal, and the CLI end to end."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mtl.cli import main
from mtl.config import load_params
from mtl.datasets.aliccp import FIELDS, TOKEN_FILES, TRUTH, Layout
from mtl.datasets.aliccp.parse import iter_token_chunks
from mtl.datasets.aliccp.synthetic import generate
from mtl.evaluation import roc_auc

TRAIN_FILE, TEST_FILE = TOKEN_FILES["train"], TOKEN_FILES["test"]
SMALL = {"datasets.aliccp.synthetic.train_rows": 3000, "datasets.aliccp.synthetic.test_rows": 1000}


def make(tmp_path: Path, name: str, **overrides) -> Path:
    raw = tmp_path / name
    raw.mkdir()
    params = load_params({**SMALL, **{f"datasets.aliccp.synthetic.{k}": v for k, v in overrides.items()}})
    generate(raw, params.datasets.aliccp.synthetic)
    return raw


def test_generation_is_deterministic_by_seed(tmp_path):
    first, again, other = make(tmp_path, "a"), make(tmp_path, "b"), make(tmp_path, "c", seed=8)
    for name in (TRAIN_FILE, TEST_FILE, TRUTH.name):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / TRAIN_FILE).read_bytes() != (other / TRAIN_FILE).read_bytes()
    assert sorted(p.name for p in first.iterdir()) == sorted([TRAIN_FILE, TEST_FILE, TRUTH.name])


def test_files_are_in_the_token_format_with_field_owned_global_ids(tmp_path):
    raw = make(tmp_path, "raw")
    stats: Counter[str] = Counter()
    chunks = list(iter_token_chunks(raw / TRAIN_FILE, Layout(3), stats))
    assert sum(len(c) for c in chunks) == 3000
    assert not any(k.startswith("unknown") for k in stats)
    assert np.concatenate([c.row_id for c in chunks]).tolist() == list(range(1, 3001))
    ids = np.concatenate([c.ids for c in chunks])
    counts = np.concatenate([c.counts for c in chunks])
    layout = Layout(3)
    owner: dict[int, str] = {}
    for index, name in enumerate(FIELDS):
        present = (
            np.arange(layout.widths[index])[None, :]
            < np.minimum(counts[:, index], layout.widths[index])[:, None]
        )
        for value in np.unique(ids[:, layout.field_slots(index)][present]).tolist():
            assert owner.setdefault(value, name) == name, f"id {value} used by {owner[value]} and {name}"
    history = counts[:, FIELDS.index("109_14")]
    assert history.min() == 0
    assert history.max() > 3
    assert len(np.unique(history)) > 4
    assert stats["truncated_ids.109_14"] > 0
    first_tokens = [
        line.split(",")[3].split(":")[0] for line in (raw / TRAIN_FILE).read_text().splitlines()[:200]
    ]
    assert len(set(first_tokens)) > 10  # fields come in a random order per line


def test_rates_hit_the_targets_and_the_truth_carries_signal(tmp_path):
    raw = make(tmp_path, "raw", train_rows=60_000, test_rows=100)
    truth = pq.read_table(raw / TRUTH.name).to_pandas()
    truth = truth[truth["file"] == TRAIN_FILE]
    chunks = list(iter_token_chunks(raw / TRAIN_FILE, Layout(3), Counter()))
    click = np.concatenate([c.click for c in chunks])
    purchase = np.concatenate([c.purchase for c in chunks])
    assert truth["sample_id"].tolist() == list(range(1, 60_001))
    assert 0.034 < click.mean() < 0.046  # click_rate 0.04
    assert 0.03 < purchase[click == 1].mean() < 0.075  # purchase_given_click_rate 0.05
    p_click, p_purchase = truth["p_click"].to_numpy(), truth["p_purchase_given_click"].to_numpy()
    assert abs(p_click.mean() - 0.04) < 0.004
    assert roc_auc(click, p_click) > 0.68
    assert roc_auc(purchase, p_click * p_purchase) > 0.68
    assert roc_auc(click, np.random.default_rng(0).random(click.size)) < 0.55  # the bar is real


@pytest.mark.slow  # ~20 s on 2 cores, mostly the Great Expectations suites
def test_cli_download_validate_prepare_end_to_end(tmp_path, capsys):
    data = tmp_path / "data"
    options = ["--data-dir", str(data)] + [f"--set={k}={v}" for k, v in SMALL.items()]
    assert main(["download", "aliccp", *options]) == 0
    assert main(["validate", "aliccp", *options]) == 0
    assert main(["prepare", "aliccp", *options]) == 0
    metadata = json.loads((data / "prepared" / "aliccp" / "metadata.json").read_text())
    splits = metadata["splits"]
    assert set(splits) == {"train", "valid", "test"}
    assert splits["train"]["rows"] + splits["valid"]["rows"] == 3000
    assert splits["test"]["rows"] == 1000
    assert 200 < splits["valid"]["rows"] < 400  # valid_fraction 0.1
    for info in splits.values():
        assert set(info["label_rates"]) == {"click", "purchase"}
        assert 0.0 < info["label_rates"]["click"] < 0.1
    oracle = metadata["extra"]["oracle_auc"]
    assert oracle["train"]["rows"] == splits["train"]["rows"]
    assert oracle["train"]["click"] > 0.6
    assert oracle["test"]["click"] > 0.6
    assert metadata["source"] == "synthetic"
    assert len(metadata["features"]["multi"]) == 6
    assert "train" in capsys.readouterr().out
    assert main(["prepare", "aliccp", *options, "--set=datasets.aliccp.prepare.max_multi_len=0"]) == 2
