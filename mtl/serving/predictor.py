"""A trained model plus its prepared data's encoders: raw feature columns in, probabilities out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mtl.datasets import get_dataset
from mtl.datasets.codec import RawCodec
from mtl.evaluation import evaluation_targets
from mtl.models import FeatureBatch, MultiTaskModel
from mtl.training import artifacts

BATCH_ROWS = 65_536  # rows per forward pass: bounds memory on large inputs


class Predictor:
    """Loads ``model.json`` + ``weights.pt`` (weights only) and the encoders of the data it was trained on."""

    def __init__(self, model_dir: Path, encoders_dir: Path):
        self.model: MultiTaskModel
        self.model, self.config = artifacts.load_trained_model(Path(model_dir))
        self.codec: RawCodec = get_dataset(self.config["dataset"]).raw_codec(Path(encoders_dir))
        spec = self.model.spec
        self.outputs = [target.output for target in evaluation_targets(spec.tasks, spec.funnel)]

    @property
    def columns(self) -> list[str]:
        """Output columns, one probability per scored output: ``p_click``, ``p_purchase``, ..."""
        return [f"p_{name}" for name in self.outputs]

    @torch.inference_mode()
    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Probabilities per output for every row of a raw feature frame, in row order."""
        arrays = self.codec.encode(frame.reset_index(drop=True))
        multi = np.concatenate(arrays.multi, axis=1) if arrays.multi else np.zeros((len(arrays), 0))
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for start in range(0, len(arrays), BATCH_ROWS):
            rows = slice(start, start + BATCH_ROWS)
            batch = FeatureBatch(
                sparse=_tensor(arrays.sparse[rows], np.int32),
                multi=_tensor(multi[rows], np.int32),
                multi_lengths=_tensor(arrays.multi_lengths[rows], np.int32),
                dense=_tensor(arrays.dense[rows], np.float32),
            )
            probabilities = self.model.probabilities(self.model(batch))
            for name in self.outputs:
                parts[name].append(probabilities[name].float().numpy().astype(np.float64))
        return pd.DataFrame(
            {
                f"p_{name}": np.concatenate(values) if values else np.zeros(0)
                for name, values in parts.items()
            },
            index=frame.index,
        )


def _tensor(values: np.ndarray, dtype: type) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(values, dtype=dtype))
