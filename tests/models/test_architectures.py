"""Architecture properties: output convention, initialisation, and where gradients may and may not flow."""

from __future__ import annotations

import itertools

import pytest
import torch

from mtl import cli
from mtl.datasets.prepared import load_metadata, read_split
from mtl.errors import ModelConfigError
from mtl.models import MODELS, ModelSpec, build_model
from mtl.models.layers import ExpertGroup
from mtl.training.data import TensorSplit
from mtl.training.optim import build_optimizers
from tests.support.models import MULTI_TASK_MODELS, small_params


@pytest.fixture(scope="module")
def batches(prepared_root):
    """Two 256-row training batches of each fixture dataset (first for gradients, both for training)."""
    out = {}
    for dataset in ("aliccp", "census"):
        metadata = load_metadata(prepared_root / dataset)
        split = TensorSplit.from_arrays(
            read_split(prepared_root / dataset, "train", metadata), metadata, "train"
        )
        out[dataset] = (metadata, [split.slice(0, 256), split.slice(256, 512)])
    return out


def model_for(batches, dataset, name, *overrides):
    metadata, _ = batches[dataset]
    torch.manual_seed(0)
    return build_model(name, metadata, small_params(*overrides))


def train_steps(model, batch_list, steps=30):
    optimizers = build_optimizers(model, small_params().train, sparse=True)
    for step in range(steps):
        batch = batch_list[step % len(batch_list)]
        terms = model.loss_terms(model(batch.features), batch.labels)
        loss = torch.stack([t.mean() for t in terms.values()]).sum()
        for opt in optimizers:
            opt.zero_grad()
        loss.backward()
        for opt in optimizers:
            opt.step()


def test_registry_is_what_the_cli_lists():
    assert cli.MODEL_HELP.split(", ") == list(MODELS)


def test_esmm_refuses_a_dataset_without_funnel_and_aitm_a_single_task(batches):
    with pytest.raises(ModelConfigError, match="funnel"):
        model_for(batches, "census", "esmm")
    metadata, _ = batches["census"]
    with pytest.raises(ModelConfigError, match="one task"):
        build_model("aitm", ModelSpec(metadata.features, ("income",)), small_params())


@pytest.mark.parametrize("name", MULTI_TASK_MODELS)
def test_funnel_outputs_follow_the_convention(batches, name):
    model = model_for(batches, "aliccp", name)
    batch = batches["aliccp"][1][0]
    with torch.no_grad():
        logits = model(batch.features)
        probs = model.probabilities(logits)
    assert set(probs) == {"click", "purchase", "ctcvr"}
    for values in probs.values():
        assert values.shape == (256,)
        assert bool(((values >= 0) & (values <= 1)).all())
    # one meaning in every model: logits[task] is the logit of P(task label = 1) over all rows, so the
    # purchase logit is P(click and purchase) and pCVR = pCTCVR / pCTR clipped
    torch.testing.assert_close(probs["click"], torch.sigmoid(logits["click"]))
    torch.testing.assert_close(probs["ctcvr"], torch.sigmoid(logits["purchase"]))
    torch.testing.assert_close(probs["purchase"], (probs["ctcvr"] / probs["click"]).clamp(0, 1))
    if name == "esmm":  # pCTCVR = pCTR x pCVR, pCVR from its own tower
        with torch.no_grad():
            cvr = torch.sigmoid(model.cvr_tower(model.input(batch.features)))
        torch.testing.assert_close(probs["ctcvr"], probs["click"] * cvr)
        torch.testing.assert_close(probs["purchase"], cvr)


@pytest.mark.parametrize("name", MULTI_TASK_MODELS)
def test_a_constructed_model_is_initialised(batches, name):
    """The class alone (no build_model) yields seeded, initialised weights: no torch.empty left over."""
    metadata = batches["aliccp"][0]
    cls = MODELS[name]
    hyper = small_params().model(name)
    states = []
    for _ in range(2):
        torch.manual_seed(3)
        states.append(cls(ModelSpec.from_metadata(metadata), hyper).state_dict())
    torch.manual_seed(3)
    built = build_model(name, metadata, small_params()).state_dict()
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
        assert torch.equal(value, built[key]), key
        assert bool(torch.isfinite(value.float()).all()), key
    for module in cls(ModelSpec.from_metadata(metadata), hyper).modules():
        if isinstance(module, ExpertGroup):  # Xavier-uniform bounds, not whatever memory held
            for weight in module.weights:
                bound = (6.0 / (weight.shape[1] + weight.shape[2])) ** 0.5
                assert 0 < weight.abs().max() <= bound


def distinct_rows(matrix: torch.Tensor) -> bool:
    flat = matrix.reshape(matrix.shape[0], -1)
    return bool((torch.cdist(flat, flat) + torch.eye(len(flat)) > 1e-6).all())


def assert_units_and_experts_differ(model):
    checked = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.out_features > 1:
            assert distinct_rows(module.weight), module  # every unit of every layer is its own
            checked += 1
        if isinstance(module, ExpertGroup):
            for weight in module.weights:
                assert distinct_rows(weight), "two experts are identical"
                for expert in weight:
                    assert distinct_rows(expert.T), "two units inside one expert are identical"
                checked += 1
    assert checked


@pytest.mark.parametrize("name", MULTI_TASK_MODELS)
def test_units_and_experts_differ_after_training(batches, name):
    model = model_for(batches, "aliccp", name)
    train_steps(model, batches["aliccp"][1])
    assert_units_and_experts_differ(model)
    if name in ("mmoe", "ple"):  # experts also compute different functions of the same input
        experts = next(m for m in model.modules() if isinstance(m, ExpertGroup))
        with torch.no_grad():
            out = experts(model.input(batches["aliccp"][1][0].features))  # (n, E, d)
        assert distinct_rows(out.transpose(0, 1))


def test_the_initialisation_check_catches_constant_init(batches):
    model = model_for(batches, "aliccp", "mmoe")
    for parameter in model.parameters():  # PaddleRec's constant initialiser, for contrast
        if parameter.dim() > 1 and parameter is not model.input.embedding.weight:
            torch.nn.init.constant_(parameter, 0.1)
    train_steps(model, batches["aliccp"][1])
    with pytest.raises(AssertionError):
        assert_units_and_experts_differ(model)


def expert_gradients(model, batch, task) -> list[list[bool]]:
    """Per PLE level, whether each expert received a non-zero gradient from ``task``'s output."""
    model.zero_grad()
    model(batch.features)[task].sum().backward()
    return [
        [bool(w.grad[e].abs().sum() > 0) for e in range(w.shape[0])]
        for w in (lv.experts.weights[0] for lv in model.levels)
    ]


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_every_ple_expert_gets_gradient_from_exactly_its_tasks(batches, levels):
    specific, shared = 3, 2  # PaddleRec's bug (k * n_tasks indexing) would mix task 0's and 1's experts
    model = model_for(
        batches,
        "aliccp",
        "ple",
        f"models.ple.levels={levels}",
        f"models.ple.specific_experts={specific}",
        f"models.ple.shared_experts={shared}",
    )
    batch = batches["aliccp"][1][0]
    tasks = list(model.spec.tasks)
    got = {task: expert_gradients(model, batch, task) for task in tasks}
    for level in range(levels):
        for expert in range(2 * specific + shared):
            owner = expert // specific if expert < 2 * specific else None
            if level < levels - 1 or owner is None:
                expected = set(tasks)  # below the top, the shared gate routes every expert to every task
            else:
                expected = {tasks[owner]}
            receives = {task for task in tasks if got[task][level][expert]}
            assert receives == expected, (level, expert, receives)


def parameters_with_gradient(module: torch.nn.Module) -> set[str]:
    return {
        name
        for name, p in module.named_parameters()
        if p.grad is not None and (p.grad.coalesce().values() if p.grad.is_sparse else p.grad).abs().sum() > 0
    }


def test_esmm_cvr_tower_learns_only_through_ctcvr(batches):
    model = model_for(batches, "aliccp", "esmm")
    batch = batches["aliccp"][1][0]
    terms = model.loss_terms(model(batch.features), batch.labels)
    assert set(terms) == {"click", "ctcvr"}  # no CVR loss: pCVR is learned only inside pCTCVR
    with torch.no_grad():
        x = model.input(batch.features)
        p = torch.sigmoid(model.ctr_tower(x)) * torch.sigmoid(model.cvr_tower(x))
    y = batch.labels[:, 0] * batch.labels[:, 1]
    torch.testing.assert_close(terms["ctcvr"].detach(), -(y * p.log() + (1 - y) * (1 - p).log()))
    terms["click"].sum().backward(retain_graph=True)
    assert not parameters_with_gradient(model.cvr_tower)
    assert parameters_with_gradient(model.ctr_tower)
    model.zero_grad()
    terms["ctcvr"].sum().backward()
    assert parameters_with_gradient(model.cvr_tower) == {n for n, _ in model.cvr_tower.named_parameters()}


def test_aitm_transfers_click_to_purchase_only(batches):
    model = model_for(batches, "aliccp", "aitm")
    batch = batches["aliccp"][1][0]
    assert model.order == ["click", "purchase"]
    model(batch.features)["click"].sum().backward()
    assert not parameters_with_gradient(model.towers[1])  # purchase never informs click
    model.zero_grad()
    model(batch.features)["purchase"].sum().backward()
    assert parameters_with_gradient(model.towers[0])  # click's representation reaches purchase


@pytest.mark.parametrize("weight", [0.6, 2.0])
def test_aitm_calibrator_is_the_weighted_batch_mean_of_the_violation(batches, weight):
    model = model_for(batches, "aliccp", "aitm", f"models.aitm.calibrator_weight={weight}")
    batch = batches["aliccp"][1][0]
    logits = model(batch.features)
    terms = model.loss_terms(logits, batch.labels)
    violation = torch.relu(torch.sigmoid(logits["purchase"]) - torch.sigmoid(logits["click"]))
    torch.testing.assert_close(terms["calibrator"], weight * violation)
    with torch.no_grad():  # make the purchase head predict above click on every row
        model.heads[1].bias.fill_(10.0)
    logits = model(batch.features)
    calibrator = model.loss_terms(logits, batch.labels)["calibrator"]
    assert calibrator.mean() > 0
    (gradient,) = torch.autograd.grad(calibrator.mean(), logits["purchase"])
    assert bool((gradient >= 0).all())
    assert gradient.sum() > 0


def test_aitm_calibrator_off_without_funnel_or_weight(batches):
    census = model_for(batches, "census", "aitm")
    batch = batches["census"][1][0]
    assert set(census.loss_terms(census(batch.features), batch.labels)) == {"income", "marital"}
    off = model_for(batches, "aliccp", "aitm", "models.aitm.calibrator_weight=0")
    batch = batches["aliccp"][1][0]
    assert "calibrator" not in off.loss_terms(off(batch.features), batch.labels)


def test_single_task_networks_share_nothing(batches):
    model = model_for(batches, "aliccp", "single_task")
    batch = batches["aliccp"][1][0]
    model(batch.features)["click"].sum().backward()
    assert parameters_with_gradient(model.networks[0])
    assert not parameters_with_gradient(model.networks[1])


def test_single_task_purchase_network_is_cvr_trained_on_clicked_rows(batches):
    model = model_for(batches, "aliccp", "single_task")
    batch = batches["aliccp"][1][0]
    clicked = batch.labels[:, 0]
    assert 0 < clicked.sum() < len(clicked)
    logits = model(batch.features)
    with torch.no_grad():  # the model's pCVR (ctcvr / ctr) is the purchase network's own probability
        cvr = torch.sigmoid(model.networks[1](batch.features))
        torch.testing.assert_close(model.probabilities(logits)["purchase"], cvr)
    terms = model.loss_terms(logits, batch.labels)
    assert set(terms) == {"click", "purchase"}
    y = batch.labels[:, 1]
    expected = clicked * -(y * cvr.log() + (1 - y) * (1 - cvr).log())  # BCE of pCVR, clicked rows only
    torch.testing.assert_close(terms["purchase"].detach(), expected, rtol=1e-4, atol=1e-5)
    terms["purchase"].sum().backward()
    click_grads = [p.grad for p in model.networks[0].parameters() if p.grad is not None]
    assert all(
        float(g.coalesce().values().abs().max() if g.is_sparse else g.abs().max()) < 1e-6 for g in click_grads
    )
    assert parameters_with_gradient(model.networks[1])
    # funnel_cvr: all, MTReclib's singletask: the purchase network is pCTCVR over every row
    plain = model_for(batches, "aliccp", "single_task", "models.single_task.funnel_cvr=all")
    plain_logits = plain(batch.features)
    torch.testing.assert_close(plain_logits["purchase"], plain.networks[1](batch.features))
    assert float(plain.loss_terms(plain_logits, batch.labels)["purchase"][clicked == 0].detach().sum()) > 0


def test_a_single_task_model_saved_before_funnel_cvr_existed_loads_as_the_all_kind(batches):
    metadata, _ = batches["aliccp"]
    saved = small_params().models.single_task.model_dump()
    del saved["funnel_cvr"]  # a model.json written by the earlier code
    model = build_model("single_task", ModelSpec.from_metadata(metadata), saved)
    assert model.params.funnel_cvr == "all"


def test_every_parameter_is_used_by_every_model(batches):
    for (dataset, (metadata, batch_list)), name in itertools.product(batches.items(), MULTI_TASK_MODELS):
        if name == "esmm" and not metadata.funnel:
            continue
        model = build_model(name, ModelSpec.from_metadata(metadata), small_params())
        batch = batch_list[0]
        terms = model.loss_terms(model(batch.features), batch.labels)
        torch.stack([t.sum() for t in terms.values()]).sum().backward()
        unused = {n for n, _ in model.named_parameters()} - parameters_with_gradient(model)
        assert not unused, (dataset, name, unused)  # DDP needs no find_unused_parameters
