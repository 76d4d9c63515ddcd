"""MetaHeac speed: meta-training steps/s, and per-campaign adaptation batched vs one campaign at a time.

    python benchmarks/metaheac.py --data-dir DIR [--set KEY=VALUE ...] [--split test_cold]
        [--meta-steps 20] [--group-sizes 8,32,64] [--threads N] [--json]

DIR must hold (or gets, through ``mtl download``/``mtl prepare`` with the same ``--set`` overrides) the
prepared look-alike data; hundreds of campaigns for the adaptation figures come from e.g.
``--set datasets.lookalike.synthetic.cold_campaigns=300``. The weights are DIR's trained MetaHeac where
there is one (``mtl train lookalike metaheac``), else a fresh initialisation (speed does not depend on
them). Every batched run is checked against the sequential one: the largest prediction difference and
the largest difference of any campaign metric are printed beside its speed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl import paths, pipeline
from mtl.config import Params, load_params
from mtl.datasets.prepared import METADATA_FILE, load_metadata
from mtl.evaluation import campaign_metrics
from mtl.models import build_model
from mtl.models.metaheac import MetaHeac
from mtl.training.adaptation import adapt_batched, adapt_sequential
from mtl.training.artifacts import MODEL_CONFIG, load_trained_model
from mtl.training.campaigns import load_campaign_split
from mtl.training.meta import MetaTrainer, TaskSampler
from mtl.training.seeding import derive_seed, seed_everything

METRICS = ("auc", "gauc", "gauc_weighted", "precision_at_top", "recall_at_top")


def ensure_prepared(data_dir: Path, params: Params) -> None:
    if not (paths.prepared_dir(data_dir, "lookalike") / METADATA_FILE).is_file():
        pipeline.download("lookalike", data_dir=data_dir, params=params)
        pipeline.prepare("lookalike", data_dir=data_dir, params=params)


def meta_training_speed(data_dir: Path, params: Params, steps: int) -> dict[str, Any]:
    """Meta-steps/s of both MAML orders over the same sampled meta-batches (fresh weights each)."""
    prepared = paths.prepared_dir(data_dir, "lookalike")
    metadata = load_metadata(prepared)
    train = load_campaign_split(prepared, "train", metadata, torch.device("cpu"))
    out: dict[str, Any] = {"train_rows": train.rows, "train_campaigns": len(train.campaigns)}
    for second_order in (True, False):
        settings = params.metaheac.meta.model_copy(update={"second_order": second_order})
        seed_everything(params.seed)
        model = build_model("metaheac", metadata, params)
        trainer = MetaTrainer(model, settings, seed=params.seed, checkpoint_path=None, fingerprint={})
        sampler = TaskSampler(train, settings)
        trainer.step(sampler.sample(np.random.default_rng(0)), 1, 0)  # warm-up
        started = time.perf_counter()
        for step in range(1, steps + 1):
            trainer.step(sampler.sample(np.random.default_rng(derive_seed(params.seed, step))), 1, step)
        seconds = time.perf_counter() - started
        out["second_order" if second_order else "first_order"] = {"steps_per_s": steps / seconds}
    return out


def adaptation_speed(data_dir: Path, params: Params, split: str, group_sizes: list[int]) -> dict[str, Any]:
    """Campaigns/s of sequential and batched adaptation on one split, and how far their results differ."""
    prepared = paths.prepared_dir(data_dir, "lookalike")
    metadata = load_metadata(prepared)
    model_dir = paths.model_dir(data_dir, "lookalike", "metaheac")
    if (model_dir / MODEL_CONFIG).is_file():
        model, _ = load_trained_model(model_dir)
    else:
        seed_everything(params.seed)
        model = build_model("metaheac", metadata, params)
    assert isinstance(model, MetaHeac)
    weights = {k: v.detach() for k, v in model.named_parameters()}
    device = torch.device("cpu")
    stage1 = load_campaign_split(prepared, f"{split}_stage1", metadata, device)
    stage2 = load_campaign_split(prepared, f"{split}_stage2", metadata, device)
    labels = stage2.data.labels[:, 0].numpy()
    settings = params.metaheac.adaptation
    common = {"seed": params.seed, "eval_batch_size": params.train.eval_batch_size}

    def run(adapt, **update: Any) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        predictions = adapt(model, weights, stage1, stage2, settings.model_copy(update=update), **common)
        return predictions, time.perf_counter() - started

    reference, seconds = run(adapt_sequential)
    expected = campaign_metrics(labels, reference, stage2.group, top_share=settings.top_fraction)
    campaigns = len(stage2.campaigns)
    out: dict[str, Any] = {
        "split": split,
        "campaigns": campaigns,
        "stage1_rows": stage1.rows,
        "weights": "trained" if (model_dir / MODEL_CONFIG).is_file() else "fresh",
        "sequential": {"campaigns_per_s": campaigns / seconds, "seconds": seconds},
        "metrics": {key: expected[key] for key in METRICS},
    }
    for size in group_sizes:
        predictions, seconds = run(adapt_batched, group_size=size)
        metrics = campaign_metrics(labels, predictions, stage2.group, top_share=settings.top_fraction)
        out[f"batched_{size}"] = {
            "campaigns_per_s": campaigns / seconds,
            "seconds": seconds,
            "speedup": out["sequential"]["seconds"] / seconds,
            "max_prediction_difference": float(np.abs(predictions - reference).max()),
            "max_metric_difference": max(abs(metrics[k] - expected[k]) for k in METRICS),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--split", default="test_cold", help="campaign population to adapt to")
    parser.add_argument("--meta-steps", type=int, default=20)
    parser.add_argument(
        "--group-sizes", default="8,32,64", help="campaigns per batched group, comma-separated"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params = load_params(args.overrides)
    ensure_prepared(args.data_dir, params)
    result = {
        "threads": torch.get_num_threads(),
        "meta_training": meta_training_speed(args.data_dir, params, args.meta_steps),
        "adaptation": adaptation_speed(
            args.data_dir, params, args.split, [int(s) for s in args.group_sizes.split(",")]
        ),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    meta = result["meta_training"]
    print(f"meta-training ({meta['train_campaigns']} campaigns, {meta['train_rows']:,} rows, "
          f"{result['threads']} threads): second-order {meta['second_order']['steps_per_s']:.2f} steps/s, "
          f"first-order {meta['first_order']['steps_per_s']:.2f} steps/s")  # fmt: skip
    adaptation = result["adaptation"]
    print(f"adaptation on {adaptation['split']} ({adaptation['campaigns']} campaigns, "
          f"{adaptation['stage1_rows']:,} stage1 rows, {adaptation['weights']} weights):")  # fmt: skip
    print(f"  {'mode':<12} {'campaigns/s':>12} {'speedup':>8} {'max |dp|':>10} {'max |dmetric|':>14}")
    print(f"  {'sequential':<12} {adaptation['sequential']['campaigns_per_s']:>12.2f} {1.0:>8.2f}")
    for key, run in adaptation.items():
        if key.startswith("batched_"):
            print(
                f"  {key:<12} {run['campaigns_per_s']:>12.2f} {run['speedup']:>8.2f} "
                f"{run['max_prediction_difference']:>10.2e} {run['max_metric_difference']:>14.2e}"
            )


if __name__ == "__main__":
    main()
