"""The trainer: selection on validation only, the weight average, determinism, resume after SIGKILL, NaN
guard, streaming."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from mtl import paths, pipeline
from mtl.errors import ConfigError, TrainingError
from mtl.models.embedding import RowEmbedding
from mtl.models.layers import InputPlanner
from mtl.training import state as state_module
from mtl.training.artifacts import load_trained_model
from mtl.training.checkpoint import load_checkpoint
from mtl.training.seeding import derive_seed
from mtl.training.state import RunState, averaged
from tests.support.models import SMALL, link_prepared, small_params
from tests.support.processes import kill_after_first_checkpoint

# big steps overfit the small fixture within a few epochs: validation loss turns up, early stopping acts
OVERFIT = [
    "train.lr=0.01",
    "train.embedding_lr=0.03",
    "train.batch_size=128",
    "models.shared_bottom.bottom_dims=[256, 256]",
    "train.early_stopping.metric=loss",
    "train.epochs=8",
]


def weights(data_dir: Path, dataset: str, model: str) -> dict[str, torch.Tensor]:
    return torch.load(paths.model_dir(data_dir, dataset, model) / "weights.pt", weights_only=True)


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def outcome(history: list[dict]) -> list[dict]:
    """History without timings (which differ between runs)."""
    return [{k: v for k, v in r.items() if "seconds" not in k and "samples_per_s" not in k} for r in history]


def private_copy(data_dir: Path, dataset: str) -> Path:
    """Replace the linked fixture by a real copy this test may modify."""
    target = data_dir / "prepared" / dataset
    source = target.resolve()
    target.unlink()
    shutil.copytree(source, target)
    return target


def test_early_stopping_restores_best_weights_and_never_reads_test(data_dir, tmp_path):
    prepared = private_copy(data_dir, "census")
    (prepared / "test.parquet").unlink()  # any attempt to read test would now fail
    params = small_params(*OVERFIT)
    result = pipeline.train("census", "shared_bottom", data_dir=data_dir, params=params)
    training = result["training"]
    history = json.loads((Path(result["model_dir"]) / "history.json").read_text())
    losses = [r["valid_loss"] for r in history]
    best = training["best_epoch"]
    assert training["stopped_early"]
    assert training["epochs_run"] == best + 2
    assert losses[best - 1] == min(losses)
    assert losses[-1] > losses[best - 1]
    assert result["valid"]["loss"] == losses[best - 1]
    # the kept weights are exactly those after the best epoch: a run stopped there by hand ends with them
    other = link_prepared(tmp_path / "other", prepared, "census")
    pipeline.train(
        "census", "shared_bottom", data_dir=other, params=small_params(*OVERFIT, f"train.epochs={best}")
    )
    assert_same_weights(
        weights(data_dir, "census", "shared_bottom"), weights(other, "census", "shared_bottom")
    )


def test_validating_on_test_is_refused(data_dir):
    with pytest.raises(ConfigError, match="never looks at test"):
        pipeline.train(
            "census", "mmoe", data_dir=data_dir, params=small_params("train.validation_split=test")
        )


def test_same_seed_same_model_other_seed_other_model(data_dir, tmp_path):
    runs = []
    for seed in (5, 5, 6):
        run_dir = link_prepared(tmp_path / f"run{len(runs)}", data_dir / "prepared" / "aliccp", "aliccp")
        pipeline.train(
            "aliccp", "mmoe", data_dir=run_dir, params=small_params(f"seed={seed}", "train.epochs=1")
        )
        runs.append(weights(run_dir, "aliccp", "mmoe"))
    assert_same_weights(runs[0], runs[1])
    assert not torch.equal(runs[0]["towers.0.head.weight"], runs[2]["towers.0.head.weight"])


def cli_command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "mtl", "--data-dir", str(data_dir), *args, *(f"--set={s}" for s in SMALL)]


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(data_dir, tmp_path, repo_root):
    overrides = ["train.epochs=6", "train.early_stopping.patience=6"]
    command = cli_command(data_dir, "train", "aliccp", "ple") + [f"--set={s}" for s in overrides]
    checkpoint = paths.checkpoint_dir(data_dir, "aliccp", "ple") / "last.pt"
    kill_after_first_checkpoint(command, checkpoint, repo_root)
    state = load_checkpoint(checkpoint)
    assert 1 <= state["epoch"] < 6
    assert not state["finished"]
    assert not (paths.model_dir(data_dir, "aliccp", "ple") / "weights.pt").exists()

    params = small_params(*overrides)
    resumed = pipeline.train("aliccp", "ple", data_dir=data_dir, params=params)
    assert resumed["training"]["resumed_from_epoch"] == state["epoch"]
    fresh = link_prepared(tmp_path / "fresh", data_dir / "prepared" / "aliccp", "aliccp")
    uninterrupted = pipeline.train("aliccp", "ple", data_dir=fresh, params=params)
    assert uninterrupted["training"]["resumed_from_epoch"] is None
    assert_same_weights(weights(data_dir, "aliccp", "ple"), weights(fresh, "aliccp", "ple"))
    history = json.loads((Path(resumed["model_dir"]) / "history.json").read_text())
    fresh_history = json.loads((Path(uninterrupted["model_dir"]) / "history.json").read_text())
    assert outcome(history) == outcome(fresh_history)
    assert resumed["valid"] == uninterrupted["valid"]


def test_a_checkpoint_of_another_run_is_not_resumed(data_dir, caplog):
    pipeline.train("census", "mmoe", data_dir=data_dir, params=small_params("train.epochs=1"))
    with caplog.at_level(logging.WARNING, logger="mtl.training.checkpoint"):
        again = pipeline.train(
            "census", "mmoe", data_dir=data_dir, params=small_params("train.epochs=1", "seed=9")
        )
    assert again["training"]["resumed_from_epoch"] is None
    # the warning names the model's own checkpoint (not the staging folder the step trained in) and why
    (warning,) = [r.getMessage() for r in caplog.records if "belongs to another run" in r.getMessage()]
    checkpoints = paths.checkpoint_dir(data_dir, "census", "mmoe").resolve()
    assert warning.startswith(str(checkpoints))
    assert ".staging" not in warning
    assert "differs in seed" in warning


def test_a_checkpoint_written_by_other_code_is_not_resumed(data_dir, monkeypatch):
    """Same data, params and seed, but the mtl sources changed (a fix): train again, do not reuse."""
    from mtl.training import workflow

    params = small_params("train.epochs=1")
    pipeline.train("census", "mmoe", data_dir=data_dir, params=params)
    same = pipeline.train("census", "mmoe", data_dir=data_dir, params=params)
    assert same["training"]["resumed_from_epoch"] == 1  # the same code: the finished run is reused
    monkeypatch.setattr(workflow, "code_version", lambda: "other-code")
    fixed = pipeline.train("census", "mmoe", data_dir=data_dir, params=params)
    assert fixed["training"]["resumed_from_epoch"] is None


def test_a_checkpoint_past_the_run_s_epochs_is_not_resumed(data_dir, tmp_path, caplog):
    """Epochs are outside the resume fingerprint so that a run can be extended; lowering them must train
    the shorter run, not hand back the longer run's weights and history."""
    longer = pipeline.train("census", "mmoe", data_dir=data_dir, params=small_params("train.epochs=2"))
    assert longer["training"]["epochs_run"] == 2
    with caplog.at_level(logging.WARNING, logger="mtl.training.checkpoint"):
        shorter = pipeline.train("census", "mmoe", data_dir=data_dir, params=small_params("train.epochs=1"))
    assert shorter["training"]["resumed_from_epoch"] is None
    assert shorter["training"]["epochs_run"] == 1
    (warning,) = [r.getMessage() for r in caplog.records if "past this run" in r.getMessage()]
    assert warning.startswith(str(paths.checkpoint_dir(data_dir, "census", "mmoe").resolve()))
    assert "after epoch 2, past this run's 1" in warning
    fresh = link_prepared(tmp_path / "fresh", data_dir / "prepared" / "census", "census")
    pipeline.train("census", "mmoe", data_dir=fresh, params=small_params("train.epochs=1"))
    assert_same_weights(weights(data_dir, "census", "mmoe"), weights(fresh, "census", "mmoe"))
    # and the 1-epoch checkpoint now in place still extends to 2 epochs by resuming
    extended = pipeline.train("census", "mmoe", data_dir=data_dir, params=small_params("train.epochs=2"))
    assert extended["training"]["resumed_from_epoch"] == 1
    assert extended["training"]["epochs_run"] == 2


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch notices the foreign pickle
def test_a_malicious_checkpoint_is_not_unpickled(data_dir, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    checkpoint = paths.checkpoint_dir(data_dir, "census", "mmoe") / "last.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(pickle.dumps({"format": 1, "payload": Exploit()}))
    with pytest.raises(TrainingError, match="not a readable checkpoint"):
        pipeline.train("census", "mmoe", data_dir=data_dir, params=small_params("train.epochs=1"))
    assert not marker.exists()


def test_nan_loss_names_model_epoch_and_step(data_dir):
    prepared = private_copy(data_dir, "census")
    table = pq.read_table(prepared / "train.parquet")
    poisoned_row = 3000
    values = table.column("num2").to_numpy().copy()
    values[poisoned_row] = float("nan")
    table = table.set_column(table.schema.get_field_index("num2"), "num2", [values])
    pq.write_table(table, prepared / "train.parquet")
    params = small_params()
    order = torch.randperm(
        table.num_rows, generator=torch.Generator().manual_seed(derive_seed(params.seed, 1, 0))
    )
    step = int((order == poisoned_row).nonzero()) // params.train.batch_size + 1
    with pytest.raises(TrainingError, match=rf"^shared_bottom: .* at epoch 1, step {step};"):
        pipeline.train("census", "shared_bottom", data_dir=data_dir, params=params)
    assert not paths.checkpoint_dir(data_dir, "census", "shared_bottom").exists()


def test_streaming_trains_and_scores_like_in_memory(data_dir):
    params = small_params("train.max_in_memory_rows=1000", "train.stream_chunk_rows=1500", "train.epochs=2")
    result = pipeline.train("aliccp", "esmm", data_dir=data_dir, params=params)
    assert result["training"]["streaming"] is True
    assert result["valid"]["outputs"]["click"]["auc"] > 0.6
    streamed = pipeline.evaluate("aliccp", "esmm", data_dir=data_dir, params=params)["metrics"]
    in_memory = pipeline.evaluate("aliccp", "esmm", data_dir=data_dir, params=small_params())["metrics"]
    for output, metrics in in_memory["outputs"].items():  # other batch boundaries: float rounding only
        assert streamed["outputs"][output] == pytest.approx(metrics, rel=1e-6)


def test_model_directory_rebuilds_the_model(data_dir):
    params = small_params("train.epochs=1")
    pipeline.train("aliccp", "aitm", data_dir=data_dir, params=params)
    result = pipeline.evaluate("aliccp", "aitm", data_dir=data_dir, params=params, split="valid")
    model, config = load_trained_model(paths.model_dir(data_dir, "aliccp", "aitm"))
    assert config["hyperparameters"]["embed_dim"] == 8
    assert config["content_hash"] == result["metrics"]["content_hash"]
    predictions = pq.read_table(Path(result["predictions"]))
    assert predictions.column_names == ["row_id", "click", "purchase", "p_click", "p_purchase", "p_ctcvr"]
    summary = json.loads((paths.model_dir(data_dir, "aliccp", "aitm") / "metrics.json").read_text())
    assert summary["splits"]["valid"]["outputs"] == result["metrics"]["outputs"]
    assert summary["training"]["epochs_run"] == 1
    assert isinstance(model, torch.nn.Module)


def test_epoch_callback_sees_each_epoch_once_as_flat_floats(data_dir):
    seen: list[tuple[int, dict]] = []
    result = pipeline.train(
        "census",
        "mmoe",
        data_dir=data_dir,
        params=small_params("train.epochs=2", "train.early_stopping.patience=2"),
        on_epoch_end=lambda epoch, metrics: seen.append((epoch, metrics)),
    )
    assert [epoch for epoch, _ in seen] == [1, 2]
    for _, metrics in seen:
        assert all(isinstance(value, float) for value in metrics.values())
        assert {
            "train_loss",
            "train_loss_income",
            "valid_auc_mean",
            "valid_marital_auc",
            "samples_per_s",
        } <= set(metrics)
    history = json.loads((Path(result["model_dir"]) / "history.json").read_text())
    assert [pytest.approx(m) for _, m in seen] == [{k: float(v) for k, v in r.items()} for r in history]


def test_more_epochs_continue_a_finished_run(data_dir):
    pipeline.train("census", "ple", data_dir=data_dir, params=small_params("train.epochs=1"))
    more = pipeline.train("census", "ple", data_dir=data_dir, params=small_params("train.epochs=2"))
    assert more["training"]["resumed_from_epoch"] == 1
    assert more["training"]["epochs_run"] == 2


def test_a_datasets_own_train_keys_reach_its_models_only(data_dir):
    """datasets.<dataset>.train lays train.* keys over train: for that dataset's models only."""
    params = small_params(
        "train.epochs=3", "train.early_stopping.patience=5", "datasets.census.train.epochs=1"
    )
    assert params.for_dataset("census").train.epochs == 1
    assert params.for_dataset("aliccp").train.epochs == 3
    assert params.for_dataset("aliccp") is params
    census = pipeline.train("census", "shared_bottom", data_dir=data_dir, params=params)
    aliccp = pipeline.train("aliccp", "shared_bottom", data_dir=data_dir, params=params)
    assert census["training"]["epochs_run"] == 1
    assert aliccp["training"]["epochs_run"] == 3


def test_the_batch_thread_plans_each_batch_and_the_model_is_the_same(tmp_path, prepared_root, monkeypatch):
    plans: list[str] = []  # the thread of every plan
    distinct: dict[str, set[str]] = {}  # per run, the threads that looked for a batch's distinct rows
    plan, find = InputPlanner.__call__, RowEmbedding.distinct_rows

    def planner(self, features):
        plans.append(threading.current_thread().name)
        return plan(self, features)

    trained = {}
    for name, call in (("planned", planner), ("unplanned", lambda self, features: features)):
        monkeypatch.setattr(InputPlanner, "__call__", call)

        def spy(self, ids, marker=None, run=name):
            distinct.setdefault(run, set()).add(threading.current_thread().name)
            return find(self, ids, marker)

        monkeypatch.setattr(RowEmbedding, "distinct_rows", spy)
        run_dir = link_prepared(tmp_path / name, prepared_root / "aliccp", "aliccp")
        pipeline.train("aliccp", "mmoe", data_dir=run_dir, params=small_params("train.epochs=2"))
        trained[name] = weights(run_dir, "aliccp", "mmoe")
    assert plans
    assert set(plans) == {"mtl-batches"}  # every batch, never on the training thread
    # planned, the step takes the batch's distinct rows from the plan; unplanned, it finds them itself
    assert distinct == {"planned": {"mtl-batches"}, "unplanned": {"MainThread"}}
    assert_same_weights(trained["planned"], trained["unplanned"])


def test_validation_selection_and_the_kept_weights_are_the_moving_average(data_dir, tmp_path):
    """train.weight_average_decay: training goes on from the epoch-end weights (exactly as without an
    average); the weights validated, selected and kept are the average a <- d*a + (1-d)*w."""
    decay, epochs = 0.5, 3
    plain = link_prepared(tmp_path / "plain", data_dir / "prepared" / "census", "census")
    epoch_end = []  # the epoch-end weights of a run without an average, one epoch at a time
    for epoch in range(1, epochs + 1):
        settings = small_params(f"train.epochs={epoch}", "train.weight_average_decay=0.0")
        pipeline.train("census", "mmoe", data_dir=plain, params=settings)
        epoch_end.append(load_checkpoint(paths.checkpoint_dir(plain, "census", "mmoe") / "last.pt")["model"])
    expected = [epoch_end[0]]
    for weights_after in epoch_end[1:]:
        expected.append(
            {
                k: decay * expected[-1][k] + (1 - decay) * v if v.is_floating_point() else v
                for k, v in weights_after.items()
            }
        )

    params = small_params(
        f"train.epochs={epochs}", "train.early_stopping.patience=5", f"train.weight_average_decay={decay}"
    )
    result = pipeline.train("census", "mmoe", data_dir=data_dir, params=params)
    checkpoint = load_checkpoint(paths.checkpoint_dir(data_dir, "census", "mmoe") / "last.pt")
    assert_same_weights(checkpoint["model"], epoch_end[-1])  # swapping the average in and out left no trace
    for key, value in expected[-1].items():
        torch.testing.assert_close(checkpoint["average"][key], value, rtol=0, atol=1e-6)
    best = result["training"]["best_epoch"]
    kept = weights(data_dir, "census", "mmoe")
    for key, value in expected[best - 1].items():
        torch.testing.assert_close(kept[key], value, rtol=0, atol=1e-6)
    assert not torch.equal(kept["towers.0.head.weight"], epoch_end[best - 1]["towers.0.head.weight"])
    # each epoch's validation scored the average: the kept weights reproduce the best epoch's figures
    history = json.loads((Path(result["model_dir"]) / "history.json").read_text())
    rescored = pipeline.evaluate("census", "mmoe", data_dir=data_dir, params=params, split="valid")
    assert rescored["metrics"]["loss"] == pytest.approx(history[best - 1]["valid_loss"], rel=1e-6)
    assert rescored["metrics"]["loss"] == pytest.approx(result["valid"]["loss"], rel=1e-6)


def test_the_average_is_swapped_into_the_model_in_place_and_back(monkeypatch):
    monkeypatch.setattr(state_module, "SWAP_CHUNK", 7)  # several chunks per tensor, a ragged last one
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    average = {k: v + 1 if v.is_floating_point() else v + 3 for k, v in before.items()}
    held = {k: v.clone() for k, v in average.items()}
    storage = [p.data_ptr() for p in model.parameters()]

    def look_inside_then_fail() -> None:
        with averaged(model, average):
            assert all(torch.equal(model.state_dict()[k], held[k]) for k in held)
            assert all(torch.equal(average[k], before[k]) for k in before)
            assert [p.data_ptr() for p in model.parameters()] == storage  # optimisers keep their tensors
            raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        look_inside_then_fail()
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)
    assert all(torch.equal(average[k], held[k]) for k in held)
    with averaged(model, None):  # no average: the model is left alone
        assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)


def test_the_moving_average_starts_at_the_first_weights_and_keeps_integer_buffers_current():
    model = torch.nn.BatchNorm1d(3)
    state = RunState()
    first = {k: v.clone() for k, v in model.state_dict().items()}
    state.update_average(model, 0.25)
    assert all(torch.equal(state.average[k], first[k]) for k in first)
    assert state.average["weight"].data_ptr() != model.weight.data_ptr()  # a copy, not the model's
    with torch.no_grad():
        model.weight.add_(4.0)
        model.num_batches_tracked.add_(5)
    state.update_average(model, 0.25)
    assert torch.equal(state.average["weight"], first["weight"] + 3.0)  # 0.25 * w1 + 0.75 * (w1 + 4)
    assert state.average["num_batches_tracked"].item() == 5


def test_a_better_epoch_is_kept_in_the_tensors_of_the_previous_best():
    """One CPU copy of the best weights for the whole run: a second one would raise peak memory."""
    model = torch.nn.Linear(3, 2)
    state = RunState()
    rule = {"higher_is_better": False, "min_delta": 0.0, "patience": 2}
    state.observe(1, 1.0, {}, model, **rule)
    storage = {k: v.data_ptr() for k, v in state.best_weights.items()}
    assert state.best_weights["weight"].data_ptr() != model.weight.data_ptr()
    with torch.no_grad():
        model.weight.add_(1.0)
    state.observe(2, 2.0, {}, model, **rule)  # worse: the best stays
    assert not torch.equal(state.best_weights["weight"], model.weight)
    state.observe(3, 0.5, {}, model, **rule)  # better: kept, in the same tensors
    assert (state.best_epoch, state.bad_epochs) == (3, 0)
    assert torch.equal(state.best_weights["weight"], model.weight)
    assert {k: v.data_ptr() for k, v in state.best_weights.items()} == storage
