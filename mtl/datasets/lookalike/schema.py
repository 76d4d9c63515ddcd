"""The MetaHeac pickle layout (datasets.md §3.2): 29 columns, five split files, one id space per field."""

from __future__ import annotations

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
TRUTH_FILE = "synthetic_truth.parquet"
