"""Ali-CCP's Great Expectations: per raw table (by source layout) and across prepared splits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from mtl.datasets.aliccp.csv_source import LABELS
from mtl.datasets.aliccp.fields import DENSE_FIELDS, FIELDS
from mtl.datasets.aliccp.sources import raw_frames
from mtl.datasets.base import RawTable
from mtl.datasets.prepared import ROW_ID, DatasetMetadata
from mtl.validation import FINITE

RARE = 0.99  # "mostly": tolerated share for facts the public data may break now and then


def raw_tables(source: str, raw_dir: Path, chunk_rows: int) -> Iterator[RawTable]:
    """Raw frames regrouped into tables of about ``chunk_rows`` rows, with their row offsets."""
    pending: dict[str, list[pd.DataFrame]] = {}
    offsets: dict[str, int] = {}
    paths: dict[str, Path] = {}

    def flush(table: str) -> RawTable:
        frame = pd.concat(pending.pop(table), ignore_index=True)
        first = offsets.get(table, 0)
        offsets[table] = first + len(frame)
        return RawTable(table, paths[table], frame, first_row=first)

    for table, path, frame in raw_frames(source, raw_dir, chunk_rows):
        if table in pending and paths[table] != path:
            yield flush(table)
        paths[table] = path
        pending.setdefault(table, []).append(frame)
        if sum(len(f) for f in pending[table]) >= chunk_rows:
            yield flush(table)
    for table in list(pending):
        yield flush(table)


def _labels() -> list[Any]:
    import great_expectations.expectations as gxe

    out: list[Any] = []
    for label in LABELS:
        out += [
            gxe.ExpectColumnToExist(column=label),
            gxe.ExpectColumnValuesToBeInTypeList(column=label, type_list=["int64"]),
            gxe.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1]),
        ]
    return out


def raw_expectations(table: str) -> list[Any]:
    """Expectations of one raw table; the layout follows from the table name's suffix."""
    import great_expectations.expectations as gxe

    funnel = gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="click", column_B="purchase", or_equal=True)
    if table.endswith("_tokens"):
        return [
            *_labels(),
            funnel,
            gxe.ExpectColumnValuesToNotBeNull(column="sample_id"),
            gxe.ExpectColumnValuesToBeUnique(column="sample_id"),
            gxe.ExpectColumnValuesToBeBetween(column="tokens", min_value=1),
            gxe.ExpectColumnValuesToBeBetween(column="fields_present", min_value=1, max_value=len(FIELDS)),
            # the public reader ignores tokens of other fields; more than a few means a different format
            gxe.ExpectColumnValuesToBeBetween(column="unknown_field_tokens", max_value=0, mostly=RARE),
        ]
    if table.endswith("_csv"):
        out = [*_labels(), funnel]
        for name in FIELDS:  # (a negative id is rejected by the parser, naming line and column)
            out += [
                gxe.ExpectColumnToExist(column=name),
                gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=["int64"]),
            ]
        for name in DENSE_FIELDS:
            out += [
                gxe.ExpectColumnToExist(column=name),
                gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=["float64", "int64"]),
                gxe.ExpectColumnValuesToNotBeNull(column=name),
                gxe.ExpectColumnValuesToBeBetween(column=name, min_value=-FINITE, max_value=FINITE),
            ]
        return out
    entries = [
        gxe.ExpectColumnValuesToNotBeNull(column="common_feature_index"),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="feature_num", column_B="entries"),
        gxe.ExpectColumnValuesToBeBetween(column="unknown_field_entries", max_value=0, mostly=RARE),
    ]
    if table.endswith("_skeleton"):
        # The public preprocessors drop click=0 & conversion=1 rows (so do we): a few are expected.
        rare_funnel = gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="click", column_B="purchase", or_equal=True, mostly=RARE
        )
        return [*_labels(), rare_funnel, gxe.ExpectColumnValuesToNotBeNull(column="sample_id"), *entries]
    if table.endswith("_common_features"):
        return [*entries, gxe.ExpectColumnValuesToBeUnique(column="common_feature_index")]
    raise ValueError(f"no raw expectations for table {table!r}")


def prepared_expectations() -> list[Any]:
    """Beyond the generic suite: row ids identify rows within a split."""
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeUnique(column=ROW_ID)]


def prepared_checks(
    metadata: DatasetMetadata, valid_fraction: float
) -> list[tuple[str, pd.DataFrame, list[Any]]]:
    """The validation split's share of the train file is close to ``valid_fraction`` (hash split)."""
    import great_expectations.expectations as gxe

    train, valid = (metadata.splits[s].rows for s in ("train", "valid"))
    if metadata.source == "csv" or train + valid < 1000:  # csv ships its own split; tiny data is noisy
        return []
    share = valid / (train + valid)
    frame = pd.DataFrame([{"valid_share": share}])
    bounds = gxe.ExpectColumnValuesToBeBetween(
        column="valid_share", min_value=0.5 * valid_fraction, max_value=1.5 * valid_fraction
    )
    return [("split_sizes", frame, [bounds])]
