"""Small synthetic look-alike data and a small MetaHeac for the MetaHeac tests (fixtures via conftest).

The data comes from the project's own synthetic source (legacy-format pickles in ``metaheac_data.zip``,
read back through the restricted unpickler) and is prepared by the look-alike dataset's ``prepare``
without the Great Expectations run, which the data tests cover.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from mtl import paths, pipeline
from mtl.config import Params, load_params
from mtl.datasets.archives import extract_archive
from mtl.datasets.base import Manifest
from mtl.datasets.lookalike import ARCHIVE, Lookalike
from mtl.datasets.prepared import DatasetMetadata

DATA = [
    "datasets.lookalike.synthetic.users=3000",
    "datasets.lookalike.synthetic.train_campaigns=16",
    "datasets.lookalike.synthetic.hot_campaigns=4",
    "datasets.lookalike.synthetic.cold_campaigns=6",
    "datasets.lookalike.synthetic.train_rows=[150, 600]",
    "datasets.lookalike.synthetic.hot_rows=[400, 700]",
    "datasets.lookalike.synthetic.cold_rows=[30, 80]",
]
# a small network and batches: meta-training takes a few seconds on 2 cores
SMALL = [
    *DATA,
    "models.metaheac.embed_dim=8",
    "models.metaheac.n_experts=4",
    "models.metaheac.expert_dims=[16, 16]",
    "models.metaheac.n_critics=3",
    "models.metaheac.gate_dims=[16]",
    "models.metaheac.embed_init_std=0.1",
    "metaheac.meta.epochs=2",
    "metaheac.meta.batch_size=64",
    "metaheac.meta.task_count=3",
    "metaheac.meta.checkpoint_every=10",
    # the official procedure's shape (from the initialisation, one inner step, Adam at test time): the
    # meta-training tests compare against one-step MAML; tests/training/test_metaheac_quality.py covers
    # the defaults
    "metaheac.meta.start=fresh",
    "metaheac.meta.inner_steps=1",
    "metaheac.meta.outer_lr=0.01",
    "metaheac.adaptation.epochs=2",
    "metaheac.adaptation.optimizer=adam",
    "metaheac.adaptation.lr=0.01",
    "metaheac.adaptation.batch_size=64",
    "metaheac.adaptation.group_size=3",
    "metaheac.baselines.batch_size=64",
    "metaheac.baselines.lr=0.01",
    "train.progress=false",
    "tracking.enabled=false",  # MLflow is covered by tests/tracking and tests/registry
]


def small_params(*overrides: str) -> Params:
    return load_params([*SMALL, *overrides])


@contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread for these tiny networks: a second thread's synchronisation costs more than it
    saves (10x more on a busy machine); the previous setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def single_thread() -> Iterator[None]:
    with one_thread():
        yield


def build_lookalike(data_dir: Path, params: Params) -> DatasetMetadata:
    """Generate the synthetic raw files and prepare them into ``data_dir`` (no registry, no GX run)."""
    dataset = Lookalike()
    raw = paths.raw_dir(data_dir, "lookalike")
    dataset.generate(raw, params)
    extract_archive(raw / ARCHIVE, raw)
    manifest = Manifest(dataset="lookalike", source="synthetic", format="metaheac-pickles")
    return dataset.prepare(raw, paths.prepared_dir(data_dir, "lookalike"), manifest, params)


def fresh_data_dir(tmp_path: Path, root: Path, *, models: bool = False) -> Path:
    """A data directory whose prepared data links to ``root``'s; ``models`` copies its trained models."""
    data_dir = tmp_path / "data"
    (data_dir / "prepared").mkdir(parents=True)
    (data_dir / "prepared" / "lookalike").symlink_to(
        root / "prepared" / "lookalike", target_is_directory=True
    )
    if models:
        shutil.copytree(root / "models", data_dir / "models")
    return data_dir


@pytest.fixture(scope="session")
def lookalike_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lookalike")
    build_lookalike(root, small_params())
    return root


@pytest.fixture(scope="session")
def metaheac_root(lookalike_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small MetaHeac and its plain baseline, trained once per session on ``lookalike_root``."""
    root = fresh_data_dir(tmp_path_factory.mktemp("metaheac"), lookalike_root)
    with one_thread():
        pipeline.train("lookalike", "metaheac", data_dir=root, params=small_params())
    return root
