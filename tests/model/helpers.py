"""Small, fast settings and data-directory helpers shared by the model and unit tests."""

from __future__ import annotations

from pathlib import Path

from mtl.config import Params, load_params
from mtl.models import MODELS

ROWS = {"train": 6000, "valid": 2000, "test": 2000}

# MetaHeac is the look-alike model (it needs the dataset's user/ad field roles): tests over the multi-task
# fixtures take the other models
MULTI_TASK_MODELS = [name for name in MODELS if name != "metaheac"]

# Small networks and batches: every model trains in a second or two on 2 cores.
SMALL = [
    "train.epochs=3",
    "train.batch_size=256",
    "train.eval_batch_size=4096",
    "train.embedding_lr=0.02",
    "train.lr=0.003",
    "train.progress=false",
    "tracking.enabled=false",  # MLflow is covered by tests/registry
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
