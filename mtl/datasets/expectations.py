"""Great Expectations as data: builders that turn a dataset's schema into expectation lists.

A dataset declares its suites as lists of ``Expect`` (a GX expectation class name and its arguments);
``build`` makes fresh GX objects for each suite run, since a GX expectation belongs to one suite only.

Each expectation has a severity (GX's own ``severity`` field, also stated in its ``meta`` and ``notes`` so
the Data Docs show it): ``critical`` -- broken data (schema, dtypes, labels outside {0, 1}, a purchase
without a click, ids outside the vocabulary, NaN/inf, an empty split, campaigns shared between splits)
stops the pipeline; ``warning`` -- unusual but usable data (label rates, split sizes, drift against the
previous prepared version) is reported and stops it only under ``validation.fail_on_warning``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mtl.datasets.prepared import DatasetMetadata, split_path

RARE = 0.99  # "mostly": tolerated share for facts the public data may break now and then
INTEGER_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
NUMBER_TYPES = (*INTEGER_TYPES, "float16", "float32", "float64")
BINARY = (0, 1)
CRITICAL, WARNING = "critical", "warning"
SEVERITY_NOTES = {
    CRITICAL: "Severity: critical -- a failure stops the pipeline.",
    WARNING: "Severity: warning -- a failure is reported; it stops the pipeline only when "
    "validation.fail_on_warning is true.",
}


@dataclass(frozen=True)
class Expect:
    """One expectation: the GX class (``great_expectations.expectations.<kind>``) and its arguments."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    severity: str = CRITICAL

    def build(self) -> Any:
        return gx_expectation(self.kind, self.severity, **self.kwargs)


def gx_expectation(kind: str, severity: str = CRITICAL, **kwargs: Any) -> Any:
    """A GX expectation (``great_expectations.expectations.<kind>``) of the given severity."""
    import great_expectations.expectations as gxe

    if severity not in SEVERITY_NOTES:
        raise ValueError(f"severity must be {CRITICAL!r} or {WARNING!r}, got {severity!r}")
    return getattr(gxe, kind)(
        **kwargs, severity=severity, meta={"severity": severity}, notes=SEVERITY_NOTES[severity]
    )


def warning(expectations: Iterable[Expect]) -> list[Expect]:
    """The same expectations at warning severity (unusual data, not broken data)."""
    return [replace(e, severity=WARNING) for e in expectations]


def severity_of(expectation: Any) -> str:
    """The severity of a built GX expectation (critical where it has none)."""
    value = getattr(expectation, "severity", None)
    return str(getattr(value, "value", value) or CRITICAL)


def build(expectations: Iterable[Expect]) -> list[Any]:
    """Fresh GX expectation objects for one suite."""
    return [e.build() for e in expectations]


def _expect(kind: str, **kwargs: Any) -> Expect:
    return Expect(kind, {key: value for key, value in kwargs.items() if value is not None})


# --- one fact per column ------------------------------------------------------------------------------


def exist(columns: Iterable[Any]) -> list[Expect]:
    return [_expect("ExpectColumnToExist", column=c) for c in columns]


def not_null(columns: Iterable[Any]) -> list[Expect]:
    return [_expect("ExpectColumnValuesToNotBeNull", column=c) for c in columns]


def typed(columns: Iterable[Any], types: Sequence[str]) -> list[Expect]:
    return [_expect("ExpectColumnValuesToBeInTypeList", column=c, type_list=list(types)) for c in columns]


def in_set(column: Any, values: Iterable[Any]) -> Expect:
    return _expect("ExpectColumnValuesToBeInSet", column=column, value_set=list(values))


def between(
    column: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    mostly: float | None = None,
    **extra: Any,
) -> Expect:
    return _expect(
        "ExpectColumnValuesToBeBetween", column=column, min_value=low, max_value=high, mostly=mostly, **extra
    )


def unique(column: Any) -> Expect:
    return _expect("ExpectColumnValuesToBeUnique", column=column)


def at_least(column_a: Any, column_b: Any, *, mostly: float | None = None) -> Expect:
    """``column_a >= column_b`` row by row (a funnel: a later step implies the earlier one)."""
    return _expect(
        "ExpectColumnPairValuesAToBeGreaterThanB",
        column_A=column_a,
        column_B=column_b,
        or_equal=True,
        mostly=mostly,
    )


def equal(column_a: Any, column_b: Any) -> Expect:
    return _expect("ExpectColumnPairValuesToBeEqual", column_A=column_a, column_B=column_b)


def exactly(columns: Iterable[Any]) -> Expect:
    return _expect("ExpectTableColumnsToMatchSet", column_set=list(columns), exact_match=True)


def unique_together(columns: Sequence[Any]) -> Expect:
    return _expect("ExpectCompoundColumnsToBeUnique", column_list=list(columns))


# --- facts of a schema --------------------------------------------------------------------------------


def binary_labels(columns: Iterable[Any], types: Sequence[str] = INTEGER_TYPES) -> list[Expect]:
    """Each label column exists, is an integer column and holds only 0 and 1."""
    out: list[Expect] = []
    for column in columns:
        out += [*exist([column]), *typed([column], types), in_set(column, BINARY)]
    return out


def funnel(steps: Sequence[str], *, mostly: float | None = None) -> list[Expect]:
    """A later step's positive implies the earlier step's (purchase <= click)."""
    return [at_least(earlier, later, mostly=mostly) for earlier, later in pairwise(steps)]


def numbers(ranges: Mapping[str, tuple[float, float]], *, strict_min: Iterable[str] = ()) -> list[Expect]:
    """Each column is present (not null) and within its plausible range (``strict_min``: above the low)."""
    strict = set(strict_min)
    out: list[Expect] = []
    for column, (low, high) in ranges.items():
        out += [*not_null([column]), between(column, low, high, strict_min=column in strict)]
    return out


# --- cross-split facts of prepared data ---------------------------------------------------------------


def split_column(prepared_dir: Path, metadata: DatasetMetadata, split: str, column: str) -> np.ndarray:
    """One column of a prepared split."""
    return (
        pq.read_table(split_path(prepared_dir, split, metadata), columns=[column]).column(column).to_numpy()
    )


def one_row_check(
    table: str, row: dict[str, float], expectations: list[Expect]
) -> tuple[str, pd.DataFrame, list[Any]]:
    """A prepared check on a one-row table of derived facts (as ``Dataset.prepared_checks`` returns)."""
    return table, pd.DataFrame([row]), build(expectations)
