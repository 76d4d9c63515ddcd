"""Great Expectations suites for raw (where tabular) and prepared data, with reports beside the data.

A suite is a set of *checks*: a table name, a DataFrame (one chunk of a possibly huge table) and the GX
expectations to run on it. Chunks of the same table share one suite; results are aggregated across
chunks (unexpected counts summed, first examples kept). Table-level facts that a chunk cannot judge --
row counts, label rates -- are accumulated while streaming and validated at the end as a one-row
summary table, so they too are GX expectations in the report.

Expectations have two severities (``mtl.datasets.expectations``): a failed *critical* one (broken
data: schema, dtypes, labels, purchase => click, ids within the vocabulary, NaN/inf, empty splits,
disjoint campaigns) stops the pipeline; a failed *warning* (unusual data: label rates, split sizes,
drift against the prepared version being replaced) is reported and stops it only under
``validation.fail_on_warning``.

Every run writes ``<report_dir>/summary.json`` (machine-readable: each expectation with its severity,
counts and examples; ``failures`` and ``warnings``; the drift table) and ``<report_dir>/docs/index.html``
(GX Data Docs, each expectation's severity in its notes), logs each warning at WARNING (the Airflow task
log), then raises ``DataValidationError`` naming each failed expectation with counts and example values
if a critical one failed (or a warning, under ``fail_on_warning``).
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

from mtl import atomic
from mtl.config import DriftThresholds, Params
from mtl.datasets import expectations as ex
from mtl.datasets.base import Dataset, Manifest
from mtl.datasets.prepared import (
    LENGTH_SUFFIX,
    METADATA_FILE,
    ROW_ID,
    DatasetMetadata,
    load_metadata,
    split_path,
    write_json_atomic,
)
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
    severity: str = ex.CRITICAL
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
    failures: list[str]  # critical expectations that failed (empty: the data passed)
    warnings: list[str] = field(default_factory=list)  # warning-severity expectations that failed
    drift: dict[str, Any] = field(default_factory=dict)


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
        severity = ex.severity_of(config)
        key = (check.table, config.type, severity, json.dumps(kwargs, sort_keys=True, default=str))
        outcome = self.outcomes.setdefault(key, Outcome(check.table, config.type, kwargs, severity))
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

    def finish(
        self, extra: dict[str, Any] | None = None, *, fail_on_warning: bool = False
    ) -> ValidationReport:
        """Write summary.json and the Data Docs, log the warnings; raise if a critical expectation failed
        (or any failed, under ``fail_on_warning``)."""
        docs_index = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = self.context.build_data_docs(site_names=["local_site"])
            docs_index = Path(built["local_site"].removeprefix("file://"))
        except Exception as exc:  # the JSON summary is the report of record; docs are a courtesy
            log.warning("could not build Data Docs: %s", exc)
        outcomes = list(self.outcomes.values())
        failed = [o for o in outcomes if not o.success and o.severity == ex.CRITICAL]
        warned = [o for o in outcomes if not o.success and o.severity != ex.CRITICAL]
        statistics = {
            "evaluated_expectations": len(outcomes),
            "successful_expectations": len(outcomes) - len(failed) - len(warned),
            "unsuccessful_expectations": len(failed) + len(warned),
            "critical_failures": len(failed),
            "warnings": len(warned),
            "rows": dict(self.rows),
        }
        summary_path = self.report_dir / "summary.json"
        stopped = bool(failed) or (fail_on_warning and bool(warned))
        report = ValidationReport(
            success=not stopped,
            suite=self.suite,
            summary_path=summary_path,
            docs_path=docs_index,
            statistics=statistics,
            failures=[o.describe() for o in failed],
            warnings=[o.describe() for o in warned],
            drift=(extra or {}).get("drift") or {},
        )
        write_json_atomic(
            summary_path,
            {
                "suite": self.suite,
                "success": report.success,
                "fail_on_warning": fail_on_warning,
                "statistics": statistics,
                "failures": report.failures,
                "warnings": report.warnings,
                "expectations": [asdict(o) for o in outcomes],
                "docs": str(docs_index) if docs_index else None,
                **(extra or {}),
            },
        )
        for text in report.warnings:
            log.warning("%s: data warning: %s", self.suite, text)
        if stopped:
            stopping = failed + (warned if fail_on_warning else [])
            described = [o.describe() for o in stopping]
            kind = (
                " (warnings included: validation.fail_on_warning is true)"
                if warned and fail_on_warning
                else ""
            )
            raise DataValidationError(
                f"{self.suite}: {len(stopping)} of {len(outcomes)} expectations failed{kind} -- "
                + "; ".join(described[:8])
                + (f"; and {len(stopping) - 8} more" if len(stopping) > 8 else "")
                + f". Report: {summary_path}"
                + (f" (Data Docs: {docs_index})" if docs_index else ""),
                report_path=str(summary_path),
            )
        if warned:
            log.warning(
                "%s: %d data warning(s), not stopping (validation.fail_on_warning is false); report: %s",
                self.suite,
                len(warned),
                atomic.published_path(summary_path),
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
        self,
        label_rates: dict[str, Any],
        min_rows: dict[str, int] | None = None,
        default_min_rows: int = 1,
        shares: dict[str, Any] | None = None,
    ) -> Check:
        """One-row summary table: ``rows__<table>`` (critical: not empty; warning: at least its
        ``min_rows``), ``share__<table>`` (warning: within its ``shares`` bounds) and
        ``rate__<table>__<task>`` (warning: within the task's ``label_rates`` bounds)."""
        row: dict[str, float] = {}
        expectations: list[ex.Expect] = []
        total = sum(self.rows.values())
        for table, rows in sorted(self.rows.items()):
            column = f"rows__{table}"
            row[column] = rows
            expectations.append(ex.between(column, 1))
            minimum = (min_rows or {}).get(table, default_min_rows)
            if minimum > 1:
                expectations += ex.warning([ex.between(column, minimum)])
            if table in (shares or {}) and total:
                bounds = shares[table]
                row[f"share__{table}"] = rows / total
                expectations += ex.warning([ex.between(f"share__{table}", bounds.min, bounds.max)])
            for task, positives in sorted(self.positives.get(table, {}).items()):
                if task not in label_rates or rows == 0:
                    continue
                column = f"rate__{table}__{task}"
                row[column] = positives / rows
                bounds = label_rates[task]
                expectations += ex.warning([ex.between(column, bounds.min, bounds.max)])
        return Check("summary", pd.DataFrame([row]), ex.build(expectations), source="all tables")


# --- raw and prepared entry points -------------------------------------------------------------------


def validate_raw(
    dataset: Dataset, raw_dir: Path, manifest: Manifest, params: Params, report_dir: Path
) -> ValidationReport:
    """Raw suite: the dataset's per-table expectations on every chunk, then non-empty tables and
    plausible label rates. Parse errors (truncated lines, empty files) surface as DataFormatError."""
    runner = SuiteRunner(f"{dataset.name}.raw", report_dir)
    settings = params.dataset(dataset.name).validation
    stats = TableStats(dataset.tasks)
    files: set[Path] = set()
    for table in dataset.raw_tables(raw_dir, manifest, params):
        files.add(Path(table.path))
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
    if ends := last_lines(files):
        runner.run(ends)
    return runner.finish(
        {"source": manifest.source, "raw_hash": manifest.content_hash},
        fail_on_warning=params.validation.fail_on_warning,
    )


TEXT_SUFFIXES = (".csv", ".txt", ".data", ".test", ".tsv")


def last_lines(files: Iterable[Path]) -> Check | None:
    """Warning: a text file whose last line lacks its newline may have been cut off mid-line (a
    truncated download or copy) -- the parsers cannot tell, since a cut often leaves a valid line."""
    row = {}
    for path in sorted(p for p in files if p.suffix in TEXT_SUFFIXES and p.is_file()):
        with path.open("rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            if size:
                stream.seek(size - 1)
                row[f"last_line_complete__{path.name}"] = int(stream.read(1) == b"\n")
    if not row:
        return None
    expectations = ex.warning([ex.between(column, 1) for column in row])
    return Check("files", pd.DataFrame([row]), ex.build(expectations), source="raw text files")


def prepared_expectations(metadata: DatasetMetadata) -> list[Any]:
    """Generic row-level expectations every prepared split must meet (from metadata alone); all critical."""
    out: list[ex.Expect] = ex.binary_labels(metadata.tasks, ["int8"])
    for f in metadata.features.sparse:
        out += [*ex.exist([f.name]), *ex.typed([f.name], ["int32"]), ex.between(f.name, 0, f.vocab_size - 1)]
    for f in metadata.features.multi:
        length = f.name + LENGTH_SUFFIX
        out += [
            *ex.exist([length, f"{f.name}__min_id"]),
            ex.between(length, 0, f.max_len),
            ex.between(f"{f.name}__min_id", 0),
            ex.between(f"{f.name}__max_id", high=f.vocab_size - 1),
        ]
    for f in metadata.features.dense:
        out += [
            *ex.exist([f.name]),
            *ex.typed([f.name], ["float32"]),
            *ex.not_null([f.name]),
            ex.between(f.name, -FINITE, FINITE),
        ]
    out += ex.not_null([ROW_ID])
    if metadata.group_column:
        out += ex.not_null([metadata.group_column])
    if metadata.funnel:
        out += ex.funnel(metadata.funnel)
    return ex.build(out)


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
    dataset: Dataset,
    prepared_dir: Path,
    metadata: DatasetMetadata,
    params: Params,
    report_dir: Path,
    *,
    replaces: Path | None = None,
) -> ValidationReport:
    """Prepared suite: generic expectations per split, split sizes and label rates, the dataset's
    cross-split checks (e.g. disjoint campaigns), then drift against the prepared version that
    ``prepared_dir`` (a staging directory) ``replaces``. Messages name the files by where they will
    be published. The drift is recorded in ``prepared_dir``'s metadata.json (with the previous version's
    statistics, so a later re-validation of the same data measures it again without the old data)."""
    previous = previous_metadata(replaces) if replaces is not None else None
    shown = Path(replaces) if replaces is not None else Path(prepared_dir)
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
            source = str(shown / path.name)
            runner.run(Check(split, frame, generic + extra, source=source, first_row=offset))
    runner.run(stats.check(settings.label_rates, settings.min_rows, shares=settings.split_shares))
    for table, frame, expectations in dataset.prepared_checks(prepared_dir, metadata, params):
        runner.run(Check(table, frame, expectations, source=str(shown)))
    baseline = profile(previous) if previous is not None else metadata.drift.get("previous")
    drift: dict[str, Any] = {}
    if baseline:
        changes = drift_changes(baseline, metadata)
        drift = {"previous": baseline, "changes": changes, "thresholds": params.validation.drift.model_dump()}
        if changes:
            since = (
                f"previous version {baseline.get('content_hash', '')[:12]} of {baseline.get('created_at')}"
            )
            runner.run(drift_check(changes, params.validation.drift, source=since))
        if previous is not None and (Path(prepared_dir) / METADATA_FILE).is_file():
            metadata.drift = drift
            write_json_atomic(Path(prepared_dir) / METADATA_FILE, metadata.to_json())
    return runner.finish(
        {"content_hash": metadata.content_hash, "source": metadata.source, "drift": drift},
        fail_on_warning=params.validation.fail_on_warning,
    )


# --- drift against the previous prepared version -------------------------------------------------------


def previous_metadata(prepared_dir: Path) -> DatasetMetadata | None:
    """The metadata of the prepared version in ``prepared_dir`` (about to be replaced), if any."""
    if not (Path(prepared_dir) / METADATA_FILE).is_file():
        return None
    try:
        return load_metadata(prepared_dir)
    except DataFormatError as exc:
        log.warning("no drift baseline: %s", exc)
        return None


def profile(metadata: DatasetMetadata) -> dict[str, Any]:
    """What drift is measured on, from a version's metadata alone (no data is re-read)."""
    return {
        "content_hash": metadata.content_hash,
        "source": metadata.source,
        "created_at": metadata.created_at,
        "splits": {
            name: {
                "rows": info.rows,
                "label_rates": info.label_rates,
                "unknown_rates": info.unknown_rates,
                "dense_means": info.dense_means,
                "dense_stds": info.dense_stds,
            }
            for name, info in metadata.splits.items()
        },
    }


def _relative(new: float, old: float) -> float:
    if old == 0:
        return 0.0 if new == 0 else math.inf
    return abs(new - old) / abs(old)


def drift_changes(baseline: dict[str, Any], metadata: DatasetMetadata) -> dict[str, float]:
    """Per split present in both versions: ``rows__<split>`` and ``label_rate__<split>__<task>``
    (relative change), ``unknown_rate__<split>__<field>`` (absolute change of the id-0 share) and
    ``dense_mean__<split>__<field>`` (change of the mean in the previous standard deviations)."""
    changes: dict[str, float] = {}
    for split, info in metadata.splits.items():
        old = baseline.get("splits", {}).get(split)
        if not old:
            continue
        changes[f"rows__{split}"] = _relative(info.rows, old["rows"])
        pairs = (
            ("label_rate", info.label_rates, old.get("label_rates") or {}),
            ("unknown_rate", info.unknown_rates, old.get("unknown_rates") or {}),
        )
        for kind, new_values, old_values in pairs:
            for name, value in new_values.items():
                before = old_values.get(name)
                if value is None or before is None:
                    continue
                change = _relative(value, before) if kind == "label_rate" else abs(value - before)
                changes[f"{kind}__{split}__{name}"] = change
        old_means, old_stds = old.get("dense_means") or {}, old.get("dense_stds") or {}
        for name, mean in info.dense_means.items():
            before, std = old_means.get(name), old_stds.get(name)
            if mean is None or before is None or std is None:
                continue
            shift = abs(mean - before)
            changes[f"dense_mean__{split}__{name}"] = (
                shift / std if std > 0 else (0.0 if shift == 0 else math.inf)
            )
    return changes


def drift_over(drift: dict[str, Any]) -> list[str]:
    """The changes of a recorded drift (``metadata.drift``) past their thresholds."""
    limits = drift.get("thresholds") or {}
    return [
        column
        for column, change in (drift.get("changes") or {}).items()
        if change > limits.get(column.partition("__")[0], math.inf)
    ]


def drift_log_record(drift: dict[str, Any]) -> tuple[dict[str, str], dict[str, float]]:
    """A recorded drift as MLflow params (``data.drift.*``: the baseline version, the changes past
    their thresholds) and metrics (``drift.<change>``; an infinite change -- from a rate of 0 -- is left
    to the params)."""
    if not drift:
        return {"data.drift.baseline": "none (first prepared version)"}, {}
    baseline = drift.get("previous") or {}
    over = drift_over(drift)
    params = {
        "data.drift.baseline": str(baseline.get("content_hash", "")),
        "data.drift.baseline_created_at": str(baseline.get("created_at", "")),
        "data.drift.baseline_source": str(baseline.get("source", "")),
        "data.drift.warnings": str(len(over)),
        "data.drift.over_threshold": ",".join(over)[:6000] or "none",
    }
    metrics = {
        f"drift.{column}": float(change)
        for column, change in (drift.get("changes") or {}).items()
        if math.isfinite(change)
    }
    return params, metrics


def drift_check(changes: dict[str, float], limits: DriftThresholds, source: str = "") -> Check:
    """The drift table as warning expectations: each change at most its threshold."""
    expectations = [ex.between(column, high=getattr(limits, column.partition("__")[0])) for column in changes]
    frame = pd.DataFrame([changes])
    return Check("drift", frame, ex.build(ex.warning(expectations)), source=source)


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
