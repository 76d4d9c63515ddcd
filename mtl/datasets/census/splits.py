"""Row ids and the seeded 1:1 split of a test file into valid and test.

``row_id = file index x ROW_ID_STRIDE + data row``: the train file's rows keep their 0-based index, the
second file's (UCI ``census-income.test``, PaddleRec ``test_data.csv``, rechub ``..._val.csv``) start at
1,000,000,000, the third's at 2,000,000,000 -- unique across splits, and the raw row is recoverable.

The 1:1 split pairs adjacent rows (0,1), (2,3), ... and sends one row of each pair to valid and the
other to test by a seeded hash of the pair number. Each row's split depends only on its row number and
the seed, so it streams in chunks of any size, is reproducible, and the halves differ by at most one row.
"""

from __future__ import annotations

import numpy as np

ROW_ID_STRIDE = 1_000_000_000


def row_ids(file_index: int, rows: np.ndarray) -> np.ndarray:
    return np.int64(file_index) * ROW_ID_STRIDE + rows.astype(np.int64)


def in_valid_half(rows: np.ndarray, seed: int) -> np.ndarray:
    """True for the rows of a file (0-based data-row numbers) that go to valid, False for test."""
    rows = rows.astype(np.uint64)
    coin = _mix64((rows >> np.uint64(1)) ^ _mix64(np.array([seed % 2**64], dtype=np.uint64))) & np.uint64(1)
    return (rows & np.uint64(1)) == coin


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed 64-bit hash (uint64 arithmetic wraps by design)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
