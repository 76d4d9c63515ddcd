"""``mtl register`` and ``mtl registry``: exit codes, printed decisions, tables and lineage."""

from __future__ import annotations

import json
import shutil

import pytest

from mtl import cli, paths
from mtl.tracking.runs import RUN_FILE


@pytest.fixture
def cli_data(tmp_path, tracked_model):
    """A data directory holding the session's trained model, its run file naming a private store copy."""
    db = tmp_path / "mlflow.db"
    shutil.copy2(tracked_model.db, db)
    data_dir = tmp_path / "data"
    (data_dir / "prepared").mkdir(parents=True)
    (data_dir / "prepared" / "aliccp").symlink_to(tracked_model.data_dir / "prepared" / "aliccp")
    model_dir = paths.model_dir(data_dir, "aliccp", "mmoe")
    shutil.copytree(paths.model_dir(tracked_model.data_dir, "aliccp", "mmoe"), model_dir)
    record = json.loads((model_dir / RUN_FILE).read_text())
    record["tracking_uri"] = f"sqlite:///{db}"
    (model_dir / RUN_FILE).write_text(json.dumps(record))
    return ["--data-dir", str(data_dir), "--set", f"tracking.uri=sqlite:///{db}"], data_dir


def test_register_and_registry_commands(cli_data, capsys):
    options, data_dir = cli_data
    strict = [*options, "--set", "gate.aliccp.floors.click=1.0"]
    assert cli.main(["register", "aliccp", "mmoe", *strict]) == 0  # a rejection is not an error
    out = capsys.readouterr().out
    assert "aliccp-mmoe version 1: not promoted (aliases: challenger)" in out
    assert "floors: fail: click AUC" in out

    assert cli.main(["registry", "list", *options]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["model", "ver", "aliases", "decision"]
    assert table[1].split()[:4] == ["aliccp-mmoe", "1", "challenger", "not"]

    assert (
        cli.main(["registry", "promote", "aliccp-mmoe", "1", "--reason", "reviewed by hand", *options]) == 0
    )
    assert "champion is now version 1 (was none)" in capsys.readouterr().out
    assert cli.main(["registry", "show", "aliccp-mmoe", *options, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["aliases"] == ["challenger", "champion"]
    assert shown["history"]["mtl.promotion_reason"].endswith("reviewed by hand")
    assert shown["run"]["dag_id"] == "mtl_retrain_aliccp"

    assert cli.main(["registry", "rollback", "aliccp-mmoe", "--reason", "oops", *options]) == 2
    assert "has no previous champion to roll back to" in capsys.readouterr().err
    assert cli.main(["registry", "show", "aliccp-mmoe", "7", *options]) == 2
    assert "aliccp-mmoe 7" in capsys.readouterr().err
    registration = json.loads(paths.registration_file(data_dir, "aliccp", "mmoe").read_text())
    assert registration["decision"] == "not promoted"


def test_register_without_a_tracked_run_is_a_clear_error(tmp_path, tracked_model, capsys):
    shutil.copy2(tracked_model.db, tmp_path / "mlflow.db")
    store = ["--set", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    assert cli.main(["register", "census", "mmoe", "--data-dir", str(tmp_path), *store]) == 2
    assert "records no MLflow run (no tracking.json)" in capsys.readouterr().err
