"""Ali-CCP's sources (what to fetch) and, per source, how its raw files become chunks and raw tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from mtl.datasets.aliccp.csv_source import CSV_FILES, csv_frames, iter_csv_chunks
from mtl.datasets.aliccp.csv_source import DENSE_VALUE as CSV_DENSE_VALUE
from mtl.datasets.aliccp.csv_source import RAW_VALUE as CSV_RAW_VALUE
from mtl.datasets.aliccp.encode import TRAIN_AND_VALID
from mtl.datasets.aliccp.fields import Layout, RawChunk
from mtl.datasets.aliccp.synthetic import TEST_FILE, TRAIN_FILE, TRUTH_FILE
from mtl.datasets.aliccp.tianchi import ARCHIVES, SKELETON, iter_tianchi_chunks, parsed_blocks
from mtl.datasets.aliccp.tianchi import DENSE_VALUE as TIANCHI_DENSE_VALUE
from mtl.datasets.aliccp.tokens import iter_token_chunks, token_frames
from mtl.datasets.base import RemoteFile, Source
from mtl.errors import DataFormatError

PADDLEREC_URL = "https://paddlerec.bj.bcebos.com/esmm/"
TOKEN_FILES = {"train": TRAIN_FILE, "test": TEST_FILE}
ROLE = {"train": TRAIN_AND_VALID, "test": "test"}  # of the token files and Tianchi archives
TOKEN_FORMAT = "paddlerec-esmm-tokens"

SOURCES = {
    "paddlerec": Source(
        name="paddlerec",
        description="PaddleRec's Ali-CCP subset for ESMM: token CSV "
        "'sample_id,click,purchase,field:feat_id ...'",
        files=tuple(RemoteFile(name, url=PADDLEREC_URL + name) for name in TOKEN_FILES.values()),
        format=TOKEN_FORMAT,
    ),
    "tianchi": Source(
        name="tianchi",
        description="The raw Tianchi archives (dataset 408; registration needed: download by hand, pass "
        "--from DIR); sample_skeleton joined with common_features while streaming",
        files=tuple(RemoteFile(name) for name in ARCHIVES.values()),
        kind="local",
        format="tianchi-raw",
    ),
    "csv": Source(
        name="csv",
        description="The label-encoded CSV layout of the common Ali-CCP preprocessing (click, purchase, "
        "23 sparse ids, 8 dense D* columns); --from URL or folder",
        files=tuple(RemoteFile(name) for name in CSV_FILES.values()),
        format="aliccp-label-encoded-csv",
    ),
    "synthetic": Source(
        name="synthetic",
        description="Generated in the PaddleRec token format with known click/purchase probabilities",
        files=tuple(RemoteFile(name) for name in (*TOKEN_FILES.values(), TRUTH_FILE)),
        kind="generated",
        format=TOKEN_FORMAT,
    ),
}
RAW_VALUE = {
    "paddlerec": "the integer feat_id of each token '<field>:<feat_id>' of the line",
    "synthetic": "the integer feat_id of each token '<field>:<feat_id>' of the line",
    "tianchi": "the integer feature_id of each entry '<field>\\x02<feature_id>\\x03<value>' (skeleton, then "
    "common features)",
    "csv": CSV_RAW_VALUE,
}
DENSE_VALUE = {"tianchi": TIANCHI_DENSE_VALUE, "csv": CSV_DENSE_VALUE}


def _existing(path: Path, source: str) -> Path:
    if not path.is_file():
        raise DataFormatError(f"{path} not found: run `mtl download aliccp --source {source}` first")
    return path


def source_chunks(
    source: str, raw_dir: Path, layout: Layout, stats: Counter[str], chunk_rows: int
) -> Iterator[tuple[str, RawChunk]]:
    """``(role, chunk)`` for every raw file of the source, train first (role as in ``encode_dataset``)."""
    if source in ("paddlerec", "synthetic"):
        for part, name in TOKEN_FILES.items():
            for chunk in iter_token_chunks(_existing(raw_dir / name, source), layout, stats):
                yield ROLE[part], chunk
    elif source == "tianchi":
        for part, name in ARCHIVES.items():
            for chunk in iter_tianchi_chunks(_existing(raw_dir / name, source), part, layout, stats):
                yield ROLE[part], chunk
    elif source == "csv":
        for role, name in CSV_FILES.items():
            for chunk in iter_csv_chunks(_existing(raw_dir / name, source), layout, stats, chunk_rows):
                yield role, chunk
    else:
        raise DataFormatError(f"aliccp has no source {source!r}; it has {sorted(SOURCES)}")


def raw_frames(source: str, raw_dir: Path, chunk_rows: int) -> Iterator[tuple[str, Path, pd.DataFrame]]:
    """``(table, file, frame)`` of per-row facts for raw validation, block by block.

    Tables: ``<split>_tokens`` (token files), ``<split>_csv`` (CSV files, as read), ``<part>_skeleton`` and
    ``<part>_common_features`` (Tianchi archives).
    """
    if source in ("paddlerec", "synthetic"):
        for role, name in TOKEN_FILES.items():
            path = _existing(raw_dir / name, source)
            for frame in token_frames(path):
                yield f"{role}_tokens", path, frame
    elif source == "csv":
        for role, name in CSV_FILES.items():
            path = _existing(raw_dir / name, source)
            for frame in csv_frames(path, chunk_rows):
                yield f"{role}_csv", path, frame
    elif source == "tianchi":
        layout = Layout(1)  # the validation frames need entry counts, not ids
        for part, name in ARCHIVES.items():
            path = _existing(raw_dir / name, source)
            for kind, _, block in parsed_blocks(path, part, layout):
                frame = {
                    "common_feature_index": block.key.to_numpy(zero_copy_only=False).astype(str),
                    "feature_num": block.columns["feature_num"],
                    "entries": block.entries,
                    "unknown_field_entries": block.unknown_per_row,
                }
                if kind == SKELETON:
                    frame = {
                        "sample_id": block.columns["sample_id"],
                        "click": block.columns["click"],
                        "purchase": block.columns["conversion"],
                    } | frame
                yield f"{part}_{kind}", path, pd.DataFrame(frame)
    else:
        raise DataFormatError(f"aliccp has no source {source!r}; it has {sorted(SOURCES)}")
