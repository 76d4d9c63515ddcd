"""Training throughput: our trainer vs torch-rechub vs a bare loop, at the full Ali-CCP vocabulary and at
a small one, for ESMM, MMoE and PLE; rows/s and peak RSS, plus our scaling from 1 to 2 threads.

    python benchmarks/throughput.py                          # 200k rows, 1 thread (+ ours at 2 threads)
    python benchmarks/throughput.py --rows 20000 --models esmm --no-rechub   # a quick look
    python benchmarks/throughput.py --shapes defaults --no-rechub   # the models of params.yaml

* Data: one Ali-CCP-layout CSV folder per vocabulary (``ali_ccp_{train,val,test}.csv``: click,
  purchase, 23 label-encoded sparse columns, 8 dense; ``--rows`` train rows, 2,000 each for val and
  test), ids drawn skewed towards small ones over each field's vocabulary. Full: the real Ali-CCP
  vocabulary sizes (1.79M ids in all), the largest id of every field present, so torch-rechub sizes
  its tables to them. Small: every field capped at 1,000 ids.
* ours: ``pipeline.train``'s second epoch (training phase only: ``samples_per_s``; the first also reads
  the split from Parquet, as torch-rechub's figure leaves out its ``read_csv``) on the CSV prepared by
  ``mtl prepare aliccp`` (``--source csv``); its tables are widened to the CSV's sizes so both sides
  hold the same table. bare: forward, backward and optimiser steps of the same model and optimisers
  over batches built beforehand. torch-rechub 0.9.0: its example's models, ``DataGenerator`` and
  ``MTLTrainer.train_one_epoch`` (``benchmarks/rechub_child.py``), installed with pip into
  ``.mtl/bench-venv`` on first use (reused after).
* Same shapes on both sides (torch-rechub's Ali-CCP example): batch 2048; ESMM embed 16, towers
  [16, 8]; MMoE embed 4, 8 experts [16], towers [8]; PLE embed 4, 1 level, 2 specific + 1 shared
  experts [16], towers [8]; MLPs with batch norm. Every figure comes from its own process (own peak
  RSS), with ``--threads`` torch threads; ours is also run with 2 threads. ``--shapes defaults``: ours
  and the bare loop with the models as ``params.yaml`` configures them instead (pairwise field dots,
  wider experts and towers, no batch norm; batch 2048 still), which torch-rechub has no counterpart
  for, so that comparison is skipped. Memory is the peak RSS and,
  in brackets, its private part (``benchmarks/peak_memory.py``): the two venvs' copies of the same torch
  build leave different amounts of library pages resident, which the private figure leaves out.

Figures go to stdout and to ``benchmarks/results/throughput.json``: rows per wall-clock second and per
CPU second of the process (steadier on a shared machine; with one thread the two agree on an idle one).
The 2-thread scaling is wall-clock only, so run it when the machine is otherwise idle, e.g.
``python benchmarks/throughput.py --models esmm mmoe ple --vocabularies full --no-rechub`` (``--threads 1``,
the default, is the baseline; ``--no-scaling`` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.peak_memory import peak_memory  # noqa: E402
from mtl import paths, pipeline  # noqa: E402
from mtl.config import load_params  # noqa: E402
from mtl.datasets.aliccp import CSV, DENSE_FIELDS, FIELDS, TASKS  # noqa: E402
from mtl.datasets.prepared import METADATA_FILE  # noqa: E402
from tests.support.prepared import ALICCP_MULTI, ALICCP_SINGLE  # noqa: E402

DATASET = "aliccp"
BATCH = 2048
STATE = ROOT / ".mtl"
VENV = STATE / "bench-venv"
WORK = STATE / "bench-throughput"
RECHUB_PACKAGES = ["torch==2.13.0", "torch-rechub==0.9.0"]
RESULTS = ROOT / "benchmarks" / "results" / "throughput.json"
FULL_VOCABULARY = {**ALICCP_SINGLE, **ALICCP_MULTI}
SMALL_CAP = 1000
# torch-rechub's Ali-CCP example, in our parameters (its MLPs carry batch norm; its input layer is the
# concatenation of the field vectors, without our default pairwise field dots, which would triple the
# width of MMoE's and PLE's input: 100 -> 353)
MODEL_SETTINGS = {
    "esmm": ["embed_dim=16", "tower_dims=[16, 8]"],
    "mmoe": ["embed_dim=4", "n_experts=8", "expert_dims=[16]", "tower_dims=[8]"],
    "ple": ["embed_dim=4", "levels=1", "specific_experts=2", "shared_experts=1", "expert_dims=[16]",
            "tower_dims=[8]"],
}  # fmt: skip
SHARED_SETTINGS = ["interaction=none"]


def vocabulary(kind: str) -> dict[str, int]:
    return {f: v if kind == "full" else min(v, SMALL_CAP) for f, v in FULL_VOCABULARY.items()}


def write_csv_folder(folder: Path, rows: int, sizes: dict[str, int], seed: int = 0) -> None:
    """The three Ali-CCP-layout CSVs; every field's largest id appears in the train file."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", rows), ("valid", 2000), ("test", 2000)):
        columns: dict[str, np.ndarray] = {}
        click = rng.random(n) < 0.04
        columns["click"] = click.astype(np.int64)
        columns["purchase"] = (click & (rng.random(n) < 0.05)).astype(np.int64)
        for field in FIELDS:
            size = sizes[field]
            ids = (rng.random(n) ** 3 * (size - 1)).astype(np.int64) + 1  # skewed, like real id counts
            ids[0] = size - 1
            columns[field] = np.minimum(ids, size - 1)
        for field in DENSE_FIELDS:
            columns[field] = rng.random(n).round(6)
        path = folder / CSV.files[split]
        header = ",".join(columns)
        table = np.column_stack([columns[c] for c in columns])
        formats = ["%d"] * (len(TASKS) + len(FIELDS)) + ["%.6f"] * len(DENSE_FIELDS)
        np.savetxt(path, table, fmt=formats, delimiter=",", header=header, comments="")


def prepared_data(kind: str, rows: int) -> tuple[Path, Path]:
    """(CSV folder, a data dir whose prepared/aliccp has tables as large as the CSV's), built once."""
    base = WORK / f"{kind}-{rows}"
    csv_dir, data_dir, wide_dir = base / "csv", base / "data", base / "wide"
    sizes = vocabulary(kind)
    if not (csv_dir / CSV.files["test"]).is_file():
        write_csv_folder(csv_dir, rows, sizes)
    if not paths.prepared_metadata(data_dir, DATASET).is_file():
        params = load_params([f"datasets.{DATASET}.source=csv", f"datasets.{DATASET}.location={csv_dir}"])
        pipeline.download(DATASET, data_dir=data_dir, params=params)
        pipeline.prepare(DATASET, data_dir=data_dir, params=params)
    prepared, wide = paths.prepared_dir(data_dir, DATASET), paths.prepared_dir(wide_dir, DATASET)
    if not (wide / METADATA_FILE).is_file():
        wide.mkdir(parents=True, exist_ok=True)
        for item in prepared.iterdir():
            if item.name != METADATA_FILE and not (wide / item.name).exists():
                (wide / item.name).symlink_to(item.resolve())
        metadata = json.loads((prepared / METADATA_FILE).read_text())
        for field in metadata["features"]["sparse"] + metadata["features"].get("multi", []):
            field["vocab_size"] = max(field["vocab_size"], sizes.get(field["name"], 0))
        (wide / METADATA_FILE).write_text(json.dumps(metadata))
    return csv_dir, wide_dir


def train_params(model: str, threads: int, shapes: str = "rechub"):
    """Our parameters for a measurement: torch-rechub's example shapes, or params.yaml's models."""
    example = [
        f"models.{model}.norm=batch",
        f"models.{model}.dropout=0.0",
        *(f"models.{model}.{setting}" for setting in [*SHARED_SETTINGS, *MODEL_SETTINGS[model]]),
    ]
    return load_params(
        [
            f"train.batch_size={BATCH}",
            "train.epochs=2",  # the figure is epoch 2's: epoch 1 also reads the split from Parquet
            "train.early_stopping.patience=2",
            "train.progress=false",
            "train.resume=false",
            f"train.num_threads={threads}",
            "train.device=cpu",
            "tracking.enabled=false",
            *(example if shapes == "rechub" else []),
        ]
    )


def run_ours(model: str, data_dir: Path, threads: int, shapes: str) -> dict:
    params = train_params(model, threads, shapes)
    epochs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch)
        (run_dir / "prepared").mkdir()
        (run_dir / "prepared" / DATASET).symlink_to(paths.prepared_dir(data_dir, DATASET).resolve())
        pipeline.train(
            DATASET,
            model,
            data_dir=run_dir,
            params=params,
            on_epoch_end=lambda _, m: epochs.append(m),
        )
    record = epochs[-1]
    return {
        "rows_per_s": record["samples_per_s"],
        "rows_per_cpu_s": record["train_rows"] / record["train_cpu_seconds"],
    }


def run_bare(model: str, data_dir: Path, threads: int, shapes: str) -> dict:
    import torch

    from mtl.datasets.prepared import load_metadata, read_split
    from mtl.models import build_model
    from mtl.training.data import TensorSplit
    from mtl.training.optim import build_optimizers, use_sparse_embeddings

    torch.set_num_threads(threads)
    params = train_params(model, threads, shapes)
    prepared = paths.prepared_dir(data_dir, DATASET)
    metadata = load_metadata(prepared)
    split = TensorSplit.from_arrays(read_split(prepared, "train", metadata), metadata, "train")
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
    batches = [split.take(order[i : i + BATCH]) for i in range(0, len(split), BATCH)]
    net = build_model(model, metadata, params).train()
    use_sparse_embeddings(net, True, rows=True)
    optimizers = build_optimizers(net, params.train, sparse=True)

    def step(batch) -> None:
        terms = net.loss_terms(net(batch.features), batch.labels)
        loss = torch.stack([t.sum() for t in terms.values()]).sum() / batch.labels.shape[0]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()

    for batch in batches[:3]:
        step(batch)
    started, started_cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        step(batch)
    return {
        "rows_per_s": len(split) / (time.perf_counter() - started),
        "rows_per_cpu_s": len(split) / (time.process_time() - started_cpu),
    }


def ensure_venv() -> Path:
    """torch-rechub's interpreter: ``.mtl/bench-venv``, created and filled by pip on first use."""
    python = VENV / "bin" / "python"
    check = [str(python), "-c", "import torch_rechub, torch; assert torch.__version__.startswith('2.13.0')"]
    if python.is_file() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    print(f"installing {' '.join(RECHUB_PACKAGES)} into {VENV} ...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *RECHUB_PACKAGES], check=True)
    return python


def child(command: list[str], threads: int, repeat: int = 1) -> dict:
    """A measurement in its own process (BLAS/OpenMP pools sized like torch's), ``repeat`` times: the
    median of each rate and the largest peak memory (``runs`` keeps every run's rows/s)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    results = []
    for _ in range(repeat):
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    merged = {key: statistics.median(r[key] for r in results) for key in ("rows_per_s", "rows_per_cpu_s")}
    for key in ("peak_rss_mb", "peak_private_mb"):
        values = [r[key] for r in results if r.get(key) is not None]
        merged[key] = max(values) if values else None
    merged["runs"] = [r["rows_per_s"] for r in results]
    return merged


def measure(args: argparse.Namespace) -> list[dict]:
    with_rechub = not args.no_rechub and args.shapes == "rechub"
    if not args.no_rechub and not with_rechub:
        print("--shapes defaults: torch-rechub has no such models, so it is not run", flush=True)
    rechub_python = ensure_venv() if with_rechub else None
    rows = []
    for kind in args.vocabularies:
        csv_dir, data_dir = prepared_data(kind, args.rows)
        for model in args.models:
            ours = [sys.executable, __file__, "--child", "ours", model, str(data_dir), args.shapes]
            bare = [sys.executable, __file__, "--child", "bare", model, str(data_dir), args.shapes]
            row = {"vocabulary": kind, "model": model, "shapes": args.shapes, "threads": args.threads}
            row["ours"] = child([*ours, str(args.threads)], args.threads, args.repeat)
            row["bare"] = child([*bare, str(args.threads)], args.threads, args.repeat)
            if rechub_python:
                rechub = [
                    str(rechub_python),
                    str(ROOT / "benchmarks" / "rechub_child.py"),
                    str(csv_dir),
                    model,
                ]
                row["rechub"] = child([*rechub, str(args.threads)], args.threads, args.repeat)
            if args.scaling:
                row["ours_2_threads"] = child([*ours, "2"], 2, args.repeat)
            rows.append(row)
            print(describe(row), flush=True)
    return rows


def memory(result: dict) -> str:
    """Peak RSS, and in brackets the part that is not shared-library pages (``peak_memory``)."""
    private = result.get("peak_private_mb")
    return f"{result['peak_rss_mb']:,.0f} MB" + ("" if private is None else f" [{private:,.0f} private]")


def describe(row: dict) -> str:
    ours = row["ours"]
    text = (
        f"{row['model']:<5} {row['vocabulary']:<5} {row['shapes']:<8} "
        f"ours {ours['rows_per_s']:>8,.0f} rows/s "
        f"({ours['rows_per_cpu_s']:>8,.0f} per CPU s, {memory(ours)}), bare "
        f"{row['bare']['rows_per_s']:>8,.0f} ({row['bare']['rows_per_cpu_s']:>8,.0f})"
    )
    if "rechub" in row:
        rechub = row["rechub"]
        text += (
            f", torch-rechub {rechub['rows_per_s']:>7,.0f} ({rechub['rows_per_cpu_s']:>7,.0f}, "
            f"{memory(rechub)}): {ours['rows_per_s'] / rechub['rows_per_s']:.1f}x "
            f"({ours['rows_per_cpu_s'] / rechub['rows_per_cpu_s']:.1f}x per CPU s)"
        )
    if "ours_2_threads" in row:
        two = row["ours_2_threads"]
        text += (
            f"; 2 threads {two['rows_per_s']:,.0f} rows/s: {two['rows_per_s'] / ours['rows_per_s']:.2f}x "
            f"the 1-thread wall-clock figure (meaningful on an idle machine only)"
        )
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="train rows of the CSV")
    parser.add_argument("--models", nargs="+", default=list(MODEL_SETTINGS), choices=list(MODEL_SETTINGS))
    parser.add_argument("--vocabularies", nargs="+", default=["full", "small"], choices=["full", "small"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--repeat", type=int, default=1, help="processes per figure; prints the median rows/s"
    )
    parser.add_argument(
        "--shapes",
        choices=["rechub", "defaults"],
        default="rechub",
        help="torch-rechub's example models (default) or params.yaml's (no torch-rechub then)",
    )
    parser.add_argument("--no-rechub", action="store_true", help="skip torch-rechub (no venv needed)")
    parser.add_argument("--no-scaling", dest="scaling", action="store_false", help="skip ours at 2 threads")
    parser.add_argument(
        "--child", nargs=5, metavar=("WHAT", "MODEL", "DATA_DIR", "SHAPES", "THREADS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        what, model, data_dir, shapes, threads = args.child
        result = {"ours": run_ours, "bare": run_bare}[what](model, Path(data_dir), int(threads), shapes)
        result.update(peak_memory())
        print(json.dumps(result))
        return
    rows = measure(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"train_rows": args.rows, "batch_size": BATCH, "shapes": args.shapes, "rows": rows}, indent=2
        )
    )
    print(
        f"\n{args.rows:,} training rows, batch {BATCH}, {args.shapes} shapes, {args.threads} thread(s); "
        f"details in {RESULTS}"
    )


if __name__ == "__main__":
    main()
