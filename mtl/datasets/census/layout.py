"""What each on-disk Census format provides to validation and preparation, and shared parsing checks.

A ``Layout`` is one raw format (UCI 42-column text, PaddleRec one-hot CSV, torch-rechub label-encoded
CSV): where its files are, how a file is read in chunks, how labels are read, which columns become which
features, and the Great Expectations for a raw chunk. ``Census`` picks the layout from the source;
``prepare.prepare_layout`` runs any layout the same way.

Row numbers (``first_row``) count data rows, 0-based, as in ``textio``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtl.datasets.census.encode import FeaturePlan
from mtl.errors import DataFormatError

HALVES = "valid+test"  # role of a file split 1:1 into valid and test


@dataclass(frozen=True)
class RawFile:
    path: Path
    role: str  # a split name, or HALVES
    index: int  # position in the layout's file list; row ids of this file start at index * ROW_ID_STRIDE


class Layout(ABC):
    source_format: str
    files: tuple[tuple[str, str], ...]  # (file name, role) in row-id order
    weighted = False  # whether rows carry a sampling weight (``weights``)

    def locate(self, raw_dir: Path) -> list[RawFile]:
        """The layout's files in ``raw_dir`` (directly inside it)."""
        found = []
        for index, (name, role) in enumerate(self.files):
            path = Path(raw_dir) / name
            if not path.is_file():
                raise DataFormatError(
                    f"{path} not found: the {self.source_format} source needs {[n for n, _ in self.files]} "
                    "(run `mtl download census` first)"
                )
            found.append(RawFile(path, role, index))
        return found

    @abstractmethod
    def read(self, path: Path, chunk_rows: int, *, strict: bool) -> Iterator[tuple[int, pd.DataFrame]]:
        """Parsed chunks ``(first_row, frame)``. Structural errors (column count, empty or truncated file)
        always raise DataFormatError; with ``strict`` so do values that cannot be encoded (prepare),
        without it they are left for the expectations to report (raw validation)."""

    @abstractmethod
    def labels(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Task -> int8 0/1 labels of a parsed chunk."""

    @abstractmethod
    def plan(self, raw_files: Sequence[RawFile]) -> FeaturePlan:
        """Which parsed columns become which prepared features."""

    def weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The rows' sampling weights where the format has them (never a feature)."""
        return None

    @abstractmethod
    def validation_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The chunk as the raw expectations see it (with integer task columns for label rates)."""

    @abstractmethod
    def expectations(self) -> list[Any]:
        """GX expectations for one raw chunk of any of the layout's files."""

    def encoder_header(self, raw_files: Sequence[RawFile]) -> dict[str, Any]:
        """What encoders.json says about the raw input before the per-field encoders."""
        return {"input_format": self.source_format}
