"""Fixtures of the inference tests: a `repolm serve` app on the tiny model, one per test module."""

import pytest
from tests.infer.server_harness import start_server


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    """A real uvicorn server on a free loopback port with the default settings (a module may override it)."""
    running = start_server(tiny_model_dir)
    yield running
    running.stop()
