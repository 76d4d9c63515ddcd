"""Every command with bad arguments: exit status 2, one paragraph naming what was wrong, and nothing
created or removed -- no folder, file or MLflow run (the state folder and the data folder unchanged)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from mtl import cli

CASES = {
    "unknown dataset": (["download", "movielens"], "invalid choice: 'movielens'"),
    "unknown source": (["download", "census", "--source", "kaggle"], "no source 'kaggle'; choose one of uci"),
    "missing --from path": (
        ["download", "census", "--source", "uci", "--from", "{tmp}/no/such.tar.gz"],
        "no such file or folder",
    ),
    "source needing --from": (["download", "aliccp", "--source", "tianchi"], "pass --from"),
    "unsupported --from scheme": (["download", "census", "--source", "uci", "--from", "ftp://x/y"], "scheme"),
    "unknown model": (["train", "census", "bogus"], "unknown model 'bogus'; choose one of single_task"),
    "model without its funnel": (["train", "census", "esmm"], "esmm needs a dataset whose two tasks form"),
    "multi-task model on campaigns": (["train", "lookalike", "mmoe"], "models for lookalike: metaheac"),
    "campaign model on a multi-task dataset": (["train", "aliccp", "metaheac"], "metaheac needs"),
    "unknown model to evaluate": (["evaluate", "aliccp", "dcn"], "unknown model 'dcn'"),
    "unknown split": (["evaluate", "census", "mmoe", "--split", "holdout"], "no split 'holdout'"),
    "campaign model on a plain split": (["evaluate", "lookalike", "metaheac", "--split", "test"], "test_hot"),
    "unknown model to register": (["register", "census", "bogus"], "unknown model 'bogus'"),
    "unknown validation stage": (["validate", "census", "--stage", "final"], "invalid choice: 'final'"),
    "unknown dataset for data": (["data", "criteo"], "invalid choice: 'criteo'"),
    "unknown dataset for run": (["run", "--dataset", "criteo"], "invalid choice: 'criteo'"),
    "unknown parameter": (["prepare", "census", "--set", "train.epoch=1"], "did you mean 'train.epochs'"),
    "override without =": (["train", "census", "mmoe", "--set", "train.epochs"], "must look like KEY=VALUE"),
    "override of the wrong type": (["train", "census", "mmoe", "--set", "train.epochs=many"], "train.epochs"),
    "missing --params file": (["--params", "{tmp}/none.yaml", "train", "census", "mmoe"], "no such param"),
    "params file with an unknown key": (["--params", "{tmp}/bad.yaml", "prepare", "census"], "'trian'"),
    "params show of nothing": (["params", "show", "nothing_here"], "no parameter starts with"),
    "registry show without a name": (["registry", "show"], "the following arguments are required: name"),
    "promote without a reason": (["registry", "promote", "aliccp-mmoe", "1"], "--reason"),
    "prepare before download": (["prepare", "census"], "manifest.json not found: run `mtl download census`"),
    "validate before download": (["validate", "census"], "not found: run `mtl download census`"),
    "train before prepare": (["train", "census", "mmoe"], "run `mtl prepare census` first"),
    "evaluate before train": (["evaluate", "census", "mmoe"], "train the model first"),
    "register before train": (["register", "census", "mmoe"], "records no MLflow run (no tracking.json)"),
}


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every path under the roots with its size and modification time."""
    out = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            stat = path.lstat()
            out[str(path)] = (stat.st_size if path.is_file() else 0, stat.st_mtime_ns)
    return out


@pytest.fixture
def workdir(tmp_path, mtl_home, monkeypatch):
    (tmp_path / "bad.yaml").write_text("trian:\n  epochs: 1\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_bad_arguments_fail_fast_and_touch_nothing(case, workdir, mtl_home, capsys):
    argv, expected = CASES[case]
    argv = [a.replace("{tmp}", str(workdir)) for a in argv]
    data_dir = workdir / "data"
    before = snapshot(workdir, mtl_home)
    started = time.perf_counter()
    code = None
    with contextlib.suppress(SystemExit):  # argparse's own errors exit
        code = cli.main(["--data-dir", str(data_dir), *argv])
    seconds = time.perf_counter() - started
    err = capsys.readouterr().err
    if code is None:
        code = 2
    assert code == 2, err
    assert expected in err, err
    lines = err.splitlines()
    assert 1 <= len(lines) <= 3, err  # one paragraph
    assert all(line.strip() for line in lines), err
    assert "Traceback" not in err
    assert snapshot(workdir, mtl_home) == before, f"{case}: files changed"
    assert seconds < 5.0  # generous on a loaded machine; typically well under 0.1 s in process
    assert not os.environ.get("MTL_TEST_KILL_AT")
