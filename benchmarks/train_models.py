"""Training speed of every model: the full trainer vs a bare loop, peak memory, evaluation rows/s, and
throughput at the full Ali-CCP vocabulary vs the dataset's own (sparse vs dense embedding gradients).

    python benchmarks/train_models.py --data-dir data        # synthetic Ali-CCP; downloaded and
                                                             # prepared first if missing
    python benchmarks/train_models.py --prepared-dir DIR     # any prepared Ali-CCP directory

* trainer rows/s: ``pipeline.train``'s training phase (batch gathering, loss-term bookkeeping, NaN
  guard, progress, optimiser steps), validation excluded.
* bare rows/s: forward, backward and optimiser steps over batches built in memory beforehand, same
  model, optimisers and batch size. The ratio trainer/bare is the trainer's overhead (target >= 0.85).
* The two alternate: the bare loop runs from the trainer's end-of-epoch callback, so each trainer epoch
  is paired with a bare run right after it; figures are medians over ``--repeats`` pairs, which keeps a
  shared, noisy machine from favouring either. Every model runs in its own process (own peak RSS).
* vocabulary: the bare loop with embedding tables resized to the full Ali-CCP vocabulary (ids unchanged),
  with sparse gradients (SparseAdam; alternating with the data's own size) and with dense ones (AdamW
  sweeps every row each step).

Figures go to stdout and to ``benchmarks/results/train_models.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtl import paths, pipeline  # noqa: E402
from mtl.config import Params, load_params  # noqa: E402
from mtl.datasets.prepared import load_metadata, read_split  # noqa: E402
from mtl.models import MODELS, ModelSpec, build_model  # noqa: E402
from mtl.training.data import TensorSplit  # noqa: E402
from mtl.training.device import resolve_device, resolve_precision  # noqa: E402
from mtl.training.optim import build_optimizers, use_sparse_embeddings  # noqa: E402
from tests.support.prepared import ALICCP_MULTI, ALICCP_SINGLE  # noqa: E402

DATASET = "aliccp"
RESULTS = ROOT / "benchmarks" / "results" / "train_models.json"


def bare_loop(model, batches, params: Params, *, sparse: bool) -> float:
    """Rows per second of forward + backward + optimiser steps over prepared batches (3 warm-up steps)."""
    device = resolve_device(params.train.device)
    precision = resolve_precision(params.train.precision, device)
    model.to(device).train()
    use_sparse_embeddings(model, sparse)
    optimizers = build_optimizers(model, params.train, sparse=sparse)
    scaler = precision.grad_scaler()

    def step(batch) -> None:
        with precision.autocast():
            logits = model(batch.features)
        terms = model.loss_terms(logits, batch.labels)
        loss = torch.stack([t.sum() for t in terms.values()]).sum() / batch.labels.shape[0]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()

    for batch in batches[:3]:
        step(batch)
    _sync(device)
    started = time.perf_counter()
    for batch in batches:
        step(batch)
    _sync(device)
    return sum(len(b.labels) for b in batches) / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def full_vocabulary(spec: ModelSpec) -> ModelSpec:
    """The same fields with the full Ali-CCP vocabulary sizes (never smaller than the data's)."""
    full = {**ALICCP_SINGLE, **ALICCP_MULTI}
    features = spec.features
    grow = [
        dataclasses.replace(f, vocab_size=max(f.vocab_size, full.get(f.name, 0))) for f in features.sparse
    ]
    grow_multi = [
        dataclasses.replace(f, vocab_size=max(f.vocab_size, full.get(f.name, 0))) for f in features.multi
    ]
    return dataclasses.replace(
        spec, features=dataclasses.replace(features, sparse=tuple(grow), multi=tuple(grow_multi))
    )


def measure_model(name: str, data_dir: Path, params: Params, args: argparse.Namespace) -> dict:
    """Everything about one model, in this process (the parent runs one process per model)."""
    if params.train.num_threads:  # pipeline.train sets it too; the bare loop must run alike
        torch.set_num_threads(params.train.num_threads)
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    prepared = paths.prepared_dir(data_dir, DATASET)
    metadata = load_metadata(prepared)
    split = TensorSplit.from_arrays(read_split(prepared, "train", metadata), metadata, "train")
    device = resolve_device(params.train.device)
    split = split.to(device)
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0)).to(device)
    size = params.train.batch_size
    batches = [split.take(order[i : i + size]) for i in range(0, min(len(split), args.bare_rows), size)]
    spec = ModelSpec.from_metadata(metadata)
    bare_model = build_model(name, spec, params)
    pairs: list[tuple[float, float]] = []  # (trainer, bare) rows/s of adjacent time windows

    def bare_between_epochs(epoch: int, metrics: dict[str, float]) -> None:
        pairs.append((metrics["samples_per_s"], bare_loop(bare_model, batches, params, sparse=True)))

    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch)
        (run_dir / "prepared").mkdir(parents=True)
        (run_dir / "prepared" / DATASET).symlink_to(prepared.resolve())
        pipeline.train(DATASET, name, data_dir=run_dir, params=params, on_epoch_end=bare_between_epochs)
        evaluation = pipeline.evaluate(DATASET, name, data_dir=run_dir, params=params)["metrics"]
    out = {
        "model": name,
        "device": str(device),
        "trainer_rows_per_s": statistics.median(t for t, _ in pairs),
        "bare_rows_per_s": statistics.median(b for _, b in pairs),
        "ratio": statistics.median(t / b for t, b in pairs),
        "pairs": pairs,
        "eval_rows_per_s": evaluation["rows_per_s"],
        "baseline_rss_mb": baseline_rss,  # after imports, before any data
        # peak of this process so far: training + evaluation, plus the bare loop's copy of the batches
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if name in args.vocab_models:
        wide = full_vocabulary(spec)
        small_model, wide_model = build_model(name, spec, params), build_model(name, wide, params)
        speeds = [
            (
                bare_loop(small_model, batches, params, sparse=True),
                bare_loop(wide_model, batches, params, sparse=True),
            )
            for _ in range(args.repeats)
        ]
        out["vocabulary"] = {
            "data_rows": sum(f.vocab_size for f in (*spec.features.sparse, *spec.features.multi)),
            "full_rows": sum(f.vocab_size for f in (*wide.features.sparse, *wide.features.multi)),
            "data_sparse_rows_per_s": statistics.median(d for d, _ in speeds),
            "full_sparse_rows_per_s": statistics.median(f for _, f in speeds),
            "full_over_data": statistics.median(f / d for d, f in speeds),
            "full_dense_rows_per_s": bare_loop(
                build_model(name, wide, params), batches[:20], params, sparse=False
            ),
        }
    return out


def ensure_data(args: argparse.Namespace, params: Params) -> Path:
    """A data directory whose prepared/aliccp exists: --prepared-dir linked in, or prepared on demand."""
    if args.prepared_dir:
        data_dir = Path(tempfile.mkdtemp(prefix="mtl-bench-"))
        (data_dir / "prepared").mkdir()
        (data_dir / "prepared" / DATASET).symlink_to(Path(args.prepared_dir).resolve())
        return data_dir
    if not paths.prepared_metadata(args.data_dir, DATASET).is_file():
        synthetic = load_params(["datasets.aliccp.source=synthetic", *args.overrides])
        pipeline.download(DATASET, data_dir=args.data_dir, params=synthetic)
        pipeline.prepare(DATASET, data_dir=args.data_dir, params=synthetic)
    return args.data_dir


def print_tables(rows: list[dict]) -> None:
    header = ("model", "trainer rows/s", "bare rows/s", "ratio", "peak RSS MB", "eval rows/s")
    print("\n" + "".join(f"{h:>16}" if i else f"{h:<14}" for i, h in enumerate(header)))
    for r in rows:
        cells = (
            r["trainer_rows_per_s"],
            r["bare_rows_per_s"],
            r["ratio"],
            r["peak_rss_mb"],
            r["eval_rows_per_s"],
        )
        print(f"{r['model']:<14}" + "".join(f"{c:>16,.2f}" if c < 10 else f"{c:>16,.0f}" for c in cells))
    vocab = [r for r in rows if "vocabulary" in r]
    if not vocab:
        return
    sizes = vocab[0]["vocabulary"]
    print(
        f"\nbare loop, embedding rows: the data's {sizes['data_rows']:,} vs the full {sizes['full_rows']:,}"
    )
    header = ("model", "data, sparse", "full, sparse", "full/data", "full, dense")
    print("".join(f"{h:>16}" if i else f"{h:<14}" for i, h in enumerate(header)))
    for r in vocab:
        v = r["vocabulary"]
        cells = (
            v["data_sparse_rows_per_s"],
            v["full_sparse_rows_per_s"],
            v["full_over_data"],
            v["full_dense_rows_per_s"],
        )
        print(f"{r['model']:<14}" + "".join(f"{c:>16,.2f}" if c < 10 else f"{c:>16,.0f}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--prepared-dir", help="a prepared Ali-CCP directory to use instead of --data-dir")
    funnel_models = [name for name in MODELS if name != "metaheac"]  # MetaHeac: benchmarks/metaheac.py
    parser.add_argument("--models", nargs="+", default=funnel_models, choices=funnel_models)
    parser.add_argument("--vocab-models", nargs="*", default=["esmm", "mmoe"])
    parser.add_argument("--repeats", type=int, default=4, help="trainer epochs, each followed by a bare run")
    parser.add_argument("--bare-rows", type=int, default=200_000, help="rows of prebuilt batches (bare loop)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    base = [
        "train.batch_size=2048",
        "train.progress=false",
        "train.resume=false",
        f"train.epochs={args.repeats}",
        f"train.early_stopping.patience={args.repeats}",  # every repeat runs
    ]
    params = load_params([*base, *args.overrides])
    if args.child:
        print(json.dumps(measure_model(args.child, args.data_dir, params, args)))
        return
    data_dir = ensure_data(args, params)
    rows = []
    for name in args.models:
        command = [sys.executable, __file__, "--child", name, "--data-dir", str(data_dir), "--repeats",
                   str(args.repeats), "--bare-rows", str(args.bare_rows),
                   "--vocab-models", *args.vocab_models, *(f"--set={s}" for s in args.overrides)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{name} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(
            f"{name}: {rows[-1]['trainer_rows_per_s']:,.0f} rows/s, ratio {rows[-1]['ratio']:.2f}", flush=True
        )
    metadata = load_metadata(paths.prepared_dir(data_dir, DATASET))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    threads = params.train.num_threads or torch.get_num_threads()
    report = {
        "prepared": str(paths.prepared_dir(data_dir, DATASET)),
        "train_rows": metadata.splits["train"].rows,
        "batch_size": params.train.batch_size,
        "threads": threads,
        "models": rows,
    }
    RESULTS.write_text(json.dumps(report, indent=2))
    print_tables(rows)
    print(f"\n{metadata.splits['train'].rows:,} training rows, batch {params.train.batch_size}, "
          f"{threads} torch threads; details in {RESULTS}")  # fmt: skip


if __name__ == "__main__":
    main()
