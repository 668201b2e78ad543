"""A real OpenAI-compatible HTTP server for the generator tests: the standard library's `ThreadingHTTPServer` on
127.0.0.1 (a free port), serving from a thread.

What it answers is a `Responder`, a function of the request and of how many requests the server has received, so
the same class serves the model-backed server (`model_responder`: /v1/completions and /v1/chat/completions answered
by a real `LocalGenerator`) and the misbehaving ones (500 then 200, always 500, 400, garbage, slow).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from repolm.eval.generators import LocalGenerator
from repolm.eval.records import DecodingSettings, GenerationRequest


@dataclass
class ReceivedRequest:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: Any
    """The parsed JSON body, or None when it was not JSON."""


@dataclass
class Reply:
    """What the server sends back: status, body (bytes as they are, anything else as JSON), headers, a delay."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0


Responder = Callable[[ReceivedRequest, int], Reply]
"""(the request, its 1-based number among all requests the server received) -> the reply."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a slow handler must not hold up the test's teardown


class OpenAIServer:
    """A running HTTP server; use as a context manager. `url` is its base URL, `received` what it was sent."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.received: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                request = ReceivedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with server._lock:
                    server.received.append(request)
                    number = len(server.received)
                reply = server.responder(request, number)
                time.sleep(reply.delay_seconds)
                payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def completion_reply(text: Any) -> Reply:
    """A well-formed /v1/completions answer with `text`."""
    return Reply(200, {"id": "cmpl-test", "object": "text_completion", "choices": [{"index": 0, "text": text}]})


def model_responder(generator: LocalGenerator) -> Responder:
    """Answers /v1/completions and /v1/chat/completions with the real model behind `generator`, as vLLM would:
    the prompt string is encoded as it is (special-token strings become their ids, BOS as the tokenizer adds it),
    the messages go through the chat template, and more than 4 stop strings are refused."""
    lock = threading.Lock()  # one generation at a time on the shared model

    def respond(request: ReceivedRequest, number: int) -> Reply:
        body = request.body
        if not isinstance(body, dict):
            return Reply(400, {"error": {"message": "the body is not a JSON object"}})
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        if len(stop) > 4:
            return Reply(400, {"error": {"message": "stop: at most 4 strings"}})
        settings = DecodingSettings(
            temperature=body.get("temperature", 1.0), top_p=body.get("top_p", 1.0), seed=body.get("seed", 0)
        )
        max_new_tokens = body.get("max_tokens", 16)
        if request.path == "/v1/completions":
            generation_request = GenerationRequest(
                "completion", prompt=body["prompt"], stop=stop, max_new_tokens=max_new_tokens
            )
        elif request.path == "/v1/chat/completions":
            generation_request = GenerationRequest(
                "chat", messages=tuple(body["messages"]), stop=stop, max_new_tokens=max_new_tokens
            )
        else:
            return Reply(404, {"error": {"message": f"no route {request.path}"}})
        with lock:
            [generation] = generator.generate([generation_request], settings)
        if generation.error is not None:
            return Reply(400, {"error": {"message": generation.error}})
        if request.path == "/v1/completions":
            return completion_reply(generation.text)
        message = {"role": "assistant", "content": generation.text}
        return Reply(
            200, {"id": "chat-test", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
        )

    return respond
