"""Per-field vocabularies fitted on train (counts streamed chunk by chunk), and dense scaling statistics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MERGE_EVERY = 1 << 16  # pending ids (per field) that trigger a merge even while the counts are small


class IdCounter:
    """Counts of raw ids over a stream of chunks; memory grows with distinct ids, not with rows."""

    def __init__(self) -> None:
        self._keys = np.empty(0, dtype=np.int64)
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        keys, counts = np.unique(values, return_counts=True)
        self._pending.append((keys, counts))
        self._pending_size += keys.size
        # Merging only once the pending part is as large as the running one keeps the work linear.
        if self._pending_size >= max(self._keys.size, MERGE_EVERY):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self._keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._keys, inverse = np.unique(keys, return_inverse=True)
        self._counts = np.bincount(inverse, weights=counts, minlength=self._keys.size).astype(np.int64)
        self._pending, self._pending_size = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted distinct ids, their counts)."""
        self._merge()
        return self._keys, self._counts


@dataclass
class Vocabulary:
    """Raw ids seen at least ``min_count`` times in train, numbered 1..V in raw-id order; 0 = unknown."""

    field: str
    raw: np.ndarray  # sorted kept raw ids; id of raw[i] is i + 1
    counts: np.ndarray  # train occurrences of each kept id
    distinct_in_train: int

    @classmethod
    def fit(cls, field: str, counter: IdCounter, min_count: int) -> Vocabulary:
        keys, counts = counter.result()
        kept = counts >= min_count
        return cls(field, keys[kept], counts[kept], int(keys.size))

    @property
    def size(self) -> int:
        return int(self.raw.size) + 1

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Ids (int32) of raw values; unseen or rare values -> 0."""
        if self.raw.size == 0:
            return np.zeros(values.shape, dtype=np.int32)
        position = np.minimum(np.searchsorted(self.raw, values), self.raw.size - 1)
        return np.where(self.raw[position] == values, position + 1, 0).astype(np.int32)


class DenseStats:
    """Streaming mean and standard deviation per column (train only), for standardisation."""

    def __init__(self, columns: int) -> None:
        self.n = 0
        self.total = np.zeros(columns)
        self.total_squares = np.zeros(columns)
        self.minimum = np.full(columns, np.inf)
        self.maximum = np.full(columns, -np.inf)

    def add(self, values: np.ndarray) -> None:
        if values.shape[0] == 0:
            return
        self.n += values.shape[0]
        self.total += values.sum(axis=0)
        self.total_squares += np.square(values).sum(axis=0)
        self.minimum = np.minimum(self.minimum, values.min(axis=0))
        self.maximum = np.maximum(self.maximum, values.max(axis=0))

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std; a constant column gets std 1 so it scales to 0 rather than NaN."""
        if self.n == 0:
            return np.zeros_like(self.total), np.ones_like(self.total)
        mean = self.total / self.n
        variance = np.maximum(self.total_squares / self.n - mean**2, 0.0)
        std = np.sqrt(variance)
        return mean, np.where(std > 1e-12, std, 1.0)


def valid_mask(row_id: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Rows of the train file that go to the validation split: a seeded splitmix64 hash of the row id,
    so the split is deterministic, independent of file order and computable chunk by chunk."""
    with np.errstate(over="ignore"):
        x = row_id.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction
