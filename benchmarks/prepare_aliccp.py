"""Benchmark: generate synthetic Ali-CCP at 1M and 4M train rows, then prepare each in a fresh process.

Prints generation time, prepare rows/s and the peak resident memory of each prepare process: memory is
bounded by a read block, a row group and the vocabularies, so it must not grow with the file size.

    python benchmarks/prepare_aliccp.py                      # 1M and 4M train rows (+10% test rows)
    python benchmarks/prepare_aliccp.py --rows 200000 1000000 --validate
    python benchmarks/prepare_aliccp.py --oracle-max-rows 1000   # the oracle's rows out of the picture
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs in a fresh interpreter so that its peak RSS is the step's own: (stage, data dir, overrides).
CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from mtl import paths, pipeline
from mtl.config import load_params
from mtl.datasets import get_dataset
from mtl.datasets.base import Manifest
from mtl.datasets.prepared import publish_directory, staging_directory

stage, data_dir, overrides = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
params = load_params(overrides)
start = time.perf_counter()
if stage == "generate":
    pipeline.download("aliccp", data_dir=data_dir, params=params, source="synthetic")
elif stage == "prepare":
    final = paths.prepared_dir(data_dir, "aliccp")
    staging = staging_directory(final)
    manifest = Manifest.load(paths.raw_manifest(data_dir, "aliccp"))
    get_dataset("aliccp").prepare(paths.raw_dir(data_dir, "aliccp"), staging, manifest, params)
    publish_directory(staging, final)
else:  # the whole `mtl prepare` step: prepare + Great Expectations suite on the prepared splits
    pipeline.prepare("aliccp", data_dir=data_dir, params=params)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak}))
"""


def run(stage: str, data_dir: Path, overrides: dict[str, object]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, stage, str(data_dir), json.dumps(overrides)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000], help="train rows")
    parser.add_argument("--validate", action="store_true", help="also time `mtl prepare` with its GX suite")
    parser.add_argument("--keep", type=Path, help="data directory to keep (default: a temporary one)")
    parser.add_argument(
        "--oracle-max-rows",
        type=int,
        help="datasets.aliccp.prepare.oracle_max_rows (the oracle keeps up to this many rows per split)",
    )
    args = parser.parse_args()

    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory(prefix="aliccp-bench-") as tmp:
            data_dir = args.keep / str(rows) if args.keep else Path(tmp)
            overrides = {
                "datasets.aliccp.synthetic.train_rows": rows,
                "datasets.aliccp.synthetic.test_rows": rows // 10,
            }
            if args.oracle_max_rows:
                overrides["datasets.aliccp.prepare.oracle_max_rows"] = args.oracle_max_rows
            total = rows + rows // 10
            generated = run("generate", data_dir, overrides)
            raw = data_dir / "raw" / "aliccp"
            size_mb = sum(p.stat().st_size for p in raw.iterdir() if p.suffix == ".csv") / 2**20
            prepared = run("prepare", data_dir, overrides)
            metadata = json.loads((data_dir / "prepared" / "aliccp" / "metadata.json").read_text())
            oracle = metadata["extra"]["oracle_auc"]
            row = {
                "train rows": rows,
                "rows (all files)": total,
                "token files MB": size_mb,
                "generate s": generated["seconds"],
                "prepare s": prepared["seconds"],
                "prepare rows/s": total / prepared["seconds"],
                "prepare peak RSS MB": prepared["peak_rss_mb"],
                "oracle AUC click/purchase (test)": " / ".join(
                    "n/a" if auc is None else f"{auc:.3f}"
                    for auc in (oracle["test"]["click"], oracle["test"]["purchase"])
                ),
            }
            if args.validate:
                validated = run("validate", data_dir, overrides)
                row["prepare+GX s"] = validated["seconds"]
                row["prepare+GX peak RSS MB"] = validated["peak_rss_mb"]
            results.append(row)
            print(json.dumps(row), flush=True)

    columns = list(results[0])
    print()
    print(" | ".join(columns))
    print(" | ".join("---" for _ in columns))
    for row in results:
        print(
            " | ".join(
                f"{row[c]:,.1f}"
                if isinstance(row[c], float)
                else f"{row[c]:,}"
                if isinstance(row[c], int)
                else row[c]
                for c in columns
            )
        )


if __name__ == "__main__":
    main()
