"""Great Expectations suites for raw (where tabular) and prepared data, with reports beside the data.

A suite is a set of *checks*: a table name, a DataFrame (one chunk of a possibly huge table) and the GX
expectations to run on it. Chunks of the same table share one suite; results are aggregated across
chunks (unexpected counts summed, first examples kept). Table-level facts that a chunk cannot judge --
row counts, label rates -- are accumulated while streaming and validated at the end as a one-row
summary table, so they too are GX expectations in the report.

Every run writes ``<report_dir>/summary.json`` (machine-readable: each expectation, its counts and
examples) and ``<report_dir>/docs/index.html`` (GX Data Docs), then raises ``DataValidationError``
naming each failed expectation with counts and example values if anything failed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mtl.config import Params
from mtl.datasets.base import Dataset, Manifest
from mtl.datasets.prepared import LENGTH_SUFFIX, ROW_ID, DatasetMetadata, split_path, write_json_atomic
from mtl.errors import DataFormatError, DataValidationError

log = logging.getLogger(__name__)

FINITE = 1e30  # "no inf": finite float32/float64 values lie well inside +-1e30
EXAMPLES = 5


@dataclass
class Check:
    """Expectations to run on one chunk of one table."""

    table: str
    frame: pd.DataFrame
    expectations: list[Any]
    source: str = ""  # the file the chunk came from
    first_row: int = 0  # row offset of the chunk within that file


@dataclass
class Outcome:
    """One expectation aggregated over every chunk of its table."""

    table: str
    expectation: str
    kwargs: dict[str, Any]
    success: bool = True
    chunks: int = 0
    element_count: int = 0
    unexpected_count: int = 0
    observed: Any = None
    examples: list[Any] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # 0-based data-row numbers in the source file
    errors: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def describe(self) -> str:
        target = self.kwargs.get("column") or ",".join(
            str(self.kwargs[k]) for k in ("column_A", "column_B", "column_list") if k in self.kwargs
        )
        where = f"{self.table}" + (f" ({', '.join(self.sources[:2])})" if self.sources else "")
        text = f"{where}: {self.expectation}({target})"
        if self.errors:
            return f"{text} could not be evaluated: {self.errors[0]}"
        if self.unexpected_count:
            text += f" failed on {self.unexpected_count:,} of {self.element_count:,} rows"
        elif self.observed is not None:
            text += f" failed (observed {self.observed!r})"
        else:
            text += " failed"
        bounds = {
            k: self.kwargs[k]
            for k in ("min_value", "max_value", "value_set", "type_list")
            if k in self.kwargs
        }
        if bounds:
            text += f", expected {bounds}"
        if self.examples:
            text += f", e.g. {self.examples[:EXAMPLES]}"
        if self.rows:
            text += f" at rows {self.rows[:EXAMPLES]}"
        return text


@dataclass
class ValidationReport:
    success: bool
    suite: str
    summary_path: Path
    docs_path: Path | None
    statistics: dict[str, Any]
    failures: list[str]


class SuiteRunner:
    """Runs checks through one ephemeral GX context and writes the report."""

    def __init__(self, suite: str, report_dir: Path):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig
        self._gx = gx
        # GX pins this logger to INFO and announces a temporary docs folder for every context
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
        self.suite = suite
        self.report_dir = Path(report_dir)
        if self.report_dir.exists():
            shutil.rmtree(self.report_dir)
        self.report_dir.mkdir(parents=True)
        self.docs_dir = self.report_dir / "docs"
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.context.update_data_docs_site(
            site_name="local_site",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(self.docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        self._datasource = self.context.data_sources.add_pandas("frames")
        self._tables: dict[str, Any] = {}  # table -> validation definition
        self.outcomes: dict[tuple[str, str, str], Outcome] = {}
        self.rows: dict[str, int] = {}

    def _definition(self, table: str, expectations: list[Any]) -> Any:
        if table not in self._tables:
            gx = self._gx
            name = f"{self.suite}.{table}"
            batch = self._datasource.add_dataframe_asset(table).add_batch_definition_whole_dataframe("chunk")
            # all expectations at construction: add_expectation() re-serialises the suite on every call
            suite = self.context.suites.add(gx.ExpectationSuite(name=name, expectations=list(expectations)))
            self._tables[table] = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite)
            )
        return self._tables[table]

    def run(self, check: Check) -> None:
        """Validate one chunk; its result is stored in the context and rendered by ``finish``."""
        definition = self._definition(check.table, check.expectations)
        self.rows[check.table] = self.rows.get(check.table, 0) + len(check.frame)
        result = definition.run(
            batch_parameters={"dataframe": check.frame},
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": EXAMPLES},
        )
        for item in result.results:
            self._record(check, item)

    def _record(self, check: Check, item: Any) -> None:
        config = item.expectation_config
        kwargs = {k: _plain(v) for k, v in config.kwargs.items() if k not in ("batch_id", "result_format")}
        key = (check.table, config.type, json.dumps(kwargs, sort_keys=True, default=str))
        outcome = self.outcomes.setdefault(key, Outcome(check.table, config.type, kwargs))
        outcome.chunks += 1
        result = item.result or {}
        outcome.element_count += int(result.get("element_count") or 0)
        exception = (item.exception_info or {}) if hasattr(item, "exception_info") else {}
        raised = exception.get("raised_exception") or any(
            isinstance(v, dict) and v.get("raised_exception") for v in exception.values()
        )
        if item.success:
            return
        outcome.success = False
        if check.source and check.source not in outcome.sources:
            outcome.sources.append(check.source)
        if raised:
            message = exception.get("exception_message") or next(
                (v.get("exception_message") for v in exception.values() if isinstance(v, dict)),
                "unknown error",
            )
            outcome.errors.append(str(message).splitlines()[0])
            return
        outcome.unexpected_count += int(result.get("unexpected_count") or 0)
        if "observed_value" in result:
            outcome.observed = _plain(result["observed_value"])
        for value in result.get("partial_unexpected_list") or []:
            if len(outcome.examples) < EXAMPLES:
                outcome.examples.append(_plain(value))
        for index in result.get("partial_unexpected_index_list") or []:
            if len(outcome.rows) < EXAMPLES and isinstance(index, (int, np.integer)):
                outcome.rows.append(check.first_row + int(index))

    def finish(self, extra: dict[str, Any] | None = None) -> ValidationReport:
        docs_index = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = self.context.build_data_docs(site_names=["local_site"])
            docs_index = Path(built["local_site"].removeprefix("file://"))
        except Exception as exc:  # the JSON summary is the report of record; docs are a courtesy
            log.warning("could not build Data Docs: %s", exc)
        outcomes = list(self.outcomes.values())
        failed = [o for o in outcomes if not o.success]
        statistics = {
            "evaluated_expectations": len(outcomes),
            "successful_expectations": len(outcomes) - len(failed),
            "unsuccessful_expectations": len(failed),
            "rows": dict(self.rows),
        }
        summary_path = self.report_dir / "summary.json"
        write_json_atomic(
            summary_path,
            {
                "suite": self.suite,
                "success": not failed,
                "statistics": statistics,
                "failures": [o.describe() for o in failed],
                "expectations": [asdict(o) for o in outcomes],
                "docs": str(docs_index) if docs_index else None,
                **(extra or {}),
            },
        )
        report = ValidationReport(
            success=not failed,
            suite=self.suite,
            summary_path=summary_path,
            docs_path=docs_index,
            statistics=statistics,
            failures=[o.describe() for o in failed],
        )
        if failed:
            raise DataValidationError(
                f"{self.suite}: {len(failed)} of {len(outcomes)} expectations failed -- "
                + "; ".join(report.failures[:8])
                + (f"; and {len(failed) - 8} more" if len(failed) > 8 else "")
                + f". Report: {summary_path}"
                + (f" (Data Docs: {docs_index})" if docs_index else ""),
                report_path=str(summary_path),
            )
        return report


# --- table-level summaries ---------------------------------------------------------------------------


class TableStats:
    """Row counts and positive counts per table, accumulated over chunks."""

    def __init__(self, tasks: Iterable[str]):
        self.tasks = list(tasks)
        self.rows: dict[str, int] = {}
        self.positives: dict[str, dict[str, int]] = {}

    def add(self, table: str, frame: pd.DataFrame) -> None:
        self.rows[table] = self.rows.get(table, 0) + len(frame)
        counts = self.positives.setdefault(table, {})
        for task in self.tasks:
            if task in frame.columns and pd.api.types.is_numeric_dtype(frame[task]):
                counts[task] = counts.get(task, 0) + int((frame[task] == 1).sum())

    def check(
        self, label_rates: dict[str, Any], min_rows: dict[str, int] | None = None, default_min_rows: int = 1
    ) -> Check:
        """One-row summary table: ``rows__<table>`` and ``rate__<table>__<task>`` with their bounds."""
        import great_expectations.expectations as gxe

        row: dict[str, float] = {}
        expectations = []
        for table, rows in sorted(self.rows.items()):
            column = f"rows__{table}"
            row[column] = rows
            minimum = (min_rows or {}).get(table, default_min_rows)
            expectations.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=minimum))
            for task, positives in sorted(self.positives.get(table, {}).items()):
                if task not in label_rates or rows == 0:
                    continue
                column = f"rate__{table}__{task}"
                row[column] = positives / rows
                bounds = label_rates[task]
                expectations.append(
                    gxe.ExpectColumnValuesToBeBetween(
                        column=column, min_value=bounds.min, max_value=bounds.max
                    )
                )
        return Check("summary", pd.DataFrame([row]), expectations, source="all tables")


# --- raw and prepared entry points -------------------------------------------------------------------


def validate_raw(
    dataset: Dataset, raw_dir: Path, manifest: Manifest, params: Params, report_dir: Path
) -> ValidationReport:
    """Raw suite: the dataset's per-table expectations on every chunk, then non-empty tables and
    plausible label rates. Parse errors (truncated lines, empty files) surface as DataFormatError."""
    runner = SuiteRunner(f"{dataset.name}.raw", report_dir)
    settings = params.dataset(dataset.name).validation
    stats = TableStats(dataset.tasks)
    for table in dataset.raw_tables(raw_dir, manifest, params):
        stats.add(table.name, table.frame)
        runner.run(
            Check(
                table.name,
                table.frame,
                dataset.raw_expectations(table.name, params),
                source=str(table.path),
                first_row=table.first_row,
            )
        )
    if not stats.rows:
        raise DataFormatError(f"{raw_dir}: no raw tables found for source {manifest.source!r}")
    runner.run(stats.check(settings.label_rates))
    return runner.finish({"source": manifest.source, "raw_hash": manifest.content_hash})


def prepared_expectations(metadata: DatasetMetadata) -> list[Any]:
    """Generic row-level expectations every prepared split must meet (from metadata alone)."""
    import great_expectations.expectations as gxe

    out: list[Any] = []
    for task in metadata.tasks:
        out += [
            gxe.ExpectColumnToExist(column=task),
            gxe.ExpectColumnValuesToBeInSet(column=task, value_set=[0, 1]),
            gxe.ExpectColumnValuesToBeInTypeList(column=task, type_list=["int8"]),
        ]
    for f in metadata.features.sparse:
        out += [
            gxe.ExpectColumnToExist(column=f.name),
            gxe.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=["int32"]),
            gxe.ExpectColumnValuesToBeBetween(column=f.name, min_value=0, max_value=f.vocab_size - 1),
        ]
    for f in metadata.features.multi:
        length = f.name + LENGTH_SUFFIX
        out += [
            gxe.ExpectColumnToExist(column=length),
            gxe.ExpectColumnValuesToBeBetween(column=length, min_value=0, max_value=f.max_len),
            gxe.ExpectColumnToExist(column=f"{f.name}__min_id"),
            gxe.ExpectColumnValuesToBeBetween(column=f"{f.name}__min_id", min_value=0),
            gxe.ExpectColumnValuesToBeBetween(column=f"{f.name}__max_id", max_value=f.vocab_size - 1),
        ]
    for f in metadata.features.dense:
        out += [
            gxe.ExpectColumnToExist(column=f.name),
            gxe.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=["float32"]),
            gxe.ExpectColumnValuesToNotBeNull(column=f.name),
            gxe.ExpectColumnValuesToBeBetween(column=f.name, min_value=-FINITE, max_value=FINITE),
        ]
    out.append(gxe.ExpectColumnValuesToNotBeNull(column=ROW_ID))
    if metadata.group_column:
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=metadata.group_column))
    if metadata.funnel:
        for earlier, later in zip(metadata.funnel, metadata.funnel[1:]):
            out.append(
                gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=earlier, column_B=later, or_equal=True)
            )
    return out


def prepared_frames(
    path: Path, metadata: DatasetMetadata, chunk_rows: int
) -> Iterable[tuple[int, pd.DataFrame]]:
    """A prepared split as DataFrame chunks; multi-valued columns become ``__min_id``/``__max_id``."""
    parquet = pq.ParquetFile(path)
    offset = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        table = pa.Table.from_batches([batch])
        multi = {f.name for f in metadata.features.multi}
        frame = table.drop_columns([c for c in table.column_names if c in multi]).to_pandas()
        for f in metadata.features.multi:
            ids = table.column(f.name).combine_chunks().flatten().to_numpy().reshape(len(frame), f.max_len)
            frame[f"{f.name}__min_id"] = ids.min(axis=1) if f.max_len else 0
            frame[f"{f.name}__max_id"] = ids.max(axis=1) if f.max_len else 0
        yield offset, frame
        offset += len(frame)


def validate_prepared(
    dataset: Dataset, prepared_dir: Path, metadata: DatasetMetadata, params: Params, report_dir: Path
) -> ValidationReport:
    """Prepared suite: generic expectations per split, split sizes and label rates, then the
    dataset's cross-split checks (e.g. disjoint campaigns)."""
    runner = SuiteRunner(f"{dataset.name}.prepared", report_dir)
    settings = params.dataset(dataset.name).validation
    stats = TableStats(metadata.tasks)
    for split in metadata.splits:
        path = split_path(prepared_dir, split, metadata)
        # fresh objects per split: a GX expectation can belong to one suite only
        generic = prepared_expectations(metadata)
        extra = dataset.prepared_expectations(metadata, split, params)
        stats.rows.setdefault(split, 0)
        for offset, frame in prepared_frames(path, metadata, params.data.chunk_rows):
            stats.add(split, frame)
            runner.run(Check(split, frame, generic + extra, source=str(path), first_row=offset))
    runner.run(stats.check(settings.label_rates, settings.min_rows))
    for table, frame, expectations in dataset.prepared_checks(prepared_dir, metadata, params):
        runner.run(Check(table, frame, expectations, source=str(prepared_dir)))
    return runner.finish({"content_hash": metadata.content_hash, "source": metadata.source})


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a GX value (numpy scalars, tuples, NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
