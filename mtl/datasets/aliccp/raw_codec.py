"""Raw Ali-CCP feature columns <-> prepared arrays, with the vocabularies ``encoders.json`` points to.

Raw input: one column per field id (``"101"``, ``"109_14"``, ...) holding the source's raw feature ids
(``encoders.json`` ``raw_value`` says which number that is for the source); a multi-valued field holds
a list of ids or a space-separated string, in source order. Sources with dense values add one column
per dense field (``"D109_14"``, ...) with the raw value. An unknown prepared id decodes to -1, which no
vocabulary holds, so it encodes back to 0; a missing dense value encodes to 0 (the train mean).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mtl.datasets.aliccp.vocab import Vocabulary
from mtl.datasets.base import UNKNOWN_RAW_ID, RawCodec, id_lists, parse_id_lists, parse_ids
from mtl.datasets.prepared import ENCODERS_FILE, SplitArrays
from mtl.errors import DataFormatError


class AliccpCodec(RawCodec):
    def __init__(self, prepared_dir: Path):
        super().__init__(prepared_dir)
        path = self.prepared_dir / ENCODERS_FILE
        try:
            encoders = json.loads(path.read_text())
            fields = {entry["name"]: entry for entry in encoders["fields"]}
            self.vocabularies = {
                name: _vocabulary(name, self.prepared_dir / entry["vocab_file"])
                for name, entry in fields.items()
            }
            self.scaling = {entry["name"]: (entry["mean"], entry["std"]) for entry in encoders["dense"]}
        except (OSError, ValueError, KeyError) as exc:
            raise DataFormatError(f"{path}: cannot read the Ali-CCP encoders ({exc})") from None
        features = self.metadata.features
        unknown = {f.name for f in (*features.sparse, *features.multi)} - set(self.vocabularies)
        unknown |= {f.name for f in features.dense} - set(self.scaling)
        if unknown:
            raise DataFormatError(f"{path} has no encoder for the prepared fields {sorted(unknown)}")

    def decode(self, arrays: SplitArrays) -> pd.DataFrame:
        features = self.metadata.features
        columns: dict[str, pd.Series | np.ndarray] = {}
        for j, f in enumerate(features.sparse):
            columns[f.name] = self._raw(f.name)[arrays.sparse[:, j]]
        for j, f in enumerate(features.multi):
            columns[f.name] = id_lists(self._raw(f.name)[arrays.multi[j]], arrays.multi_lengths[:, j])
        for j, f in enumerate(features.dense):
            mean, std = self.scaling[f.name]
            columns[f.name] = arrays.dense[:, j].astype(np.float64) * std + mean
        return pd.DataFrame(columns)

    def encode(self, frame: pd.DataFrame) -> SplitArrays:
        self.require_columns(frame)
        features = self.metadata.features
        sparse = [self.vocabularies[f.name].encode(parse_ids(frame[f.name])) for f in features.sparse]
        multi = []
        for f in features.multi:
            ids, counts = parse_id_lists(frame[f.name], f.max_len)
            lengths = np.minimum(counts, f.max_len)
            present = np.arange(f.max_len)[None, :] < lengths[:, None]
            multi.append((self.vocabularies[f.name].encode(ids) * present, lengths))
        dense = []
        for f in features.dense:
            mean, std = self.scaling[f.name]
            values = pd.to_numeric(frame[f.name], errors="coerce").to_numpy(dtype=np.float64)
            dense.append(np.nan_to_num((values - mean) / std, nan=0.0))
        return self.arrays(len(frame), sparse, multi, dense)

    def _raw(self, name: str) -> np.ndarray:
        """Prepared id -> raw id (id 0 -> -1)."""
        return np.r_[UNKNOWN_RAW_ID, self.vocabularies[name].raw].astype(np.int64)


def _vocabulary(name: str, path: Path) -> Vocabulary:
    table = pq.read_table(path, columns=["raw", "id"])
    raw, ids = table.column("raw").to_numpy(), table.column("id").to_numpy()
    if not np.array_equal(ids, np.arange(1, len(ids) + 1)) or np.any(np.diff(raw) <= 0):
        raise DataFormatError(f"{path}: expected ids 1..{len(ids)} over strictly increasing raw ids")
    return Vocabulary(name, raw.astype(np.int64), np.zeros(len(raw), np.int64), len(raw))
