"""What every page needs: settings (read once per session), the shared engine, the user, refresh periods."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import streamlit as st
from sqlalchemy import Engine

from collector.health import Thresholds
from queuewatch.accounts import User
from queuewatch.settings import Settings, SettingsError, load_settings
from storage.engine import StorageError, make_engine

# Polling periods of the spec (section 6.1), in seconds.
OVERVIEW_REFRESH_S = 5
QUEUE_REFRESH_S = 10
ALERTS_REFRESH_S = 3
MEMORY_REFRESH_S = 15
SESSION_KEY = "queuewatch_session"  # {"user": User, "last_seen_s": float} once logged in
EXPIRED_KEY = "queuewatch_expired"


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


def session_user() -> User | None:
    """The logged-in user, or None (never logged in, logged out, or the session expired)."""
    session = st.session_state.get(SESSION_KEY)
    if not session:
        return None
    now_s = time.time()
    if now_s - session["last_seen_s"] > settings().session_ttl_s:
        st.session_state.pop(SESSION_KEY, None)
        st.session_state[EXPIRED_KEY] = True
        return None
    session["last_seen_s"] = now_s
    return session["user"]


def engine() -> Engine:
    """The shared engine, for pages: stops the run unless an admin is logged in.

    app.py already shows only the login page without a session; this guards a page script that Streamlit
    runs on its own (it routes to files under pages/ directly until st.navigation has run once).
    """
    user = session_user()
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
        st.error(f"The history database can't be opened: {exc}")
        st.info("Set QUEUEWATCH_DB_URL (or `queuewatch dashboard --db …`) to the database that the "
                "collector writes.")
        st.stop()


def thresholds() -> Thresholds:
    """Alert and memory thresholds (global and per queue)."""
    return settings().thresholds


def current_user() -> str:
    """Email of the logged-in user (recorded with acknowledgements)."""
    return st.session_state[SESSION_KEY]["user"].email


@contextmanager
def storage_errors() -> Iterator[None]:
    """Show a read failure (database locked, unreadable) as a message and stop this run, never a traceback."""
    try:
        yield
    except StorageError as exc:
        st.error(f"Reading the history database failed: {exc}")
        st.stop()
