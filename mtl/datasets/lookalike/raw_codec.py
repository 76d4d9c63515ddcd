"""Raw look-alike feature columns <-> prepared arrays, with ``encoders.json`` (shifted source ids).

Raw input, as in the MetaHeac pickles: the user's static ids (``age``, ``LBS``, ...), the ad's ids
(``advertiserId``, ``campaignId``, ...) and the user's dynamic id lists (``interest1``, ``kw1``, ...) as
a list of ids or a space-separated string. An optional ``<field>_length`` column caps a list to its
first ``length`` ids, as the pickles' padded arrays need. ``aid`` and ``label`` are not features.
An unknown prepared id decodes to -1, which encodes back to 0 (as does any id beyond the vocabulary).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.datasets.base import UNKNOWN_RAW_ID, RawCodec, id_lists, parse_id_lists, parse_ids
from mtl.datasets.lookalike.prepare import ID_SHIFT, encode_ids, encode_multi
from mtl.datasets.lookalike.schema import LENGTH_SUFFIX
from mtl.datasets.prepared import ENCODERS_FILE, SplitArrays
from mtl.errors import DataFormatError


class LookalikeCodec(RawCodec):
    def __init__(self, prepared_dir: Path):
        super().__init__(prepared_dir)
        path = self.prepared_dir / ENCODERS_FILE
        try:
            fields = json.loads(path.read_text())["fields"]
            self.max_ids = {name: int(entry["source_max_id"]) for name, entry in fields.items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataFormatError(f"{path}: cannot read the look-alike encoders ({exc})") from None
        missing = set(self.metadata.features.names()) - set(self.max_ids)
        if missing:
            raise DataFormatError(f"{path} has no encoder for the prepared fields {sorted(missing)}")

    def decode(self, arrays: SplitArrays) -> pd.DataFrame:
        features = self.metadata.features
        columns: dict[str, np.ndarray | pd.Series] = {}
        for j, f in enumerate(features.sparse):
            columns[f.name] = _raw(arrays.sparse[:, j])
        for j, f in enumerate(features.multi):
            columns[f.name] = id_lists(_raw(arrays.multi[j]), arrays.multi_lengths[:, j])
        return pd.DataFrame(columns)

    def encode(self, frame: pd.DataFrame) -> SplitArrays:
        self.require_columns(frame)
        features = self.metadata.features
        sparse = [encode_ids(parse_ids(frame[f.name]), self.max_ids[f.name]) for f in features.sparse]
        multi = []
        for f in features.multi:
            ids, counts = parse_id_lists(frame[f.name], f.max_len)
            length_column = f.name + LENGTH_SUFFIX
            if length_column in frame.columns:
                stated = pd.to_numeric(frame[length_column], errors="coerce").fillna(0).to_numpy()
                counts = np.minimum(counts, stated.astype(np.int64))
            encoded, lengths = encode_multi(ids, counts, self.max_ids[f.name])
            multi.append((encoded, lengths))
        return self.arrays(len(frame), sparse, multi, [])


def _raw(ids: np.ndarray) -> np.ndarray:
    """Prepared ids -> source ids (0 -> -1)."""
    ids = ids.astype(np.int64)
    return np.where(ids > 0, ids - ID_SHIFT, UNKNOWN_RAW_ID)
