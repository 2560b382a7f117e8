"""Rollups: per queue and per 1 min, 10 min and 1 h bucket, depth maxima, summed deltas and merged sketches.

The collector's write keeps them current in the same transaction as the snapshots (`add_to_rollups`); reads
take the coarsest level that fits and the range's uneven edges from finer levels (`plan_pieces`).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Table, and_, select
from sqlalchemy.dialects import postgresql, sqlite

from core.sketch import merge_pair
from storage.schema import DELTA_COLUMNS, ROLLUP_LEVELS_S, queue_rollups

MAX_COLUMNS = ("waiting", "active", "delayed", "failed", "completed", "oldest_waiting_ms")
SUM_COLUMNS = ("interval_ms",) + DELTA_COLUMNS
RAW = 0  # the level of the snapshots themselves
Piece = tuple[int, int, int]  # (level_s or RAW, first ms, end ms exclusive)


@lru_cache(maxsize=64)
def _upsert_statement(dialect_name: str, table: Table, keys: tuple[str, ...], others: tuple[str, ...],
                      unless_older: str | None):
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement = dialect.insert(table)
    if not others:
        return statement.on_conflict_do_nothing(index_elements=list(keys))
    where = None if unless_older is None else statement.excluded[unless_older] >= table.c[unless_older]
    return statement.on_conflict_do_update(index_elements=list(keys), where=where,
                                           set_={name: statement.excluded[name] for name in others})


def upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], keys: Sequence[str], *,
           unless_older: str | None = None) -> None:
    """Insert rows, replacing those with the same key (executemany; SQLite and PostgreSQL); with
    `unless_older`, a stored row whose value of that column is newer is kept."""
    if not rows:
        return
    others = tuple(c.name for c in table.c if c.name not in keys and c.name in rows[0])
    conn.execute(_upsert_statement(conn.dialect.name, table, tuple(keys), others, unless_older), list(rows))


def _fields(text: str | None) -> frozenset[str]:
    return frozenset(part for part in (text or "").split(",") if part)


def _joined(fields: frozenset[str]) -> str | None:
    return ",".join(sorted(fields)) or None


def _merged(left: bytes | None, right: bytes | None) -> bytes | None:
    if not left or not right:
        return left or right
    return merge_pair(left, right)


def fold(bucket: dict[str, Any] | None, sample: Mapping[str, Any], level_s: int, series_id: int) -> dict[str, Any]:
    """The rollup bucket with one more snapshot (queue_samples values, the oldest wait in ms as the rollups
    keep it, plus its two sketches)."""
    at_ms = int(sample["sampled_at_ms"])
    if bucket is None:
        return {"level_s": level_s, "series_id": series_id, "bucket_ms": at_ms - at_ms % (level_s * 1000),
                "samples": 1, "first_at_ms": at_ms, "last_at_ms": at_ms,
                **{name: sample[name] for name in MAX_COLUMNS + SUM_COLUMNS},
                "unavailable": sample.get("unavailable") or None,
                "processing_sketch": sample.get("processing_sketch"), "wait_sketch": sample.get("wait_sketch")}
    out = dict(bucket)
    out["samples"] = bucket["samples"] + 1
    out["first_at_ms"] = min(bucket["first_at_ms"], at_ms)
    out["last_at_ms"] = max(bucket["last_at_ms"], at_ms)
    for name in MAX_COLUMNS:
        out[name] = max(bucket[name], sample[name])
    for name in SUM_COLUMNS:
        out[name] = bucket[name] + sample[name]
    out["unavailable"] = _joined(_fields(bucket["unavailable"]) & _fields(sample.get("unavailable")))
    for name in ("processing_sketch", "wait_sketch"):
        out[name] = _merged(bucket[name], sample.get(name))
    return out


def sample_columns(t: Table) -> list:
    """MAX_COLUMNS and SUM_COLUMNS from a queue_samples-shaped table (the oldest wait back in ms)."""
    return [(t.c.oldest_waiting_us / 1000.0).label(name) if name == "oldest_waiting_ms" else t.c[name]
            for name in MAX_COLUMNS + SUM_COLUMNS]


def add_to_rollups(conn: Connection, samples: Sequence[Mapping[str, Any]]) -> None:
    """Fold one cycle's snapshots (queue_samples values with their sketches) into every rollup level."""
    if not samples:
        return
    r = queue_rollups
    wanted = {(level, s["series_id"], int(s["sampled_at_ms"]) - int(s["sampled_at_ms"]) % (level * 1000))
              for s in samples for level in ROLLUP_LEVELS_S}
    statement = select(r).where(and_(r.c.level_s.in_(ROLLUP_LEVELS_S),
                                     r.c.series_id.in_(sorted({k[1] for k in wanted})),
                                     r.c.bucket_ms.in_(sorted({k[2] for k in wanted}))))
    buckets = {(row["level_s"], row["series_id"], row["bucket_ms"]): dict(row)
               for row in conn.execute(statement).mappings()}
    for stored in samples:
        sample = {**stored, "oldest_waiting_ms": stored["oldest_waiting_us"] / 1000.0}  # once, for every level
        for level in ROLLUP_LEVELS_S:
            at_ms = int(sample["sampled_at_ms"])
            key = (level, sample["series_id"], at_ms - at_ms % (level * 1000))
            buckets[key] = fold(buckets.get(key), sample, level, sample["series_id"])
    changed = [buckets[key] for key in sorted(wanted)]
    upsert(conn, r, changed, ("level_s", "series_id", "bucket_ms"))


def plan_pieces(start_ms: int, end_ms: int, levels_s: Sequence[int]) -> list[Piece]:
    """[start_ms, end_ms) as pieces: whole buckets of the coarsest level, the edges from finer ones, raw last.

    `levels_s` is coarsest first; each piece is (level, first ms, end ms), with RAW for snapshots themselves.
    """
    if end_ms <= start_ms:
        return []
    if not levels_s:
        return [(RAW, start_ms, end_ms)]
    width_ms = levels_s[0] * 1000
    first = -(-start_ms // width_ms) * width_ms
    last = end_ms // width_ms * width_ms
    finer = levels_s[1:]
    if first >= last:
        return plan_pieces(start_ms, end_ms, finer)
    return [*plan_pieces(start_ms, first, finer), (levels_s[0], first, last), *plan_pieces(last, end_ms, finer)]


def levels_for(width_s: float | None) -> list[int]:
    """Rollup levels usable for buckets of `width_s` (those dividing it), coarsest first; all for None."""
    if width_s is None:
        return sorted(ROLLUP_LEVELS_S, reverse=True)
    return sorted((level for level in ROLLUP_LEVELS_S
                   if width_s >= level and float(width_s) % level == 0), reverse=True)


def _intersection(texts: Sequence[str | None]) -> str | None:
    fields = None
    for text in texts:
        fields = _fields(text) if fields is None else fields & _fields(text)
    return _joined(fields or frozenset())


def rebuild_rollups(conn: Connection, series_id: int) -> int:
    """Recompute every rollup level of one series from its stored snapshots; returns the buckets written."""
    import pandas as pd

    from storage.queries_sketch import merged_per_group
    from storage.schema import queue_sample_blobs as b, queue_samples as t

    columns = [t.c.sampled_at_ms, *sample_columns(t), t.c.unavailable,
               b.c.processing_sketch, b.c.wait_sketch]
    joined = t.outerjoin(b, and_(b.c.series_id == t.c.series_id, b.c.sampled_at_ms == t.c.sampled_at_ms))
    rows = pd.DataFrame(conn.execute(select(*columns).select_from(joined).where(t.c.series_id == series_id)
                                     .order_by(t.c.sampled_at_ms)).fetchall(), columns=[c.name for c in columns])
    conn.execute(queue_rollups.delete().where(queue_rollups.c.series_id == series_id))
    written = 0
    for level in ROLLUP_LEVELS_S:
        if rows.empty:
            break
        bucket = rows["sampled_at_ms"] - rows["sampled_at_ms"] % (level * 1000)
        grouped = rows.groupby(bucket, sort=True)
        frame = grouped.agg(samples=("sampled_at_ms", "size"), first_at_ms=("sampled_at_ms", "min"),
                            last_at_ms=("sampled_at_ms", "max"),
                            **{name: (name, "max") for name in MAX_COLUMNS},
                            **{name: (name, "sum") for name in SUM_COLUMNS})
        frame["unavailable"] = grouped["unavailable"].agg(lambda texts: _intersection(list(texts)))
        for name in ("processing_sketch", "wait_sketch"):
            merged = merged_per_group(rows[name].tolist(), bucket.to_numpy())
            frame[name] = [merged.get(int(index)) for index in frame.index]
        frame = frame.reset_index(names="bucket_ms")
        frame["level_s"], frame["series_id"] = level, series_id
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        for record in records:
            for name in ("bucket_ms", "samples", "first_at_ms", "last_at_ms", *SUM_COLUMNS,
                         "waiting", "active", "delayed", "failed", "completed"):
                record[name] = int(record[name])
            record["oldest_waiting_ms"] = float(record["oldest_waiting_ms"])
        conn.execute(queue_rollups.insert(), records)
        written += len(records)
    return written
