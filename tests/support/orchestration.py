"""DAG-run settings for tests: tiny data, open gates, and a clean copy of the working tree."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Tiny synthetic sizes for DAG runs: the whole graph in seconds per model.
TINY = {
    "datasets.aliccp.synthetic.train_rows": 30000,
    "datasets.aliccp.synthetic.test_rows": 6000,
    "datasets.aliccp.synthetic.click_rate": 0.2,  # enough positives for a model to learn in seconds
    "datasets.aliccp.synthetic.purchase_given_click_rate": 0.2,
    "datasets.census.synthetic.train_rows": 8000,
    "datasets.census.synthetic.test_rows": 3000,
    "datasets.census.synthetic.income_rate": 0.2,
    "datasets.lookalike.synthetic.users": 1500,
    "datasets.lookalike.synthetic.train_campaigns": 6,
    "datasets.lookalike.synthetic.hot_campaigns": 2,
    "datasets.lookalike.synthetic.cold_campaigns": 2,
    "datasets.lookalike.synthetic.train_rows": [60, 120],
    "datasets.lookalike.synthetic.hot_rows": [60, 120],
    "datasets.lookalike.synthetic.cold_rows": [40, 60],
    "train.batch_size": 512,
    "train.progress": False,
    "metaheac.meta.batch_size": 64,
    "metaheac.baselines.batch_size": 64,
    "metaheac.adaptation.batch_size": 64,
}
# Gate bounds a two-epoch model on tiny data clears (the real floors are in params.yaml).
OPEN_GATE = {
    "aliccp": {"floors": {"click": 0.5, "ctcvr": 0.5}},
    "census": {"floors": {"income": 0.5, "marital": 0.5}},
    "lookalike": {"floors": {"test_hot": 0.0, "test_cold": 0.0}},
}
WIDE_RATES = {f"gate.{d}.prediction_rate_ratio": [0.01, 100.0] for d in ("aliccp", "census", "lookalike")}


def tiny_conf(dataset: str, data_dir: str, models: list[str], **extra) -> dict:
    """A DAG run conf: tiny data, two epochs, open gate floors, the given data directory."""
    return {
        "data_dir": data_dir,
        "models": models,
        "epochs": 2,
        **OPEN_GATE[dataset],
        "overrides": {**TINY, **WIDE_RATES},
        **extra,
    }


def clean_copy(repo_root: Path, target: Path) -> Path:
    """The working tree as a fresh clone would have it: tracked and unignored files, a new git repo."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo_root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        source = repo_root / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-qm", "clean"], cwd=target, check=True)
    return target
