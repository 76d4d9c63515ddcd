"""Great Expectations for the look-alike pickles (raw) and for its campaign split rules (prepared)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mtl.datasets.lookalike.parse import MAX_SUFFIX, MIN_SUFFIX, ROW_INDEX, expected_cell
from mtl.datasets.lookalike.schema import (
    AD_FIELDS,
    CAMPAIGN_GROUPS,
    DYNAMIC_FIELDS,
    GROUP,
    INT_COLUMNS,
    LABEL,
    LENGTH_COLUMNS,
    MAX_RAW_LENGTH,
    MAX_SOURCE_ID,
    STATIC_FIELDS,
)
from mtl.datasets.prepared import ROW_ID, DatasetMetadata, split_path


def raw_expectations() -> list[Any]:
    """Per-split checks of a pickle's validation view (see ``parse.validation_view``)."""
    import great_expectations.expectations as gxe

    out: list[Any] = []
    for column in (ROW_INDEX, *INT_COLUMNS):
        out += [
            gxe.ExpectColumnToExist(column=column),
            gxe.ExpectColumnValuesToNotBeNull(column=column),
            gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=["int64"]),
        ]
    out.append(gxe.ExpectColumnValuesToBeInSet(column=LABEL, value_set=[0, 1]))
    out.append(gxe.ExpectColumnValuesToBeBetween(column=GROUP, min_value=0))
    for column in (*STATIC_FIELDS, *AD_FIELDS):
        out.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=MAX_SOURCE_ID))
    for column in LENGTH_COLUMNS:
        out.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=MAX_RAW_LENGTH))
    for field, width in DYNAMIC_FIELDS.items():
        out += [
            gxe.ExpectColumnToExist(column=field),
            gxe.ExpectColumnValuesToNotBeNull(column=field),
            gxe.ExpectColumnValuesToBeInSet(column=field, value_set=[expected_cell(width)]),
            gxe.ExpectColumnValuesToBeBetween(column=field + MIN_SUFFIX, min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column=field + MAX_SUFFIX, max_value=MAX_SOURCE_ID),
        ]
    return out


def campaign_checks(
    prepared_dir: Path, metadata: DatasetMetadata
) -> list[tuple[str, pd.DataFrame, list[Any]]]:
    """Cross-split rules as three small derived tables: a campaign belongs to one of train / hot /
    cold; every stage2 campaign has stage1 rows to adapt on; row ids are unique within a split."""
    import great_expectations.expectations as gxe

    def column(split: str, name: str) -> np.ndarray:
        return (
            pq.read_table(split_path(prepared_dir, split, metadata), columns=[name]).column(name).to_numpy()
        )

    campaigns = {split: np.unique(column(split, GROUP)) for split in metadata.splits}
    by_group = pd.DataFrame(
        [
            {GROUP: int(aid), "group": group}
            for group, splits in CAMPAIGN_GROUPS.items()
            for aid in np.unique(np.concatenate([campaigns[s] for s in splits]))
        ],
        columns=[GROUP, "group"],
    )
    # "<stage2 split>:<aid>" for every stage2 campaign, against those with stage1 rows
    stage_pairs = [splits for splits in CAMPAIGN_GROUPS.values() if len(splits) == 2]
    stage2 = [f"{second}:{aid}" for _, second in stage_pairs for aid in campaigns[second]]
    adaptable = [f"{second}:{aid}" for first, second in stage_pairs for aid in campaigns[first]]
    row_ids = pd.DataFrame(
        {
            "split": np.concatenate(
                [np.full(metadata.splits[s].rows, s, dtype=object) for s in metadata.splits]
            ),
            ROW_ID: np.concatenate([column(s, ROW_ID) for s in metadata.splits]),
        }
    )
    return [
        ("campaign_groups", by_group, [gxe.ExpectColumnValuesToBeUnique(column=GROUP)]),
        (
            "stage2_campaigns",
            pd.DataFrame({"campaign": stage2}, dtype=object),
            [gxe.ExpectColumnValuesToBeInSet(column="campaign", value_set=adaptable)],
        ),
        ("row_ids", row_ids, [gxe.ExpectCompoundColumnsToBeUnique(column_list=["split", ROW_ID])]),
    ]
