"""The FastAPI application: routes, error envelope, rate-limit headers on every response."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import anyio.to_thread
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import errors
from api.auth import RateLimited
from api.cycle_cache import CycleCache
from api.events import router as events_router
from api.metrics import router as metrics_router
from api.ratelimit import RateLimiter
from api.routes import router
from api.silences import router as silences_router
from api.advice import router as advice_router
from api.stale_watch import StaleWatch
from api.security import RateLimitHeaders, SecurityHeaders, docs_urls, trusted_proxy_list
from api.token_use import TokenUseRecorder
from config.settings import Settings
from storage.engine import StorageError, make_engine

log = logging.getLogger(__name__)

DB_THREADS = 16
"""Worker threads for the synchronous routes (their database work); a slow request holds only its own."""


async def _rate_limited(_request: Request, exc: RateLimited) -> JSONResponse:
    body = {"success": False, "error": "Rate limit exceeded", "retryAfter": exc.retry_after_s}
    return JSONResponse(body, status_code=429, headers={"Retry-After": str(exc.retry_after_s)})


async def _storage_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database error: %s", exc)
    return JSONResponse(errors.envelope("INTERNAL_ERROR"), status_code=500)


class _SecuredApp(FastAPI):
    """FastAPI whose outermost layer adds the security headers, so that even a crash's 500 carries them."""

    def build_middleware_stack(self):
        pages = (self.docs_url, self.redoc_url, self.swagger_ui_oauth2_redirect_url if self.docs_url else None)
        return SecurityHeaders(super().build_middleware_stack(), frozenset(p for p in pages if p))


def create_app(settings: Settings, *, engine: Engine | None = None,
               limiter_client: redis.Redis | None = None) -> FastAPI:
    """The API over the database in `settings.db_url`; rate limits shared through Redis at `settings.redis_url`."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # sync routes and dependencies run in this many worker threads at most (anyio's default limiter)
        anyio.to_thread.current_default_thread_limiter().total_tokens = DB_THREADS
        app.state.token_use.start()
        app.state.stale_watch.start()
        try:
            yield
        finally:
            app.state.stale_watch.stop()
            app.state.token_use.stop()

    app = _SecuredApp(title="queuewatch admin API", version="1.0.0",
                      description="Queue system monitoring API (admin only). Data comes from what the collector "
                                  "stored.", lifespan=lifespan, **docs_urls(settings.docs_access))
    app.state.settings = settings
    app.state.engine = engine or make_engine(settings.db_url)
    app.state.token_use = TokenUseRecorder(app.state.engine)
    app.state.cache = CycleCache(app.state.engine)
    app.state.stale_watch = StaleWatch(app.state.engine, settings.interval_s, settings.alert_timings.default,
                                       settings.stale_check_s)
    if limiter_client is None:
        limiter_client = redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    app.state.limiter = RateLimiter(limiter_client, limit=settings.api_rate_limit_per_minute)

    app.add_middleware(RateLimitHeaders)
    app.add_exception_handler(errors.ApiError, errors.api_error_handler)
    app.add_exception_handler(RequestValidationError, errors.validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, errors.http_error_handler)
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(OperationalError, _storage_error)
    app.add_exception_handler(Exception, errors.unexpected_error_handler)
    proxies = trusted_proxy_list(settings.trusted_proxies)
    if proxies:  # the client address the rate limiter counts: from X-Forwarded-For only behind these proxies
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    app.include_router(router)
    app.include_router(silences_router)
    app.include_router(advice_router)
    app.include_router(events_router)
    app.include_router(metrics_router)
    return app
