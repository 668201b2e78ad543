"""Prometheus metrics of one server (`GET /metrics`, text exposition format).

Each server has its own `CollectorRegistry` (two servers in one process, as in tests, do not share counters):
- `repolm_requests_total{endpoint, status}`: answered requests, counted when the response starts (a stream that the
  client leaves still counts with its 200);
- `repolm_request_duration_seconds{endpoint}`: from the request's arrival to its response's last byte (a stream's
  end);
- `repolm_time_to_first_token_seconds{endpoint}`: from arrival to the first generated token;
- `repolm_prompt_tokens_total`, `repolm_generation_tokens_total`: tokens of the requests served;
- read from the batcher at each scrape: `repolm_batch_running_requests`, `repolm_batch_waiting_requests` (gauges),
  `repolm_batcher_steps_total`, `repolm_batcher_step_seconds_total`, `repolm_batcher_cancelled_total`.
`endpoint` is the route's path, or "other" for unknown paths (so that random paths do not grow the label set).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds; the same buckets for time to first token and request duration."""
STARTED_AT = "repolm_started_at"
"""Key in the ASGI scope's state: `time.perf_counter()` when the request arrived."""


class BatcherCollector(Collector):
    """Reads `stats()` of the batcher at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, float]]) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self.stats()
        yield GaugeMetricFamily("repolm_batch_running_requests", "Requests decoding now", stats.get("running", 0.0))
        yield GaugeMetricFamily(
            "repolm_batch_waiting_requests", "Requests waiting for a batch row", stats.get("waiting", 0.0)
        )
        yield CounterMetricFamily("repolm_batcher_steps", "Decode steps run", stats.get("steps_total", 0.0))
        yield CounterMetricFamily(
            "repolm_batcher_step_seconds", "Seconds spent in decode steps", stats.get("step_seconds_total", 0.0)
        )
        yield CounterMetricFamily(
            "repolm_batcher_cancelled", "Requests cancelled (client gone, shutdown)", stats.get("cancelled_total", 0.0)
        )


class ServerMetrics:
    """The server's metrics (see the module doc)."""

    def __init__(self, batcher_stats: Callable[[], dict[str, float]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("repolm_requests", "Requests answered", ["endpoint", "status"], registry=self.registry)
        self.request_duration = Histogram(
            "repolm_request_duration_seconds",
            "Seconds from a request's arrival to its response's end",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "repolm_time_to_first_token_seconds",
            "Seconds from a request's arrival to its first generated token",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter("repolm_prompt_tokens", "Prompt tokens of served requests", registry=self.registry)
        self.generation_tokens = Counter(
            "repolm_generation_tokens", "Tokens generated for served requests", registry=self.registry
        )
        if batcher_stats is not None:
            self.registry.register(BatcherCollector(batcher_stats))

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)

    def count_tokens(self, prompt_tokens: int, generated_tokens: int) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.generation_tokens.inc(generated_tokens)


class MetricsMiddleware:
    """ASGI middleware: counts requests by endpoint and status, times them, and stamps their arrival time in the
    scope's state (`STARTED_AT`) for the time-to-first-token histogram."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, endpoints: Callable[[], set[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        scope.setdefault("state", {})[STARTED_AT] = started
        path = scope["path"]
        endpoint = path if path in self.endpoints() else "other"
        status = 500
        counted = False

        async def counting_send(message: Message) -> None:
            nonlocal status, counted
            if message["type"] == "http.response.start":
                status = message["status"]
                self.metrics.requests.labels(endpoint, str(status)).inc()
                counted = True
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            if not counted:  # the app failed before answering (or the client left first)
                self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)


def request_started_at(scope: Scope) -> float:
    """When the request arrived (`MetricsMiddleware`'s stamp; now when absent)."""
    return scope.get("state", {}).get(STARTED_AT, time.perf_counter())
