"""The server under hostile and unlucky conditions: schema fuzzing of its OpenAPI spec (no 5xx), hostile bodies (4xx),
a full queue (503 + Retry-After), clients that leave mid-generation (their batch rows are freed within a few
steps), and SIGTERM to a `repolm serve` process under load (clean exit 0, running requests finished)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from server_harness import start_server, wait_until

from repolm.infer.batching import BatcherConfig
from repolm.infer.server import ServerConfig

FUZZ_EXAMPLES = 12
"""Examples per operation and generation mode (positive and negative): ~300 requests, a few seconds."""


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    # a small body limit, so that "huge" bodies are cheap to send
    config = ServerConfig(model_name="tiny", max_body_bytes=64 * 1024, max_tokens_limit=64)
    running = start_server(tiny_model_dir, config, BatcherConfig(max_batch_size=4, max_seq_len=512))
    yield running
    running.stop()


def test_schema_fuzzing_finds_no_server_error(server):
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {operation.path for operation in operations}
    assert {"/v1/completions", "/v1/chat/completions", "/infill", "/tokenize", "/detokenize"} <= paths
    failures = []
    seen_statuses: dict[int, int] = {}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for operation in operations:
            # a negative example needs something to break: GET operations without parameters have only positive ones
            modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.method == "post" else [])
            for mode in modes:

                @settings(
                    max_examples=FUZZ_EXAMPLES,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )
                @given(case=operation.as_strategy(generation_mode=mode))
                def check(case) -> None:
                    kwargs = case.as_transport_kwargs(base_url=server.url)
                    response = http.request(
                        kwargs["method"],
                        kwargs["url"],
                        headers={k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "host"},
                        params=kwargs.get("params"),
                        json=kwargs.get("json"),
                        content=kwargs.get("data") if isinstance(kwargs.get("data"), str | bytes) else None,
                    )
                    seen_statuses[response.status_code] = seen_statuses.get(response.status_code, 0) + 1
                    if response.status_code >= 500:
                        failures.append((case.operation.path, kwargs.get("json"), response.text[:300]))
                    elif response.status_code >= 400:
                        error = response.json()["error"]
                        assert error["message"] and error["type"], response.text

                check()
    assert not failures, failures[:5]
    assert seen_statuses.get(200, 0) > 20 and seen_statuses.get(400, 0) > 20, seen_statuses
    assert httpx.get(server.url + "/health").status_code == 200


def _raw_request(server, body: bytes, headers: dict[str, str] | None = None, path: str = "/v1/completions"):
    return httpx.post(server.url + path, content=body, headers=headers or {}, timeout=30)


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("huge", b'{"prompt": "' + b"a" * 100_000 + b'"}', 413),
        ("deeply nested", b"[" * 20_000 + b"]" * 20_000, 400),
        ("nested objects", b'{"a":' * 40 + b"1" + b"}" * 40, 400),
        ("invalid UTF-8", b'{"prompt": "\xff\xfe\xfd"}', 400),
        ("not JSON", b"prompt=hello", 400),
        ("empty", b"", 400),
        ("a JSON array", b"[1, 2, 3]", 400),
        ("wrong type", b'{"prompt": "x", "max_tokens": "16"}', 400),
        ("boolean for int", b'{"prompt": "x", "max_tokens": true}', 400),
        ("negative limit", b'{"prompt": "x", "max_tokens": -5}', 400),
        ("enormous limit", b'{"prompt": "x", "max_tokens": 100000000000000000000000000000}', 400),
        ("too many digits", b'{"prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}", 400),
        ("NaN", b'{"prompt": "x", "temperature": NaN}', 400),
        ("Infinity", b'{"prompt": "x", "top_p": Infinity}', 400),
        ("enormous n", b'{"prompt": "x", "n": 1000000}', 400),
        ("token id outside the vocabulary", b'{"prompt": [1, 2, 2147483647]}', 400),
        ("lone surrogate", b'{"prompt": "\\ud800"}', 400),
    ],
)
def test_hostile_bodies_get_4xx(server, name, body, status):
    answer = _raw_request(server, body, {"Content-Type": "application/json"})
    assert answer.status_code == status, (name, answer.text[:300])
    assert answer.json()["error"]["message"]


def test_content_length_is_checked_before_reading(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        head = (
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10**9}\r\n\r\n"
        )
        connection.sendall(head.encode())  # no body follows: the answer must not wait for it
        answer = connection.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_chunked_bodies_are_counted_as_they_arrive(server):
    def chunks():
        for _ in range(100):
            yield b"a" * 1024  # 100 KiB without a Content-Length, over the 64 KiB limit

    answer = httpx.post(server.url + "/v1/completions", content=chunks(), timeout=30)
    assert answer.status_code == 413


def test_the_server_serves_after_the_abuse(server):
    answer = httpx.post(server.url + "/v1/completions", json={"prompt": "x", "max_tokens": 3}, timeout=30)
    assert answer.status_code == 200


def test_a_full_queue_answers_503_with_retry_after(tiny_model_dir):
    running = start_server(
        tiny_model_dir,
        ServerConfig(model_name="tiny", retry_after_seconds=2),
        BatcherConfig(max_batch_size=1, max_waiting=1, max_seq_len=512),
    )
    try:
        body = {"prompt": "x", "max_tokens": 480, "temperature": 0}
        with httpx.Client(base_url=running.url, timeout=60) as first, httpx.Client(base_url=running.url) as second:
            with first.stream("POST", "/v1/completions", json={**body, "stream": True}) as streaming:
                assert wait_until(lambda: running.state.batcher.stats()["running"] == 1)
                with second.stream("POST", "/v1/completions", json={**body, "stream": True}) as waiting:
                    assert wait_until(lambda: running.state.batcher.stats()["waiting"] == 1)
                    refused = httpx.post(running.url + "/v1/completions", json=body, timeout=30)
                    assert refused.status_code == 503
                    assert refused.headers["retry-after"] == "2"
                    assert refused.json()["error"]["type"] == "server_overloaded"
                    del streaming, waiting
        assert wait_until(lambda: running.state.batcher.stats()["running"] == 0)
    finally:
        running.stop()


@pytest.fixture(scope="module")
def roomy_server(tiny_model_dir):
    """A server that generates up to 511 tokens per request."""
    running = start_server(tiny_model_dir)
    yield running
    running.stop()


def _steps(server) -> float:
    return server.state.batcher.stats()["steps_total"]


def test_a_client_leaving_a_stream_frees_its_row(roomy_server):
    server = roomy_server
    batcher = server.state.batcher
    cancelled_before = batcher.stats()["cancelled_total"]
    body = {"input_prefix": "def f(x):", "n_predict": 480, "temperature": 0, "stream": True}
    with httpx.Client(base_url=server.url, timeout=60) as http:
        with http.stream("POST", "/infill", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: ") and json.loads(line[6:])["tokens_predicted"] >= 3:
                    break
            assert batcher.stats()["running"] == 1
            steps_at_close = _steps(server)
    # the response is closed: the connection is gone
    assert wait_until(lambda: batcher.stats()["running"] == 0, timeout=5)
    assert _steps(server) - steps_at_close <= 20, "the row ran on long after the client left"
    assert batcher.stats()["cancelled_total"] == cancelled_before + 1


def test_a_client_leaving_a_plain_request_frees_its_row(roomy_server):
    server = roomy_server
    batcher = server.state.batcher
    cancelled_before = batcher.stats()["cancelled_total"]
    body = json.dumps({"input_prefix": "def f(x):", "n_predict": 480, "temperature": 0}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(
            b"POST /infill HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert wait_until(lambda: batcher.stats()["running"] == 1)
        assert wait_until(lambda: batcher.stats()["generation_tokens_total"] > 0)
        steps_at_close = _steps(server)
    assert wait_until(lambda: batcher.stats()["running"] == 0, timeout=5)
    assert _steps(server) - steps_at_close <= 20, "the row ran on long after the client left"
    assert batcher.stats()["cancelled_total"] == cancelled_before + 1


def test_sigterm_under_load_finishes_requests_and_exits_0(tiny_model_dir):
    command = [sys.executable, "-m", "repolm", "serve", "--model", str(tiny_model_dir), "--port", "0"]
    command += ["--max-seq-len", "512", "--max-batch-size", "4"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
    try:
        banner = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
        assert match, banner + process.stderr.read()
        url = f"http://127.0.0.1:{match.group(1)}"
        assert wait_until(lambda: _healthy(url), timeout=30)
        results: list[tuple[int, str]] = []

        def stream_one(index: int) -> None:
            body = {"prompt": f"def f{index}(x):", "max_tokens": 480, "temperature": 0, "stream": True}
            try:
                with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
                    text = "".join(response.iter_text())
                results.append((response.status_code, text))
            except httpx.HTTPError as error:
                results.append((0, repr(error)))

        threads = [threading.Thread(target=stream_one, args=(index,)) for index in range(6)]
        for thread in threads:
            thread.start()
        # all six streams have started (4 decoding, 2 waiting for a row) before the signal
        assert wait_until(lambda: _metric(url, "repolm_requests_total", "/v1/completions") == 6, timeout=30)
        running = _metric(url, "repolm_batch_running_requests")
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        code = process.wait(60)
        stderr = process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert running > 0, "the server was idle when the signal came"
    assert code == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert len(results) == 6
    for status, text in results:
        assert status == 200
        assert text.rstrip().endswith("data: [DONE]"), text[-200:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/health", timeout=5)


def _metric(url: str, name: str, endpoint: str | None = None) -> float:
    """A value of the server's /metrics (a request count of `endpoint` with status 200, or a gauge)."""
    labels = f'\\{{endpoint="{endpoint}",status="200"\\}}' if endpoint else ""
    metrics = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(rf"^{name}{labels} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_temperature_near_zero_decodes_greedily(server):
    """Found by the schema fuzzing: logits / 1e-300 overflow float32 to inf, and sampling from NaN failed (500)."""
    body = {"input_prefix": "def f(x):", "n_predict": 8}
    tiny = httpx.post(server.url + "/infill", json={**body, "temperature": 1e-300}, timeout=30)
    greedy = httpx.post(server.url + "/infill", json={**body, "temperature": 0}, timeout=30)
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["content"] == greedy.json()["content"]
