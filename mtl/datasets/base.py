"""What every dataset declares once: sources, files, tasks, splits, and the hooks the pipeline calls.

A dataset is a subclass of ``Dataset`` registered in ``mtl.datasets``. The pipeline never
special-cases a dataset: it asks the dataset for its sources (download), its raw tables (raw
validation) and its prepared splits (prepare), and validates the prepared output generically from
``metadata.json`` plus the dataset's ``prepared_expectations``. For serving, ``raw_codec`` turns raw
feature columns into prepared arrays (and prepared rows back into raw columns) with the encoders a
prepared directory holds (one codec for every dataset), so a served model takes the source's own values.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pandas as pd

from mtl.config import Params
from mtl.datasets.codec import RawCodec
from mtl.datasets.prepared import DatasetMetadata, SplitArrays, read_split
from mtl.errors import ConfigError, DataFormatError


@dataclass(frozen=True)
class RemoteFile:
    """One file of a source: where it comes from and how to check it."""

    name: str  # file name inside the raw directory
    url: str | None = None  # default location; None = the user must pass --from
    sha256: str | None = None  # verified when known
    size: int | None = None  # bytes, verified when known
    extract: bool = False  # an archive to unpack into the raw directory after download
    required: bool = True  # may be absent from a --from folder (e.g. an optional split)


@dataclass(frozen=True)
class Source:
    name: str
    description: str
    files: tuple[RemoteFile, ...]
    kind: Literal["remote", "local", "generated"] = "remote"  # local: user-supplied path only
    format: str = ""  # the on-disk format the parser reads (synthetic: the real format it writes)


@dataclass(frozen=True)
class RawTable:
    """A chunk of a raw file viewed as a table, for the raw validation suite."""

    name: str  # logical table, e.g. "train" or "test_hot_stage1"
    path: Path  # the file it came from (named in errors and reports)
    frame: pd.DataFrame
    first_row: int = 0  # row number (0-based, data rows) of frame.iloc[0] in the file


@dataclass
class Manifest:
    """``raw/<dataset>/manifest.json``: what was downloaded, from where, verified how."""

    dataset: str
    source: str
    format: str
    files: list[dict[str, Any]] = field(default_factory=list)  # name, sha256, size, origin
    extracted: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # generator params (synthetic) or {}
    content_hash: str = ""

    @classmethod
    def load(cls, path: Path) -> Manifest:
        if not path.is_file():
            raise DataFormatError(f"{path} not found: run `mtl download {path.parent.name}` first")
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise DataFormatError(f"{path} is not a valid download manifest: {exc}") from None


class Dataset:
    """A dataset's declaration: subclasses (in ``mtl/datasets/<name>/__init__.py``) fill in the class
    attributes and ``raw_expectations``. The hooks run the step modules beside the declaration, each
    through one entry point: ``synthetic.generate``, ``parse.reader`` (the reader of a source's
    format) and ``parse.raw_tables``, ``prepare.prepare`` and ``prepare.prepared_checks``."""

    name: str
    title: str
    tasks: tuple[str, ...]
    splits: tuple[str, ...]
    sources: dict[str, Source]
    funnel: tuple[str, ...] | None = None  # ordered tasks where a later positive implies the earlier
    group_column: str | None = None

    def source(self, name: str) -> Source:
        if name not in self.sources:
            raise ConfigError(
                f"dataset {self.name!r} has no source {name!r}; choose one of {sorted(self.sources)}"
            )
        return self.sources[name]

    def step(self, module: str) -> ModuleType:
        """The dataset's ``parse``, ``prepare`` or ``synthetic`` module (they import the declaration,
        so they are imported when first used)."""
        return importlib.import_module(f"{type(self).__module__}.{module}")

    def reader(self, source: str) -> Any:
        """What reads the files of a source's format (``parse``'s view of it)."""
        return self.step("parse").reader(self.source(source))

    def synthetic_params(self, params: Params) -> dict[str, Any]:
        """The generator settings recorded in the manifest (a change regenerates the raw files)."""
        return params.dataset(self.name).synthetic.model_dump(mode="json")

    def generate(self, raw_dir: Path, params: Params) -> None:
        """Write synthetic raw files (in the real format of ``sources['synthetic'].format``) and the
        ground-truth probabilities beside them, deterministically from the dataset's synthetic params."""
        self.step("synthetic").generate(raw_dir, params.dataset(self.name).synthetic)

    def raw_tables(self, raw_dir: Path, manifest: Manifest, params: Params) -> Iterator[RawTable]:
        """Parse the raw files into table chunks for the raw validation suite (bounded memory)."""
        return self.step("parse").raw_tables(self.reader(manifest.source), raw_dir, params.data.chunk_rows)

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        """GX expectations for one raw table (see mtl.validation)."""
        raise NotImplementedError

    def prepare(self, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params) -> DatasetMetadata:
        """Parse, encode and split the raw files into ``out_dir`` (a staging directory) with
        ``PreparedWriter``; write encoders.json; return the metadata it wrote."""
        source = self.source(manifest.source)
        return self.step("prepare").prepare(
            self.reader(source.name), source, raw_dir, out_dir, manifest, params
        )

    def prepared_expectations(self, metadata: DatasetMetadata, split: str, params: Params) -> list[Any]:
        """Dataset-specific GX expectations on a prepared split, beyond the generic ones."""
        return []

    def prepared_checks(self, prepared_dir: Path, metadata: DatasetMetadata, params: Params) -> list[Any]:
        """Cross-split expectations (e.g. disjoint campaigns) as (table name, frame, expectations)."""
        reader = self.reader(metadata.source)
        return self.step("prepare").prepared_checks(reader, prepared_dir, metadata, params)

    def raw_codec(self, prepared_dir: Path) -> RawCodec:
        """The raw <-> prepared feature codec of a prepared directory (its encoders.json and vocab/)."""
        return RawCodec(prepared_dir)

    def raw_feature_frame(self, prepared_dir: Path, split: str, rows: int | None = None) -> pd.DataFrame:
        """The first ``rows`` (default: all) rows of a prepared split decoded back to raw feature columns."""
        arrays = read_split(prepared_dir, split)
        return self.raw_codec(prepared_dir).decode(arrays if rows is None else arrays.take(slice(0, rows)))

    def encode_raw(self, frame: pd.DataFrame, prepared_dir: Path) -> SplitArrays:
        """Raw feature columns encoded exactly as ``prepare`` encoded them (unseen values -> id 0)."""
        return self.raw_codec(prepared_dir).encode(frame)


def require_file(path: Path, dataset: str) -> Path:
    """``path``, which the dataset's download writes; a clear error if it is missing."""
    if not path.is_file():
        raise DataFormatError(f"{path} not found: run `mtl download {dataset}` first")
    return path


def find_once(raw_dir: Path, name: str, what: str, hint: str) -> Path:
    """The one file called ``name`` anywhere under ``raw_dir`` (an archive may unpack into a folder)."""
    matches = sorted(p for p in Path(raw_dir).rglob(name) if p.is_file())
    if not matches:
        raise DataFormatError(f"{raw_dir}: {name} ({what}) not found; {hint}")
    if len(matches) > 1:
        raise DataFormatError(
            f"{raw_dir}: {name} found {len(matches)} times ({', '.join(map(str, matches[:3]))}); "
            "keep exactly one copy"
        )
    return matches[0]
