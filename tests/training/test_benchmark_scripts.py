"""The GPU benchmark's code path, run on the CPU with tiny sizes (the figures themselves need a GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("single_thread")
def test_gpu_benchmark_runs_tiny_on_the_cpu(tmp_path):
    gpu = load_script("gpu")
    output = tmp_path / "gpu.json"
    argv = ["--device", "cpu", "--tiny", "--models", "esmm", "ple", "--work-dir", str(tmp_path / "data")]
    report = gpu.main([*argv, "--output", str(output)])
    assert json.loads(output.read_text())["device"] == "cpu"
    assert set(report["training"]) == {"esmm", "ple"}
    for figures in report["training"].values():
        assert [int(size) for size in figures] == [64, 128]
        assert all(figure["rows_per_s"] > 0 for figure in figures.values())
    adaptation = report["adaptation"]
    assert adaptation["campaigns"] > 0
    assert adaptation["speedup"] > 0
    assert adaptation["max_prediction_difference"] < 1e-4  # batched adapts each campaign as sequential does
