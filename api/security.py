"""Security headers on every response, the docs pages' switch and the proxies whose X-Forwarded-For counts."""
from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""JSON and text answers load nothing and may not be framed."""
DOCS_POLICY = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
               "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
               "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
               "https://cdn.redoc.ly; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; "
               "base-uri 'none'; form-action 'none'")
"""/docs and /redoc: FastAPI's pages load Swagger UI and ReDoc from their CDN, with inline set-up scripts."""
DOCS_ACCESS = ("public", "off")
BASE_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def security_headers(path: str, docs_paths: frozenset[str] = frozenset()) -> dict[str, str]:
    """The headers every answer for `path` carries (`docs_paths`: the docs pages being served)."""
    policy = DOCS_POLICY if path in docs_paths else API_POLICY
    return {**BASE_HEADERS, "Content-Security-Policy": policy}


def docs_urls(docs_access: str) -> dict[str, str | None]:
    """FastAPI's docs_url, redoc_url and openapi_url for QUEUEWATCH_DOCS_ACCESS (`off`: none is served)."""
    if docs_access == "off":
        return {"docs_url": None, "redoc_url": None, "openapi_url": None}
    return {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json"}


def trusted_proxy_list(trusted_proxies: str) -> list[str]:
    """Addresses (or networks) of QUEUEWATCH_TRUSTED_PROXIES, comma-separated; empty: trust no proxy."""
    return [part.strip() for part in trusted_proxies.split(",") if part.strip()]


class SecurityHeaders:
    """ASGI middleware that adds security_headers() to every HTTP response, errors and streams included."""

    def __init__(self, app: ASGIApp, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(name.lower().encode(), value.encode())
                 for name, value in security_headers(scope.get("path", ""), self.docs_paths).items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *(h for h in extra if h[0] not in present)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RateLimitHeaders:
    """ASGI middleware that adds the X-RateLimit-* headers the auth dependency left in the request's state
    (request.state.rate_headers) to the response, unless the response sets them itself. Plain ASGI: it adds
    nothing to a request's cost (Starlette's BaseHTTPMiddleware runs every request in a task of its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            rate_headers = state.get("rate_headers") if message["type"] == "http.response.start" else None
            if rate_headers:
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [(name.lower().encode(), value.encode()) for name, value in rate_headers.items()
                         if name.lower().encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
