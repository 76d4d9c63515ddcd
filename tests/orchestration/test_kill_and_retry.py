"""Kill-and-retry of every DAG task's step: SIGKILL in the middle of download, prepare, train and
register (``MTL_TEST_KILL_AT``, see ``mtl.atomic``), then run it again: the outputs are complete and
the same as an uninterrupted run's, nothing is registered twice, no staging or partial file is left."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtl import cli, paths
from mtl.config import load_params
from mtl.registry import tags as T
from mtl.tracking.store import connect

SETS = [
    "datasets.census.synthetic.train_rows=2000",
    "datasets.census.synthetic.test_rows=1000",
    "train.epochs=2",
    "train.progress=false",
    "models.mmoe.n_experts=2",
    "models.mmoe.embed_dim=4",
    "models.mmoe.expert_dims=[16]",
    "models.mmoe.tower_dims=[8]",
    "gate.census.floors={}",
]


def mtl(data_dir: Path, *args: str) -> None:
    assert cli.main(["--data-dir", str(data_dir), *args, *(f"--set={s}" for s in SETS)]) == 0


def killed(data_dir: Path, at: str, *args: str, repo_root: Path) -> None:
    """Run ``mtl ARGS`` in a process that SIGKILLs itself at ``at`` (``step:point``)."""
    command = [sys.executable, "-m", "mtl", "--data-dir", str(data_dir), *args, *(f"--set={s}" for s in SETS)]
    env = {**os.environ, "MTL_TEST_KILL_AT": at, "PYTHONPATH": str(repo_root)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr


def tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def leftovers(data_dir: Path) -> list[str]:
    """Staging folders, set-aside copies and partial files anywhere under the data folder."""
    marks = (".staging", ".aside", ".part", ".tmp")
    return [str(p) for p in data_dir.rglob("*") if any(m in p.name for m in marks)]


@pytest.mark.slow  # five killed processes, each retried: 37 s here (135 s on a loaded machine)
def test_every_step_killed_midway_then_retried_ends_as_an_uninterrupted_run(tmp_path, repo_root):
    data, reference = tmp_path / "data", tmp_path / "reference"
    mtl(reference, "download", "census")
    mtl(reference, "prepare", "census")
    mtl(reference, "train", "census", "mmoe", "--set=tracking.enabled=false")

    # download: killed with half the files generated, then again between the two renames of the swap
    killed(data, "download:fetched", "download", "census", repo_root=repo_root)
    assert not paths.raw_manifest(data, "census").exists()
    mtl(data, "download", "census")
    assert tree(paths.raw_dir(data, "census")) == tree(paths.raw_dir(reference, "census"))

    # prepare: killed after writing the splits, before validating and publishing them
    killed(data, "prepare:written", "prepare", "census", repo_root=repo_root)
    assert not paths.prepared_dir(data, "census").exists()
    mtl(data, "prepare", "census")
    skip = ("metadata.json",)  # holds its creation time; its content hash is compared below
    assert tree(paths.prepared_dir(data, "census"), skip) == tree(
        paths.prepared_dir(reference, "census"), skip
    )
    # and killed between the renames of a swap over the good version: the next run puts it back first
    before = tree(paths.prepared_dir(data, "census"), skip)
    killed(data, "prepare:mid-swap", "prepare", "census", repo_root=repo_root)
    assert not paths.prepared_dir(data, "census").exists()  # the old version lies aside
    mtl(data, "prepare", "census")
    assert tree(paths.prepared_dir(data, "census"), skip) == before

    # train: killed after training, before the new model folder is swapped in
    killed(data, "train:before-swap", "train", "census", "mmoe", repo_root=repo_root)
    assert not paths.model_dir(data, "census", "mmoe").joinpath("weights.pt").exists()
    mtl(data, "train", "census", "mmoe")
    mine = torch.load(paths.model_dir(data, "census", "mmoe") / "weights.pt", weights_only=True)
    theirs = torch.load(paths.model_dir(reference, "census", "mmoe") / "weights.pt", weights_only=True)
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)

    # register: killed with the version created but not yet complete
    mtl(data, "evaluate", "census", "mmoe")
    killed(data, "register:version-created", "register", "census", "mmoe", repo_root=repo_root)
    mtl(data, "register", "census", "mmoe")
    run_id = (paths.model_dir(data, "census", "mmoe") / "tracking.json").read_text()
    with connect(load_params(SETS)) as tracking:
        versions = [
            v for v in tracking.client.search_model_versions("name='census-mmoe'") if v.run_id in run_id
        ]
    assert len(versions) == 1
    assert versions[0].tags.get(T.COMPLETE) == "complete"
    assert leftovers(data) == []
