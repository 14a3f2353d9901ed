"""The API's errors and the JSON envelope they travel in.

Every failure the API answers is an :class:`ApiError` with a stable ``code``
(see /tmp/brief/json_shapes.md); messages name what is wrong and never hold
a stack trace or a token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    status = 500
    code = "internal"

    def __init__(
        self,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class InvalidArgument(ApiError):
    status, code = 400, "invalid_argument"


class Unauthenticated(ApiError):
    status, code = 401, "unauthenticated"


class Forbidden(ApiError):
    status, code = 403, "permission_denied"


class NotFoundError(ApiError):
    status, code = 404, "not_found"


class Conflicting(ApiError):
    status, code = 409, "conflict"


class RateLimited(ApiError):
    status, code = 429, "rate_limited"


class Unavailable(ApiError):
    status, code = 503, "unavailable"


def success(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": True, "data": data}, status_code=status, headers=headers)


def failure(error: ApiError) -> JSONResponse:
    body = {"success": False, "error": {"code": error.code, "message": error.message}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def internal_error() -> JSONResponse:
    return failure(ApiError("internal error; the server logged the details"))
