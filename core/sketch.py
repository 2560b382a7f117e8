"""A mergeable quantile sketch (DDSketch's logarithmic mapping, 1% relative accuracy).

Each snapshot stores one sketch of processing times and one of wait times. Percentiles over any range are
computed by merging the stored sketches, never by averaging percentiles.

Percentile rule (everywhere a pq is shown): nearest rank. pq is the value of the job at rank
ceil(q/100 * n) of the n jobs sorted by time, so at least (100 - q) % of the jobs took at least pq; within
the sketch's 1 % relative accuracy and clamped to the exact [min, max]. A single job's pq is its own time,
and 30 jobs of 40 ms with one of 3 s have p99 = 3 s: tails are never understated. The binary form is a small header
(count, sum, min, max) followed by int32 bucket keys and uint32 counts, so thousands of stored sketches
merge with a few vectorised numpy calls.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_MIN_VALUE = 1e-3  # values at or below this (ms) fall in the zero bucket
_ZERO_KEY = -(2**31)
_HEADER = struct.Struct("<4sIdddd")  # magic, n buckets, count, sum, min, max
_MAGIC = b"QWS1"


def key_of(value: float) -> int:
    """Bucket key of a positive value."""
    if value <= _MIN_VALUE:
        return _ZERO_KEY
    return math.ceil(math.log(value) / _LOG_GAMMA)


def value_of(key: int) -> float:
    """Representative value of a bucket, within RELATIVE_ACCURACY of every value it holds."""
    if key == _ZERO_KEY:
        return 0.0
    return 2.0 * _GAMMA**key / (_GAMMA + 1)


@dataclass
class Sketch:
    """Counts per logarithmic bucket plus exact count, sum, min and max."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, value: float, count: int = 1) -> None:
        if value < 0 or math.isnan(value):
            raise ValueError(f"sketch values must be non-negative numbers, got {value!r}")
        key = key_of(value)
        self.buckets[key] = self.buckets.get(key, 0) + count
        self.count += count
        self.total += value * count
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def extend(self, values: Iterable[float]) -> Sketch:
        """Add many values (bucketed with numpy: the same keys as `add`, within one float rounding)."""
        values = list(values)
        if len(values) < 16:
            for value in values:
                self.add(value)
            return self
        array = np.asarray(values, dtype=np.float64)
        if np.isnan(array).any() or (array < 0).any():
            raise ValueError(f"sketch values must be non-negative numbers, got {values!r}")
        keys = np.full(array.shape, _ZERO_KEY, dtype=np.int64)
        positive = array > _MIN_VALUE
        keys[positive] = np.ceil(np.log(array[positive]) / _LOG_GAMMA)
        unique, counts = np.unique(keys, return_counts=True)
        for key, count in zip(unique.tolist(), counts.tolist()):
            self.buckets[key] = self.buckets.get(key, 0) + count
        self.count += len(values)
        for value in values:  # in order, as `add` sums them
            self.total += value
        self.min = min(self.min, min(values))
        self.max = max(self.max, max(values))
        return self

    def merge(self, other: Sketch) -> None:
        for key, count in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + count
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """Value at quantile q in [0, 1]; None for an empty sketch."""
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if not self.count:
            return None
        keys = sorted(self.buckets)
        counts = np.array([self.buckets[k] for k in keys], dtype=np.int64)
        return _quantile_from(np.array(keys, dtype=np.int64), counts, q, self.min, self.max)

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """quantile(q) for each q, walking the sorted buckets once."""
        if any(not 0 <= q <= 1 for q in qs):
            raise ValueError(f"quantiles must be within [0, 1], got {list(qs)}")
        if not self.count:
            return [None for _ in qs]
        keys = sorted(self.buckets)
        counts = [self.buckets[k] for k in keys]
        total = sum(counts)
        out: list[float | None] = []
        for q in qs:
            rank = float(nearest_rank(q, float(total)))
            seen, index = 0, len(keys) - 1
            for i, count in enumerate(counts):
                seen += count
                if seen >= rank:
                    index = i
                    break
            out.append(float(min(max(value_of(keys[index]), self.min), self.max)))
        return out

    def to_bytes(self) -> bytes:
        ordered = sorted(self.buckets)  # stored keys ascending, so merging stored sketches can skip sorting
        keys = np.array(ordered, dtype="<i4")
        counts = np.array([self.buckets[k] for k in ordered], dtype="<u4")
        lo = self.min if self.count else 0.0
        hi = self.max if self.count else 0.0
        header = _HEADER.pack(_MAGIC, len(keys), float(self.count), self.total, lo, hi)
        return header + keys.tobytes() + counts.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Sketch:
        return merge_blobs([blob])


def nearest_rank(q: float, count: float | np.ndarray) -> float | np.ndarray:
    """1-based rank of the nearest-rank q-quantile among `count` values: ceil(q * count), at least 1."""
    exact = np.asarray(q * count, dtype=np.float64)
    return np.maximum(np.ceil(exact - 1e-9 * np.maximum(exact, 1.0)), 1.0)  # 0.95 * 100 is rank 95


def _quantile_from(keys: np.ndarray, counts: np.ndarray, q: float, lo: float, hi: float) -> float:
    rank = nearest_rank(q, float(counts.sum()))
    index = int(np.searchsorted(np.cumsum(counts), rank, side="left"))
    index = min(index, len(keys) - 1)
    value = value_of(int(keys[index]))
    return float(min(max(value, lo), hi))


def merge_blobs(blobs: Iterable[bytes | None]) -> Sketch:
    """Merge stored sketches into one (None and empty blobs are skipped)."""
    key_parts: list[np.ndarray] = []
    count_parts: list[np.ndarray] = []
    merged = Sketch()
    for blob in blobs:
        if not blob:
            continue
        magic, n, count, total, lo, hi = _HEADER.unpack_from(blob, 0)
        if magic != _MAGIC:
            raise ValueError("not a queuewatch sketch")
        if count == 0:
            continue
        start = _HEADER.size
        key_parts.append(np.frombuffer(blob, dtype="<i4", count=n, offset=start))
        count_parts.append(np.frombuffer(blob, dtype="<u4", count=n, offset=start + 4 * n))
        merged.count += int(count)
        merged.total += total
        merged.min = min(merged.min, lo)
        merged.max = max(merged.max, hi)
    if key_parts:
        keys, inverse = np.unique(np.concatenate(key_parts), return_inverse=True)
        sums = np.bincount(inverse, weights=np.concatenate(count_parts).astype(np.float64))
        merged.buckets = {int(k): int(c) for k, c in zip(keys, sums)}
    return merged


def merge_pair(left: bytes, right: bytes) -> bytes:
    """The stored form of two stored sketches merged (keys sorted), without building a Sketch."""
    parts = []
    for blob in (left, right):
        magic, n, count, total, lo, hi = _HEADER.unpack_from(blob, 0)
        if magic != _MAGIC:
            raise ValueError("not a queuewatch sketch")
        if count:
            parts.append((n, count, total, lo, hi, blob))
    if len(parts) < 2:
        return parts[0][-1] if parts else left
    keys = np.concatenate([np.frombuffer(b, dtype="<i4", count=n, offset=_HEADER.size) for n, *_, b in parts])
    counts = np.concatenate([np.frombuffer(b, dtype="<u4", count=n, offset=_HEADER.size + 4 * n)
                             for n, *_, b in parts]).astype(np.int64)
    merged_keys, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=counts).astype("<u4")
    header = _HEADER.pack(_MAGIC, len(merged_keys), parts[0][1] + parts[1][1], parts[0][2] + parts[1][2],
                          min(parts[0][3], parts[1][3]), max(parts[0][4], parts[1][4]))
    return header + merged_keys.astype("<i4").tobytes() + sums.tobytes()
