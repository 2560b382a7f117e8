"""What every page needs: settings (read once per session), the shared engine, the user, refresh periods."""
from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import streamlit as st
from sqlalchemy import Engine

from core.health import Thresholds
from dashboard.formatting import markdown_text
from dashboard.session_routes import COOKIE_NAME
from accounts.accounts import User
from accounts.logins import LOCAL_ADDRESS, LockoutPolicy, SessionCheck, check_session, touch
from config.settings import Settings, SettingsError, load_settings
from storage.engine import StorageError, make_engine

# Polling periods of the spec (section 6.1), in seconds.
OVERVIEW_REFRESH_S = 5
QUEUE_REFRESH_S = 10
ALERTS_REFRESH_S = 3
MEMORY_REFRESH_S = 15
SESSION_KEY = "queuewatch_session"  # id of this tab's row in dashboard_sessions once logged in
EXPIRED_KEY = "queuewatch_expired"
DEAD_COOKIE_KEY = "queuewatch_dead_cookie"  # a login cookie this tab found unusable
NOTICE_KEY = "queuewatch_notice"  # why the last action was refused, shown once
REFUSALS = {
    "expired": "Your session expired. Please log in again.",
    "disabled": "Your account is disabled. Ask an admin to enable it.",
    "not_admin": "Admin access required: your account no longer has the ADMIN role.",
    "missing": "You are logged out. Please log in again.",
}


def settings() -> Settings:
    """Settings from the environment and config file, resolved on the session's first run."""
    if "queuewatch_settings" not in st.session_state:
        try:
            st.session_state["queuewatch_settings"] = load_settings()
        except SettingsError as exc:
            st.error(f"The dashboard settings are invalid: {exc}")
            st.stop()
    return st.session_state["queuewatch_settings"]


@st.cache_resource(show_spinner=False)
def _engine_for(db_url: str) -> Engine:
    return make_engine(db_url)


def lockout_policy() -> LockoutPolicy:
    """The login lockout rules, with the configured cool-down."""
    return LockoutPolicy(base_cooldown_s=settings().login_lockout_s)


def client_address() -> str:
    """The client's address as the WebSocket saw it ("local" for the loopback interface)."""
    address = st.context.ip_address
    return address if isinstance(address, str) and address else LOCAL_ADDRESS


def _cookie() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # no browser connection (AppTest, bare script runs)
        return None
    return value if isinstance(value, str) and value else None


def check(*, extend: bool) -> SessionCheck:
    """This tab's session (or the browser's login cookie) checked anew against the database.

    `extend` (a user action or page run, never an auto-refresh) counts as activity for the idle expiry.
    A session that no longer opens anything is forgotten by the tab; an expired one says so on the login page.
    """
    engine = engine_unchecked()
    now_s = time.time()
    ttl_s = settings().session_ttl_s
    session_id = st.session_state.get(SESSION_KEY)
    if session_id is not None:
        result = check_session(engine, now_s, ttl_s, session_id=session_id)
    else:
        cookie = _cookie()
        if not cookie or cookie == st.session_state.get(DEAD_COOKIE_KEY):
            return SessionCheck(None, None, "missing")
        result = check_session(engine, now_s, ttl_s, cookie=cookie)
        if result.user is None:
            st.session_state[DEAD_COOKIE_KEY] = cookie  # looked up once per tab, not on every run
    if result.reason in ("expired", "disabled") and result.session_id is not None:
        st.session_state[EXPIRED_KEY] = result.reason
    if result.user is None:
        st.session_state.pop(SESSION_KEY, None)
        return result
    st.session_state[SESSION_KEY] = result.session_id
    if extend:
        touch(engine, result.session_id, now_s, ttl_s, result.last_seen_at_s)
    return result


def session_user() -> User | None:
    """The logged-in user with the role the database holds now, or None (see `check`); a page run counts as
    activity."""
    return check(extend=True).user


def acting_admin(action: str) -> User | None:
    """The user, re-checked now, if still an enabled admin; else None, with why noted for the page to show."""
    result = check(extend=True)
    if result.user is not None and result.user.is_admin:
        return result.user
    st.session_state[NOTICE_KEY] = f"{action} not done. {REFUSALS[result.reason or 'missing']}"
    return None


def show_notice() -> None:
    """The refusal of the last action, once."""
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.error(notice, icon=":material/block:")


def live_fragment(run_every_s: float) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """st.fragment(run_every=...) whose every run first re-checks the session without extending it: an
    expired, ended or demoted session shows why instead of data."""
    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(body)
        def guarded(*args: Any, **kwargs: Any) -> None:
            result = check(extend=False)
            show_notice()
            if result.user is None or not result.user.is_admin:
                st.warning(REFUSALS[result.reason or "missing"], icon=":material/lock:")
                return
            body(*args, **kwargs)

        return st.fragment(run_every=run_every_s)(guarded)

    return decorate


def engine() -> Engine:
    """The shared engine, for pages: stops the run unless an admin is logged in.

    app.py already shows only the login page without a session; this guards a page script that Streamlit
    runs on its own (it routes to files under pages/ directly until st.navigation has run once).
    """
    user = check(extend=False).user
    if user is None:
        st.warning("Please log in to continue.")
        if st.session_state.pop(EXPIRED_KEY, False):
            st.info("Your session expired. Please log in again.")
        st.markdown("[Log in](/)")
        st.stop()
    if not user.is_admin:
        st.error("Admin access required")
        st.stop()
    return engine_unchecked()


def engine_unchecked() -> Engine:
    """The shared engine of the configured database; stops the page with a clear message if it can't open."""
    try:
        return _engine_for(settings().db_url)
    except StorageError as exc:
        st.error(f"The history database can't be opened: {markdown_text(str(exc))}")
        st.info("Set QUEUEWATCH_DB_URL (or `queuewatch dashboard --db …`) to the database that the "
                "collector writes.")
        st.stop()


def thresholds() -> Thresholds:
    """Alert and memory thresholds (global and per queue)."""
    return settings().thresholds


def current_user() -> str:
    """Email of the logged-in user (shown on the pages; actions re-check the user with `acting_admin`)."""
    user = check(extend=False).user
    return user.email if user else ""


@contextmanager
def storage_errors() -> Iterator[None]:
    """Show a read failure (database locked, unreadable) as a message and stop this run, never a traceback."""
    try:
        yield
    except StorageError as exc:
        st.error(f"Reading the history database failed: {markdown_text(str(exc))}")
        st.stop()
