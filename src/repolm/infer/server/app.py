"""The FastAPI application (`create_app`), and how `repolm serve` loads a model and runs it under uvicorn.

Routes: the OpenAI API (`openai_api`), the llama.cpp API (`llama_api`), `/health`, `/metrics` (Prometheus), the
page at `/` with its files under `/page/`, and `/openapi.json` (the API description; no docs page, which would need a
CDN). Middlewares, outermost first: `MetricsMiddleware` (counts and times every answer, errors included), then
`RequestGuard` (API key, body size, UTF-8, JSON, depth). The app's lifespan starts the batcher and on shutdown
drains it. The repository (`--repo`) is indexed by `load_state`, before the server listens, and re-indexed
(changed files only) before a retrieval when the last refresh is older than `refresh_interval_seconds`.

Shutdown on SIGTERM (or Ctrl-C): uvicorn stops accepting connections and lets running requests finish for up to
`ServerConfig.shutdown_timeout_seconds` (then cancels them, which frees their batch rows), then the lifespan drains
and stops the batcher; `run_server` returns normally, so the process exits with 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from repolm.errors import RepolmError
from repolm.infer.server import llama_api, openai_api
from repolm.infer.server.errors import ApiError, install_error_handlers
from repolm.infer.server.guard import RequestGuard
from repolm.infer.server.metrics import MetricsMiddleware, ServerMetrics
from repolm.infer.server.state import ServerConfig, ServerState

logger = logging.getLogger(__name__)

PAGE_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
"""The page's files served under /page/ (index.html is served at /)."""


def page_file(name: str) -> bytes:
    """A file of the page, from the installed package."""
    return resources.files("repolm.infer.server").joinpath("page", name).read_bytes()


def create_app(state: ServerState) -> FastAPI:
    """The server's ASGI application over a loaded model (see the module doc)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.batcher.start()
        yield
        await asyncio.to_thread(state.batcher.shutdown, True, state.config.shutdown_timeout_seconds)

    app = FastAPI(
        title="repolm",
        summary="A repository-aware code completion server: OpenAI and llama.cpp APIs over one DeepSeek-Coder-style "
        "model, with continuous batching and cross-file retrieval.",
        version="1",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.repolm = state
    install_error_handlers(app)
    routers = [openai_api.make_router(state), llama_api.make_router(state)]
    for router in routers:
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(page_file("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/page/{name}", include_in_schema=False)
    async def page_asset(name: str) -> Response:
        if name not in PAGE_FILES:
            raise ApiError(404, f"no such page file: {name}")
        return Response(page_file(name), media_type=PAGE_FILES[name])

    @app.get("/health", summary="Liveness (open without the API key)")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    endpoints = {getattr(route, "path", "") for router in [app, *routers] for route in router.routes}
    endpoints = (endpoints - {"", "/page/{name}"}) | {f"/page/{name}" for name in PAGE_FILES}
    app.add_middleware(
        RequestGuard,
        api_key=state.config.api_key,
        max_body_bytes=state.config.max_body_bytes,
        max_json_depth=state.config.max_json_depth,
    )
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, endpoints=lambda: endpoints)
    return app


def load_state(
    model_dir: str | os.PathLike,
    *,
    config: ServerConfig,
    batcher_config: Any = None,
    repo: str | os.PathLike | None = None,
    tokenizer_dir: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "auto",
    options: tuple[str, str] = ("device", "dtype"),
) -> ServerState:
    """Load a model folder into a `ServerState`: the batcher (not started), the prompt builders, the retriever over
    `repo` (indexed now) and the metrics. RepolmError for a bad folder, device or dtype."""
    from repolm.infer.batching import ContinuousBatcher
    from repolm.infer.prompt_builder import PromptBuilder
    from repolm.infer.text import load_model_and_tokenizer

    retriever = None
    if repo is not None:
        from repolm.infer.retrieval import RepositoryRetriever, RetrievalConfig

        if not Path(repo).is_dir():
            raise RepolmError(f"--repo {repo}: no such folder")
        retriever = RepositoryRetriever(repo, RetrievalConfig())
    model, tokenizer = load_model_and_tokenizer(model_dir, device, dtype, tokenizer_dir, options=options)
    batcher = ContinuousBatcher(model, tokenizer, batcher_config)
    return ServerState(
        config=config,
        batcher=batcher,
        tokenizer=tokenizer,
        prompt_builder=PromptBuilder(tokenizer, literal_special_tokens=True),
        verbatim_prompt_builder=PromptBuilder(tokenizer),
        metrics=ServerMetrics(batcher.stats),
        retriever=retriever,
    )


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening (port 0: a free port); RepolmError naming the address when it
    cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise RepolmError(f"--host {host}: cannot resolve it ({error.strerror})") from None
    family, kind, protocol, _, address = infos[0]
    sock = socket.socket(family, kind, protocol)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise RepolmError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    sock.set_inheritable(True)
    return sock


def run_server(state: ServerState, sock: socket.socket, log_level: str = "warning", access_log: bool = False) -> None:
    """Serve the app on a listening socket until SIGTERM or SIGINT, then shut down gracefully (module doc)."""
    import uvicorn

    config = uvicorn.Config(
        create_app(state),
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=int(state.config.shutdown_timeout_seconds),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal it stopped on once it is done; a handler that only records it keeps the exit
    # status 0 after a clean SIGTERM shutdown (the default action would end the process with -15)
    previous = signal.signal(signal.SIGTERM, lambda _signal, _frame: logger.info("stopped by SIGTERM"))
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise RepolmError("the server did not start (see the log above)")
