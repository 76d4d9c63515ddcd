"""Raw Census feature columns <-> prepared arrays, with ``encoders.json`` + ``vocab/`` (``encode.Encoders``).

Raw input: the source's feature columns as it names them (UCI: ``age``, ``education``, ... with the
files' values, text for categoricals and numbers for numerics; torch-rechub CSV: its long names and
integer codes; PaddleRec one-hot: the column positions ``"2"`` .. ``"500"`` as strings). Labels, the
instance weight and any other column are ignored. An unknown prepared id decodes to a missing value
(None), which encodes back to 0; a missing numeric encodes to 0 (the train mean).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

import numpy as np
import pandas as pd

from mtl.datasets.base import RawCodec
from mtl.datasets.census.encode import Encoders
from mtl.datasets.prepared import SplitArrays


class CensusCodec(RawCodec):
    def __init__(self, prepared_dir: Path):
        super().__init__(prepared_dir)
        self.encoders = Encoders.load(self.prepared_dir)

    def columns(self) -> list[str]:
        return [_name(e.spec.column) for e in (*self.encoders.vocabularies, *self.encoders.scalers)]

    def decode(self, arrays: SplitArrays) -> pd.DataFrame:
        columns: dict[str, np.ndarray] = {}
        for j, vocabulary in enumerate(self.encoders.vocabularies):
            ids = arrays.sparse[:, j]
            values = vocabulary.values.to_numpy(dtype=object)
            columns[_name(vocabulary.spec.column)] = np.where(ids > 0, values[ids - 1], None)
        for j, scaler in enumerate(self.encoders.scalers):
            values = arrays.dense[:, j].astype(np.float64)
            if scaler.spec.transform != "identity":
                values = values * scaler.std + scaler.mean
                if scaler.spec.log1p:
                    values = np.expm1(values)
            columns[_name(scaler.spec.column)] = values
        return pd.DataFrame(columns)

    def encode(self, frame: pd.DataFrame) -> SplitArrays:
        self.require_columns(frame)
        by_spec: dict[Hashable, pd.Series] = {}
        for vocabulary in self.encoders.vocabularies:
            by_spec[vocabulary.spec.column] = frame[_name(vocabulary.spec.column)]
        for scaler in self.encoders.scalers:
            by_spec[scaler.spec.column] = pd.to_numeric(frame[_name(scaler.spec.column)], errors="coerce")
        sparse, dense = self.encoders.encode(pd.DataFrame(by_spec))
        return self.arrays(
            len(frame),
            [sparse[v.spec.name] for v in self.encoders.vocabularies],
            [],
            [np.nan_to_num(dense[s.spec.name], nan=0.0) for s in self.encoders.scalers],
        )


def _name(column: Hashable) -> str:
    return str(column)
