"""MetaHeac quality and speed on the look-alike data.

    python benchmarks/metaheac.py --data-dir DIR [--set KEY=VALUE ...] [--threads N] [--json]
        [--speed [--split test_cold] [--meta-steps 20] [--group-sizes 8,32,64]]

Quality (always): trains MetaHeac and its plain baseline at the given params (``mtl train lookalike
metaheac``, written to DIR), evaluates ``test_hot`` and ``test_cold`` and prints, per split, pooled AUC
and GAUC of the oracle (true probabilities), MetaHeac unadapted and adapted, the plain network unadapted
and fine-tuned on the same stage1 rows by the same adaptation, and the plain network fine-tuned by the
official protocol (a fresh Adam, lr 1e-3, 2 epochs of 512-row batches) -- the baseline MetaHeac must
beat under either protocol -- with the training and adaptation seconds.

Speed (``--speed``): meta-training steps/s of both MAML orders, and per-campaign adaptation batched vs
one campaign at a time; hundreds of campaigns for these figures come from e.g.
``--set datasets.lookalike.synthetic.cold_campaigns=300``. Every batched run is checked against the
sequential one: the largest prediction difference and the largest difference of any campaign metric
are printed beside its speed.

DIR must hold (or gets, through ``mtl download``/``mtl prepare`` with the same ``--set`` overrides) the
prepared look-alike data.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from mtl import paths, pipeline
from mtl.config import Params, load_params
from mtl.datasets.prepared import METADATA_FILE, load_metadata
from mtl.evaluation import campaign_metrics, campaign_table, group_slices, roc_auc
from mtl.models import build_model
from mtl.models.metaheac import MetaHeac
from mtl.training.adaptation import adapt_batched, adapt_sequential
from mtl.training.artifacts import MODEL_CONFIG, load_trained_model
from mtl.training.campaigns import load_campaign_split
from mtl.training.meta import MetaTrainer, TaskSampler
from mtl.training.metaheac_workflow import evaluate_metaheac, train_metaheac
from mtl.training.seeding import derive_seed, seed_everything

METRICS = ("auc", "gauc", "gauc_weighted", "precision_at_top", "recall_at_top")
SPLITS = ("test_hot", "test_cold")
# the official test-time protocol (easezyc/MetaHeac run.py): a fresh Adam, lr 1e-3, 2 epochs of 512 rows
OFFICIAL_ADAPTATION = {"optimizer": "adam", "lr": 1e-3, "epochs": 2, "batch_size": 512}


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


def quality(data_dir: Path, params: Params) -> dict[str, Any]:
    """Train MetaHeac and the plain baseline, evaluate hot and cold: pooled AUC/GAUC of every variant."""
    baselines = params.metaheac.baselines.model_copy(update={"enabled": True})
    metaheac = params.metaheac.model_copy(update={"baselines": baselines})
    params = params.model_copy(update={"metaheac": metaheac})
    started = time.perf_counter()
    trained = train_metaheac("lookalike", data_dir=data_dir, params=params)
    out: dict[str, Any] = {
        "train_seconds": time.perf_counter() - started,
        "meta_seconds": trained["training"]["meta"]["train_seconds"],
        "plain_seconds": trained["training"]["baseline"]["train_seconds"],
    }
    prepared = paths.prepared_dir(data_dir, "lookalike")
    metadata = load_metadata(prepared)
    plain, _ = load_trained_model(paths.model_dir(data_dir, "lookalike", "metaheac/plain"))
    assert isinstance(plain, MetaHeac)
    official = params.metaheac.adaptation.model_copy(update=OFFICIAL_ADAPTATION)
    for split in SPLITS:
        started = time.perf_counter()
        evaluated = evaluate_metaheac("lookalike", data_dir=data_dir, params=params, split=split)
        metrics = evaluated["metrics"]
        seconds = time.perf_counter() - started
        stage1 = load_campaign_split(prepared, f"{split}_stage1", metadata, torch.device("cpu"))
        stage2 = load_campaign_split(prepared, f"{split}_stage2", metadata, torch.device("cpu"))
        weights = {k: v.detach() for k, v in plain.named_parameters()}
        common = {"seed": params.seed, "eval_batch_size": params.train.eval_batch_size}
        predictions = adapt_sequential(plain, weights, stage1, stage2, official, **common)
        labels = stage2.data.labels[:, 0].numpy()
        variants = {name: metrics["variants"][name] for name in metrics["variants"]}
        variants["plain_adapted_official"] = campaign_metrics(labels, predictions, stage2.group)
        scores = pq.read_table(evaluated["predictions"])
        # paired row by row: the evaluation wrote stage2's rows in their order
        assert np.array_equal(scores.column("row_id").to_numpy(), stage2.data.row_id.numpy())
        adapted = scores.column("p_metaheac").to_numpy()
        fine_tuned = {
            "plain_adapted": scores.column("p_plain_adapted").to_numpy(),
            "plain_adapted_official": predictions,
        }
        margins = {
            name: paired_margins(labels, stage2.group, adapted, theirs, seed=params.seed)
            for name, theirs in fine_tuned.items()
        }
        out[split] = {
            "campaigns": metrics["campaigns"],
            "stage1_rows": metrics["stage1_rows"],
            "stage2_rows": metrics["stage2_rows"],
            "evaluate_seconds": seconds,
            "oracle": {k: (metrics["oracle"] or {}).get(k) for k in ("auc", "gauc")},
            **{name: {k: v[k] for k in ("auc", "gauc")} for name, v in variants.items()},
            "margins": margins,
        }
    return out


def paired_margins(
    labels: np.ndarray,
    groups: np.ndarray,
    ours: np.ndarray,
    theirs: np.ndarray,
    *,
    seed: int,
    draws: int = 2000,
) -> dict[str, list[float]]:
    """``ours`` minus ``theirs`` on the same rows, pooled AUC and GAUC, each as [margin, 2.5%, 97.5%] of
    a paired bootstrap over campaigns (whole campaigns drawn with replacement, both scorers on each
    draw): how far the margin could move with another sample of campaigns like these."""
    order, _, parts = group_slices(groups)  # the campaigns in campaign_table's order
    y, a, b = (np.asarray(v, dtype=np.float64)[order] for v in (labels, ours, theirs))
    auc_a, auc_b = (campaign_table(labels, s, groups, top_share=0.05)["auc"] for s in (ours, theirs))
    scored = ~np.isnan(auc_a)  # campaigns with both classes (the same rows for both scorers)
    if not scored.any():
        raise ValueError("no campaign has both classes: no AUC to compare")
    rng = np.random.default_rng(seed)
    draws_auc, draws_gauc = [], []
    for _ in range(draws):
        pick = rng.integers(0, len(parts), len(parts))
        kept = pick[scored[pick]]
        if not kept.size:  # only campaigns of one class drawn: no AUC of either kind (a handful of campaigns)
            continue
        rows = np.concatenate([np.arange(parts[i].start, parts[i].stop) for i in pick])
        draws_auc.append(roc_auc(y[rows], a[rows]) - roc_auc(y[rows], b[rows]))
        draws_gauc.append(float(np.mean(auc_a[kept] - auc_b[kept])))
    margin_auc = roc_auc(y, a) - roc_auc(y, b)
    margin_gauc = float(np.mean(auc_a[scored] - auc_b[scored]))
    return {
        "auc": [margin_auc, *np.percentile(draws_auc, [2.5, 97.5]).tolist()],
        "gauc": [margin_gauc, *np.percentile(draws_gauc, [2.5, 97.5]).tolist()],
    }


def print_quality(result: dict[str, Any]) -> None:
    print(f"training: {result['train_seconds']:.0f} s (meta-training {result['meta_seconds']:.0f} s, "
          f"plain baseline {result['plain_seconds']:.0f} s); pooled AUC / GAUC")  # fmt: skip
    rows = [
        ("oracle", "oracle (true probabilities)"),
        ("metaheac_unadapted", "MetaHeac unadapted"),
        ("metaheac", "MetaHeac adapted"),
        ("plain", "plain unadapted"),
        ("plain_adapted", "plain fine-tuned (same adaptation)"),
        ("plain_adapted_official", "plain fine-tuned (official Adam)"),
    ]
    splits = [s for s in SPLITS if s in result]
    print(f"  {'':<36}" + "".join(f"{s:>18}" for s in splits))
    for key, label in rows:
        cells = []
        for split in splits:
            value = result[split][key]
            cells.append("—" if value["auc"] is None else f"{value['auc']:.3f} / {value['gauc']:.3f}")
        print(f"  {label:<36}" + "".join(f"{c:>18}" for c in cells))
    for split in splits:
        best_plain = max(result[split][k]["auc"] for k in ("plain_adapted", "plain_adapted_official"))
        gain = result[split]["metaheac"]["auc"] - best_plain
        print(f"  {split}: MetaHeac adapted - best fine-tuned plain = {gain:+.3f} pooled AUC "
              f"({result[split]['campaigns']} campaigns, {result[split]['stage2_rows']:,} stage2 rows, "
              f"evaluated in {result[split]['evaluate_seconds']:.0f} s)")  # fmt: skip
        for name, label in (
            ("plain_adapted", "same adaptation"),
            ("plain_adapted_official", "official Adam"),
        ):
            cells = [
                f"{metric} {margin:+.3f} [{low:+.3f}, {high:+.3f}]"
                for metric, (margin, low, high) in result[split]["margins"][name].items()
            ]
            print(
                f"    vs plain fine-tuned ({label}), 95% paired bootstrap over campaigns: " + ", ".join(cells)
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--speed", action="store_true", help="also measure training and adaptation speed")
    parser.add_argument("--split", default="test_cold", help="campaign population to adapt to (speed)")
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
    result: dict[str, Any] = {"threads": torch.get_num_threads(), "quality": quality(args.data_dir, params)}
    if args.speed:
        result["meta_training"] = meta_training_speed(args.data_dir, params, args.meta_steps)
        result["adaptation"] = adaptation_speed(
            args.data_dir, params, args.split, [int(s) for s in args.group_sizes.split(",")]
        )
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"MetaHeac on look-alike ({result['threads']} threads)")
    print_quality(result["quality"])
    if args.speed:
        print_speed(result)


def print_speed(result: dict[str, Any]) -> None:
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
