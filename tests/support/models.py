"""Small, fast settings, data-directory helpers and the planted-signal prepared fixtures for tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtl.catalog import supervised_models
from mtl.config import Params, load_params
from tests.support.prepared import write_synthetic_prepared

ROWS = {"train": 6000, "valid": 2000, "test": 2000}

# MetaHeac is the look-alike model (it needs the dataset's user/ad field roles): tests over the multi-task
# fixtures take the other models
MULTI_TASK_MODELS = supervised_models()

# Small networks and batches: every model trains in a second or two on 2 cores.
SMALL = [
    "train.epochs=3",
    "train.batch_size=256",
    "train.eval_batch_size=4096",
    "train.lr=0.003",
    "train.progress=false",
    "tracking.enabled=false",  # MLflow is covered by tests/tracking and tests/registry
    *(f"models.{m}.embed_dim=8" for m in ("single_task", "shared_bottom", "esmm", "mmoe", "ple", "aitm")),
    "models.single_task.tower_dims=[32, 16]",
    "models.shared_bottom.bottom_dims=[32]",
    "models.shared_bottom.tower_dims=[16]",
    "models.esmm.tower_dims=[32, 16]",
    "models.mmoe.n_experts=4",
    "models.mmoe.expert_dims=[32]",
    "models.mmoe.tower_dims=[16]",
    "models.ple.expert_dims=[32]",
    "models.ple.tower_dims=[16]",
    "models.aitm.tower_dims=[32, 16]",
]


def small_params(*overrides: str) -> Params:
    return load_params([*SMALL, *overrides])


def link_prepared(data_dir: Path, prepared: Path, dataset: str) -> Path:
    """Make ``prepared`` the ``prepared/<dataset>`` of ``data_dir`` (a link, not a copy); returns data_dir."""
    (data_dir / "prepared").mkdir(parents=True, exist_ok=True)
    (data_dir / "prepared" / dataset).symlink_to(Path(prepared).resolve(), target_is_directory=True)
    return data_dir


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Planted-signal Ali-CCP and Census fixtures (``tests.support.prepared``), written once per session."""
    root = tmp_path_factory.mktemp("prepared")
    write_synthetic_prepared(root / "aliccp", "aliccp", rows=ROWS, seed=1)
    write_synthetic_prepared(root / "census", "census", rows=ROWS, seed=2)
    return root


@pytest.fixture
def data_dir(tmp_path: Path, prepared_root: Path) -> Path:
    """A fresh data directory whose prepared/ datasets are the session's fixtures."""
    for dataset in ("aliccp", "census"):
        link_prepared(tmp_path, prepared_root / dataset, dataset)
    return tmp_path


@pytest.fixture(params=["native", "torch"])
def kernels(request, monkeypatch):
    """A test using it runs twice: with the C kernels (``mtl.models.row_kernels``) and the torch path."""
    from mtl.models import row_kernels

    if request.param == "native":
        assert row_kernels.library() is not None, "the C kernels did not build (is a C compiler installed?)"
    else:
        monkeypatch.setattr(row_kernels, "library", lambda: None)
    return request.param


def loss_curve(model, forward, optimizers, split, steps: int) -> list[float]:
    """Per-step losses (each task's mean loss term, summed) of ``steps`` optimiser steps on consecutive
    200-row slices of ``split``; ``forward`` maps features to logits (the model, or a reference of it)."""
    import torch

    curve = []
    for step in range(steps):
        batch = split.slice(step * 200, step * 200 + 200)
        terms = model.loss_terms(forward(batch.features), batch.labels)
        loss = torch.stack([t.mean() for t in terms.values()]).sum()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        curve.append(loss.item())
    return curve
