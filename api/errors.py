"""The spec's error envelope {success: false, error, code, details?} and its codes."""
from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

MESSAGES = {
    "INVALID_QUEUE_NAME": (400, "Queue not found"),
    "INVALID_PARAMETERS": (400, "Invalid request parameters"),
    "UNAUTHORIZED": (401, "Please log in to continue"),
    "FORBIDDEN": (403, "Admin access required"),
    "ALERT_NOT_FOUND": (404, "Alert not found"),
    "SILENCE_NOT_FOUND": (404, "Silence not found"),
    "NOT_FOUND": (404, "Not found"),
    "METHOD_NOT_ALLOWED": (405, "Method not allowed"),
    "REDIS_ERROR": (500, "Monitoring system temporarily unavailable"),
    "INTERNAL_ERROR": (500, "An error occurred. Please try again."),
}


class ApiError(Exception):
    """An error answered with the spec's envelope."""

    def __init__(self, code: str, details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(code)
        self.code = code
        self.status, self.message = MESSAGES[code]
        self.details = details
        self.headers = headers or {}


def envelope(code: str, details: Any = None) -> dict[str, Any]:
    status, message = MESSAGES[code]
    body: dict[str, Any] = {"success": False, "error": message, "code": code}
    if details is not None:
        body["details"] = details
    return body


async def api_error_handler(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(envelope(exc.code, exc.details), status_code=exc.status, headers=exc.headers)


async def validation_error_handler(_request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [{"parameter": ".".join(str(p) for p in err.get("loc", ())[1:]) or None, "message": err.get("msg")}
               for err in exc.errors()]
    return JSONResponse(envelope("INVALID_PARAMETERS", details), status_code=400)


async def http_error_handler(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 403: "FORBIDDEN"}.get(
        exc.status_code, "INVALID_PARAMETERS" if exc.status_code < 500 else "INTERNAL_ERROR")
    return JSONResponse(envelope(code), status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def unexpected_error_handler(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse(envelope("INTERNAL_ERROR"), status_code=500)
