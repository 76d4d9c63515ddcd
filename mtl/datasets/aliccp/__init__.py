"""Ali-CCP (Alibaba Click and Conversion Prediction): tasks click and purchase, 23 sparse fields.

Declared here: the fields, the sources and their files, and the raw expectations. ``parse`` reads each
source format into the same slot layout (``join`` streams and joins the raw Tianchi archives),
``prepare`` fits train-only vocabularies and writes the ``train``/``valid``/``test`` splits (valid:
a seeded hash of the train file's sample ids, or the CSV layout's own file), ``synthetic`` generates
the PaddleRec token format with the true probabilities beside it.
"""

from __future__ import annotations

from typing import Any

from mtl.config import Params
from mtl.datasets import expectations as ex
from mtl.datasets.base import Dataset, RemoteFile, Source
from mtl.datasets.oracle import TruthFile
from mtl.datasets.prepared import ROW_ID, DatasetMetadata
from mtl.datasets.rechub_csv import RechubCsv
from mtl.errors import ConfigError
from mtl.validation import FINITE

# The order of the public ESMM reader (and of the prepared columns).
FIELDS: tuple[str, ...] = (
    "101", "109_14", "110_14", "127_14", "150_14", "121", "122", "124", "125", "126", "127", "128",
    "129", "205", "206", "207", "210", "216", "508", "509", "702", "853", "301",
)  # fmt: skip
MULTI_VALUED: frozenset[str] = frozenset({"109_14", "110_14", "127_14", "150_14", "210", "853"})
# Fields whose raw Tianchi entries carry informative values; the CSV layout ships them as D<field>.
DENSE_SOURCE_FIELDS: tuple[str, ...] = ("109_14", "110_14", "127_14", "150_14", "508", "509", "702", "853")
DENSE_FIELDS: tuple[str, ...] = tuple(f"D{name}" for name in DENSE_SOURCE_FIELDS)
FIELD_INDEX: dict[str, int] = {name: i for i, name in enumerate(FIELDS)}
TASKS = ("click", "purchase")
SPLITS = ("train", "valid", "test")
TRAIN_AND_VALID = "train+valid"  # role of a train file whose rows are split into train/valid by hash

TOKEN_FILES = {"train": "traindata_10w.csv", "test": "testdata_10w.csv"}
ARCHIVES = {"train": "sample_train.tar.gz", "test": "sample_test.tar.gz"}
PART_ROLES = {"train": TRAIN_AND_VALID, "test": "test"}  # of the token files and the Tianchi archives
CSV = RechubCsv(
    files={"train": "ali_ccp_train.csv", "valid": "ali_ccp_val.csv", "test": "ali_ccp_test.csv"},
    labels={task: task for task in TASKS},
    sparse=FIELDS,  # one id per field, even for multi-valued ones; 0 = the file's unknown id (absent)
    dense=DENSE_FIELDS,
    columns=(*TASKS, *FIELDS, *DENSE_FIELDS),
    dense_range=(-FINITE, FINITE),
)
TRUTH = TruthFile("synthetic_truth.parquet", "file", "sample_id", ("p_click", "p_purchase_given_click"))
TOKEN_FORMAT, TIANCHI_FORMAT, CSV_FORMAT = "paddlerec-esmm-tokens", "tianchi-raw", "aliccp-label-encoded-csv"
PADDLEREC_URL = "https://paddlerec.bj.bcebos.com/esmm/"

SOURCES = {
    "paddlerec": Source(
        name="paddlerec",
        description="PaddleRec's Ali-CCP subset for ESMM: token CSV "
        "'sample_id,click,purchase,field:feat_id ...'",
        files=tuple(RemoteFile(name, url=PADDLEREC_URL + name) for name in TOKEN_FILES.values()),
        format=TOKEN_FORMAT,
    ),
    "tianchi": Source(
        name="tianchi",
        description="The raw Tianchi archives (dataset 408; registration needed: download by hand, pass "
        "--from DIR); sample_skeleton joined with common_features while streaming",
        files=tuple(RemoteFile(name) for name in ARCHIVES.values()),
        kind="local",
        format=TIANCHI_FORMAT,
    ),
    "csv": Source(
        name="csv",
        description="The label-encoded CSV layout of the common Ali-CCP preprocessing (click, purchase, "
        "23 sparse ids, 8 dense D* columns); --from URL or folder",
        files=tuple(RemoteFile(name) for name in CSV.files.values()),
        format=CSV_FORMAT,
    ),
    "synthetic": Source(
        name="synthetic",
        description="Generated in the PaddleRec token format with known click/purchase probabilities",
        files=tuple(RemoteFile(name) for name in (*TOKEN_FILES.values(), TRUTH.name)),
        kind="generated",
        format=TOKEN_FORMAT,
    ),
}

# Raw tables are named ``<part>_<kind>``: the token files' per-line facts (``train_tokens``), the CSV
# files as read (``valid_csv``), the Tianchi members' per-line facts (``test_skeleton``).
_LABELS = ex.binary_labels(TASKS)
_FEATURE_LISTS = [
    *ex.not_null(["common_feature_index"]),
    ex.equal("feature_num", "entries"),
    ex.between("unknown_field_entries", high=0, mostly=ex.RARE),
]
RAW_EXPECTATIONS = {
    "tokens": [
        *_LABELS,
        *ex.funnel(TASKS),
        *ex.not_null(["sample_id"]),
        ex.unique("sample_id"),
        ex.between("tokens", 1),
        ex.between("fields_present", 1, len(FIELDS)),
        # the public reader ignores tokens of other fields; more than a few means a different format
        ex.between("unknown_field_tokens", high=0, mostly=ex.RARE),
    ],
    "csv": [*CSV.expectations(), *ex.funnel(TASKS)],
    # The public preprocessors drop click=0 & conversion=1 rows (so do we): a few are expected.
    "skeleton": [*_LABELS, *ex.funnel(TASKS, mostly=ex.RARE), *ex.not_null(["sample_id"]), *_FEATURE_LISTS],
    "common_features": [*_FEATURE_LISTS, ex.unique("common_feature_index")],
}


class AliCCP(Dataset):
    name = "aliccp"
    title = "Ali-CCP (Alibaba Click and Conversion Prediction)"
    tasks = TASKS
    funnel = TASKS
    splits = SPLITS
    sources = SOURCES

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        kind = table.partition("_")[2]
        if kind not in RAW_EXPECTATIONS:
            raise ConfigError(f"aliccp has no raw table {table!r}; tables end in {sorted(RAW_EXPECTATIONS)}")
        return ex.build(RAW_EXPECTATIONS[kind])

    def prepared_expectations(self, metadata: DatasetMetadata, split: str, params: Params) -> list[Any]:
        """Beyond the generic suite: row ids identify rows within a split."""
        return ex.build([ex.unique(ROW_ID)])
