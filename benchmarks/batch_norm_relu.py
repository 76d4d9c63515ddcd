"""Linear(100 -> 128) + BatchNorm1d + ReLU, forward and backward at batch 2048: microseconds per step of the
torch modules and of the fused C kernel (``layers.norm_relu``).

    OMP_NUM_THREADS=1 python benchmarks/batch_norm_relu.py --threads 1

The two alternate in blocks of 20 steps, 15 blocks each; the minimum and the median block are printed (on
a shared machine the median moves with the neighbours' load, the minimum less).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtl.models.layers import MLP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    mlp = MLP(100, [128], dropout=0.0, norm="batch").train()
    x, grad = torch.randn(2048, 100), torch.randn(2048, 128)
    linear, norm, relu = mlp

    def step(fused: bool) -> None:
        out = mlp(x) if fused else relu(norm(linear(x)))
        out.backward(grad)

    times: dict[bool, list[float]] = {False: [], True: []}
    for fused in (False, True, False, True):  # warm-up
        step(fused)
    for _ in range(15):
        for fused in (False, True):
            start = time.perf_counter()
            for _ in range(20):
                step(fused)
            times[fused].append((time.perf_counter() - start) / 20 * 1e6)
    for fused, name in ((False, "torch"), (True, "fused")):
        best, median = min(times[fused]), statistics.median(times[fused])
        print(f"threads={args.threads} {name}: min {best:.0f} us/step, median {median:.0f}")


if __name__ == "__main__":
    main()
