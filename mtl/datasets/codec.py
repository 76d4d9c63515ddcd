"""Raw feature columns <-> prepared arrays for any dataset, driven by a prepared directory's encoders.

The raw input is one column per prepared feature, named as the source names it (``encoders.json``
``column``). An integer-id field takes an id, a list or array of ids, or a space- or comma-separated
string of them (a multi-valued field keeps its first ``max_len`` ids in order); a text field takes its
values; a dense field takes numbers. Anything a vocabulary does not hold -- unseen, malformed or
missing -- encodes to the unknown id 0, never an error, and a missing number to 0 (the train mean).

``decode`` then ``encode`` gives back the same arrays (ids exactly; dense values to float32 rounding):
an unknown id decodes to a value that encodes back to 0 (-1 for integer ids, None for text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl.datasets.encoding import UNKNOWN_RAW_ID, Encoder, Scaler, encode_slots, load_encoders
from mtl.datasets.prepared import ENCODERS_FILE, SplitArrays, load_metadata
from mtl.errors import DataFormatError


class RawCodec:
    """Encodes raw feature columns the way ``prepare`` did, and decodes prepared rows back to them."""

    def __init__(self, prepared_dir: Path):
        self.prepared_dir = Path(prepared_dir)
        self.metadata = load_metadata(prepared_dir)
        self.encoders: dict[str, Encoder] = load_encoders(self.prepared_dir)
        missing = sorted(set(self.metadata.features.names()) - set(self.encoders))
        if missing:
            path = self.prepared_dir / ENCODERS_FILE
            raise DataFormatError(f"{path} has no encoder for the prepared fields {missing}")

    def _column(self, name: str) -> str:
        return str(self.encoders[name].column)

    def columns(self) -> list[str]:
        """The raw feature columns a served model takes, in prepared order."""
        return [self._column(name) for name in self.metadata.features.names()]

    def multi_valued(self) -> list[str]:
        """Raw columns holding a list of ids (a list, an array or a space-separated string per row)."""
        return [self._column(f.name) for f in self.metadata.features.multi]

    def require_columns(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.columns() if c not in frame.columns]
        if missing:
            raise DataFormatError(
                f"{self.metadata.dataset} input lacks the feature columns {missing[:10]}"
                f"{' and more' if len(missing) > 10 else ''}; expected {self.columns()}"
            )

    def decode(self, arrays: SplitArrays) -> pd.DataFrame:
        """Prepared rows as raw feature columns (one row per prepared row, in order)."""
        features = self.metadata.features
        columns: dict[str, Any] = {}
        for j, f in enumerate(features.sparse):
            columns[self._column(f.name)] = self.encoders[f.name].decode(arrays.sparse[:, j])
        for j, f in enumerate(features.multi):
            raw = self.encoders[f.name].decode(arrays.multi[j])
            columns[self._column(f.name)] = id_lists(raw, arrays.multi_lengths[:, j])
        for j, f in enumerate(features.dense):
            columns[self._column(f.name)] = self.encoders[f.name].decode(arrays.dense[:, j])
        return pd.DataFrame(columns)

    def encode(self, frame: pd.DataFrame) -> SplitArrays:
        """Raw feature columns as prepared arrays (labels empty, row ids 0..n-1)."""
        self.require_columns(frame)
        features = self.metadata.features
        sparse = []
        for f in features.sparse:
            encoder = self.encoders[f.name]
            column = frame[self._column(f.name)]
            raw = parse_ids(column) if encoder.integer else column.to_numpy(dtype=object)
            sparse.append(encoder.encode(raw))
        multi = []
        for f in features.multi:
            encoder = self.encoders[f.name]
            ids, counts = parse_id_lists(frame[self._column(f.name)], f.max_len)
            stated = getattr(encoder, "raw_length_column", None)
            if stated in frame.columns:  # the source's own count of the list's real ids
                counts = np.minimum(
                    counts, pd.to_numeric(frame[stated], errors="coerce").fillna(0).to_numpy()
                )
            multi.append(encode_slots(encoder, ids, counts))
        dense = []
        for f in features.dense:
            scaler = self.encoders[f.name]
            assert isinstance(scaler, Scaler)
            values = pd.to_numeric(frame[self._column(f.name)], errors="coerce").to_numpy(dtype=np.float64)
            dense.append(np.nan_to_num(scaler.encode(values), nan=0.0))
        n = len(frame)
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
        return [_token_id(token) for token in cell.replace(",", " ").split()]
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
