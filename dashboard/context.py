"""What every page needs: settings (read once per session), the shared engine, the user, refresh periods."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import streamlit as st
from sqlalchemy import Engine

from collector.health import Thresholds
from queuewatch.settings import Settings, SettingsError, load_settings
from storage.engine import StorageError, make_engine

# Polling periods of the spec (section 6.1), in seconds.
OVERVIEW_REFRESH_S = 5
QUEUE_REFRESH_S = 10
ALERTS_REFRESH_S = 3
MEMORY_REFRESH_S = 15
DEFAULT_USER = "admin"
USER_ENV = "QUEUEWATCH_DASHBOARD_USER"


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


def engine() -> Engine:
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
    """Who acts in this session (acknowledgements); a login will replace this."""
    return os.environ.get(USER_ENV, "").strip() or DEFAULT_USER


@contextmanager
def storage_errors() -> Iterator[None]:
    """Show a read failure (database locked, unreadable) as a message and stop this run, never a traceback."""
    try:
        yield
    except StorageError as exc:
        st.error(f"Reading the history database failed: {exc}")
        st.stop()
