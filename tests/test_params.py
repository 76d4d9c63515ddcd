"""Parameters from any folder: packaged defaults <- ./params.yaml <- $MTL_PARAMS <- --params <- --set."""

from __future__ import annotations

import json

import pytest

from mtl import cli
from mtl.config import DEFAULTS_FILE, effective_params, load_params


def test_packaged_defaults_are_a_byte_identical_copy_of_params_yaml(repo_root):
    assert DEFAULTS_FILE.read_bytes() == (repo_root / "params.yaml").read_bytes(), "run `make params`"


def test_layers_override_in_order_and_show_where_each_value_came_from(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no params.yaml here or above: the packaged defaults alone
    monkeypatch.delenv("MTL_PARAMS")
    assert load_params().train.epochs == load_params(path=DEFAULTS_FILE).train.epochs
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 4\n  lr: 0.5\n")
    env_file = tmp_path / "env.yaml"
    env_file.write_text("train:\n  lr: 0.25\n  batch_size: 64\n")
    monkeypatch.setenv("MTL_PARAMS", str(env_file))
    cli_file = tmp_path / "cli.yaml"
    cli_file.write_text("train:\n  batch_size: 32\n")

    params = load_params(["train.weight_decay=0.125"], path=cli_file)
    assert (params.train.epochs, params.train.lr, params.train.batch_size) == (4, 0.25, 32)
    assert params.train.weight_decay == 0.125
    _, origin = effective_params(cli_file)
    assert origin["train.epochs"].startswith("params.yaml")
    assert origin["train.lr"].startswith("MTL_PARAMS")
    assert origin["train.batch_size"].startswith("--params")
    assert origin["seed"] == "packaged defaults"

    args = [
        "--params",
        str(cli_file),
        "--set",
        "train.weight_decay=0.125",
        "params",
        "show",
        "train",
        "--json",
    ]
    assert cli.main(args) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["train.batch_size"] == {"value": 32, "from": f"--params ({cli_file})"}
    assert shown["train.weight_decay"]["from"] == "--set train.weight_decay=0.125"
    assert shown["train.epochs"]["value"] == 4
    assert "seed" not in shown


@pytest.mark.slow  # download -> prepare -> train -> evaluate -> register: 6-28 s (machine load)
def test_commands_run_from_an_empty_folder_outside_the_repository(tmp_path, monkeypatch, capsys):
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("MTL_PARAMS", "MTL_HOME", "MTL_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    sets = [
        "--set=datasets.census.synthetic.train_rows=2000",
        "--set=datasets.census.synthetic.test_rows=1000",
        "--set=train.epochs=1",
        "--set=train.progress=false",
        "--set=models.mmoe.n_experts=2",
        "--set=gate.census.floors={}",
    ]

    def mtl(*args: str) -> str:
        code = cli.main([*args, *sets])
        out, err = capsys.readouterr()
        assert code == 0, err
        return out

    mtl("download", "census")
    prepared = mtl("prepare", "census")
    mtl("train", "census", "mmoe")
    mtl("evaluate", "census", "mmoe")
    mtl("register", "census", "mmoe")
    listed = mtl("registry", "list")
    assert "census-mmoe" in listed
    content_hash = prepared.split("content hash ")[1].split()[0]
    assert content_hash[:12] in listed  # the same data hash in both
    assert (work / "data" / "prepared" / "census" / "metadata.json").is_file()
    assert (work / ".mtl" / "mlflow").is_dir()  # the state folder lies in the working folder
    assert not (work / "params.yaml").exists()
