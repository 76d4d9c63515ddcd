"""Small raw files in each source's real format, hand-written so that the expected encoding is easy to
state: the format tests read them, and ``tests/datasets/test_fingerprints.py`` prepares them all."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.datasets.census import COLUMNS as CENSUS_COLUMNS
from mtl.datasets.census import RECHUB as CENSUS_CSV
from mtl.datasets.encoding import in_fraction
from mtl.datasets.lookalike import (
    AD_FIELDS,
    COLUMNS,
    DYNAMIC_FIELDS,
    LENGTH_SUFFIX,
    SPLIT_FILES,
    STATIC_FIELDS,
)
from mtl.datasets.lookalike.legacy_pickle import dumps_legacy_dataframe

# --- Ali-CCP, PaddleRec tokens: ``sample_id,click,purchase,field:feat_id,...`` -------------------------

TOKEN_FRACTION, TOKEN_SEED = 0.3, 2020  # the valid split of write_tokens: prepare with these


def token_line(sample_id: int, click: int, purchase: int, *tokens: str) -> str:
    return ",".join([str(sample_id), str(click), str(purchase), *tokens])


def write_tokens(raw: Path) -> np.ndarray:
    """30 train lines (items 1..3 common, item 500 only on valid rows, item 600 once), 4 test lines;
    returns which train lines go to valid (under TOKEN_FRACTION, TOKEN_SEED)."""
    ids = np.arange(1, 31)
    valid = in_fraction(ids, TOKEN_FRACTION, TOKEN_SEED)
    first_valid, first_train = int(ids[valid][0]), int(ids[~valid][0])
    lines = []
    for i in ids:
        item = 500 if i == first_valid else 600 if i == first_train else 1 + i % 3
        tokens = [f"205:{item}", f"101:{10 + i % 2}", "150_14:71", "150_14:72", "150_14:73", "150_14:74"]
        if i % 2:
            tokens.append("150_14:999")  # the 5th id of the field: past max_len, so never kept
        lines.append(token_line(int(i), int(i % 5 == 0), int(i % 10 == 0), *tokens))
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "traindata_10w.csv").write_text("\n".join(lines) + "\n")
    test = [
        token_line(1, 1, 0, "205:700", "101:10"),
        token_line(2, 0, 0, "205:2", "101:11", "150_14:72", "150_14:555"),
        token_line(3, 0, 0, "101:10"),
        token_line(4, 0, 0, "205:500"),
    ]
    (raw / "testdata_10w.csv").write_text("\n".join(test) + "\n")
    return valid


# --- Ali-CCP, torch-rechub label-encoded CSV: click, purchase, 23 ids, 8 D* -------------------------------

ALICCP_CSV_SPARSE = (
    "101,121,122,124,125,126,127,128,129,205,206,207,210,216,508,509,702,853,301,109_14,110_14,127_14,150_14"
)
ALICCP_CSV_DENSE = "D109_14,D110_14,D127_14,D150_14,D508,D509,D702,D853"
ALICCP_CSV_HEADER = f"click,purchase,{ALICCP_CSV_SPARSE},{ALICCP_CSV_DENSE}"


def aliccp_csv_row(i: int, *, item: int | None = None, dense: float | None = None) -> dict[str, object]:
    """One data row as column -> value: user 1 + i % 3, item 1 + i % 5, a click every 4th row."""
    values: dict[str, object] = {"click": int(i % 4 == 0), "purchase": int(i % 20 == 0)}
    for name in ALICCP_CSV_SPARSE.split(","):
        values[name] = 1 + i % 3
    values["205"] = item if item is not None else 1 + i % 5
    values["853"] = 0  # the file's unknown id: absent
    for name in ALICCP_CSV_DENSE.split(","):
        values[name] = dense if dense is not None else round(0.1 * (i % 7), 4)
    return values


def write_aliccp_csv_file(path: Path, rows: list[dict[str, object]], header: str = ALICCP_CSV_HEADER) -> Path:
    columns = header.split(",")
    lines = [header] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_aliccp_csv(raw: Path) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    write_aliccp_csv_file(
        raw / "ali_ccp_train.csv", [aliccp_csv_row(i) for i in range(40)] + [aliccp_csv_row(40, item=99)]
    )  # 99 once
    write_aliccp_csv_file(raw / "ali_ccp_val.csv", [aliccp_csv_row(i) for i in range(20)])
    write_aliccp_csv_file(
        raw / "ali_ccp_test.csv", [aliccp_csv_row(i, item=77 if i == 0 else None) for i in range(20)]
    )
    return raw


# --- Ali-CCP, raw Tianchi archives: \x01 / \x02 / \x03 separated feature lists ----------------------------


def entries(*items: tuple) -> str:
    """A feature list: ``field\\x02feature_id\\x03value`` entries joined by ``\\x01``."""
    return "\x01".join(f"{field}\x02{feature}\x03{value}" for field, feature, value in items)


def skeleton(sample_id: int, click: int, purchase: int, key: str, *items: tuple) -> str:
    return f"{sample_id},{click},{purchase},{key},{len(items)},{entries(*items)}"


def common(key: str, *items: tuple) -> str:
    return f"{key},{len(items)},{entries(*items)}"


def write_archive(path: Path, part: str, skeleton_lines: list[str], common_lines: list[str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, lines in (
            (f"sample_skeleton_{part}.csv", skeleton_lines),
            (f"common_features_{part}.csv", common_lines),
        ):
            data = ("\n".join(lines) + "\n").encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


TIANCHI_USERS = [
    common("u1", ("101", 11, 1.0), ("109_14", 21, 3.0), ("109_14", 22, 1.0), ("121", 31, 1.0)),
    common("u2", ("101", 12, 1.0), ("109_14", 21, 2.0), ("121", 32, 1.0)),
]
TIANCHI_TRAIN = [
    skeleton(1, 1, 1, "u1", ("205", 1001, 1.0), ("109_14", 25, 1.0), ("206", 2001, 1.0), ("508", 3001, 2.5)),
    skeleton(2, 0, 0, "u2", ("205", 1001, 1.0), ("206", 2002, 1.0)),
    skeleton(3, 0, 1, "u1", ("205", 1002, 1.0), ("206", 2001, 1.0)),  # purchase without click: dropped
    skeleton(4, 1, 0, "u9", ("205", 1003, 1.0), ("109_14", 29, 4.0)),  # no common features for u9
    skeleton(5, 0, 0, "u2", ("205", 1001, 1.0), ("999", 5, 1.0)),  # unknown field 999
]


def write_tianchi(raw: Path) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    write_archive(raw / "sample_train.tar.gz", "train", TIANCHI_TRAIN, TIANCHI_USERS)
    test = [skeleton(1, 1, 0, "u1", ("205", 1001, 1.0)), skeleton(2, 0, 0, "u3", ("205", 1777, 1.0))]
    write_archive(raw / "sample_test.tar.gz", "test", test, [*TIANCHI_USERS, common("u3", ("101", 13, 1.0))])
    return raw


# --- Census, raw UCI: 42 columns, leading spaces ----------------------------------------------------------

# A married working adult, spelled as in census-income.data (the leading spaces are added by uci_line).
BASE = {
    "age": "38", "class_worker": "Private", "det_ind_code": "33", "det_occ_code": "29",
    "education": "High school graduate", "wage_per_hour": "0", "hs_college": "Not in universe",
    "marital_stat": "Married-civilian spouse present", "major_ind_code": "Retail trade",
    "major_occ_code": "Other service", "race": "White", "hisp_origin": "All other", "sex": "Female",
    "union_member": "Not in universe", "unemp_reason": "Not in universe",
    "full_or_part_emp": "Full-time schedules", "capital_gains": "0", "capital_losses": "0",
    "stock_dividends": "0", "tax_filer_stat": "Joint both under 65", "region_prev_res": "Not in universe",
    "state_prev_res": "Not in universe", "det_hh_fam_stat": "Spouse of householder",
    "det_hh_summ": "Spouse of householder", "instance_weight": "1032.64", "mig_chg_msa": "Nonmover",
    "mig_chg_reg": "Nonmover", "mig_move_reg": "Nonmover", "mig_same": "Yes",
    "mig_prev_sunbelt": "Not in universe", "num_emp": "4", "fam_under_18": "Not in universe",
    "country_father": "United-States", "country_mother": "United-States", "country_self": "United-States",
    "citizenship": "Native- Born in the United States", "own_or_self": "0", "vet_question": "Not in universe",
    "vet_benefits": "2", "weeks_worked": "52", "year": "94", "income_50k": "- 50000.",
}  # fmt: skip
CHILD = {
    "age": "9", "class_worker": "Not in universe", "det_ind_code": "0", "det_occ_code": "0",
    "education": "Children", "marital_stat": "Never married", "major_ind_code": "Not in universe or children",
    "major_occ_code": "Not in universe", "hisp_origin": "NA", "full_or_part_emp": "Children or Armed Forces",
    "tax_filer_stat": "Nonfiler", "det_hh_fam_stat": "Child <18 never marr not in subfamily",
    "det_hh_summ": "Child under 18 never married", "instance_weight": "1758.14", "mig_chg_msa": "?",
    "mig_chg_reg": "?", "mig_move_reg": "?", "mig_same": "Not in universe under 1 year old",
    "mig_prev_sunbelt": "?", "num_emp": "0", "fam_under_18": "Both parents present", "vet_benefits": "0",
    "weeks_worked": "0", "year": "95",
}  # fmt: skip
RICH = {
    "age": "52", "class_worker": "Self-employed-incorporated", "det_ind_code": "35", "det_occ_code": "2",
    "education": "Masters degree(MA MS MEng MEd MSW MBA)",
    "major_ind_code": "Finance insurance and real estate", "major_occ_code": "Executive admin and managerial",
    "sex": "Male", "capital_gains": "15024", "stock_dividends": "2500", "det_hh_fam_stat": "Householder",
    "det_hh_summ": "Householder", "own_or_self": "1", "income_50k": "50000+.",
}  # fmt: skip
YOUNG = {
    "age": "24", "marital_stat": "Never married", "wage_per_hour": "900",
    "det_hh_fam_stat": "Child 18+ never marr Not in a subfamily", "det_hh_summ": "Child 18 or older",
    "tax_filer_stat": "Single", "instance_weight": "2105.5",
}  # fmt: skip
DIVORCED = {"age": "45", "marital_stat": "Divorced", "capital_losses": "1902", "tax_filer_stat": "Single"}
WIDOW = {
    "age": "71", "marital_stat": "Widowed", "education": "7th and 8th grade",
    "class_worker": "Not in universe", "full_or_part_emp": "Not in labor force", "weeks_worked": "0",
    "num_emp": "0",
}  # fmt: skip
UCI_TRAIN = [BASE, CHILD, RICH, YOUNG, DIVORCED, WIDOW]
UCI_TEST = [
    {"education": "Doctorate degree(PhD EdD)", "income_50k": "50000+."},  # education unseen in train
    {},
    CHILD,
    {"country_self": "Vietnam", "citizenship": "Foreign born- Not a citizen of U S"},  # unseen values
    YOUNG,
]


def uci_line(record: dict[str, str]) -> str:
    values = {**BASE, **record}
    return ", ".join(values[c] for c in CENSUS_COLUMNS)  # fields after the first start with a space


def write_uci(raw_dir: Path, train: list[dict], test: list[dict], *, sub: str = "") -> Path:
    folder = raw_dir / sub
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "census-income.data").write_text("".join(uci_line(r) + "\n" for r in train))
    (folder / "census-income.test").write_text("".join(uci_line(r) + "\n" for r in test))
    return raw_dir


# --- Census, PaddleRec one-hot: marital, income, 11 raw numerics, 488 indicators (one per group) ----------

NUMERICS = {  # age, wage, gains, losses, dividends, instance_weight, num_emp, own_or_self, vet, weeks, year
    "child": [9, 0, 0, 0, 0, 1758.14, 0, 0, 0, 0, 95],
    "widow": [73, 0, 0, 0, 0, 1700.09, 0, 0, 2, 0, 95],
    "worker": [38, 1200, 0, 0, 0, 1032.64, 4, 0, 2, 52, 94],
    "rich": [52, 0, 15024, 0, 2500, 991.95, 6, 1, 2, 52, 94],
}


def onehot_line(marital: int, income: int, person: str, shift: int, *, bools: bool = False) -> str:
    indicators = np.zeros(488, dtype=int)
    indicators[[16 * group + shift for group in range(29)]] = 1  # one active value in each of 29 groups
    cells = [str(v) for v in indicators] if not bools else ["True" if v else "False" for v in indicators]
    return ",".join([str(marital), str(income), *(str(v) for v in NUMERICS[person]), *cells])


ONEHOT_TRAIN = [(0, 0, "worker", 0), (1, 0, "child", 1), (0, 1, "rich", 2), (0, 0, "widow", 3)]
ONEHOT_TEST = [(0, 1, "rich", 2), (1, 0, "child", 1), (0, 0, "worker", 4)]
HEADER_NUMERICS = [
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "instance_weight",
    "num_emp", "own_or_self", "vet_benefits", "weeks_worked", "year",
]  # fmt: skip
INDICATOR_NAMES = [f"group{g}_ value{v}" for g in range(29) for v in range(16)][:488]
ONEHOT_HEADER = ",".join(["marital_stat", "income_50k", *HEADER_NUMERICS, *INDICATOR_NAMES])


def write_onehot(raw: Path, *, header: tuple[bool, bool] = (False, False), bools: bool = False) -> Path:
    raw.mkdir(parents=True, exist_ok=True)
    for (name, rows), with_header in zip(
        (("train_data.csv", ONEHOT_TRAIN), ("test_data.csv", ONEHOT_TEST)), header
    ):
        lines = [onehot_line(*row, bools=bools) for row in rows]
        (raw / name).write_text("\n".join([ONEHOT_HEADER, *lines] if with_header else lines) + "\n")
    return raw


# --- Census, torch-rechub label-encoded CSV: header, 7 MinMax dense + 32 codes + 2 labels ----------------

CSV_BASE = dict(zip(CENSUS_CSV.columns, [
    "0.3111", "4", "33", "29", "12", "0.0", "2", "0", "19", "7", "2", "0", "0", "1", "3", "0", "0.0", "0.0",
    "0.0", "2", "3", "36", "20", "4", "7", "6", "7", "2", "2", "0.5", "4", "40", "40", "40", "4", "0", "1",
    "2", "0.3077", "0", "0",
], strict=True))  # fmt: skip
CSV_TRAIN = [
    {},
    {"age": "0.0667", "education": "10", "marital status": "1", "weeks worked in year": "0.0"},
    {"age": "0.4778", "education": "16", "income": "1", "capital gains": "0.0685", "year": "1"},
    {"age": "0.7", "class of worker": "7", "education": "12", "weeks worked in year": "1.0"},
]
CSV_VAL = [  # education 9 and race 1 never occur in train
    {"education": "9", "race": "1", "income": "1"},
    {"age": "0.1222", "marital status": "1"},
]
CSV_TEST = [{"income": "1", "education": "16"}, {"marital status": "1"}, {"industry code": "47"}]


def write_census_csv(
    raw: Path,
    drop: str | None = None,
    train: list | None = None,
    val: list | None = None,
    test: list | None = None,
) -> Path:
    """The three files; ``drop`` removes a column from the val file."""
    raw.mkdir(parents=True, exist_ok=True)
    files = {"train": train or CSV_TRAIN, "val": val or CSV_VAL, "test": test or CSV_TEST}
    for name, rows in ((f"census_income_{part}.csv", rows) for part, rows in files.items()):
        columns = [c for c in CENSUS_CSV.columns if c != (drop if name.endswith("_val.csv") else None)]
        lines = [",".join(columns)] + [",".join({**CSV_BASE, **row}[c] for c in columns) for row in rows]
        (raw / name).write_text("\n".join(lines) + "\n")
    return raw


# --- Look-alike, MetaHeac pickles ---------------------------------------------------------------------------

PAD = 99  # a per-field pad id past the length, as in the published files
CAMPAIGNS = {  # split -> (aids, labels)
    "train": ([1, 1, 2, 2, 3, 3], [1, 0, 1, 0, 0, 1]),
    "test_hot_stage1": ([5, 5, 6, 6], [1, 0, 0, 1]),
    "test_hot_stage2": ([5, 6, 6], [0, 1, 0]),
    "test_cold_stage1": ([8, 9], [1, 0]),
    "test_cold_stage2": ([8, 9, 9], [0, 1, 1]),
}


def layout_frame(aids: list[int], labels: list[int], first_index: int) -> pd.DataFrame:
    """A split in the 29-column layout with values that make the expected encoding easy to state."""
    n = len(aids)
    rows = np.arange(n)
    data: dict[str, object] = {"label": np.array(labels), "aid": np.array(aids)}
    for k, field in enumerate(STATIC_FIELDS):
        data[field] = (rows + k) % 3  # 0 is a real id in the source encoding
    for k, (field, width) in enumerate(DYNAMIC_FIELDS.items()):
        lengths = (rows + k) % (width + 1)
        ids = np.where(np.arange(width) < lengths[:, None], 2 * rows[:, None] + np.arange(width), PAD)
        cells = np.empty(n, dtype=object)
        cells[:] = list(ids)
        data[field] = cells
        data[field + LENGTH_SUFFIX] = lengths
    for k, field in enumerate(AD_FIELDS):
        data[field] = np.array(aids) % (k + 2)  # constant within a campaign, as in the real files
    index = pd.Index(first_index + 3 * rows, dtype=np.int64)
    frame = pd.DataFrame({c: data[c] for c in COLUMNS}, index=index)
    return frame.astype({c: np.int64 for c in COLUMNS if c not in DYNAMIC_FIELDS})


def layout_frames() -> dict[str, pd.DataFrame]:
    frames = {}
    for number, (split, (aids, labels)) in enumerate(CAMPAIGNS.items()):
        frames[split] = layout_frame(aids, labels, first_index=1000 * (number + 1))
    frames["train"].loc[frames["train"].index[1], "kw1_length"] = 7  # counted past the 5 slots: clipped
    return frames


def write_pickles(raw_dir: Path, frames: dict[str, pd.DataFrame]) -> None:
    """Legacy (pandas < 2) pickles in a sub-folder, except one split in pandas 3's own format."""
    folder = raw_dir / "metaheac_data"
    folder.mkdir(parents=True, exist_ok=True)
    for split, frame in frames.items():
        legacy = split != "test_cold_stage2"
        data = dumps_legacy_dataframe(frame) if legacy else pickle.dumps(frame, protocol=5)
        (folder / SPLIT_FILES[split]).write_bytes(data)
