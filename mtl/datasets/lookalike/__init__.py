"""Tencent Look-alike 2018 as preprocessed for MetaHeac: one task (label) per campaign (aid).

Declared here: the pickle layout (datasets.md §3.2: 29 columns, five split files, one id space per
field), the sources and the raw expectations. ``parse`` reads the pickles, ``prepare`` shifts the
ids and writes the five splits, ``synthetic`` generates campaigns in the published format
(``legacy_pickle`` writes pandas < 2 pickles).
"""

from __future__ import annotations

from typing import Any

from mtl.config import Params
from mtl.datasets import expectations as ex
from mtl.datasets.base import Dataset, RemoteFile, Source
from mtl.datasets.oracle import TruthFile

LABEL = "label"
GROUP = "aid"  # the campaign: a MetaHeac task
STATIC_FIELDS = ("carrier", "consumptionAbility", "LBS", "age", "education", "gender", "house")
# multi-valued fields and their slot widths, in the order the official reader concatenates them
DYNAMIC_FIELDS = {
    "interest1": 10,
    "interest2": 10,
    "interest3": 10,
    "kw1": 5,
    "kw2": 5,
    "topic1": 5,
    "topic2": 5,
}
LENGTH_SUFFIX = "_length"
AD_FIELDS = ("advertiserId", "campaignId", "creativeSize", "adCategoryId", "productId", "productType")
# The official preprocessing counts at most this many tokens per field before truncating kw/topic
# lists to 5 slots, so a *_length up to 10 is legitimate for every field; we clip it to the width.
MAX_RAW_LENGTH = 10
MAX_SOURCE_ID = 2**31 - 2  # prepared ids are int32 after the +1 shift

LENGTH_COLUMNS = tuple(f"{name}{LENGTH_SUFFIX}" for name in DYNAMIC_FIELDS)
INT_COLUMNS = (LABEL, GROUP, *STATIC_FIELDS, *LENGTH_COLUMNS, *AD_FIELDS)
COLUMNS = (LABEL, GROUP, *STATIC_FIELDS, *DYNAMIC_FIELDS, *LENGTH_COLUMNS, *AD_FIELDS)
SPARSE_FIELDS = (*STATIC_FIELDS, *AD_FIELDS)  # single-valued ids, user fields first
FIELD_ROLES = {"user_sparse": STATIC_FIELDS, "user_multi": tuple(DYNAMIC_FIELDS), "ad_sparse": AD_FIELDS}

SPLITS = ("train", "test_hot_stage1", "test_hot_stage2", "test_cold_stage1", "test_cold_stage2")
SPLIT_FILES = {
    "train": "train_stage1.pkl",
    "test_hot_stage1": "test_hot_stage1.pkl",
    "test_hot_stage2": "test_hot_stage2.pkl",
    "test_cold_stage1": "test_cold_stage1.pkl",
    "test_cold_stage2": "test_cold_stage2.pkl",
}
# campaigns of one group must not appear in another (train vs the two test populations)
CAMPAIGN_GROUPS = {
    "train": ("train",),
    "test_hot": ("test_hot_stage1", "test_hot_stage2"),
    "test_cold": ("test_cold_stage1", "test_cold_stage2"),
}
ARCHIVE = "metaheac_data.zip"
ARCHIVE_FOLDER = "metaheac_data"  # the published archive keeps its pickles in a folder
TRUTH = TruthFile("synthetic_truth.parquet", "split", "row_id", ("probability", "shared_logit"))
FORMAT = "metaheac-pickles: metaheac_data.zip with train_stage1/test_{hot,cold}_stage{1,2}.pkl DataFrames"

SOURCES = {
    "paddlerec": Source(
        name="paddlerec",
        description="PaddleRec's copy of the MetaHeac preprocessed pickles (pandas < 2 DataFrames)",
        files=(
            RemoteFile(
                ARCHIVE,
                url="https://paddlerec.bj.bcebos.com/datasets/lookalike/metaheac_data.zip",
                extract=True,
            ),
        ),
        format=FORMAT,
    ),
    "synthetic": Source(
        name="synthetic",
        description="generated campaigns with shared and campaign-specific signal, in the pickle format",
        files=(RemoteFile(ARCHIVE, extract=True), RemoteFile(TRUTH.name)),
        kind="generated",
        format=FORMAT,
    ),
}

# The raw suite sees each pickle through ``parse.validation_view``: the index as ROW_INDEX, and each
# multi-valued column as the kind of its cells plus per-row min and max id.
ROW_INDEX = "row_index"
MIN_SUFFIX, MAX_SUFFIX = "__min", "__max"


def cell_kind(width: int) -> str:
    """What a published multi-valued cell is: an int64 array of the slot width (``parse.describe_cell``)."""
    return f"ndarray[int64x{width}]"


def _raw_expectations() -> list[ex.Expect]:
    out: list[ex.Expect] = []
    for column in (ROW_INDEX, *INT_COLUMNS):
        out += [*ex.exist([column]), *ex.not_null([column]), *ex.typed([column], ["int64"])]
    out += [ex.in_set(LABEL, ex.BINARY), ex.between(GROUP, 0)]
    out += [ex.between(column, 0, MAX_SOURCE_ID) for column in (*STATIC_FIELDS, *AD_FIELDS)]
    out += [ex.between(column, 0, MAX_RAW_LENGTH) for column in LENGTH_COLUMNS]
    for field, width in DYNAMIC_FIELDS.items():
        out += [*ex.exist([field]), *ex.not_null([field]), ex.in_set(field, [cell_kind(width)])]
        out += [ex.between(field + MIN_SUFFIX, 0), ex.between(field + MAX_SUFFIX, high=MAX_SOURCE_ID)]
    return out


RAW_EXPECTATIONS = _raw_expectations()


class Lookalike(Dataset):
    name = "lookalike"
    title = "Tencent Look-alike 2018 (MetaHeac preprocessing)"
    tasks = (LABEL,)
    splits = SPLITS
    group_column = GROUP
    sources = SOURCES

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        return ex.build(RAW_EXPECTATIONS)
