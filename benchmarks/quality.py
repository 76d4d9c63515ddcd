"""Test AUC of every model next to the oracle and a logistic-regression baseline on the same features.

    python benchmarks/quality.py --data-dir data                 # prepared aliccp and census
    python benchmarks/quality.py --prepared-root DIR             # DIR/aliccp, DIR/census (any present)
    python benchmarks/quality.py --data-dir data --set train.epochs=3 --datasets census
    python benchmarks/quality.py --data-dir data --datasets aliccp --models esmm --sweep   # + the sweep

* models: ``datasets.<dataset>.models`` from params.yaml, trained with the defaults (plus ``--set``),
  selected on the validation split, scored on test (``pipeline.train`` + ``pipeline.evaluate``).
* oracle: the AUC of the generator's true probabilities on test (``evaluation.oracle_aucs`` reads
  what the synthetic generators write into the metadata); "n/a" for real data.
* well_specified (synthetic Ali-CCP, click only): the generator's own click model fitted on the same
  training rows (``benchmarks/well_specified.py``): oracle minus it is what the sample cannot tell, it
  minus a model is the model's own shortfall.
* logistic regression: scikit-learn, one-hot ids (multi-valued fields: 1/length per id) plus the dense
  values; C chosen on the validation split. On a funnel it fits CTR and CTCVR over all rows and scores
  CVR as CTCVR / CTR on clicked rows: the construction our entire-space models use.

* sweep (``--sweep [KEY=V1,V2 ...]``; bare ``--sweep`` = ``SWEEP``): one key at a time around the
  defaults, each value a row of its own (``{model}`` in a key stands for the model's name), so the table
  shows whether the defaults in params.yaml are the winners.

Figures go to stdout and ``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import well_specified  # noqa: E402  (benchmarks/)

from mtl import paths, pipeline  # noqa: E402
from mtl.baselines import logistic_baseline  # noqa: E402
from mtl.config import load_params  # noqa: E402
from mtl.datasets.prepared import DatasetMetadata, load_metadata  # noqa: E402
from mtl.evaluation import oracle_aucs  # noqa: E402

# the generator's own model, per synthetic dataset that has one: test AUC per output
WELL_SPECIFIED = {"aliccp": lambda prepared: {"click": well_specified.fit(prepared)}}
RESULTS = ROOT / "benchmarks" / "results" / "quality.json"
# the hyperparameters that mattered most in our measurements, around the defaults of params.yaml
SWEEP = (
    "train.embedding_lr=0.03,0.3",
    "train.embedding_row_decay=0.0,0.03,0.3",
    "train.embedding_weight_decay=0.0,0.01",
    "train.embedding_optimizer=adam",
    "train.weight_average_decay=0.0,0.3,0.7",
    "models.{model}.interaction=none",
    "models.{model}.embed_dim=8,32",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--prepared-root", type=Path, help="directory holding prepared <dataset>/ folders")
    parser.add_argument("--datasets", nargs="+", default=["aliccp", "census"])
    parser.add_argument("--models", nargs="*", help="default: datasets.<dataset>.models")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sweep", nargs="*", metavar="KEY=V1,V2", help="bare: the SWEEP of this script")
    args = parser.parse_args()
    sweep = [] if args.sweep is None else (args.sweep or list(SWEEP))
    params = load_params(["train.progress=false", *args.overrides])
    data_dir = args.data_dir
    if args.prepared_root:
        data_dir = Path(tempfile.mkdtemp(prefix="mtl-quality-"))
        (data_dir / "prepared").mkdir()
        for dataset in args.datasets:
            if (args.prepared_root / dataset).is_dir():
                (data_dir / "prepared" / dataset).symlink_to(args.prepared_root.resolve() / dataset)
    report = {}
    for dataset in args.datasets:
        prepared = paths.prepared_dir(data_dir, dataset)
        if not (prepared / "metadata.json").is_file():
            print(f"{dataset}: not prepared under {data_dir}, skipped")
            continue
        metadata = load_metadata(prepared)
        oracle = oracle_aucs(metadata.extra, "test", metadata.tasks, metadata.funnel)
        started = time.perf_counter()
        rows = {"oracle": oracle, "logistic_regression": logistic_baseline(prepared, metadata)}
        print(f"{dataset}: logistic regression in {time.perf_counter() - started:.0f} s", flush=True)
        if dataset in WELL_SPECIFIED and metadata.source == "synthetic":
            rows["well_specified"] = WELL_SPECIFIED[dataset](prepared)
        for model in args.models or params.dataset(dataset).models:
            variants = {model: params}
            for entry in sweep:
                key, _, values = entry.format(model=model).partition("=")
                for value in values.split(","):
                    variants[f"{model} {key.rsplit('.', 1)[-1]}={value}"] = load_params(
                        ["train.progress=false", *args.overrides, f"{key}={value}"]
                    )
            for name, variant in variants.items():
                started = time.perf_counter()
                trained = pipeline.train(dataset, model, data_dir=data_dir, params=variant)
                tested = pipeline.evaluate(dataset, model, data_dir=data_dir, params=variant)
                rows[name] = {k: v["auc"] for k, v in tested["metrics"]["outputs"].items()}
                rows[name]["epochs"] = trained["training"]["epochs_run"]
                rows[name]["seconds"] = time.perf_counter() - started
                print(f"{dataset}/{name}: {rows[name]} in {rows[name]['seconds']:.0f} s", flush=True)
        report[dataset] = {"train_rows": metadata.splits["train"].rows, "test_auc": rows}
        print_table(dataset, metadata, rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"\ndetails in {RESULTS}")


def print_table(dataset: str, metadata: DatasetMetadata, rows: dict[str, dict]) -> None:
    outputs = [o for o in rows["logistic_regression"]]
    print(f"\n{dataset} ({metadata.splits['train'].rows:,} training rows): test AUC")
    print(f"{'':<36}" + "".join(f"{o:>10}" for o in outputs) + f"{'vs LR':>9}{'vs oracle':>11}")
    for name, aucs in rows.items():
        cells = "".join(f"{aucs[o]:>10.4f}" if aucs.get(o) is not None else f"{'n/a':>10}" for o in outputs)
        gaps = ""
        if name not in ("oracle", "logistic_regression", "well_specified"):
            for reference in ("logistic_regression", "oracle"):
                pairs = [
                    (aucs[o], rows[reference][o]) for o in outputs if aucs.get(o) and rows[reference].get(o)
                ]
                gap = np.mean([a - b for a, b in pairs]) if pairs else None
                width = 9 if reference == "logistic_regression" else 11
                gaps += f"{gap:>+{width}.4f}" if gap is not None else f"{'n/a':>{width}}"
        print(f"{name:<36}{cells}{gaps}")


if __name__ == "__main__":
    main()
