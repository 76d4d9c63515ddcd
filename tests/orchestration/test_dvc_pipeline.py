"""``dvc repro`` of the whole pipeline from a clean copy of the repository (tiny synthetic sizes): every
stage runs, metrics and plots are declared, a second repro is a no-op, an experiment re-runs only what
its parameter touches."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtl.config import apply_overrides
from tests.support.orchestration import TINY, clean_copy

pytestmark = pytest.mark.slow

MODELS = {"aliccp": ["mmoe"], "census": ["shared_bottom"], "lookalike": ["metaheac"]}


@pytest.fixture(scope="module")
def project(repo_root, tmp_path_factory):
    root = clean_copy(repo_root, tmp_path_factory.mktemp("clone"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    tiny = {
        **TINY,
        "train.epochs": 2,
        **{f"datasets.{d}.models": m for d, m in MODELS.items()},
        "gate.aliccp.floors": {"click": 0.5, "ctcvr": 0.5},
        "gate.census.floors": {"income": 0.5, "marital": 0.5},
        "gate.lookalike.floors": {"test_hot": 0.0, "test_cold": 0.0},
        **{f"gate.{d}.prediction_rate_ratio": [0.01, 100.0] for d in MODELS},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(apply_overrides(params, tiny), sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "commit", "-qam", "tiny sizes"], cwd=root, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTL_", "AIRFLOW"))}
    env["MTL_HOME"] = str(root / ".mtl")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return root, env


def dvc(project, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    root, env = project
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dvc")), "--wait-for-lock", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check and done.returncode != 0:
        pytest.fail(f"dvc {' '.join(args)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


@pytest.fixture(scope="module")
def reproduced(project) -> str:
    """The first ``dvc repro`` of the clean copy (its output); the census model's test metrics are kept
    aside, since a later experiment changes the workspace."""
    root, _ = project
    first = dvc(project, "repro")
    metrics = root / "data/models/census/shared_bottom/eval/test/metrics.json"
    shutil.copy(metrics, root.parent / "census-shared_bottom-by-dvc.json")
    return first.stdout


def test_repro_from_a_clean_clone_then_a_no_op_then_an_experiment(project, reproduced):
    root, _ = project
    for stage in (
        "download@aliccp",
        "prepare@lookalike",
        "train_aliccp@mmoe",
        "evaluate_census@shared_bottom",
        "evaluate_hot@metaheac",
        "evaluate_cold@metaheac",
        "register_lookalike@metaheac",
    ):
        assert f"Running stage '{stage}'" in reproduced
    for dataset, models in MODELS.items():
        for model in models:
            registration = json.loads((root / f"data/models/{dataset}/{model}/registration.json").read_text())
            assert registration["decision"] == "promoted", registration["reasons"]
    assert (root / "dvc.lock").is_file()

    second = dvc(project, "repro")
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date." in second.stdout
    assert "up to date" in dvc(project, "status").stdout

    metrics = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    flat = json.dumps(metrics)
    for dataset, outputs in {"aliccp": ["click", "ctcvr"], "census": ["income", "marital"]}.items():
        shown = next(v for k, v in _metrics_files(metrics).items() if f"models/{dataset}/" in k)
        for output in outputs:
            assert 0.0 <= shown["outputs"][output]["auc"] <= 1.0
    assert "test_hot" in flat
    assert "test_cold" in flat

    plots = json.loads(dvc(project, "plots", "show", "--json").stdout)
    assert not plots.get("errors"), plots["errors"]
    names = sorted(plots["data"])
    for curve in (
        "aliccp/mmoe/eval/test/plots/roc_click.json",
        "census/shared_bottom/eval/test/plots/roc_income.json",
        "metaheac/eval/test_hot/plots/roc_metaheac.json",
        "metaheac/eval/test_cold/plots/roc_metaheac.json",
        "aliccp/mmoe/history.json",
        "lookalike/metaheac/history.json",
    ):
        assert any(name.endswith(curve) for name in names), (curve, names)

    # a shared-filesystem remote: push everything, lose the prepared data, pull it back unchanged
    remote = root.parent / "shared-remote"
    dvc(project, "remote", "add", "--local", "--force", "--default", "shared", str(remote))
    dvc(project, "push")
    shutil.rmtree(root / "data" / "prepared" / "census")
    dvc(project, "pull", "prepare@census")
    assert "up to date" in dvc(project, "status", "prepare@census").stdout

    # an experiment on one model's params re-runs that model's chain only
    exp = dvc(project, "exp", "run", "-S", "models.shared_bottom.dropout=0.1")
    assert "Running stage 'train_census@shared_bottom'" in exp.stdout
    assert "Running stage 'train_aliccp@mmoe'" not in exp.stdout
    assert "Running stage 'prepare@census'" not in exp.stdout


def _metrics_files(shown: dict) -> dict:
    """``dvc metrics show --json``: {workspace: {data: {file: {data: {...}}}}} -> {file: metrics}."""
    files = {}
    for revision in shown.values():
        for name, entry in revision.get("data", {}).items():
            files[name] = entry.get("data", {})
    return files


def test_a_dag_run_gives_the_metrics_dvc_repro_gave(project, reproduced, tmp_path):
    """Same data and params through the DAG (dag.test) as through dvc repro: the same test metrics."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db
    from airflow.utils.state import DagRunState

    from tests.support.orchestration import tiny_conf

    root, _ = project
    db.initdb()
    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"), safe_mode=False).dags
    run = dag["mtl_retrain_census"].test(
        run_conf=tiny_conf("census", str(tmp_path / "data"), ["shared_bottom"])
    )
    assert run.state == DagRunState.SUCCESS
    by_dvc = json.loads((root.parent / "census-shared_bottom-by-dvc.json").read_text())["outputs"]
    by_dag = json.loads((tmp_path / "data/models/census/shared_bottom/eval/test/metrics.json").read_text())[
        "outputs"
    ]
    for output in ("income", "marital"):
        assert by_dag[output]["auc"] == pytest.approx(by_dvc[output]["auc"], abs=1e-9)
        assert by_dag[output]["logloss"] == pytest.approx(by_dvc[output]["logloss"], abs=1e-9)
