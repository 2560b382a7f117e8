"""The login in front of every page: email + password, admins only, lockout, server-side sessions, logout.

app.py always calls st.navigation, with the login page standing in for every page until an admin is logged
in, so no page script can be reached without a session (Streamlit would otherwise route to pages/ directly)
and a deep link (/queue_detail?queue=...&library=...&range=6h) opened while logged out shows the login first
and then, unchanged, the page it names.
"""
from __future__ import annotations

import json
import math
import time

import streamlit as st

from dashboard import context
from dashboard.context import EXPIRED_KEY, REFUSALS, SESSION_KEY
from dashboard.session_routes import SESSION_PATH
from accounts.accounts import User
from accounts.logins import Outcome, end_session, log_in, start_session
from storage.users import list_users

GRANT_KEY = "queuewatch_grant"  # the one-time grant this tab still has to trade for the login cookie
FORGET_COOKIE_KEY = "queuewatch_forget_cookie"
LOCKED_MESSAGE = "Too many failed attempts. Try again in {seconds} s."


def _cookie_script(method: str, grant: str | None = None) -> None:
    """Ask the browser to call the same-origin cookie route (setting or expiring the HttpOnly cookie)."""
    body = f"body: new URLSearchParams({{grant: {json.dumps(grant)}}})," if grant else ""
    st.html(f"<script>fetch({json.dumps(SESSION_PATH)}, {{method: {json.dumps(method)}, {body} "
            "credentials: 'same-origin'})</script>", unsafe_allow_javascript=True)


def cookie_exchange() -> None:
    """Right after a login or logout: have the browser set or expire its login cookie."""
    grant = st.session_state.pop(GRANT_KEY, None)
    if grant:
        _cookie_script("POST", grant)
    if st.session_state.pop(FORGET_COOKIE_KEY, False):
        _cookie_script("DELETE")


def logout() -> None:
    """End the session on the server (its cookie stops working) and have the browser drop the cookie."""
    session_id = st.session_state.pop(SESSION_KEY, None)
    if session_id is not None:
        end_session(context.engine_unchecked(), time.time(), session_id=session_id)
    st.session_state[FORGET_COOKIE_KEY] = True


def login_page() -> None:
    """Email and password; on success the session starts and the app reruns with every page."""
    st.title("queuewatch")
    reason = st.session_state.pop(EXPIRED_KEY, None)
    if reason:
        st.info(REFUSALS.get(reason, REFUSALS["expired"]))
    context.show_notice()
    engine = context.engine_unchecked()
    if not list_users(engine):
        st.info("No users yet. Create an admin with `queuewatch users add EMAIL --role ADMIN`, then log in.")
    with st.form("login"):
        email = st.text_input("Email", key="login-email")
        password = st.text_input("Password", type="password", key="login-password")
        submitted = st.form_submit_button("Log in", type="primary")
    if not submitted:
        return
    address = context.client_address()
    result = log_in(engine, email, password, address, time.time(), context.lockout_policy())
    if result.outcome is Outcome.LOCKED:
        st.error(LOCKED_MESSAGE.format(seconds=math.ceil(result.retry_after_s)), icon=":material/lock_clock:")
        return
    if result.user is None:
        st.error("Wrong email or password.")
        return
    session_id, grant = start_session(engine, result.user, address, time.time(),
                                      context.settings().session_max_age_s)
    st.session_state[SESSION_KEY] = session_id
    st.session_state[GRANT_KEY] = grant
    st.session_state.pop(context.DEAD_COOKIE_KEY, None)
    st.rerun()


def refused_page() -> None:
    st.error("Admin access required")
    context.show_notice()
    st.caption("Ask an admin to give your account the ADMIN role.")


def account_sidebar(user: User) -> None:
    with st.sidebar:
        st.text(f"Signed in as {user.email} ({user.role.value})")
        if st.button("Log out", key="logout"):
            logout()
            st.rerun()
