"""Leases on Redis targets, held in the database, so that several collectors share the targets.

A target (one configured Redis, `redis://host:port/db`) is read by the collector whose lease on it is valid.
A lease is taken with one conditional UPDATE (the row is free, expired, or already the taker's), so two
collectors cannot both win it; each change of owner adds 1 to its fencing token. A cycle's write re-checks,
in its own transaction, that the lease is still the writer's with the same token and unexpired
(`fence`): a collector that stalled past its lease stores nothing, and the row lock that check takes makes
a concurrent takeover wait for the write to commit. Times are the database's clock on PostgreSQL, so the
collectors' own clocks may differ.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

from sqlalchemy import Connection, Engine, and_, case, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from storage.engine import StorageError, error_text

from storage.schema import collector_leases as leases, collector_members as members


@dataclass(frozen=True)
class Member:
    """Who a collector is."""

    collector_id: str
    hostname: str
    pid: int


def db_now_s(conn: Connection) -> float:
    """The database's clock (PostgreSQL), or this host's (SQLite: one host by construction)."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
    return time.time()


def _insert(conn: Connection, table):
    return (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(table)


def _heartbeat(conn: Connection, member: Member, now_s: float, lease_s: float) -> None:
    statement = _insert(conn, members).values(collector_id=member.collector_id, hostname=member.hostname,
                                               pid=member.pid, started_at_s=now_s, expires_at_s=now_s + lease_s)
    conn.execute(statement.on_conflict_do_update(index_elements=["collector_id"],
                                                 set_={"expires_at_s": statement.excluded.expires_at_s}))


def _ensure_rows(conn: Connection, targets: Iterable[str]) -> None:
    rows = [{"target": target, "token": 0, "expires_at_s": 0.0} for target in sorted(set(targets))]
    if rows:
        conn.execute(_insert(conn, leases).on_conflict_do_nothing(index_elements=["target"]), rows)


def _held(conn: Connection, owner: str, targets: list[str], now_s: float) -> dict[str, int]:
    rows = conn.execute(select(leases.c.target, leases.c.token).where(and_(
        leases.c.target.in_(targets), leases.c.owner == owner, leases.c.expires_at_s >= now_s)))
    return {target: int(token) for target, token in rows}


def _take(conn: Connection, owner: str, target: str, now_s: float, lease_s: float, steal: bool) -> int | None:
    """Take (or keep) one lease; its token, or None when another collector holds it."""
    free = or_(leases.c.owner.is_(None), leases.c.owner == owner, leases.c.expires_at_s < now_s)
    statement = (update(leases).where(and_(leases.c.target == target, free) if not steal else leases.c.target == target)
                 .values(owner=owner, expires_at_s=now_s + lease_s,
                         token=leases.c.token + case((leases.c.owner == owner, 0), else_=1))
                 .returning(leases.c.token))
    token = conn.execute(statement).scalar()
    return None if token is None else int(token)


def renew(engine: Engine, member: Member, targets: list[str], lease_s: float) -> dict[str, int]:
    """Extend the leases on these targets that are still `member`'s (expired ones too, unless another
    collector took them since); returns target -> token of those renewed. Also renews the member itself."""
    with engine.begin() as conn:
        now_s = db_now_s(conn)
        _heartbeat(conn, member, now_s, lease_s)
        if not targets:
            return {}
        rows = conn.execute(update(leases).where(and_(leases.c.target.in_(targets),
                                                      leases.c.owner == member.collector_id))
                            .values(expires_at_s=now_s + lease_s).returning(leases.c.target, leases.c.token))
        return {target: int(token) for target, token in rows}


@dataclass(frozen=True)
class Lease:
    """A lease held: its fencing token, and in how many seconds its target is next due (the previous
    holder's last read plus one interval, so a handover keeps the target's pace)."""

    token: int
    due_in_s: float


def _due_in_s(conn: Connection, targets: list[str], now_s: float, interval_s: float) -> dict[str, float]:
    rows = conn.execute(select(leases.c.target, leases.c.read_at_s).where(leases.c.target.in_(targets)))
    return {target: 0.0 if read_at_s is None else max(0.0, read_at_s + interval_s - now_s) for target, read_at_s in rows}


def acquire(engine: Engine, member: Member, targets: list[str], lease_s: float, interval_s: float, *,
            steal: bool = False) -> dict[str, Lease]:
    """Take free or expired targets until `member` holds its fair share (the targets divided by the live
    collectors, rounded up), giving back any beyond it; returns every lease held. Held leases are not
    renewed here (`renew` does that, before each read). With `steal` (one collector by construction, e.g.
    on SQLite), every target is taken whoever held it."""
    with engine.begin() as conn:
        now_s = db_now_s(conn)
        _heartbeat(conn, member, now_s, lease_s)
        _ensure_rows(conn, targets)
        if steal:
            taken = {t: _take(conn, member.collector_id, t, now_s, lease_s, True) for t in sorted(targets)}
            held = {t: token for t, token in taken.items() if token is not None}
        else:
            held = _fair_share(conn, member.collector_id, targets, now_s, lease_s)
        due = _due_in_s(conn, sorted(held), now_s, interval_s)
        return {t: Lease(token, due.get(t, 0.0)) for t, token in held.items()}


def _fair_share(conn: Connection, owner: str, targets: list[str], now_s: float, lease_s: float) -> dict[str, int]:
    live = conn.execute(select(func.count()).select_from(members).where(members.c.expires_at_s >= now_s)).scalar_one()
    share = math.ceil(len(targets) / max(1, int(live)))
    held = _held(conn, owner, targets, now_s)
    surplus = sorted(held)[share:]
    if surplus:
        conn.execute(update(leases).where(and_(leases.c.target.in_(surplus), leases.c.owner == owner))
                     .values(expires_at_s=0.0))
        held = {t: token for t, token in held.items() if t not in surplus}
    free = conn.execute(select(leases.c.target).where(and_(
        leases.c.target.in_(targets), or_(leases.c.owner.is_(None), leases.c.expires_at_s < now_s)))).scalars().all()
    for target in sorted(free):
        if len(held) >= share:
            break
        token = _take(conn, owner, target, now_s, lease_s, False)
        if token is not None:
            held[target] = token
    return held


def fence(conn: Connection, owner: str, tokens: dict[str, int]) -> set[str]:
    """Inside a cycle's write: the targets whose lease is still `owner`'s with these tokens and unexpired,
    marked as read now (row-locked until the write commits); a target not returned must not be stored."""
    now_s = db_now_s(conn)
    accepted: set[str] = set()
    for target, token in sorted(tokens.items()):
        row = conn.execute(update(leases).where(and_(
            leases.c.target == target, leases.c.owner == owner, leases.c.token == token,
            leases.c.expires_at_s >= now_s)).values(read_at_s=now_s, read_by=owner).returning(leases.c.target))
        if row.first() is not None:
            accepted.add(target)
    return accepted


def release(engine: Engine, member: Member) -> None:
    """A collector that stops gives its leases back at once and leaves the members."""
    with engine.begin() as conn:
        conn.execute(update(leases).where(leases.c.owner == member.collector_id).values(expires_at_s=0.0))
        conn.execute(delete(members).where(members.c.collector_id == member.collector_id))


def lease_rows(engine: Engine) -> list[dict]:
    """Every target's lease: who holds it until when, who last stored a reading of it and when (the
    database's time under `now_s`); a StorageError when it cannot be read."""
    try:
        with engine.connect() as conn:
            now_s = db_now_s(conn)
            rows = conn.execute(select(leases).order_by(leases.c.target)).mappings().all()
    except SQLAlchemyError as exc:
        raise StorageError(f"could not read the collector leases: {error_text(exc)}") from exc
    return [{**row, "held": row["owner"] is not None and row["expires_at_s"] >= now_s, "now_s": now_s}
            for row in rows]


@contextmanager
def one_at_a_time(engine: Engine, name: str) -> Iterator[bool]:
    """Whether this process may do the work called `name` now, for the block's duration: on PostgreSQL a
    session advisory lock tried on a connection kept for the block (False while another collector's block
    runs); on SQLite always True (one collector by construction)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        key = conn.execute(text("SELECT hashtext(:name)"), {"name": f"queuewatch:{name}"}).scalar_one()
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()
