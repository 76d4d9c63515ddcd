"""The benchmark scripts: the GPU benchmark's code path run on the CPU with tiny sizes (the figures themselves
need a GPU), the well-specified quality reference, and how the throughput benchmark aggregates runs."""

from __future__ import annotations

import importlib.util
import json
import sys
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


@pytest.mark.usefixtures("single_thread")
def test_generator_model_learns_what_logistic_regression_cannot(tmp_path):
    """The quality benchmark's well-specified reference (the generator's own click model fitted on the
    training rows) lands between logistic regression and the oracle on synthetic Ali-CCP: above LR, since
    it holds the planted taste x category product, and not above the truth beyond noise."""
    from mtl import pipeline
    from mtl.baselines import logistic_baseline
    from mtl.config import load_params
    from mtl.datasets.prepared import load_metadata
    from mtl.evaluation import oracle_aucs

    params = load_params(
        {
            "datasets.aliccp.synthetic.train_rows": 40000,
            "datasets.aliccp.synthetic.test_rows": 20000,
            "datasets.aliccp.synthetic.click_rate": 0.2,
        }
    )
    pipeline.download("aliccp", data_dir=tmp_path, params=params, source="synthetic")
    pipeline.prepare("aliccp", data_dir=tmp_path, params=params)
    prepared = tmp_path / "prepared" / "aliccp"
    metadata = load_metadata(prepared)
    oracle = oracle_aucs(metadata.extra, "test", metadata.tasks, metadata.funnel)["click"]
    logistic = logistic_baseline(prepared, metadata)["click"]
    reference = load_script("well_specified").fit(prepared, epochs=6)
    assert logistic + 0.005 < reference < oracle + 0.01, (logistic, reference, oracle)


def test_throughput_figures_are_the_median_of_repeated_processes_with_their_peak_memory(tmp_path):
    throughput = load_script("throughput")
    # each process prints its rate (the next of 300, 100, 200) and its peak memory as its last line
    counter = tmp_path / "runs"
    code = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
from peak_memory import peak_memory
counter = Path({str(counter)!r})
run = len(counter.read_text()) if counter.exists() else 0
counter.write_text("x" * (run + 1))
rate = [300.0, 100.0, 200.0][run]
print("a log line")
print(json.dumps({{"rows_per_s": rate, "rows_per_cpu_s": rate / 2, **peak_memory()}}))
"""
    result = throughput.child([sys.executable, "-c", code], threads=1, repeat=3)
    assert result["runs"] == [300.0, 100.0, 200.0]
    assert result["rows_per_s"] == 200.0
    assert result["rows_per_cpu_s"] == 100.0
    assert 0 < result["peak_private_mb"] < result["peak_rss_mb"]  # shared-library pages left out


@pytest.mark.parametrize("model", ["esmm", "mmoe", "ple"])
def test_throughput_measures_torch_rechub_s_shapes_or_ours(model):
    """``--shapes rechub`` (the comparison) sets torch-rechub's example model on ours; ``defaults`` keeps
    params.yaml's model exactly, so its 1 -> 2 thread figure is the scaling of what users train."""
    from mtl.config import load_params

    throughput = load_script("throughput")
    defaults = getattr(load_params().models, model)
    rechub = getattr(throughput.train_params(model, 1, "rechub").models, model)
    assert rechub.interaction == "none" != defaults.interaction
    assert rechub.norm == "batch" != defaults.norm
    assert f"tower_dims={rechub.tower_dims}" in throughput.MODEL_SETTINGS[model]
    assert rechub.tower_dims != defaults.tower_dims
    assert getattr(throughput.train_params(model, 2, "defaults").models, model) == defaults
    assert throughput.train_params(model, 2, "defaults").train.num_threads == 2


def test_metaheac_margins_are_paired_over_whole_campaigns():
    import numpy as np

    from mtl.evaluation import campaign_metrics

    paired_margins = load_script("metaheac").paired_margins
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 30, 3000)
    labels = (rng.random(3000) < 0.2).astype(np.float64)
    labels[groups == 7] = 0.0  # a campaign of one class: in pooled AUC, out of GAUC
    noise = rng.random(3000)
    better, worse = labels * 0.6 + noise, labels * 0.2 + noise
    margins = paired_margins(labels, groups, better, worse, seed=1, draws=400)
    ours, theirs = (campaign_metrics(labels, s, groups) for s in (better, worse))
    assert margins["auc"][0] == pytest.approx(ours["auc"] - theirs["auc"])
    assert margins["gauc"][0] == pytest.approx(ours["gauc"] - theirs["gauc"])
    for margin, low, high in margins.values():
        assert 0 < low < margin < high
    # the same scores on both sides: every draw's difference is exactly 0, however campaigns are drawn
    assert paired_margins(labels, groups, better, better, seed=1, draws=50) == {
        "auc": [0.0, 0.0, 0.0],
        "gauc": [0.0, 0.0, 0.0],
    }
    # pairing: a scorer shifted per campaign ranks the same within each campaign, so GAUC's margin is 0
    shifted = better + groups * 10.0
    assert paired_margins(labels, groups, shifted, better, seed=1, draws=50)["gauc"] == [0.0, 0.0, 0.0]
    one_class = groups == 7
    with pytest.raises(ValueError, match="no campaign has both classes"):
        paired_margins(labels[one_class], groups[one_class], better[one_class], worse[one_class], seed=1)
