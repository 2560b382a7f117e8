"""Many stored sketches merged at once with numpy, whole or per group (time bucket).

The answers equal core.sketch.merge_blobs(...) and Sketch.quantile/mean; only the work is vectorised:
every blob of a week's range is parsed in a few array operations instead of a Python loop per bucket.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from core.sketch import Sketch, nearest_rank, value_of

_EMPTY_BLOB = Sketch().to_bytes()
HEADER_BYTES = len(_EMPTY_BLOB)  # magic, bucket count, count, sum, min, max
_MAGIC = np.frombuffer(_EMPTY_BLOB[:4], dtype=np.uint8)
BINCOUNT_CELLS = 1 << 21
"""Entries are summed over a dense (group, key) grid up to this many cells (two arrays of 16 MB), else
sorted."""


@dataclass(frozen=True)
class ParsedSketches:
    """Headers per non-empty blob and bucket entries of all of them, each tagged with its blob's group."""

    group: np.ndarray
    count: np.ndarray
    total: np.ndarray
    low: np.ndarray
    high: np.ndarray
    entry_group: np.ndarray
    entry_key: np.ndarray
    entry_count: np.ndarray


def _gather(buffer: np.ndarray, offsets: np.ndarray, dtype: str) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    return np.ascontiguousarray(buffer[offsets[:, None] + np.arange(width)]).view(dtype).ravel()


def parse(blobs: Sequence[bytes | None], groups: Sequence[int] | np.ndarray) -> ParsedSketches:
    """Parse stored sketches; None, empty blobs and sketches without values are skipped."""
    kept = [(blob, group) for blob, group in zip(blobs, groups) if blob]
    if not kept:
        empty_f, empty_i = np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
        return ParsedSketches(empty_i, empty_f, empty_f, empty_f, empty_f, empty_i, empty_i, empty_f)
    lengths = np.fromiter((len(blob) for blob, _ in kept), dtype=np.int64, count=len(kept))
    buffer = np.frombuffer(b"".join(blob for blob, _ in kept), dtype=np.uint8)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    if not (buffer[starts[:, None] + np.arange(4)] == _MAGIC).all():
        raise ValueError("not a queuewatch sketch")
    n = _gather(buffer, starts + 4, "<u4").astype(np.int64)
    count = _gather(buffer, starts + 8, "<f8")
    valid = count > 0
    group = np.fromiter((g for _, g in kept), dtype=np.int64, count=len(kept))
    entry_blob = np.repeat(np.arange(len(kept)), n)
    within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    entry_valid = valid[entry_blob]
    if len(buffer) % 4 == 0 and not (starts % 4).any():  # every blob is whole 32-bit words: index words
        words = buffer.view("<i4")
        key_words = np.repeat(starts // 4 + HEADER_BYTES // 4, n) + within
        entry_key = words[key_words].astype(np.int64)
        entry_count = words.view("<u4")[key_words + np.repeat(n, n)].astype(np.float64)
    else:
        key_offsets = np.repeat(starts + HEADER_BYTES, n) + 4 * within
        entry_key = _gather(buffer, key_offsets, "<i4").astype(np.int64)
        entry_count = _gather(buffer, key_offsets + 4 * np.repeat(n, n), "<u4").astype(np.float64)
    return ParsedSketches(
        group=group[valid], count=count[valid], total=_gather(buffer, starts + 16, "<f8")[valid],
        low=_gather(buffer, starts + 24, "<f8")[valid], high=_gather(buffer, starts + 32, "<f8")[valid],
        entry_group=group[entry_blob][entry_valid], entry_key=entry_key[entry_valid],
        entry_count=entry_count[entry_valid],
    )


def _merged_entries(parsed: ParsedSketches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(group, key, count) with equal (group, key) pairs summed, sorted by group then key."""
    group, key, count = parsed.entry_group, parsed.entry_key, parsed.entry_count
    if not len(group):
        return group, key, count
    low_key, low_group = int(key.min()), int(group.min())
    span = int(key.max()) - low_key + 1
    cells = span * (int(group.max()) - low_group + 1)
    if cells <= BINCOUNT_CELLS:  # (group, key) as one index into a dense grid: no sort at all
        flat = (group - low_group) * span + (key - low_key)
        present = np.nonzero(np.bincount(flat, minlength=cells))[0]
        sums = np.bincount(flat, weights=count, minlength=cells)[present]
        return present // span + low_group, present % span + low_key, sums
    if group.min() >= 0 and group.max() < 2**31:
        combined = (group << 32) + (key + 2**31)  # (group, key) as one ordered int64
        steps = np.diff(combined)
        if (steps > 0).all():  # one sketch per group with its keys sorted (as stored): nothing to merge
            return group, key, count
        if not (steps >= 0).all():
            order = np.argsort(combined, kind="stable")
            group, key, count = group[order], key[order], count[order]
    else:
        order = np.lexsort((key, group))
        group, key, count = group[order], key[order], count[order]
    first = np.nonzero(np.concatenate(([True], (group[1:] != group[:-1]) | (key[1:] != key[:-1]))))[0]
    return group[first], key[first], np.add.reduceat(count, first)


def values_of(keys: np.ndarray) -> np.ndarray:
    """core.sketch.value_of of each key (computed once per distinct key, bit-identical)."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    return np.array([value_of(int(k)) for k in distinct], dtype=np.float64)[inverse]


def _group_headers(parsed: ParsedSketches) -> tuple[np.ndarray, ...]:
    """Per distinct group, in order: (ids, count, sum, min, max) of its sketches' headers."""
    ids, inverse = np.unique(parsed.group, return_inverse=True)
    count = np.bincount(inverse, weights=parsed.count)
    total = np.bincount(inverse, weights=parsed.total)
    low = np.full(len(ids), np.inf)
    high = np.full(len(ids), -np.inf)
    np.minimum.at(low, inverse, parsed.low)
    np.maximum.at(high, inverse, parsed.high)
    return ids, count, total, low, high


def grouped_summary(blobs: Sequence[bytes | None], groups: Sequence[int] | np.ndarray,
                    quantiles: Sequence[float]) -> pd.DataFrame:
    """Per group: count, mean, min, max and one column per quantile ("q0.95") of the merged sketches."""
    parsed = parse(blobs, groups)
    names = ["count", "mean", "min", "max", *[f"q{q:g}" for q in quantiles]]
    if not len(parsed.group):
        return pd.DataFrame(columns=names, index=pd.Index([], name="group"), dtype="float64")
    ids, count, total, low, high = _group_headers(parsed)
    group, key, entry_count = _merged_entries(parsed)
    cumulative = np.cumsum(entry_count)
    _, first = np.unique(group, return_index=True)
    last = np.concatenate((first[1:], [len(group)])) - 1
    before = np.where(first > 0, cumulative[np.maximum(first - 1, 0)], 0.0)
    bucket_total = cumulative[last] - before
    columns = {"count": count, "mean": total / count, "min": low, "max": high}
    for q in quantiles:
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        position = np.searchsorted(cumulative, before + nearest_rank(q, bucket_total), side="left")
        position = np.minimum(position, last)
        columns[f"q{q:g}"] = np.clip(values_of(key[position]), low, high)
    return pd.DataFrame(columns, index=pd.Index(ids, name="group"))


def merge_all(blobs: Sequence[bytes | None]) -> Sketch:
    """All the blobs merged into one Sketch (as merge_blobs does; the sum may differ by float rounding)."""
    parsed = parse(blobs, np.zeros(len(blobs), dtype=np.int64))
    merged = Sketch()
    if not len(parsed.group):
        return merged
    _, key, count = _merged_entries(parsed)
    merged.buckets = {int(k): int(c) for k, c in zip(key, count)}
    merged.count = int(parsed.count.sum())
    merged.total = float(parsed.total.sum())
    merged.min = float(parsed.low.min())
    merged.max = float(parsed.high.max())
    return merged


def merged_per_group(blobs: Sequence[bytes | None], groups: Sequence[int] | np.ndarray) -> dict[int, bytes]:
    """Per group, the stored form of its blobs merged (groups without a non-empty sketch are absent)."""
    parsed = parse(blobs, groups)
    if not len(parsed.group):
        return {}
    ids, count, total, low, high = _group_headers(parsed)
    group, key, entry_count = _merged_entries(parsed)
    bounds = np.searchsorted(group, np.append(ids, np.iinfo(np.int64).max), side="left")
    out: dict[int, bytes] = {}
    for index, group_id in enumerate(ids.tolist()):
        part = slice(bounds[index], bounds[index + 1])
        sketch = Sketch(buckets=dict(zip(key[part].tolist(), entry_count[part].astype(np.int64).tolist())),
                        count=int(count[index]), total=float(total[index]), min=float(low[index]),
                        max=float(high[index]))
        out[group_id] = sketch.to_bytes()
    return out
