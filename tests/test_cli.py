"""``mtl train`` / ``mtl evaluate`` from the command line, hyperparameters overridden with --set."""

from __future__ import annotations

import json

import pytest

from mtl import cli, paths
from tests.support.models import SMALL


def run(data_dir, *args: str) -> int:
    return cli.main(["--data-dir", str(data_dir), *args])


def test_train_and_evaluate_with_overrides(data_dir, capsys):
    sets = [f"--set={s}" for s in SMALL]
    code = run(data_dir, "train", "aliccp", "shared_bottom", *sets, "--set", "train.epochs=1",
               "--set", "models.shared_bottom.embed_dim=4")  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "aliccp/shared_bottom: 1 epochs" in out
    assert "ctcvr" in out
    model_dir = paths.model_dir(data_dir, "aliccp", "shared_bottom")
    config = json.loads((model_dir / "model.json").read_text())
    assert config["hyperparameters"]["embed_dim"] == 4
    assert config["train"]["epochs"] == 1
    assert len(json.loads((model_dir / "history.json").read_text())) == 1

    assert run(data_dir, "evaluate", "aliccp", "shared_bottom", "--split", "valid", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "valid"
    assert sorted(p.rsplit("/", 1)[1] for p in result["plots"]) == sorted(
        f"{kind}_{output}.json" for kind in ("roc", "pr") for output in ("click", "purchase", "ctcvr")
    )
    roc = json.loads((model_dir / "eval" / "valid" / "plots" / "roc_click.json").read_text())
    assert roc[0]["fpr"] == 0.0
    assert roc[-1]["tpr"] == 1.0
    assert len(roc) <= 302


def test_unknown_model_and_unknown_parameter_are_clear_errors(data_dir, capsys):
    assert run(data_dir, "train", "aliccp", "dcn") == 2
    assert "unknown model 'dcn'; choose one of single_task, shared_bottom, esmm" in capsys.readouterr().err
    assert run(data_dir, "train", "aliccp", "mmoe", "--set", "models.mmoe.n_expert=3") == 2
    assert "did you mean 'models.mmoe.n_experts'" in capsys.readouterr().err
    assert run(data_dir, "train", "census", "esmm", *[f"--set={s}" for s in SMALL]) == 2
    assert "esmm needs a dataset whose two tasks form a click -> purchase funnel" in capsys.readouterr().err
    assert run(data_dir, "evaluate", "census", "mmoe") == 2
    assert "train the model first" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert "shared_bottom" in capsys.readouterr().out
