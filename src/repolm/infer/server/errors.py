"""Errors as OpenAI's clients expect them: `{"error": {"message", "type", "param", "code"}}` with a 4xx or 5xx status.

Every error the server answers has this shape, on the llama.cpp endpoints too (llama.cpp's server answers the same
object). `ApiError` is raised by handlers; the exception handlers installed by `install_error_handlers` turn it,
request validation errors (400, naming the field), unknown paths and methods (404, 405) and anything unexpected
(500, logged with its traceback; the client gets one line) into that object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

ERROR_TYPES = {
    401: "authentication_error",
    404: "not_found_error",
    413: "invalid_request_error",
    500: "server_error",
    503: "server_overloaded",
}
"""The error `type` by status; other 4xx are "invalid_request_error" (OpenAI's type for bad requests)."""


class ApiError(Exception):
    """An error answered to the client: status, one-line message, the field at fault (`param`), a short `code`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """The error object of OpenAI's API."""
    error_type = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error_body(error.status, error.message, error.param, error.code), error.status, error.headers)


def field_path(location: Sequence[Any]) -> str:
    """("body", "messages", 0, "content") -> "messages[0].content"."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """One line naming the fields at fault (at most 3) and the first field, from pydantic's error list."""
    lines = []
    first_param = None
    for error in errors[:3]:
        param = field_path(error.get("loc", ()))
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "this field is required"
        elif error.get("type") == "model_attributes_type" or error.get("type") == "dict_type":
            message = "must be a JSON object"
        lines.append(f"{param}: {message}" if param else message)
        first_param = first_param or param or None
    if len(errors) > 3:
        lines.append(f"and {len(errors) - 3} more")
    return "; ".join(lines), first_param


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with OpenAI's error object."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        message, param = validation_message(error.errors())
        return error_response(ApiError(400, message, param=param, code="invalid_value"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(error.detail)
        return error_response(ApiError(error.status_code, message, headers=getattr(error, "headers", None)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("%s %s failed", request.method, request.url.path)
        return error_response(ApiError(500, f"internal error ({type(error).__name__}); see the server's log"))
