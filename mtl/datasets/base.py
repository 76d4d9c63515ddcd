"""What every dataset declares once: sources, files, tasks, splits, and the hooks the pipeline calls.

A dataset is a subclass of ``Dataset`` registered in ``mtl.datasets.DATASETS``. The pipeline never
special-cases a dataset: it asks the dataset for its sources (download), its raw tables (raw
validation) and its prepared splits (prepare), and validates the prepared output generically from
``metadata.json`` plus the dataset's ``prepared_expectations``. For serving, ``raw_codec`` turns raw
feature columns into prepared arrays (and prepared rows back into raw columns) with the encoders a
prepared directory holds, so a served model takes the source's own values.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mtl.config import Params
from mtl.datasets.prepared import DatasetMetadata, SplitArrays, load_metadata, read_split
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
            raise DataFormatError(f"{path} not found: run `mtl download <dataset>` first")
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as exc:
            raise DataFormatError(f"{path} is not a valid download manifest: {exc}") from None


class Dataset:
    """Base class: subclasses fill in the class attributes and the three hooks."""

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

    def synthetic_params(self, params: Params) -> dict[str, Any]:
        """The generator settings recorded in the manifest (a change regenerates the raw files)."""
        return params.dataset(self.name).synthetic.model_dump(mode="json")

    def generate(self, raw_dir: Path, params: Params) -> None:
        """Write synthetic raw files (in the real format of ``sources['synthetic'].format``) and the
        ground-truth probabilities beside them, deterministically from the dataset's synthetic params."""
        raise NotImplementedError

    def raw_tables(self, raw_dir: Path, manifest: Manifest, params: Params) -> Iterator[RawTable]:
        """Parse the raw files into table chunks for the raw validation suite (bounded memory)."""
        raise NotImplementedError

    def raw_expectations(self, table: str, params: Params) -> list[Any]:
        """GX expectations for one raw table (see mtl.validation)."""
        raise NotImplementedError

    def prepare(self, raw_dir: Path, out_dir: Path, manifest: Manifest, params: Params) -> DatasetMetadata:
        """Parse, encode and split the raw files into ``out_dir`` (a staging directory) with
        ``PreparedWriter``; write encoders.json; return the metadata it wrote."""
        raise NotImplementedError

    def prepared_expectations(self, metadata: DatasetMetadata, split: str, params: Params) -> list[Any]:
        """Dataset-specific GX expectations on a prepared split, beyond the generic ones."""
        return []

    def prepared_checks(self, prepared_dir: Path, metadata: DatasetMetadata, params: Params) -> list[Any]:
        """Cross-split expectations (e.g. disjoint campaigns) as (table name, frame, expectations)."""
        return []

    def raw_codec(self, prepared_dir: Path) -> RawCodec:
        """The raw <-> prepared feature codec of a prepared directory (its encoders.json and vocab/)."""
        raise NotImplementedError(f"dataset {self.name!r} has no raw feature codec")

    def raw_feature_frame(self, prepared_dir: Path, split: str, rows: int | None = None) -> pd.DataFrame:
        """The first ``rows`` (default: all) rows of a prepared split decoded back to raw feature columns."""
        arrays = read_split(prepared_dir, split)
        return self.raw_codec(prepared_dir).decode(arrays if rows is None else arrays.take(slice(0, rows)))

    def encode_raw(self, frame: pd.DataFrame, prepared_dir: Path) -> SplitArrays:
        """Raw feature columns encoded exactly as ``prepare`` encoded them (unseen values -> id 0)."""
        return self.raw_codec(prepared_dir).encode(frame)


# --- serving: raw feature columns <-> prepared arrays -----------------------------------------------

UNKNOWN_RAW_ID = -1  # a raw id no vocabulary holds: what an unknown prepared id decodes to
_LIST_SEPARATORS = re.compile(r"[\s,]+")


class RawCodec(ABC):
    """Encodes raw feature columns the way ``prepare`` did, and decodes prepared rows back to them.

    ``decode`` then ``encode`` gives back the same arrays (ids exactly; dense values to float32
    rounding). Unknown prepared ids decode to a value that encodes back to the unknown id 0, and any
    value a vocabulary does not hold -- unseen, malformed or missing -- encodes to 0, never an error.
    """

    def __init__(self, prepared_dir: Path):
        self.prepared_dir = Path(prepared_dir)
        self.metadata = load_metadata(prepared_dir)

    def columns(self) -> list[str]:
        """The raw feature columns a served model takes, in order (by default named as prepared)."""
        return self.metadata.features.names()

    def multi_valued(self) -> list[str]:
        """Raw columns holding a list of ids (a list, an array or a space-separated string per row)."""
        return [f.name for f in self.metadata.features.multi]

    @abstractmethod
    def decode(self, arrays: SplitArrays) -> pd.DataFrame:
        """Prepared rows as raw feature columns (one row per prepared row, in order)."""

    @abstractmethod
    def encode(self, frame: pd.DataFrame) -> SplitArrays:
        """Raw feature columns as prepared arrays (labels empty, row ids 0..n-1)."""

    def require_columns(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.columns() if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"{self.metadata.dataset} input lacks the feature columns {missing[:10]}"
                f"{' and more' if len(missing) > 10 else ''}; expected {self.columns()}"
            )

    def arrays(
        self,
        n: int,
        sparse: list[np.ndarray],
        multi: list[tuple[np.ndarray, np.ndarray]],
        dense: list[np.ndarray],
    ) -> SplitArrays:
        """Encoded columns (metadata order) as one SplitArrays."""
        return SplitArrays(
            labels=np.zeros((n, 0), dtype=np.float32),
            sparse=np.stack(sparse, axis=1).astype(np.int32) if sparse else np.zeros((n, 0), np.int32),
            multi=[ids.astype(np.int32) for ids, _ in multi],
            multi_lengths=(
                np.stack([lengths for _, lengths in multi], axis=1).astype(np.int32)
                if multi
                else np.zeros((n, 0), np.int32)
            ),
            dense=np.stack(dense, axis=1).astype(np.float32) if dense else np.zeros((n, 0), np.float32),
            row_id=np.arange(n, dtype=np.int64),
        )


def id_lists(ids: np.ndarray, lengths: np.ndarray) -> pd.Series:
    """Rows of an (n, width) id matrix cut to their lengths, as one list per row."""
    width = ids.shape[1]
    kept = np.arange(width)[None, :] < np.clip(lengths, 0, width)[:, None]
    flat = ids[kept].tolist()
    ends = np.cumsum(kept.sum(axis=1)).tolist()
    starts = [0, *ends[:-1]]
    return pd.Series([flat[a:b] for a, b in zip(starts, ends)], dtype=object)


def parse_ids(column: pd.Series) -> np.ndarray:
    """Single-valued raw ids as int64: the first id of a list or string; missing or malformed -> -1."""
    values = column.to_numpy()
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        whole = np.isfinite(values) & (np.floor(values) == values)
        return np.where(whole, np.nan_to_num(values), UNKNOWN_RAW_ID).astype(np.int64)
    return np.array([_first(_cell_ids(cell)) for cell in values], dtype=np.int64)


def parse_id_lists(column: pd.Series, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Multi-valued raw ids: (the first ``width`` ids of each row, padded with -1; how many ids it had)."""
    cells = [_cell_ids(cell) for cell in column.to_numpy()]
    counts = np.fromiter((len(c) for c in cells), dtype=np.int64, count=len(cells))
    ids = np.full((len(cells), width), UNKNOWN_RAW_ID, dtype=np.int64)
    kept = np.minimum(counts, width)
    rows = np.repeat(np.arange(len(cells)), kept)
    slots = np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept)
    ids[rows, slots] = [value for c in cells for value in c[:width]]
    return ids, counts


def _first(values: list[int]) -> int:
    return values[0] if values else UNKNOWN_RAW_ID


def _cell_ids(cell: Any) -> list[int]:
    """The ids of one raw cell: a list/array, a space- or comma-separated string, a number or missing."""
    if cell is None:
        return []
    if isinstance(cell, str):
        return [_token_id(token) for token in _LIST_SEPARATORS.split(cell.strip()) if token]
    if isinstance(cell, (list, tuple, np.ndarray)):
        return [_token_id(token) for token in cell]
    return [] if _missing(cell) else [_token_id(cell)]


def _token_id(token: Any) -> int:
    """An integer id from an int, an integral float or a numeric string; anything else -> -1."""
    if isinstance(token, (int, np.integer)):
        return int(token)
    if isinstance(token, str):
        try:
            return int(token)  # exact for ids beyond float precision
        except ValueError:
            pass
    try:
        value = float(token)
    except (TypeError, ValueError):
        return UNKNOWN_RAW_ID
    return int(value) if np.isfinite(value) and value == int(value) else UNKNOWN_RAW_ID


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False
