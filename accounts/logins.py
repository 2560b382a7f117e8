"""Dashboard logins: lockout after repeated failures, server-side sessions, cookie tokens (no Streamlit here).

A session is a row of `dashboard_sessions`. The browser holds a random 256-bit token in an HttpOnly cookie;
only its SHA-256 digest is stored, so the table alone does not let anyone act as a user. A session ends when
it idles longer than the session TTL, at its absolute expiry, when its user logs out (the row is revoked, so
a copied cookie stops working), or as soon as its user is disabled; the role is read anew on every check.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import Engine

from accounts.accounts import Role, User, authenticate, token_digest
from storage import sessions as rows

log = logging.getLogger(__name__)

GRANT_TTL_S = 60.0  # how long the browser has to trade the one-time grant for its cookie
LOCAL_ADDRESS = "local"  # Streamlit reports no address for clients on the loopback interface


@dataclass(frozen=True)
class LockoutPolicy:
    """After `max_failures` failed logins within `window_s`, refuse for `base_cooldown_s`, doubling with each
    further failure, at most `window_s`."""

    max_failures: int = 5
    window_s: float = 900.0
    base_cooldown_s: float = 60.0

    def cooldown_s(self, failures: int) -> float:
        """Cool-down after `failures` failures in the window (0 below the limit)."""
        if failures < self.max_failures:
            return 0.0
        return min(self.base_cooldown_s * 2 ** (failures - self.max_failures), max(self.window_s,
                                                                                    self.base_cooldown_s))

    def locked_until_s(self, failure_times_s: list[float]) -> float:
        """When the lockout these failures (oldest first) impose ends; 0 when there is none."""
        if len(failure_times_s) < self.max_failures:
            return 0.0
        return failure_times_s[-1] + self.cooldown_s(len(failure_times_s))


class Outcome(str, Enum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"


@dataclass(frozen=True)
class LoginResult:
    """What a login attempt came to: the user on success, the seconds left when locked out."""

    outcome: Outcome
    user: User | None = None
    retry_after_s: float = 0.0


def _locked_until_s(engine: Engine, policy: LockoutPolicy, email: str, address: str, now_s: float) -> float:
    since_s = now_s - policy.window_s
    return max(policy.locked_until_s(rows.failure_times(engine, since_s, email=email)),
               policy.locked_until_s(rows.failure_times(engine, since_s, address=address)))


def log_in(engine: Engine, email: str, password: str, address: str, now_s: float,
           policy: LockoutPolicy) -> LoginResult:
    """Check a login: refused unchecked while the account or the address is locked out, else the password."""
    email = email.strip().lower()
    address = address or LOCAL_ADDRESS
    locked_until_s = _locked_until_s(engine, policy, email, address, now_s)
    if locked_until_s > now_s:
        log.info("login refused during lockout: account %s, address %s, %.0f s left", email, address,
                 locked_until_s - now_s)
        return LoginResult(Outcome.LOCKED, retry_after_s=locked_until_s - now_s)
    user = authenticate(engine, email, password)
    rows.record_attempt(engine, email, address, user is not None, now_s, keep_s=policy.window_s)
    if user is not None:
        return LoginResult(Outcome.OK, user)
    since_s = now_s - policy.window_s
    for key, failures in (("account", rows.failure_times(engine, since_s, email=email)),
                          ("address", rows.failure_times(engine, since_s, address=address))):
        cooldown_s = policy.cooldown_s(len(failures))
        if cooldown_s:
            log.warning("login lockout (%s): account %s, address %s, %d failures in %.0f s, "
                        "refused for %.0f s", key, email, address, len(failures), policy.window_s, cooldown_s)
    locked_until_s = _locked_until_s(engine, policy, email, address, now_s)
    if locked_until_s > now_s:
        return LoginResult(Outcome.LOCKED, retry_after_s=locked_until_s - now_s)
    return LoginResult(Outcome.WRONG)


@dataclass(frozen=True)
class SessionCheck:
    """A session looked up: its user (current role) when usable, else why not."""

    session_id: int | None
    user: User | None
    reason: str = ""  # "", "missing", "expired", "disabled", "not_admin"
    last_seen_at_s: float | None = None


def start_session(engine: Engine, user: User, address: str, now_s: float,
                  max_age_s: float) -> tuple[int, str]:
    """A new session of `user` and the one-time grant (returned once) that the browser trades for its
    cookie."""
    grant = secrets.token_urlsafe(32)
    session_id = rows.insert_session(engine, user.id, token_digest(grant), now_s + GRANT_TTL_S,
                                     now_s + max_age_s, address or LOCAL_ADDRESS, now_s)
    return session_id, grant


def redeem_grant(engine: Engine, grant: str, now_s: float) -> tuple[str, float] | None:
    """The cookie token (returned once) and its seconds to live for a live grant, else None."""
    if not grant:
        return None
    token = secrets.token_urlsafe(32)
    row = rows.redeem_grant(engine, token_digest(grant), token_digest(token), now_s)
    if row is None:
        return None
    return token, max(0.0, row["expires_at_s"] - now_s)


def check_session(engine: Engine, now_s: float, ttl_s: float, *, session_id: int | None = None,
                  cookie: str | None = None) -> SessionCheck:
    """The session by id (this browser tab's) or cookie token (a reload, a new tab), checked against now."""
    row = rows.session_row(engine, session_id=session_id,
                           cookie_digest=token_digest(cookie) if cookie else None)
    if row is None or row["revoked_at_s"] is not None:
        return SessionCheck(None, None, "missing")
    if now_s - row["last_seen_at_s"] > ttl_s or now_s >= row["expires_at_s"]:
        return SessionCheck(row["session_id"], None, "expired", row["last_seen_at_s"])
    if row["disabled"]:
        return SessionCheck(row["session_id"], None, "disabled", row["last_seen_at_s"])
    user = User(row["user_id"], row["email"], Role(row["role"]))
    return SessionCheck(row["session_id"], user, "" if user.is_admin else "not_admin", row["last_seen_at_s"])


def touch(engine: Engine, session_id: int, now_s: float, ttl_s: float,
          last_seen_at_s: float | None = None) -> None:
    """Note a user action; skipped when the last note is newer than a tenth of the TTL (at most 60 s)."""
    if last_seen_at_s is not None and now_s - last_seen_at_s < min(60.0, ttl_s / 10):
        return
    rows.touch_session(engine, session_id, now_s)


def end_session(engine: Engine, now_s: float, *, session_id: int | None = None,
                cookie: str | None = None) -> int:
    """Log out: the session row is revoked, so its cookie no longer opens anything."""
    return rows.revoke_session(engine, now_s, session_id=session_id,
                               cookie_digest=token_digest(cookie) if cookie else None)
