"""Synthetic Census-Income (KDD) in the exact raw UCI format, with known true probabilities.

``generate`` writes ``census.tar.gz`` holding ``census-income.data`` and ``census-income.test``
(42 columns, no header, ``, `` separators, UCI values and ranges, an ``instance_weight``) and, beside it,
``synthetic_truth.parquet`` with every row's true probabilities (``row_id`` as prepare numbers rows),
so the uci parser runs unchanged and the oracle AUC is computable. People come from
``population.draw_people`` as one population, then split into the two files. Deterministic in the
seed, archive bytes included.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mtl.config import CensusSynthetic
from mtl.datasets.census import ARCHIVE, COLUMNS, ROW_ID_STRIDE, TASKS, TRUTH, UCI_FILES
from mtl.datasets.census.population import draw_people, marital_status
from mtl.datasets.prepared import replacing

(TRAIN_FILE, _), (TEST_FILE, _) = UCI_FILES


def generate(raw_dir: Path, settings: CensusSynthetic) -> None:
    """Write census.tar.gz (the two raw files) and synthetic_truth.parquet into ``raw_dir``."""
    rng = np.random.default_rng(settings.seed)
    n_train, n = settings.train_rows, settings.train_rows + settings.test_rows
    people = draw_people(n, rng, settings)
    labels = {task: (rng.random(n) < people[f"p_{task}"]).astype(np.int8) for task in TASKS}
    marital = marital_status(rng, people, labels["marital"])
    people["income_50k"] = np.where(labels["income"] == 1, "50000+.", "- 50000.")
    people["marital_stat"] = marital
    members = {
        TRAIN_FILE: _raw_text(people, slice(0, n_train)),
        TEST_FILE: _raw_text(people, slice(n_train, n)),
    }
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    _write_archive(raw_dir / ARCHIVE, members)
    rows = np.r_[np.arange(n_train), np.arange(n - n_train)]
    in_test = np.arange(n) >= n_train
    truth = pa.table(
        {
            "file": np.where(in_test, TEST_FILE, TRAIN_FILE),
            "row": rows.astype(np.int64),
            "row_id": np.where(in_test, ROW_ID_STRIDE + rows, rows).astype(np.int64),
            "p_income": people["p_income"],
            "p_marital": people["p_marital"],
            **labels,
        }
    )
    with replacing(raw_dir / TRUTH.name) as partial:
        pq.write_table(truth, partial)


def _raw_text(people: dict[str, np.ndarray], rows: slice) -> bytes:
    """UCI lines: fields joined by ', ' (so every field after the first has its leading space)."""
    columns = [_strings(people[name][rows]) for name in COLUMNS]
    return ("\n".join(map(", ".join, zip(*columns))) + "\n").encode("ascii")


def _strings(values: np.ndarray) -> list[str]:
    return values.tolist() if values.dtype.kind in "OU" else values.astype(str).tolist()


def _write_archive(path: Path, members: Mapping[str, bytes]) -> None:
    """A gzip'd tar with fixed timestamps and owners, written atomically (same bytes for the same seed)."""
    with (
        replacing(path) as partial,
        open(partial, "wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
