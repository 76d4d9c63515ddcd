"""Hand-made raw files shaped like the public samples, one writer per source of every dataset.

Generated here from code (never copied): the shapes are those of the public files a new user tries first
-- PaddleRec's Ali-CCP token sample is purchase-enriched (more purchases than the 0.1 plausibility bound),
PaddleRec's Census one-hot sample has no income positive at all, the MetaHeac train split holds stage1
seeds only (every label 1), torch-rechub's CSV samples have a header and 100/50/50 (Ali-CCP) or
80/20/20 (Census) rows. Each such file set must pass download -> validate -> prepare -> train ->
evaluate with warnings, never a stop (tests/test_validation.py).

``SHAPED`` maps ``<dataset>/<source>`` to a ``Shaped``: ``write(folder)`` writes the files and returns the
``--from`` location (``None`` for the generated sources), ``overrides`` are what such a small sample
needs, ``warnings`` the summary columns expected to warn.
"""

from __future__ import annotations

import pickle
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtl.datasets.aliccp import FIELDS, MULTI_VALUED
from mtl.datasets.lookalike import ARCHIVE_FOLDER, SPLIT_FILES
from mtl.datasets.lookalike.legacy_pickle import dumps_legacy_dataframe
from tests.support import raw_files

Writer = Callable[[Path], Path | None]


@dataclass(frozen=True)
class Shaped:
    dataset: str
    source: str
    write: Writer
    overrides: tuple[str, ...] = ()
    warnings: tuple[
        str, ...
    ] = ()  # summary columns (prepared suite) that must warn, e.g. rate__valid__purchase


# --- Ali-CCP ---------------------------------------------------------------------------------------------

USER_FIELDS = (
    "101",
    "109_14",
    "110_14",
    "127_14",
    "150_14",
    "121",
    "122",
    "124",
    "125",
    "126",
    "127",
    "128",
    "129",
)


def enriched_labels(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clicks ~35%, purchases ~20% of all rows (a purchase only after a click): purchase-enriched."""
    rng = np.random.default_rng(seed)
    click = (rng.random(n) < 0.35).astype(int)
    click[:2] = 1  # every split gets a click and a purchase
    purchase = click * (rng.random(n) < 0.6).astype(int)
    purchase[0] = 1
    return click, purchase


def field_ids(rng: np.random.Generator, field: str, pool: int = 4) -> list[int]:
    """Raw ids of one field (several for a multi-valued field, as in the ESMM sample's long lists)."""
    count = int(rng.integers(2, 8)) if field in MULTI_VALUED else 1
    return [int(1000 * (FIELDS.index(field) + 1) + rng.integers(0, pool)) for _ in range(count)]


def token_lines(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    click, purchase = enriched_labels(n, seed)
    lines = []
    for i in range(n):
        tokens = [f"{f}:{v}" for f in FIELDS for v in field_ids(rng, f)]
        lines.append(raw_files.token_line(i + 1, int(click[i]), int(purchase[i]), *tokens))
    return lines


def write_aliccp_tokens(folder: Path) -> Path:
    """PaddleRec ESMM's ``small.txt`` shape, under the names of the full files (traindata_10w.csv ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "traindata_10w.csv").write_text("\n".join(token_lines(60, 1)) + "\n")
    (folder / "testdata_10w.csv").write_text("\n".join(token_lines(20, 2)) + "\n")
    return folder


def tianchi_part(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Skeleton lines (ad fields) and the common-feature lines of their users (user fields)."""
    rng = np.random.default_rng(seed)
    click, purchase = enriched_labels(n, seed)
    users = [f"u{seed}_{k}" for k in range(5)]
    common = [
        raw_files.common(user, *((f, v, 1.0) for f in USER_FIELDS for v in field_ids(rng, f)))
        for user in users
    ]
    ad_fields = [f for f in FIELDS if f not in USER_FIELDS]
    skeleton = [
        raw_files.skeleton(
            i + 1,
            int(click[i]),
            int(purchase[i]),
            users[i % len(users)],
            *((f, v, round(float(rng.random()), 3)) for f in ad_fields for v in field_ids(rng, f)),
        )
        for i in range(n)
    ]
    return skeleton, common


def write_aliccp_tianchi(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for part, n, seed in (("train", 60, 3), ("test", 20, 4)):
        skeleton, common = tianchi_part(n, seed)
        raw_files.write_archive(folder / f"sample_{part}.tar.gz", part, skeleton, common)
    return folder


def aliccp_csv_rows(n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    click, purchase = enriched_labels(n, seed)
    rows = []
    for i in range(n):
        row = raw_files.aliccp_csv_row(i, dense=round(float(rng.random()), 4))
        row.update({name: int(rng.integers(0, 4)) for name in raw_files.ALICCP_CSV_SPARSE.split(",")})
        row.update(click=int(click[i]), purchase=int(purchase[i]))
        rows.append(row)
    return rows


def write_aliccp_csv(folder: Path) -> Path:
    """torch-rechub's ``ali_ccp_*_sample.csv`` shape (header, 100/50/50 rows), under the full names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", 100, 5), ("val", 50, 6), ("test", 50, 7)):
        raw_files.write_aliccp_csv_file(folder / f"ali_ccp_{name}.csv", aliccp_csv_rows(n, seed))
    return folder


# --- Census ----------------------------------------------------------------------------------------------

UCI_PEOPLE = (
    raw_files.BASE,
    raw_files.CHILD,
    raw_files.RICH,
    raw_files.YOUNG,
    raw_files.DIVORCED,
    raw_files.WIDOW,
)


def write_census_uci(folder: Path) -> Path:
    """``census.tar.gz`` as the UCI archive ships it: census-income.data / .test in a folder, no header."""
    stage = folder / "stage"
    train = [{**UCI_PEOPLE[i % 6], "weeks_worked": str(i % 53)} for i in range(40)]
    test = [{**UCI_PEOPLE[(i + 2) % 6], "weeks_worked": str(i % 53)} for i in range(20)]
    raw_files.write_uci(stage, train, test, sub="census")
    with tarfile.open(folder / "census.tar.gz", "w:gz") as tar:
        tar.add(stage / "census", arcname="census")
    return folder / "census.tar.gz"


def write_census_onehot(folder: Path) -> Path:
    """PaddleRec PLE's ``train_data.txt`` shape: no header, income all 0, train and test the same file."""
    folder.mkdir(parents=True, exist_ok=True)
    people = ("worker", "child", "widow", "rich")
    lines = [raw_files.onehot_line(int(i % 5 < 2), 0, people[i % 4], i % 7) for i in range(30)]
    for name in ("train_data.csv", "test_data.csv"):
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def census_csv_rows(n: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "age": f"{rng.random():.4f}",
            "education": str(int(rng.integers(0, 17))),
            "marital status": str(int(rng.random() < 0.35)),
            "income": str(int(i % 10 == 0)),
        }
        for i in range(n)
    ]


def write_census_csv(folder: Path) -> Path:
    """torch-rechub's ``census_income_*_sample.csv`` shape: header, 80/20/20 rows."""
    raw_files.write_census_csv(
        folder, train=census_csv_rows(80, 8), val=census_csv_rows(20, 9), test=census_csv_rows(20, 10)
    )
    return folder


# --- Look-alike ------------------------------------------------------------------------------------------

LOOKALIKE_CAMPAIGNS = {  # split -> (aid, rows) of each campaign; train holds stage1 seeds only
    "train": ((1, 40), (2, 40), (3, 40), (4, 40)),
    "test_hot_stage1": ((5, 30), (6, 30)),
    "test_hot_stage2": ((5, 20), (6, 20)),
    "test_cold_stage1": ((8, 12), (9, 12)),
    "test_cold_stage2": ((8, 20), (9, 20)),
}


def write_lookalike_pickles(folder: Path) -> Path:
    """``metaheac_data.zip`` with the five split pickles (pandas < 2 format, as published); every train
    label is 1, as in MetaHeac's stage1 seeds; the test splits mix labels."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "metaheac_data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for number, (split, campaigns) in enumerate(LOOKALIKE_CAMPAIGNS.items()):
            aids = [aid for aid, rows in campaigns for _ in range(rows)]
            labels = [1] * len(aids) if split == "train" else [int(k % 3 == 0) for k in range(len(aids))]
            frame = raw_files.layout_frame(aids, labels, first_index=10_000 * (number + 1))
            data = dumps_legacy_dataframe(frame) if split != "test_cold_stage2" else pickle.dumps(frame, 5)
            zf.writestr(f"{ARCHIVE_FOLDER}/{SPLIT_FILES[split]}", data)
    return archive


# --- every source -----------------------------------------------------------------------------------------

ALICCP_SYNTHETIC = (
    "datasets.aliccp.synthetic.train_rows=800",
    "datasets.aliccp.synthetic.test_rows=200",
    "datasets.aliccp.synthetic.click_rate=0.3",
    "datasets.aliccp.synthetic.purchase_given_click_rate=0.5",  # purchase-enriched: ~15% of rows
)
CENSUS_SYNTHETIC = ("datasets.census.synthetic.train_rows=600", "datasets.census.synthetic.test_rows=300")
LOOKALIKE_SYNTHETIC = (
    "datasets.lookalike.synthetic.users=1000",
    "datasets.lookalike.synthetic.train_campaigns=4",
    "datasets.lookalike.synthetic.hot_campaigns=2",
    "datasets.lookalike.synthetic.cold_campaigns=2",
    "datasets.lookalike.synthetic.train_rows=[40, 80]",
    "datasets.lookalike.synthetic.hot_rows=[40, 80]",
    "datasets.lookalike.synthetic.cold_rows=[20, 40]",
)
VALID_30 = ("datasets.aliccp.prepare.valid_fraction=0.3", "datasets.aliccp.prepare.min_count=1")
PURCHASE = ("rate__train__purchase", "rate__valid__purchase", "rate__test__purchase")

SHAPED = {
    "aliccp/paddlerec": Shaped(
        "aliccp", "paddlerec", write_aliccp_tokens, VALID_30, (*PURCHASE, "rows__train")
    ),
    "aliccp/tianchi": Shaped("aliccp", "tianchi", write_aliccp_tianchi, VALID_30, PURCHASE),
    "aliccp/csv": Shaped(
        "aliccp", "csv", write_aliccp_csv, ("datasets.aliccp.prepare.min_count=1",), PURCHASE
    ),
    "aliccp/synthetic": Shaped("aliccp", "synthetic", lambda folder: None, ALICCP_SYNTHETIC, PURCHASE),
    "census/uci": Shaped("census", "uci", write_census_uci, (), ("rows__train",)),
    "census/paddlerec": Shaped("census", "paddlerec", write_census_onehot, (), ("rate__train__income",)),
    "census/csv": Shaped("census", "csv", write_census_csv, (), ("rows__train",)),
    "census/synthetic": Shaped("census", "synthetic", lambda folder: None, CENSUS_SYNTHETIC),
    "lookalike/paddlerec": Shaped(
        "lookalike", "paddlerec", write_lookalike_pickles, (), ("rate__train__label",)
    ),
    "lookalike/synthetic": Shaped("lookalike", "synthetic", lambda folder: None, LOOKALIKE_SYNTHETIC),
}
