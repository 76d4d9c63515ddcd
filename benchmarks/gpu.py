"""GPU training speed in one command (< 5 minutes on one H100/H200): rows/s and peak GPU memory of every
multi-task model at batch 2048, 8192 and 32768 under bf16 autocast, and MetaHeac's batched vs
sequential per-campaign adaptation.

    python benchmarks/gpu.py                        # CUDA, full Ali-CCP vocabulary (1.79M ids)
    python benchmarks/gpu.py --device cpu --tiny    # the same code path in seconds (the test suite runs it)

* Training: the trainer's step (autocast, loss terms, row-wise embedding optimiser and AdamW; the
  default parameters of each model) over batches of random ids drawn on the device beforehand, so the
  figure is the model step, not data loading; ``--steps`` timed steps after 3 warm-up steps.
* Adaptation: synthetic look-alike data (generated and prepared once under ``--work-dir``), fresh
  MetaHeac weights; campaigns/s of ``adapt_sequential`` and ``adapt_batched`` (``--group-size``) on the
  cold test campaigns, and the largest prediction difference between the two.

Figures go to stdout and to ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl import paths, pipeline  # noqa: E402
from mtl.catalog import supervised_models  # noqa: E402
from mtl.config import Params, load_params  # noqa: E402
from mtl.datasets.prepared import load_metadata  # noqa: E402
from mtl.models import FeatureBatch, ModelSpec, build_model  # noqa: E402
from mtl.training.adaptation import adapt_batched, adapt_sequential  # noqa: E402
from mtl.training.campaigns import load_campaign_split  # noqa: E402
from mtl.training.device import resolve_precision  # noqa: E402
from mtl.training.optim import build_optimizers, use_sparse_embeddings  # noqa: E402
from tests.support.prepared import synthetic_schema  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "gpu.json"
TASKS = ("click", "purchase")
FUNNEL_MODELS = supervised_models()
TINY_LOOKALIKE = [
    "datasets.lookalike.synthetic.users=2000",
    "datasets.lookalike.synthetic.train_campaigns=6",
    "datasets.lookalike.synthetic.hot_campaigns=2",
    "datasets.lookalike.synthetic.cold_campaigns=6",
    "datasets.lookalike.synthetic.train_rows=[100, 300]",
    "datasets.lookalike.synthetic.hot_rows=[100, 300]",
    "datasets.lookalike.synthetic.cold_rows=[40, 100]",
]
LOOKALIKE = ["datasets.lookalike.synthetic.cold_campaigns=256"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_batch(spec: ModelSpec, rows: int, device: torch.device, generator: torch.Generator) -> tuple:
    """(features, labels) of ``rows`` random rows on ``device``: funnel labels, ~4% clicks."""
    features = spec.features

    def ids(fields, repeat: int) -> torch.Tensor:
        columns = [torch.randint(0, f.vocab_size, (rows, repeat), generator=generator) for f in fields]
        return torch.cat(columns, dim=1).int() if columns else torch.zeros(rows, 0, dtype=torch.int32)

    batch = FeatureBatch(
        sparse=ids(features.sparse, 1),
        multi=torch.cat([ids([f], f.max_len) for f in features.multi], dim=1),
        multi_lengths=torch.randint(0, 4, (rows, len(features.multi)), generator=generator).int(),
        dense=torch.rand(rows, len(features.dense), generator=generator),
    )
    click = (torch.rand(rows, generator=generator) < 0.04).float()
    labels = torch.stack([click, click * (torch.rand(rows, generator=generator) < 0.2).float()], dim=1)
    return FeatureBatch(*(t.to(device) for t in batch)), labels.to(device)


def training_speed(name: str, spec: ModelSpec, params: Params, device: torch.device, rows: int, steps: int):
    """Rows/s and peak device memory of the trainer's step for one model at one batch size."""
    torch.manual_seed(0)
    model = build_model(name, spec, params).to(device).train()
    precision = resolve_precision("bf16", device)
    use_sparse_embeddings(model, True, rows=True)
    optimizers = build_optimizers(model, params.train, sparse=True)
    generator = torch.Generator().manual_seed(1)
    batches = [random_batch(spec, rows, device, generator) for _ in range(4)]

    def step(features: FeatureBatch, labels: torch.Tensor) -> None:
        with precision.autocast():
            logits = model(features)
        terms = model.loss_terms(logits, labels)
        loss = torch.stack([t.sum() for t in terms.values()]).sum() / rows
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()

    for features, labels in batches[:3]:
        step(features, labels)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    sync(device)
    out = {"rows_per_s": rows * steps / (time.perf_counter() - started)}
    if device.type == "cuda":
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def adaptation_speed(work_dir: Path, params: Params, device: torch.device, group_size: int) -> dict[str, Any]:
    """Campaigns/s of sequential vs batched MetaHeac adaptation on the cold test campaigns."""
    if not paths.prepared_metadata(work_dir, "lookalike").is_file():
        pipeline.download("lookalike", data_dir=work_dir, params=params)
        pipeline.prepare("lookalike", data_dir=work_dir, params=params)
    prepared = paths.prepared_dir(work_dir, "lookalike")
    metadata = load_metadata(prepared)
    torch.manual_seed(params.seed)
    model = build_model("metaheac", metadata, params).to(device)
    weights = {k: v.detach() for k, v in model.named_parameters()}
    stage1 = load_campaign_split(prepared, "test_cold_stage1", metadata, device)
    stage2 = load_campaign_split(prepared, "test_cold_stage2", metadata, device)
    settings = params.metaheac.adaptation.model_copy(update={"group_size": group_size})
    common = {"seed": params.seed, "eval_batch_size": params.train.eval_batch_size}
    timings, predictions = {}, {}
    for label, adapt in (("sequential", adapt_sequential), ("batched", adapt_batched)):
        sync(device)
        started = time.perf_counter()
        predictions[label] = adapt(model, weights, stage1, stage2, settings, **common)
        sync(device)
        timings[label] = time.perf_counter() - started
    campaigns = len(stage2.campaigns)
    return {
        "campaigns": campaigns,
        "group_size": group_size,
        "sequential_campaigns_per_s": campaigns / timings["sequential"],
        "batched_campaigns_per_s": campaigns / timings["batched"],
        "speedup": timings["sequential"] / timings["batched"],
        "max_prediction_difference": float(np.abs(predictions["batched"] - predictions["sequential"]).max()),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="small vocabulary, batches and data: seconds")
    parser.add_argument("--batch-sizes", default=None, help="comma-separated (default 2048,8192,32768)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per figure (default 20)")
    parser.add_argument("--models", nargs="+", default=FUNNEL_MODELS, choices=FUNNEL_MODELS)
    parser.add_argument("--group-size", type=int, default=64, help="campaigns per batched adaptation group")
    parser.add_argument("--work-dir", type=Path, default=None, help="look-alike data (default: a temp dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    sizes = [int(s) for s in (args.batch_sizes or ("64,128" if args.tiny else "2048,8192,32768")).split(",")]
    steps = args.steps or (2 if args.tiny else 20)
    params = load_params([*(TINY_LOOKALIKE if args.tiny else LOOKALIKE), *args.overrides])
    spec = ModelSpec(synthetic_schema("aliccp", 0.001 if args.tiny else 1.0), TASKS, TASKS)
    vocabulary = sum(f.vocab_size for f in (*spec.features.sparse, *spec.features.multi))
    report: dict[str, Any] = {"device": str(device), "vocabulary": vocabulary, "training": {}}
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
    print(f"{report.get('device_name', device)}: {vocabulary:,} embedding rows, bf16 autocast", flush=True)
    for name in args.models:
        report["training"][name] = {}
        for rows in sizes:
            figure = training_speed(name, spec, params, device, rows, steps)
            report["training"][name][rows] = figure
            memory = f", peak {figure['peak_memory_mb']:,.0f} MB" if "peak_memory_mb" in figure else ""
            print(f"  {name:<14} batch {rows:>6}: {figure['rows_per_s']:>12,.0f} rows/s{memory}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        adaptation = adaptation_speed(work_dir, params, device, args.group_size)
    report["adaptation"] = adaptation
    print(
        f"  metaheac adaptation, {adaptation['campaigns']} cold campaigns: sequential "
        f"{adaptation['sequential_campaigns_per_s']:,.1f}/s, batched (groups of {args.group_size}) "
        f"{adaptation['batched_campaigns_per_s']:,.1f}/s = {adaptation['speedup']:.1f}x "
        f"(max |dp| {adaptation['max_prediction_difference']:.1e})"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
