"""What MLflow tracking and registration add to training one model, against the embedded SQLite store.

    python benchmarks/tracking_overhead.py                      # synthetic Ali-CCP, 50k train rows, MMoE
    python benchmarks/tracking_overhead.py --rows 200000 --epochs 3 --model ple

On a shared machine two trainings of the same model differ by more than tracking costs, so the
overhead is timed inside the tracked calls: the wall time of ``pipeline.train`` with tracking minus the
time spent in the training itself (``pipeline._fit``), plus the per-epoch logging that runs inside it;
likewise ``pipeline.evaluate`` minus the scoring (``pipeline._score``). The tracked training includes
connecting, the parent/child runs, params, lineage (DVC hash of the prepared data, git), per-epoch
metrics, the training summary, the data input and logging the pyfunc model (input example, signature).
Evaluation logs the split's metrics and the PNG plots; ``pipeline.register`` runs the gate, creates the
version, moves aliases and writes the model card. The same trainings untracked are timed too, as a
sanity check of the order of magnitude. Creating a fresh SQLite store is paid once and reported apart.

Figures go to stdout and to ``benchmarks/results/tracking_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl import paths, pipeline  # noqa: E402
from mtl.config import load_params  # noqa: E402
from mtl.serving import package  # noqa: E402
from mtl.tracking import runs  # noqa: E402
from mtl.tracking.store import connect  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000, help="synthetic Ali-CCP train rows")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="mmoe")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mtl-tracking-bench-"))
    try:
        figures = measure(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = ROOT / "benchmarks" / "results" / "tracking_overhead.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nwritten to {out}")


def measure(work: Path, args: argparse.Namespace) -> dict:
    data_dir, db = work / "data", work / "mlflow.db"
    common = [
        f"datasets.aliccp.synthetic.train_rows={args.rows}",
        f"datasets.aliccp.synthetic.test_rows={max(args.rows // 4, 1000)}",
        f"train.epochs={args.epochs}",
        "train.resume=false",
        "train.progress=false",
        "train.early_stopping.patience=100",  # every run trains all epochs
        f"tracking.uri=sqlite:///{db}",
        f"tracking.artifact_root={(work / 'artifacts').as_uri()}",
        "gate.aliccp.floors={click: 0.0, ctcvr: 0.0}",
        "gate.aliccp.prediction_rate_ratio=[0.001, 1000.0]",
    ]
    untracked = load_params([*common, "tracking.enabled=false"])
    tracked = load_params([*common, "tracking.enabled=true"])
    print(f"preparing synthetic Ali-CCP ({args.rows:,} train rows) in {data_dir} ...", flush=True)
    pipeline.download("aliccp", data_dir=data_dir, params=untracked)
    pipeline.prepare("aliccp", data_dir=data_dir, params=untracked)

    started = time.perf_counter()
    with connect(tracked):
        pass
    store_seconds = time.perf_counter() - started

    inner = _Stopwatch()
    pipeline._fit = inner.wrap("fit", pipeline._fit)
    pipeline._score = inner.wrap("score", pipeline._score)
    runs.EpochLogger._log = inner.wrap("epoch_logging", runs.EpochLogger._log)
    package.log_pyfunc = inner.wrap("log_model", package.log_pyfunc)
    rows: list[dict[str, float]] = []
    for repeat in range(args.repeats):
        row: dict[str, float] = {}
        for label, params in (("untracked", untracked), ("tracked", tracked)):
            inner.reset()
            shutil.rmtree(paths.model_dir(data_dir, "aliccp", args.model), ignore_errors=True)
            train = _timed(pipeline.train, "aliccp", args.model, data_dir, params)
            evaluate = _timed(pipeline.evaluate, "aliccp", args.model, data_dir, params)
            row[f"train_{label}_s"], row[f"evaluate_{label}_s"] = train, evaluate
        row["train_overhead_s"] = (
            row["train_tracked_s"] - inner.seconds["fit"] + inner.seconds["epoch_logging"]
        )
        row["epoch_logging_s"] = inner.seconds["epoch_logging"]
        row["log_model_s"] = inner.seconds["log_model"]
        row["evaluate_overhead_s"] = row["evaluate_tracked_s"] - inner.seconds["score"]
        row["register_s"] = _timed(pipeline.register, "aliccp", args.model, data_dir, tracked)
        row["added_s"] = row["train_overhead_s"] + row["evaluate_overhead_s"] + row["register_s"]
        rows.append(row)
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)

    best = {key: min(r[key] for r in rows) for key in rows[0]}
    figures = {
        "model": args.model,
        "train_rows": args.rows,
        "epochs": args.epochs,
        "repeats": rows,
        "best": best,
        "store_creation_s": store_seconds,
    }
    setting = f"{args.rows:,} rows, {args.epochs} epochs, best of {args.repeats}"
    print(f"\n{args.model} on synthetic Ali-CCP, {setting}:")
    print(f"  training (untracked, for scale)       {best['train_untracked_s']:7.2f} s")
    parts = f"pyfunc model {best['log_model_s']:.2f} s, per-epoch logging {best['epoch_logging_s']:.2f} s"
    print(f"  tracking during training              {best['train_overhead_s']:7.2f} s  (of which {parts})")
    print(f"  tracking during evaluation            {best['evaluate_overhead_s']:7.2f} s")
    print(f"  register (gate + version + card)      {best['register_s']:7.2f} s")
    print(f"  added per model                       {best['added_s']:7.2f} s"
          f"  ({100 * best['added_s'] / best['train_untracked_s']:.0f}% of this training)")  # fmt: skip
    print(f"  creating a fresh SQLite store (once)  {store_seconds:7.2f} s")
    return figures


class _Stopwatch:
    """Seconds spent inside wrapped functions, per name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)

    def wrap(self, name: str, function):
        self.seconds[name] = 0.0

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed


def _timed(step, dataset: str, model: str, data_dir: Path, params) -> float:
    started = time.perf_counter()
    step(dataset, model, data_dir=data_dir, params=params)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
