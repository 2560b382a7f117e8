"""Entry point of `queuewatch dashboard`: app.py served by Streamlit's st.App, plus the login-cookie route.

Arguments are Streamlit's: `run APP [--section.option VALUE ...]` (what `queuewatch dashboard` passes).

Streamlit routes URLs straight to files under pages/ until some run has called st.navigation. app.py calls
it on every run and lists only the login page until an admin is logged in, so that routing is switched off
from the start (each page also refuses to run without a session).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route
from streamlit.runtime.pages_manager import PagesManager
from streamlit.web.server.starlette import App

from dashboard.live_chart import PLOTLY_FILE, PLOTLY_PATH
from dashboard.session_routes import session_routes
from config.settings import load_settings


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return int(text) if text.isdigit() else text


def parse(argv: list[str]) -> tuple[Path, dict[str, Any]]:
    """(app script, Streamlit config options) from `run APP --server.port 8501 ...`."""
    if len(argv) < 2 or argv[0] != "run":
        raise SystemExit("usage: python -m dashboard.serve run APP [--section.option VALUE ...]")
    options = dict(zip(argv[2::2], argv[3::2]))
    config = {name.removeprefix("--"): _value(value) for name, value in options.items()}
    return Path(argv[1]).resolve(), config


async def _plotly_js(_request: Request) -> FileResponse:
    """The plotly.js of the plotly package, for the live charts (dashboard.live_chart)."""
    return FileResponse(PLOTLY_FILE, media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})


def build_app(script: Path) -> App:
    """app.py as an ASGI app with the cookie route of the configured database and plotly.js."""
    routes = [*session_routes(load_settings().db_url), Route(PLOTLY_PATH, _plotly_js, methods=["GET"])]
    return App(script, routes=routes)


if __name__ == "__main__":
    PagesManager.uses_pages_directory = False
    script, config = parse(sys.argv[1:])
    build_app(script).run(config=config)
