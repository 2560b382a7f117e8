"""Dashboard sessions and login attempts: rows only (tokens, digests and rules live in accounts.logins)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update

from storage.schema import dashboard_sessions, login_attempts, users

_SESSION_COLUMNS = (dashboard_sessions.c.id.label("session_id"), dashboard_sessions.c.last_seen_at_s,
                    dashboard_sessions.c.expires_at_s, dashboard_sessions.c.revoked_at_s,
                    users.c.id.label("user_id"), users.c.email, users.c.role, users.c.disabled)


def insert_session(engine: Engine, user_id: int, grant_digest: str, grant_expires_at_s: float,
                   expires_at_s: float, address: str, now_s: float) -> int:
    """A new session of `user_id` (its cookie not given yet); forgets sessions that ended before `now_s`."""
    with engine.begin() as conn:
        conn.execute(delete(dashboard_sessions).where(or_(dashboard_sessions.c.expires_at_s < now_s,
                                                          dashboard_sessions.c.revoked_at_s.is_not(None))))
        return conn.execute(insert(dashboard_sessions).values(
            user_id=user_id, created_at_s=now_s, last_seen_at_s=now_s, expires_at_s=expires_at_s,
            grant_digest=grant_digest, grant_expires_at_s=grant_expires_at_s,
            client_address=address)).inserted_primary_key[0]


def session_row(engine: Engine, *, session_id: int | None = None,
                cookie_digest: str | None = None) -> dict[str, Any] | None:
    """The session (by id or cookie digest) joined with its user's current role and disabled flag."""
    if session_id is not None:
        condition = dashboard_sessions.c.id == session_id
    elif cookie_digest:
        condition = dashboard_sessions.c.cookie_digest == cookie_digest
    else:
        return None
    query = (select(*_SESSION_COLUMNS).join(users, users.c.id == dashboard_sessions.c.user_id)
             .where(condition))
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return dict(row) if row else None


def touch_session(engine: Engine, session_id: int, now_s: float) -> None:
    """Note a user action in the session (it keeps the session from idling out)."""
    with engine.begin() as conn:
        conn.execute(update(dashboard_sessions).where(dashboard_sessions.c.id == session_id)
                     .values(last_seen_at_s=now_s))


def revoke_session(engine: Engine, now_s: float, *, session_id: int | None = None,
                   cookie_digest: str | None = None) -> int:
    """End a session (by id or cookie digest); returns how many were ended."""
    if session_id is not None:
        condition = dashboard_sessions.c.id == session_id
    elif cookie_digest:
        condition = dashboard_sessions.c.cookie_digest == cookie_digest
    else:
        return 0
    with engine.begin() as conn:
        return conn.execute(update(dashboard_sessions)
                            .where(and_(condition, dashboard_sessions.c.revoked_at_s.is_(None)))
                            .values(revoked_at_s=now_s, grant_digest=None)).rowcount


def redeem_grant(engine: Engine, grant_digest: str, cookie_digest: str,
                 now_s: float) -> dict[str, Any] | None:
    """Trade a live one-time grant for a cookie digest; the session row (expiry) or None if the grant is
    unknown, used or stale."""
    live = and_(dashboard_sessions.c.grant_digest == grant_digest,
                dashboard_sessions.c.grant_expires_at_s >= now_s,
                dashboard_sessions.c.revoked_at_s.is_(None), dashboard_sessions.c.expires_at_s > now_s)
    with engine.begin() as conn:
        row = conn.execute(select(dashboard_sessions.c.id, dashboard_sessions.c.expires_at_s)
                           .where(live)).mappings().first()
        if row is None:
            return None
        conn.execute(update(dashboard_sessions).where(dashboard_sessions.c.id == row["id"])
                     .values(cookie_digest=cookie_digest, grant_digest=None, grant_expires_at_s=None))
    return dict(row)


def record_attempt(engine: Engine, email: str, address: str, ok: bool, now_s: float, keep_s: float) -> None:
    """Note one checked login attempt; forgets attempts older than `keep_s`."""
    with engine.begin() as conn:
        conn.execute(delete(login_attempts).where(login_attempts.c.at_s < now_s - keep_s))
        conn.execute(insert(login_attempts).values(at_s=now_s, email=email, address=address, ok=ok))


def failure_times(engine: Engine, since_s: float, *, email: str | None = None,
                  address: str | None = None) -> list[float]:
    """Times of failed attempts since `since_s` for an account (after its last success) or an address."""
    if email is not None:
        key = login_attempts.c.email == email
        last_ok = (select(func.max(login_attempts.c.at_s))
                   .where(and_(key, login_attempts.c.ok.is_(True))).scalar_subquery())
        condition = and_(key, login_attempts.c.at_s > func.coalesce(last_ok, since_s))
    elif address is not None:
        condition = login_attempts.c.address == address
    else:
        raise ValueError("give an email or an address")
    query = (select(login_attempts.c.at_s)
             .where(and_(condition, login_attempts.c.ok.is_(False), login_attempts.c.at_s >= since_s))
             .order_by(login_attempts.c.at_s))
    with engine.connect() as conn:
        return [float(at_s) for at_s in conn.execute(query).scalars()]
