"""The README's main command (`mtl run`, what `make run` calls) from a clean copy of the repository:
the DAG runs end to end, the table is printed, and a second run promotes nothing that is not better."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.orchestration import OPEN_GATE, TINY, WIDE_RATES, clean_copy

pytestmark = pytest.mark.slow


def test_main_job_prints_the_table_and_a_second_run_promotes_nothing_new(repo_root, tmp_path):
    root = clean_copy(repo_root, tmp_path / "clone")
    settings = {
        **TINY,
        **WIDE_RATES,
        "train.epochs": 2,
        "datasets.census.models": ["shared_bottom", "mmoe"],
        "gate.census.floors": OPEN_GATE["census"]["floors"],
    }
    command = [str(Path(sys.executable).with_name("mtl")), "run", "--dataset", "census"]
    command += [f"--set={key}={value}" for key, value in settings.items()]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTL_", "AIRFLOW"))}
    env["MTL_HOME"] = str(tmp_path / "state")

    def run() -> str:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    first = run()
    assert "mtl_retrain_census: succeeded" in first
    rows = {line.split()[1]: line for line in first.splitlines() if line.startswith("census ")}
    assert set(rows) == {"shared_bottom", "mmoe"}
    for line in rows.values():
        assert "income=0." in line
        assert "marital=0." in line
        assert " promoted " in line
        assert line.rstrip().endswith("challenger,champion")
    assert (root / "data" / "prepared" / "census" / "metadata.json").is_file()  # the default --data-dir
    assert f"MLflow: sqlite:///{tmp_path / 'state'}" in first

    second = run()
    for _dataset, _model, _aucs, gate, version, alias in table(second).values():
        assert gate.startswith(
            "not promoted: novelty: reproduces champion version 1 (same data, code and params)"
        )
        assert (version, alias) == ("2", "challenger")


def table(out: str) -> dict[str, list[str]]:
    """The printed table's rows by model: dataset, model, test AUC, gate, version, alias."""
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("census ")]
    return {row[1]: row for row in rows}
