"""Batch norm and ReLU fused into one C kernel each way (``layers.norm_relu``): the numbers, gradients and
running statistics of ``nn.BatchNorm1d`` then ReLU, on any thread count; the torch modules wherever the
kernel does not apply; and whole models training as they do without the kernels."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtl.datasets.prepared import load_metadata, read_split
from mtl.models import build_model, layers, row_kernels
from mtl.training.data import TensorSplit
from tests.support.models import loss_curve, small_params


@pytest.fixture
def native():
    assert row_kernels.library() is not None, "the C kernels did not build (is a C compiler installed?)"


def twin_norms(width: int, momentum: float | None = 0.1, eps: float = 1e-5) -> tuple[nn.Module, nn.Module]:
    """Two batch norms with the same random weights and running statistics."""
    generator = torch.Generator().manual_seed(width)
    norm = nn.BatchNorm1d(width, eps=eps, momentum=momentum)
    with torch.no_grad():
        for tensor in (norm.weight, norm.bias, norm.running_mean):
            tensor.copy_(torch.randn(width, generator=generator))
        norm.running_var.copy_(torch.rand(width, generator=generator) + 0.5)
    twin = nn.BatchNorm1d(width, eps=eps, momentum=momentum)
    twin.load_state_dict(norm.state_dict())
    return norm, twin


def assert_matches(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    """Within 1e-5 of each tensor's scale: a weight's gradient sums n rows, each order rounding apart."""
    for fused, expected in zip(got, want, strict=True):
        scale = max(1.0, expected.abs().max().item())
        torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5 * scale)


def forward_backward(norm: nn.Module, x: torch.Tensor, grad: torch.Tensor, fused: bool) -> list[torch.Tensor]:
    """Output and gradients of input, weight and bias."""
    norm.zero_grad()
    x = x.clone().requires_grad_()
    out = layers.norm_relu(norm, x) if fused else F.relu(norm(x))
    out.backward(grad)
    return [out.detach(), x.grad, norm.weight.grad, norm.bias.grad]


# the last two above the kernels' grain: several chunks of rows (5000 x 9: the last one short)
SHAPES = [(2, 8), (7, 5), (300, 33), (2048, 128), (5000, 9)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("n", "width"), SHAPES)
def test_fused_batch_norm_relu_matches_torch(native, monkeypatch, n, width, threads):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    generator = torch.Generator().manual_seed(n)
    fused_norm, torch_norm = twin_norms(width)
    for step in range(2):  # the running statistics move twice
        x = torch.randn(n, width, generator=generator) * 2 + 0.5
        grad = torch.randn(n, width, generator=generator)
        fused = forward_backward(fused_norm, x, grad, fused=True)
        assert_matches(fused, forward_backward(torch_norm, x, grad, fused=False))
        for name, buffer in torch_norm.named_buffers():
            torch.testing.assert_close(getattr(fused_norm, name), buffer, rtol=1e-5, atol=1e-6, msg=name)
        assert int(fused_norm.num_batches_tracked) == step + 1


def test_cumulative_average_and_eps_follow_the_module(native):
    """``momentum=None``: the running statistics average every batch so far, as in torch."""
    fused_norm, torch_norm = twin_norms(16, momentum=None, eps=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, grad = torch.randn(64, 16, generator=generator), torch.randn(64, 16, generator=generator)
        fused = forward_backward(fused_norm, x, grad, fused=True)
        assert_matches(fused, forward_backward(torch_norm, x, grad, fused=False))
    for name, buffer in torch_norm.named_buffers():
        torch.testing.assert_close(getattr(fused_norm, name), buffer, rtol=1e-5, atol=1e-6, msg=name)


def test_the_kernels_give_the_same_values_on_one_and_two_threads(native, monkeypatch):
    generator = torch.Generator().manual_seed(0)
    x, grad = torch.randn(2048, 128, generator=generator), torch.randn(2048, 128, generator=generator)
    weight, bias = torch.randn(128, generator=generator), torch.randn(128, generator=generator)

    def run(threads: int) -> list[torch.Tensor]:
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        running = [torch.zeros(128), torch.ones(128)]
        out, stats = row_kernels.batch_norm_relu(x, weight, bias, *running, momentum=0.1, eps=1e-5)
        return [out, stats, *running, *row_kernels.batch_norm_relu_backward(grad, x, weight, stats)]

    for one, two in zip(run(1), run(2), strict=True):
        torch.testing.assert_close(one, two, rtol=0, atol=0)


def count_fused_calls(monkeypatch) -> list[int]:
    calls = []
    fused = layers._batch_norm_relu_natively
    monkeypatch.setattr(layers, "_batch_norm_relu_natively", lambda *args: calls.append(1) or fused(*args))
    return calls


@pytest.mark.parametrize(
    "case", ["eval", "float64", "strided", "layer norm", "no affine", "no running stats"]
)
def test_the_torch_modules_run_where_the_kernel_does_not_apply(native, monkeypatch, case):
    calls = count_fused_calls(monkeypatch)
    norm = nn.LayerNorm(6) if case == "layer norm" else nn.BatchNorm1d(6)
    if case in ("no affine", "no running stats"):
        norm = nn.BatchNorm1d(6, affine=case != "no affine", track_running_stats=case != "no running stats")
    x = torch.randn(4, 12)[:, ::2] if case == "strided" else torch.randn(4, 6)
    if case == "float64":
        norm, x = norm.double(), x.double()
    if case == "eval":
        norm.eval()
    expected = F.relu(copy.deepcopy(norm)(x))
    torch.testing.assert_close(layers.norm_relu(norm, x), expected, rtol=0, atol=0)
    assert not calls


def test_one_row_in_training_is_torch_s_error(native):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layers.norm_relu(nn.BatchNorm1d(4), torch.randn(1, 4))


def test_the_mlp_keeps_its_modules_and_state_dict_keys():
    mlp = layers.MLP(6, [8, 4], dropout=0.1, norm="batch")
    block = [nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.1)]
    plain = nn.Sequential(nn.Linear(6, 8), *block, nn.Linear(8, 4), nn.BatchNorm1d(4), *block[1:])
    assert [type(m) for m in mlp] == [type(m) for m in plain]
    assert list(mlp.state_dict()) == list(plain.state_dict())


MODELS = [
    ("esmm", "aliccp", []),
    ("mmoe", "aliccp", []),
    ("ple", "census", ["models.ple.levels=2", "models.ple.expert_dims=[16, 8]"]),
]


def batch_norm_losses(prepared_root, name: str, dataset: str, overrides: list[str]) -> list[float]:
    """Per-step losses of a small model with batch norm. Plain SGD: Adam and Adagrad rescale a gradient
    that is zero up to rounding (a bias in front of batch norm, an id in every row of a batch) to a full
    step, so any other summation order drifts by 1e-3 within a few steps."""
    metadata = load_metadata(prepared_root / dataset)
    split = TensorSplit.from_arrays(read_split(prepared_root / dataset, "train", metadata), metadata, "train")
    params = small_params(f"models.{name}.norm=batch", *overrides)
    torch.manual_seed(0)
    model = build_model(name, metadata, params).train()
    return loss_curve(model, model, [torch.optim.SGD(model.parameters(), lr=0.1)], split, steps=25)


@pytest.mark.parametrize(("name", "dataset", "overrides"), MODELS)
def test_models_with_batch_norm_train_as_without_the_kernels(
    prepared_root, native, monkeypatch, name, dataset, overrides
):
    calls = count_fused_calls(monkeypatch)
    fused = batch_norm_losses(prepared_root, name, dataset, overrides)
    assert calls, "the fused kernel did not run"
    monkeypatch.setattr(row_kernels, "library", lambda: None)  # as MTL_NATIVE_KERNELS=0: every kernel off
    plain = batch_norm_losses(prepared_root, name, dataset, overrides)
    assert fused[-1] < fused[0]  # it trains
    assert max(abs(a - b) for a, b in zip(fused, plain)) < 1e-4


def test_a_compiler_without_cpu_clones_still_builds_every_kernel(tmp_path, monkeypatch):
    """A compiler that rejects ``target_clones`` gets the plain loops (-DNO_CLONES), not the torch path."""
    real = shutil.which("gcc") or shutil.which("cc")
    if real is None:
        pytest.skip("no C compiler on this machine")
    picky = tmp_path / "picky-cc"
    picky.write_text(f'#!/bin/sh\ncase "$*" in *-DNO_CLONES*) exec {real} "$@";; esac\nexit 1\n')
    picky.chmod(0o755)
    monkeypatch.setenv("CC", str(picky))
    monkeypatch.setenv("MTL_HOME", str(tmp_path / "state"))
    row_kernels.library.cache_clear()
    try:
        lib = row_kernels.library()
        assert lib is not None
        built = list((tmp_path / "state" / "kernels").glob("row_kernels-*.so"))
        assert len(built) == 1  # the OpenMP build without clones, the first attempt that compiled
        x = torch.randn(64, 8)
        norm = torch.nn.BatchNorm1d(8).train()
        reference = torch.relu(torch.nn.BatchNorm1d(8).train()(x))
        torch.testing.assert_close(layers.norm_relu(norm, x), reference)
    finally:
        row_kernels.library.cache_clear()
