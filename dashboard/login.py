"""The login in front of every page: email + password, admins only, sessions that expire, logout.

app.py always calls st.navigation, with only the login page until an admin is logged in, so no page
script can be reached without a session (Streamlit would otherwise route to pages/ directly).
"""
from __future__ import annotations

import time

import streamlit as st

from dashboard import context
from dashboard.context import EXPIRED_KEY, SESSION_KEY
from queuewatch.accounts import User, authenticate
from storage.users import list_users


def logout() -> None:
    st.session_state.pop(SESSION_KEY, None)


def login_page() -> None:
    """Email and password; on success the session starts and the app reruns with every page."""
    st.title("queuewatch")
    if st.session_state.pop(EXPIRED_KEY, False):
        st.info("Your session expired. Please log in again.")
    engine = context.engine_unchecked()
    if not list_users(engine):
        st.info("No users yet. Create an admin with `queuewatch users add EMAIL --role ADMIN`, then log in.")
    with st.form("login"):
        email = st.text_input("Email", key="login-email")
        password = st.text_input("Password", type="password", key="login-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if submitted:
        user = authenticate(engine, email, password)
        if user is None:
            st.error("Wrong email or password.")
            return
        st.session_state[SESSION_KEY] = {"user": user, "last_seen_s": time.time()}
        st.rerun()


def refused_page() -> None:
    st.error("Admin access required")
    st.caption("Ask an admin to give your account the ADMIN role.")


def account_sidebar(user: User) -> None:
    with st.sidebar:
        st.caption(f"Signed in as {user.email} ({user.role.value})")
        if st.button("Log out", key="logout"):
            logout()
            st.rerun()
