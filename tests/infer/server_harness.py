"""A real `repolm serve` app for the server tests: uvicorn on a free loopback port, in a thread of the test process.

The app is the one `repolm serve` runs (`create_app` over `load_state`), on the tiny model folder of
tests/conftest.py, so requests go through real sockets, the real batcher and the real tokenizer; the test reaches
the batcher (`server.state.batcher.stats()`) to see rows being freed.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import uvicorn

from repolm.infer.batching import BatcherConfig
from repolm.infer.server import ServerConfig, ServerState, create_app, listening_socket, load_state


class ServerThread:
    """uvicorn serving `create_app(state)` on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.sock = listening_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(state), log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)


def start_server(
    model_dir: Path,
    config: ServerConfig | None = None,
    batcher_config: BatcherConfig | None = None,
    repo: Path | None = None,
) -> ServerThread:
    """Load the model folder on the CPU and serve it (context window 512 tokens unless `batcher_config` says)."""
    state = load_state(
        model_dir,
        config=config or ServerConfig(model_name="tiny"),
        batcher_config=batcher_config or BatcherConfig(max_batch_size=4, max_seq_len=512),
        repo=repo,
        device="cpu",
    )
    return ServerThread(state).start()


def wait_until(condition, timeout: float = 10.0, interval: float = 0.005) -> bool:
    """Poll `condition()` until it is true (True) or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
