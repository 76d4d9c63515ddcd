"""MetaHeac meta-training: the MAML step, task sampling, determinism, resume after a kill."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mtl import cli, paths, pipeline
from mtl.datasets.prepared import load_metadata
from mtl.errors import ConfigError
from mtl.models import build_model
from mtl.training.campaigns import compact_ids, load_campaign_split
from mtl.training.checkpoint import load_checkpoint
from mtl.training.meta import MetaTrainer, TaskSampler, adapted_query_loss, add_embedding_l2
from mtl.training.metaheac_workflow import PLAIN_MODEL
from mtl.training.plain import train_plain
from tests.support.metaheac import SMALL, fresh_data_dir, small_params
from tests.support.processes import kill_after_first_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

FAST = ["metaheac.meta.epochs=1", "metaheac.baselines.enabled=false"]


@pytest.fixture(scope="module")
def train_split(lookalike_root):
    prepared = lookalike_root / "prepared" / "lookalike"
    return load_campaign_split(prepared, "train", load_metadata(prepared), torch.device("cpu"))


def weights(data_dir: Path, model: str = "metaheac") -> dict[str, torch.Tensor]:
    return torch.load(paths.model_dir(data_dir, "lookalike", model) / "weights.pt", weights_only=True)


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_meta_training_reduces_the_query_loss(metaheac_root):
    model_dir = paths.model_dir(metaheac_root, "lookalike", "metaheac")
    meta = json.loads((model_dir / "metrics.json").read_text())["training"]["meta"]
    assert meta["probe_query_loss_after"] < meta["probe_query_loss_before"] - 0.1, meta
    history = json.loads((model_dir / "history.json").read_text())
    assert [r["step"] for r in history][-1] == meta["meta_steps"]
    assert history[-1]["query_loss"] < history[0]["query_loss"]
    assert meta["steps_per_s"] > 0
    assert meta["train_campaigns"] == 16
    config = json.loads((model_dir / "model.json").read_text())
    assert config["model"] == "metaheac"
    assert config["spec"]["field_roles"]["ad_sparse"][0] == "advertiserId"
    assert (model_dir / "plain" / "weights.pt").is_file()  # the baseline trained beside it


def reference_query_loss(model, support, query, inner_lr: float, create_graph: bool) -> torch.Tensor:
    """MAML's query loss with the whole embedding table as a fast weight (no compact table)."""
    weights = dict(model.named_parameters())

    def loss(w, batch):
        return F.binary_cross_entropy_with_logits(
            functional_call(model, w, (batch.features,))["label"], batch.labels[:, 0]
        )

    grads = torch.autograd.grad(loss(weights, support), list(weights.values()), create_graph=create_graph)
    return loss({k: w - inner_lr * g for (k, w), g in zip(weights.items(), grads)}, query)


def test_the_compact_meta_step_equals_full_table_maml_of_both_orders(lookalike_root, train_split):
    params = small_params("metaheac.meta.inner_lr=0.5")  # a large inner step: second-order terms show
    metadata = load_metadata(lookalike_root / "prepared" / "lookalike")
    torch.manual_seed(0)
    model = build_model("metaheac", metadata, params)
    (support, query), *_ = TaskSampler(train_split, params.metaheac.meta).sample(np.random.default_rng(0))
    gradients = {}
    for second_order in (True, False):
        _, ours = adapted_query_loss(
            model,
            dict(model.named_parameters()),
            support,
            query,
            params.metaheac.meta,
            create_graph=second_order,
        )
        expected = reference_query_loss(model, support, query, 0.5, second_order)
        assert ours.item() == pytest.approx(expected.item(), abs=1e-6)
        got = torch.autograd.grad(ours, list(model.parameters()))
        want = torch.autograd.grad(expected, list(model.parameters()))
        for name, a, b in zip(dict(model.named_parameters()), got, want):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-4), name
        gradients[second_order] = got
    difference = max((a - b).abs().max().item() for a, b in zip(gradients[True], gradients[False]))
    assert difference > 1e-4  # first-order MAML drops the inner step's Hessian term


def test_the_embedding_l2_is_its_penalty_s_gradient(lookalike_root, train_split):
    metadata = load_metadata(lookalike_root / "prepared" / "lookalike")
    torch.manual_seed(0)
    model = build_model("metaheac", metadata, small_params())
    table = model.input.embedding.weight
    batch = train_split.data.take(torch.arange(64))

    def loss(l2: float) -> torch.Tensor:
        logits = model(batch.features)["label"]
        return F.binary_cross_entropy_with_logits(logits, batch.labels[:, 0]) + l2 / 2 * table.square().sum()

    want = torch.autograd.grad(loss(0.03), table)[0]
    loss(0.0).backward()
    add_embedding_l2(model, 0.03)
    assert torch.allclose(table.grad, want, atol=1e-7)
    table.grad = None  # no data gradient yet: the penalty's alone
    add_embedding_l2(model, 0.03)
    assert torch.equal(table.grad, 0.03 * table.detach())
    add_embedding_l2(model, 0.0)
    assert torch.equal(table.grad, 0.03 * table.detach())


@pytest.mark.parametrize("loop", ["plain", "meta"])
def test_the_embedding_l2_pulls_rows_no_batch_touches_toward_zero(lookalike_root, train_split, loop):
    """Both Adam loops: without the L2 a row no train batch uses keeps its initial value; with it Adam
    moves each of its entries toward zero by about the learning rate per step (the penalty's gradient
    alone, normalised by its own second moment), while the rows the batches use keep learning."""
    metadata = load_metadata(lookalike_root / "prepared" / "lookalike")
    params = small_params()
    plain = params.metaheac.baselines.model_copy(update={"epochs": 1})
    meta = params.metaheac.meta
    steps, lr = (
        (-(-train_split.rows // plain.batch_size), plain.lr) if loop == "plain" else (3, meta.outer_lr)
    )
    tables = {}
    for l2 in (0.0, 0.01):
        torch.manual_seed(0)
        model = build_model("metaheac", metadata, params)
        before = model.input.embedding.weight.detach().clone()
        if loop == "plain":
            settings = plain.model_copy(update={"embedding_weight_decay": l2})
            train_plain(model, train_split.data, settings, seed=1, checkpoint_path=None, fingerprint={})
        else:
            settings = meta.model_copy(update={"embedding_weight_decay": l2})
            trainer = MetaTrainer(model, settings, seed=1, checkpoint_path=None, fingerprint={})
            sampler = TaskSampler(train_split, settings)
            for step in range(1, steps + 1):
                trainer.step(sampler.sample(np.random.default_rng(step)), 1, step)
        tables[l2] = model.input.embedding.weight.detach()
    used = torch.zeros(len(before), dtype=torch.bool)
    used[compact_ids(model, train_split.data.features)[0]] = True
    assert 0 < used.sum() < len(before) - 10, "the fixture must leave rows no train row uses"
    assert torch.equal(tables[0.0][~used], before[~used])
    assert not torch.equal(tables[0.0][used], before[used])
    pulled, start = tables[0.01][~used].abs(), before[~used].abs()
    assert (pulled.norm(dim=1) < start.norm(dim=1)).all()
    if loop == "plain":  # an epoch's steps carry every entry to zero, where Adam's steps straddle it
        assert start.max() < steps * lr
        assert pulled.max() < lr
    else:
        far = start > 2 * steps * lr  # entries the pull cannot carry past zero in these steps
        assert far.sum() > 20
        moved = (start - pulled)[far] / (steps * lr)
        assert moved.mean().item() == pytest.approx(1.0, abs=0.1), moved
    assert not torch.equal(tables[0.01][used], tables[0.0][used])


def test_task_sampling_rules(train_split):
    settings = small_params().metaheac.meta
    counts = train_split.counts
    for rule, weight in (("rows", counts), ("sqrt", np.sqrt(counts)), ("uniform", np.ones(len(counts)))):
        sampler = TaskSampler(train_split, settings.model_copy(update={"task_sampling": rule}))
        assert np.allclose(sampler.probability, weight / weight.sum())
    everything = TaskSampler(train_split, settings.model_copy(update={"task_count": len(counts)}))
    assert sorted(everything.campaigns(np.random.default_rng(1))) == list(range(len(counts)))  # each once
    with pytest.raises(ConfigError, match=r"task_count=17 campaigns per meta-step without replacement"):
        TaskSampler(train_split, settings.model_copy(update={"task_count": 17}))
    drawn = TaskSampler(train_split, settings.model_copy(update={"task_count": 17, "task_replacement": True}))
    assert len(drawn.campaigns(np.random.default_rng(1))) == 17
    # proportional to rows: the largest campaign is drawn far more often than the smallest
    frequency = np.bincount(
        np.concatenate([drawn.campaigns(np.random.default_rng(i)) for i in range(300)]), minlength=len(counts)
    )
    assert frequency[np.argmax(counts)] > 2 * frequency[np.argmin(counts)]


def test_disjoint_query_rows_are_never_support_rows(train_split):
    settings = small_params("metaheac.meta.query=disjoint", "metaheac.meta.task_count=16").metaheac.meta
    for support, query in TaskSampler(train_split, settings).sample(np.random.default_rng(4)):
        assert not set(support.row_id.tolist()) & set(query.row_id.tolist())
        assert len(support.labels) == len(query.labels) == settings.batch_size
    independent = TaskSampler(train_split, settings.model_copy(update={"query": "independent"}))
    assert any(
        set(support.row_id.tolist()) & set(query.row_id.tolist())
        for support, query in independent.sample(np.random.default_rng(4))
    )


def test_campaigns_smaller_than_a_batch_are_resampled_or_used_whole(train_split):
    smallest = int(np.argmin(train_split.counts))
    count = int(train_split.counts[smallest])
    settings = small_params(f"metaheac.meta.batch_size={count + 50}").metaheac.meta
    rng = np.random.default_rng(3)
    replaced = TaskSampler(train_split, settings).batch(smallest, rng)
    assert len(replaced.labels) == count + 50
    assert len(torch.unique(replaced.row_id)) <= count
    whole = TaskSampler(train_split, settings.model_copy(update={"small_campaigns": "all"})).batch(
        smallest, rng
    )
    assert sorted(whole.row_id.tolist()) == sorted(
        train_split.data.row_id[train_split.rows_of(smallest)].tolist()
    )


def test_same_seed_same_model_other_seed_or_first_order_another(lookalike_root, tmp_path, capsys):
    runs = {}
    for name, overrides in (
        ("a", []),
        ("seed", ["seed=7"]),
        ("first_order", ["metaheac.meta.second_order=false"]),
    ):
        data_dir = fresh_data_dir(tmp_path / name, lookalike_root)
        result = pipeline.train(
            "lookalike", "metaheac", data_dir=data_dir, params=small_params(*FAST, *overrides)
        )
        assert np.isfinite(result["training"]["meta"]["probe_query_loss_after"])
        runs[name] = weights(data_dir)
    data_dir = fresh_data_dir(tmp_path / "b", lookalike_root)  # the same run again, through the CLI
    sets = [f"--set={s}" for s in (*SMALL, *FAST)]
    assert cli.main(["--data-dir", str(data_dir), *sets, "train", "lookalike", "metaheac"]) == 0
    steps = -(-load_metadata(data_dir / "prepared" / "lookalike").splits["train"].rows // 64)
    assert f"lookalike/metaheac: {steps} meta-steps" in capsys.readouterr().out
    runs["b"] = weights(data_dir)
    assert same(runs["a"], runs["b"])
    assert not same(runs["a"], runs["seed"])
    assert not same(runs["a"], runs["first_order"])


def test_checkpoints_past_the_run_s_end_are_not_resumed(lookalike_root, tmp_path, caplog):
    """Meta-steps and baseline epochs are outside the fingerprint (a run can be extended): a shorter run
    after a longer one trains afresh, to the weights of a fresh shorter run, for MetaHeac and its plain
    baseline alike (whose checkpoint outlives the step, beside the meta-training's)."""
    longer = ["metaheac.meta.epochs=2", "metaheac.baselines.epochs=2"]
    shorter = ["metaheac.meta.epochs=1", "metaheac.baselines.epochs=1"]
    data_dir = fresh_data_dir(tmp_path / "a", lookalike_root)
    pipeline.train("lookalike", "metaheac", data_dir=data_dir, params=small_params(*longer))
    with caplog.at_level(logging.WARNING, logger="mtl.training.checkpoint"):
        again = pipeline.train("lookalike", "metaheac", data_dir=data_dir, params=small_params(*shorter))
    fresh = fresh_data_dir(tmp_path / "fresh", lookalike_root)
    pipeline.train("lookalike", "metaheac", data_dir=fresh, params=small_params(*shorter))
    assert again["training"]["meta"]["resumed_from_step"] is None
    assert again["training"]["baseline"]["resumed_from_epoch"] is None
    warnings = [r.getMessage() for r in caplog.records if "past this run" in r.getMessage()]
    steps = -(-load_metadata(data_dir / "prepared" / "lookalike").splits["train"].rows // 64)
    assert any(f"after meta-step {2 * steps}, past this run's {steps}" in w for w in warnings), warnings
    assert any("after epoch 2, past this run's 1" in w for w in warnings), warnings
    assert same(weights(data_dir), weights(fresh))
    assert same(weights(data_dir, PLAIN_MODEL), weights(fresh, PLAIN_MODEL))
    # the same shorter run once more reuses both checkpoints
    same_again = pipeline.train("lookalike", "metaheac", data_dir=data_dir, params=small_params(*shorter))
    assert same_again["training"]["meta"]["resumed_from_step"] == steps
    assert same_again["training"]["baseline"]["resumed_from_epoch"] == 1
    assert same(weights(data_dir), weights(fresh))


def test_a_killed_meta_training_resumes_to_the_uninterrupted_result(lookalike_root, tmp_path, repo_root):
    overrides = [*FAST, "metaheac.meta.checkpoint_every=5"]
    data_dir = fresh_data_dir(tmp_path / "killed", lookalike_root)
    command = [sys.executable, "-m", "mtl", "--data-dir", str(data_dir), "train", "lookalike", "metaheac"]
    command += [f"--set={s}" for s in (*SMALL, *overrides, "train.num_threads=1")]
    checkpoint = paths.checkpoint_dir(data_dir, "lookalike", "metaheac") / "last.pt"
    kill_after_first_checkpoint(command, checkpoint, repo_root)
    state = load_checkpoint(checkpoint)
    steps = -(-load_metadata(data_dir / "prepared" / "lookalike").splits["train"].rows // 64)
    assert 5 <= state["step"] < steps  # killed between the first checkpoint and the end
    assert not (paths.model_dir(data_dir, "lookalike", "metaheac") / "weights.pt").exists()

    resumed = pipeline.train("lookalike", "metaheac", data_dir=data_dir, params=small_params(*overrides))
    assert resumed["training"]["meta"]["resumed_from_step"] == state["step"]
    fresh = fresh_data_dir(tmp_path / "fresh", lookalike_root)
    uninterrupted = pipeline.train("lookalike", "metaheac", data_dir=fresh, params=small_params(*overrides))
    assert uninterrupted["training"]["meta"]["resumed_from_step"] is None
    assert same(weights(data_dir), weights(fresh))

    def outcome(model_dir: Path) -> list[dict]:
        history = json.loads((model_dir / "history.json").read_text())
        return [{k: v for k, v in r.items() if k not in ("seconds", "steps_per_s")} for r in history]

    assert outcome(Path(resumed["model_dir"])) == outcome(Path(uninterrupted["model_dir"]))
    meta = resumed["training"]["meta"]
    assert meta["probe_query_loss_before"] == uninterrupted["training"]["meta"]["probe_query_loss_before"]
