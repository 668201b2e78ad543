"""The checks every request passes before a handler sees it: the API key, then the body (size, UTF-8, JSON, depth).

`RequestGuard` is a plain ASGI middleware, so it answers before FastAPI reads anything:
- API key (when the server has one): `Authorization: Bearer KEY`, compared with `hmac.compare_digest` (constant
  time); 401 otherwise. The page, its files, /health and /openapi.json stay open: the page asks for the key and
  sends it with its requests, and health checks and the API description reveal nothing.
- Body of POST/PUT/PATCH: more than `max_body_bytes` by Content-Length (the body is not read) or by the bytes
  actually received (chunked uploads, lying Content-Length) -> 413; not UTF-8, not JSON, empty, nested deeper than
  `max_json_depth`, or holding a lone UTF-16 surrogate escape (`"\\ud800"` parses into a string that is not text)
  -> 400. The checked body is handed on with `Content-Type: application/json`, whatever the client sent (`curl -d`
  sends a form type; llama.cpp's server reads JSON regardless too).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from repolm.errors import one_line
from repolm.infer.server.errors import error_body

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/", "/health", "/openapi.json"})
"""Paths that need no API key (besides the page's files under /page/)."""
PAGE_PREFIX = "/page/"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def inspect_json(value: Any) -> tuple[int, bool]:
    """(nesting depth, whether a string or key holds a lone UTF-16 surrogate) of a parsed JSON value."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:  # "\ud800" escapes parse into strings that are not text
                return deepest, True
            continue
        if isinstance(item, dict):
            children: Iterable[Any] = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest, False


class RequestGuard:
    """ASGI middleware: API key and request-body checks (see the module doc)."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int, max_json_depth: int) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key is not None and not self._is_open(scope["path"]) and not self._authorized(scope):
            await _answer(
                send,
                401,
                "missing or wrong API key: send the header `Authorization: Bearer KEY`",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        if scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        body = await self._read_body(scope, receive, send)
        if body is None:
            return
        headers = [
            (name, value) for name, value in scope["headers"] if name not in (b"content-type", b"content-length")
        ]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for the client's disconnect

        await self.app({**scope, "headers": headers}, replay, send)

    @staticmethod
    def _is_open(path: str) -> bool:
        return path in OPEN_PATHS or path.startswith(PAGE_PREFIX)

    def _authorized(self, scope: Scope) -> bool:
        assert self.api_key is not None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key):
                    return True
        return False

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The checked body, or None after answering an error (or when the client left)."""
        limit = self.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await _answer(send, 400, "the Content-Length header is not a number")
                    return None
                if int(value) > limit:
                    await _answer(send, 413, _too_large(limit), code="request_too_large")
                    return None
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _answer(send, 413, _too_large(limit), code="request_too_large")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = self._body_problem(body)
        if problem is not None:
            await _answer(send, 400, problem, code="invalid_body")
            return None
        return body

    def _body_problem(self, body: bytes) -> str | None:
        """Why the body is not a usable JSON document; None when it is."""
        if not body.strip():
            return "the request body is empty: send a JSON object"
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"the request body is not valid UTF-8 (byte {error.start}: {one_line(error.reason)})"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            return f"the request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        except RecursionError:
            return f"the request body nests arrays or objects deeper than {self.max_json_depth} levels"
        except ValueError as error:  # e.g. an integer with more digits than Python converts
            return f"the request body is not usable JSON: {one_line(error, 200)}"
        depth, lone_surrogate = inspect_json(value)
        if depth > self.max_json_depth:
            return f"the request body nests arrays or objects deeper than {self.max_json_depth} levels"
        if lone_surrogate:
            return "the request body has a string with a lone UTF-16 surrogate escape (\\ud800-\\udfff): not text"
        return None


def _too_large(limit: int) -> str:
    return f"the request body is larger than the server's limit of {limit} bytes"


async def _answer(
    send: Send,
    status: int,
    message: str,
    code: str | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send an error object as the whole response."""
    body = json.dumps(error_body(status, message, None, code)).encode()
    response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 413:
        response_headers.append((b"connection", b"close"))  # the unread rest of the body must not be parsed
    await send({"type": "http.response.start", "status": status, "headers": response_headers + (headers or [])})
    await send({"type": "http.response.body", "body": body, "more_body": False})
