"""Census-Income (KDD): tasks income > 50k and never married, from four sources in three formats.

* ``uci``: UCI's ``census.tar.gz`` (raw 42-column text, leading spaces); our own encoding.
* ``paddlerec``: PaddleRec's one-hot 501-column CSV.
* ``csv``: torch-rechub's 41-column label-encoded CSV (``--from`` a URL or folder).
* ``synthetic``: generated raw UCI files with known probabilities; parsed as uci.

Splits ``train`` / ``valid`` / ``test``: the train file, then the test file split 1:1 with
``split_seed`` (uci, paddlerec, synthetic) or the files' own val/test (csv). Raw tables are named after
their files; row ids are ``file index x 1e9 + data row``. Declared here: the schema, the formats'
files and columns, the sources and the raw expectations; ``parse`` reads each format, ``prepare``
encodes, ``synthetic`` (with ``population``) generates.

Raw UCI fields after the first start with a space (``73, Not in universe, 0, ...``); we strip it on
reading, so the raw label value ``' 50000+.'`` is compared as ``'50000+.'``. Features (39): 7 dense
numerics and 32 categoricals, in UCI column order. ``instance_weight`` is a sampling weight, never a
feature; ``marital_stat`` and ``income_50k`` are the task labels.
"""

from __future__ import annotations

from typing import Any

from mtl.config import Params
from mtl.datasets import expectations as ex
from mtl.datasets.base import Dataset, RemoteFile, Source
from mtl.datasets.oracle import TruthFile
from mtl.datasets.rechub_csv import RechubCsv
from mtl.errors import ConfigError

TASKS = ("income", "marital")
SPLITS = ("train", "valid", "test")
HALVES = "valid+test"  # role of a file split 1:1 into valid and test
ROW_ID_STRIDE = 1_000_000_000  # row id = file index x stride + data row: unique, and the raw row is known

# PaddleRec's short names (from 1010data), in file order.
COLUMNS = (
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends",
    "tax_filer_stat", "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ",
    "instance_weight", "mig_chg_msa", "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt",
    "num_emp", "fam_under_18", "country_father", "country_mother", "country_self", "citizenship",
    "own_or_self", "vet_question", "vet_benefits", "weeks_worked", "year", "income_50k",
)  # fmt: skip
# The long UCI names torch-rechub's 41-column CSV uses (its spelling, typos included).
LONG_NAMES = dict(
    zip(
        COLUMNS,
        (
            "age", "class of worker", "industry code", "occupation code", "education", "wage per hour",
            "enrolled in edu inst last wk", "marital status", "major industry code",
            "major occupation code", "race", "hispanic origin", "sex", "member of a labor union",
            "reason for unemployment", "full or part time employment stat", "capital gains",
            "capital losses", "divdends from stocks", "tax filer status", "region of previous residence",
            "state of previous residence", "detailed household and family stat",
            "detailed household summary in household", "instance weight", "migration code-change in msa",
            "migration code-change in reg", "migration code-move within reg",
            "live in this house 1 year ago", "migration prev res in sunbelt",
            "num persons worked for employer", "family members under 18", "country of birth father",
            "country of birth mother", "country of birth self", "citizenship",
            "own business or self employed", "fill inc questionnaire for veterans admin",
            "veterans benefits", "weeks worked in year", "year", "income",
        ),
        strict=True,
    )
)  # fmt: skip

WEIGHT = "instance_weight"
LABEL_COLUMNS = {"income": "income_50k", "marital": "marital_stat"}  # task -> raw column
POSITIVE = {"income": "50000+.", "marital": "Never married"}  # raw value (stripped) of a positive
INCOME_VALUES = ("- 50000.", "50000+.")
MARITAL_VALUES = (
    "Never married", "Married-civilian spouse present", "Married-spouse absent", "Separated",
    "Divorced", "Widowed", "Married-A F spouse present",
)  # fmt: skip
DENSE = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "num_emp",
    "weeks_worked",
)  # fmt: skip
# Heavy-tailed money columns (mostly 0, a long tail up to 99,999): log1p before standardising.
LOG1P = frozenset({"wage_per_hour", "capital_gains", "capital_losses", "stock_dividends"})
SPARSE = tuple(c for c in COLUMNS if c not in (*DENSE, WEIGHT, *LABEL_COLUMNS.values()))
NUMERIC = (*DENSE, WEIGHT)  # parsed as numbers in the raw files; everything else stays text
# Plausible ranges of the raw numerics (UCI documents age 0-90, weeks 0-52, money capped at 99,999).
RANGES: dict[str, tuple[float, float]] = {
    "age": (0, 120),
    "wage_per_hour": (0, 100_000),
    "capital_gains": (0, 100_000),
    "capital_losses": (0, 100_000),
    "stock_dividends": (0, 100_000),
    "num_emp": (0, 6),
    "weeks_worked": (0, 52),
    "instance_weight": (0, 1_000_000),
}
# Categoricals written as numeric codes in the raw files, with their documented code sets.
CODED = {
    "det_ind_code": tuple(str(i) for i in range(52)),
    "det_occ_code": tuple(str(i) for i in range(47)),
    "own_or_self": ("0", "1", "2"),
    "vet_benefits": ("0", "1", "2"),
    "year": ("94", "95"),
}

# --- the three formats: files (name, role) in row-id order, and what each holds -------------------------

UCI_FILES = (("census-income.data", "train"), ("census-income.test", HALVES))
# PaddleRec one-hot: column 0 marital (1 = never married), 1 income (1 = 50000+), 2-12 the raw numerics
# below (unscaled), 13-500 the 488 indicators of 29 categoricals (pd.get_dummies).
ONEHOT_FILES = (("train_data.csv", "train"), ("test_data.csv", HALVES))
ONEHOT_WIDTH = 501
ONEHOT_LABELS = {"marital": 0, "income": 1}  # task -> column position
ONEHOT_NUMERIC = (
    "age", "wage_per_hour", "capital_gains", "capital_losses", "stock_dividends", "instance_weight",
    "num_emp", "own_or_self", "vet_benefits", "weeks_worked", "year",
)  # fmt: skip
ONEHOT_CODES = {"own_or_self": [0, 1, 2], "vet_benefits": [0, 1, 2], "year": [94, 95]}
ONEHOT_GROUPS = 29  # one-hot groups: at most one indicator per group is 1
RECHUB = RechubCsv(
    files={
        "train": "census_income_train.csv",
        "valid": "census_income_val.csv",
        "test": "census_income_test.csv",
    },
    labels={"income": "income", "marital": "marital status"},
    sparse=tuple(LONG_NAMES[c] for c in SPARSE),
    dense=tuple(LONG_NAMES[c] for c in DENSE),  # already MinMax-scaled to [0, 1]
    columns=tuple(LONG_NAMES[c] for c in COLUMNS if c != WEIGHT),  # the 41, in order
    dense_range=(0, 1),
)
UCI_FORMAT, ONEHOT_FORMAT, RECHUB_FORMAT = "uci-census-42", "paddlerec-onehot-501", "rechub-census-41"
FILES = {
    UCI_FORMAT: UCI_FILES,
    ONEHOT_FORMAT: ONEHOT_FILES,
    RECHUB_FORMAT: tuple((n, s) for s, n in RECHUB.files.items()),
}

ARCHIVE = "census.tar.gz"
TRUTH = TruthFile("synthetic_truth.parquet", "file", "row_id", tuple(f"p_{t}" for t in TASKS), TASKS)
UCI_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/census-income-mld/census.tar.gz"
PADDLEREC_URL = "https://paddlerec.bj.bcebos.com/mmoe/"
SOURCES = {
    "uci": Source(
        "uci",
        "UCI census.tar.gz: census-income.data (train) and census-income.test, 42 raw columns",
        (RemoteFile(ARCHIVE, url=UCI_URL, extract=True),),
        format=UCI_FORMAT,
    ),
    "paddlerec": Source(
        "paddlerec",
        "PaddleRec MMoE one-hot CSV: marital, income, 499 features (train_data.csv, test_data.csv)",
        tuple(RemoteFile(name, url=PADDLEREC_URL + name) for name, _ in ONEHOT_FILES),
        format=ONEHOT_FORMAT,
    ),
    "csv": Source(
        "csv",
        "torch-rechub label-encoded CSV, 39 features + marital status + income (pass --from)",
        tuple(RemoteFile(name) for name in RECHUB.files.values()),
        format=RECHUB_FORMAT,
    ),
    "synthetic": Source(
        "synthetic",
        "generated raw UCI files (census.tar.gz) with the true probabilities beside them",
        (RemoteFile(ARCHIVE, extract=True), RemoteFile(TRUTH.name)),
        kind="generated",
        format=UCI_FORMAT,
    ),
}

# --- raw expectations, per format (of any chunk of any of its files) -----------------------------------


def _uci_expectations() -> list[ex.Expect]:
    out = [
        ex.exactly([*COLUMNS, *TASKS]),
        ex.in_set("income_50k", INCOME_VALUES),
        ex.in_set("marital_stat", MARITAL_VALUES),
        ex.in_set("sex", ["Female", "Male"]),
        *ex.numbers({column: RANGES[column] for column in NUMERIC}, strict_min=[WEIGHT]),
    ]
    for column in SPARSE:
        out += ex.not_null([column])
        if column in CODED:
            out.append(ex.in_set(column, CODED[column]))
    return out


def _onehot_expectations() -> list[ex.Expect]:
    out = [ex.in_set(task, ex.BINARY) for task in TASKS]
    for column in ONEHOT_NUMERIC:
        out += ex.not_null([column])
        if column in ONEHOT_CODES:
            out.append(ex.in_set(column, ONEHOT_CODES[column]))
        else:
            out.append(ex.between(column, *RANGES[column], strict_min=column == WEIGHT))
    return [*out, ex.between("onehot_invalid", 0, 0), ex.between("onehot_active", 1, ONEHOT_GROUPS)]


RAW_EXPECTATIONS = {
    UCI_FORMAT: _uci_expectations(),
    ONEHOT_FORMAT: _onehot_expectations(),
    RECHUB_FORMAT: RECHUB.expectations(),
}
FORMAT_OF_TABLE = {name: fmt for fmt, files in FILES.items() for name, _ in files}


class Census(Dataset):
    name = "census"
    title = "Census-Income (KDD)"
    tasks = TASKS
    splits = SPLITS
    sources = SOURCES

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        if table not in FORMAT_OF_TABLE:
            raise ConfigError(f"census has no raw table {table!r}; known: {sorted(FORMAT_OF_TABLE)}")
        return ex.build(RAW_EXPECTATIONS[FORMAT_OF_TABLE[table]])
