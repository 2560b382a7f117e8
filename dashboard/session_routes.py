"""The same-origin HTTP route that gives the browser its HttpOnly login cookie and takes it back.

Streamlit talks to the browser over a WebSocket, which cannot set cookies. After a login the page posts the
session's one-time grant here (`POST /queuewatch/session`, form field `grant`); the answer sets the
cookie `queuewatch_session` (HttpOnly, SameSite=Strict, Path=/, Max-Age = the session's absolute lifetime,
Secure over HTTPS) holding a fresh random token whose digest the session row keeps. Every later WebSocket
of that browser (reload, new tab) carries the cookie, which the app reads with st.context.cookies. `DELETE` ends the session
named by the cookie and expires the cookie.
"""
from __future__ import annotations

import functools
import time

from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from accounts.logins import end_session, redeem_grant
from storage.engine import make_engine

COOKIE_NAME = "queuewatch_session"
SESSION_PATH = "/queuewatch/session"


@functools.cache
def _engine(db_url: str) -> Engine:
    return make_engine(db_url)


def _set_cookie(response: Response, request: Request, value: str, max_age_s: float) -> None:
    response.set_cookie(COOKIE_NAME, value, max_age=int(max_age_s), path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def session_routes(db_url: str) -> list[Route]:
    """The cookie route for the dashboard whose history database is `db_url`."""

    async def session(request: Request) -> Response:
        engine = _engine(db_url)
        response = Response(status_code=204, headers={"Cache-Control": "no-store"})
        if request.method == "DELETE":
            cookie = request.cookies.get(COOKIE_NAME)
            if cookie:
                end_session(engine, time.time(), cookie=cookie)
            _set_cookie(response, request, "", 0)
            return response
        form = await request.form()
        redeemed = redeem_grant(engine, str(form.get("grant") or ""), time.time())
        if redeemed is None:
            return Response("unknown or used grant", status_code=403, headers={"Cache-Control": "no-store"})
        token, max_age_s = redeemed
        _set_cookie(response, request, token, max_age_s)
        return response

    return [Route(SESSION_PATH, session, methods=["POST", "DELETE"])]
