"""Bearer-token authentication, the admin check and the per-user rate limit, as one dependency."""
from __future__ import annotations

from datetime import datetime, timezone

from fastapi import Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from api.ratelimit import Decision
from accounts.accounts import User, token_owner


def rate_headers(decision: Decision) -> dict[str, str]:
    reset = datetime.fromtimestamp(decision.reset_at_s, timezone.utc)
    return {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": reset.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


class RateLimited(Exception):
    """The caller spent its budget; answered with 429, retryAfter and Retry-After."""

    def __init__(self, decision: Decision, retry_after_s: int):
        super().__init__("rate limited")
        self.decision = decision
        self.retry_after_s = retry_after_s


bearer_scheme = HTTPBearer(auto_error=False, description="An API token from `queuewatch tokens create EMAIL`")


def require_admin(request: Request, response: Response,
                  credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme)) -> User:
    """Authenticate the bearer token, count the request against the caller's budget, insist on ADMIN."""
    state = request.app.state
    token = credentials.credentials.strip() if credentials else None
    found = token_owner(state.engine, token) if token else None
    user = found[0] if found else None
    if found:
        state.token_use.note(found[1])  # in memory; written apart from the request (api.token_use)
    key = f"user:{user.id}" if user else f"anonymous:{request.client.host if request.client else '-'}"
    decision = state.limiter.hit(key)
    headers = rate_headers(decision)
    request.state.rate_headers = headers
    if not decision.allowed:
        raise RateLimited(decision, decision.retry_after_s(datetime.now(timezone.utc).timestamp()))
    if user is None:
        raise ApiError("UNAUTHORIZED", headers={**headers, "WWW-Authenticate": "Bearer"})
    if not user.is_admin:
        raise ApiError("FORBIDDEN", headers=headers)
    response.headers.update(headers)
    request.state.user = user
    return user
