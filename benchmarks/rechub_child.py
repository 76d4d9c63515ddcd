"""torch-rechub's side of ``benchmarks/throughput.py``: run inside the benchmark's own venv (torch-rechub
installed, not ``mtl``), one model per process, printing one JSON line.

    python benchmarks/rechub_child.py CSV_DIR MODEL THREADS

It follows torch-rechub's ``examples/ranking/run_ali_ccp_multi_task.py``: the three CSVs concatenated,
tables sized ``max id + 1`` per column, ESMM on the 23 sparse columns (embed 16, towers [16, 8]), MMoE
and PLE on sparse (embed 4) plus dense columns; its ``DataGenerator`` and ``MTLTrainer`` (Adam). The
figure is rows/s of one ``train_one_epoch`` over the train file, validation excluded.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from peak_memory import peak_memory  # beside this script (its folder is sys.path[0])
from torch_rechub.basic.features import DenseFeature, SparseFeature
from torch_rechub.models.multi_task import ESMM, MMOE, PLE
from torch_rechub.trainers import MTLTrainer
from torch_rechub.utils.data import DataGenerator

ITEM_COLUMNS = ["129", "205", "206", "207", "210", "216"]
BATCH = 2048


def main() -> None:
    csv_dir, model_name, threads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    frames = [pd.read_csv(csv_dir / f"ali_ccp_{s}.csv") for s in ("train", "val", "test")]
    train_rows = len(frames[0])
    data = pd.concat(frames, axis=0)
    data = data.rename(columns={"purchase": "cvr_label", "click": "ctr_label"})
    data["ctcvr_label"] = data["cvr_label"] * data["ctr_label"]
    dense = [c for c in data.columns if c.startswith("D")]
    sparse = [c for c in data.columns if c not in dense and not c.endswith("_label")]
    if model_name == "esmm":
        labels = ["cvr_label", "ctr_label", "ctcvr_label"]
        user = [
            SparseFeature(c, int(data[c].max()) + 1, embed_dim=16) for c in sparse if c not in ITEM_COLUMNS
        ]
        item = [SparseFeature(c, int(data[c].max()) + 1, embed_dim=16) for c in ITEM_COLUMNS]
        used = sparse
        model = ESMM(user, item, cvr_params={"dims": [16, 8]}, ctr_params={"dims": [16, 8]})
    else:
        labels = ["cvr_label", "ctr_label"]
        features = [SparseFeature(c, int(data[c].max()) + 1, embed_dim=4) for c in sparse]
        features += [DenseFeature(c) for c in dense]
        used = sparse + dense
        towers = [{"dims": [8]}, {"dims": [8]}]
        if model_name == "mmoe":
            model = MMOE(features, ["classification"] * 2, 8, {"dims": [16]}, towers)
        else:
            model = PLE(features, ["classification"] * 2, 1, 2, 1, {"dims": [16]}, towers)
    x = {name: data[name].values[:train_rows] for name in used}
    y = data[labels].values[:train_rows]
    x_val = {name: data[name].values[train_rows:] for name in used}
    y_val = data[labels].values[train_rows:]
    loader = DataGenerator(x, y).generate_dataloader(x_val, y_val, x_val, y_val, batch_size=BATCH)[0]
    trainer = MTLTrainer(
        model,
        task_types=["classification"] * 2,
        optimizer_params={"lr": 1e-3, "weight_decay": 1e-4},
        n_epoch=1,
        device="cpu",
        model_path="/tmp",
    )
    started, started_cpu = time.perf_counter(), time.process_time()
    trainer.train_one_epoch(loader)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
    rates = {"rows_per_s": train_rows / seconds, "rows_per_cpu_s": train_rows / cpu_seconds}
    print(json.dumps({**rates, **peak_memory()}))


if __name__ == "__main__":
    main()
