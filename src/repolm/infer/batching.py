"""Continuous batching: many requests decoded together, each joining and leaving the batch between decode steps.

`Engine.stream` runs a fixed batch: every prompt starts together and the batch lives until its last row ends. A
server instead gets requests one at a time, at any moment, with their own lengths, sampling settings, stops and
seeds. `ContinuousBatcher` serves them from one background thread:

1. `submit` queues a request (at most `max_waiting` wait; more raise `QueueFull`, which a server answers with 503)
   and returns a `RequestHandle`, whose events carry the request's text as it becomes final.
2. Between decode steps the thread admits waiting requests into free rows of one preallocated KV cache
   (`max_batch_size` rows of `max_seq_len` slots). A request's prompt is prefilled alone, straight into its row
   (a `KVCache.over` view of it), so its tokens sit at slots 0..P-1 with positions 0..P-1: no padding.
3. One decode step feeds every running row its last token at its own position: row b writes slot `length[b]`
   (`KVCache.row_slots`) and attends to slots 0..length[b] under a mask. The step attends over the longest row's
   slots only. Rows stay packed at the top of the cache: when a request ends, the last row's cache moves into its
   row, so a step never computes for a hole.
4. Each row samples with its own settings (rows with equal settings are sampled together) from its own generator
   seeded with the request's seed, so a sampled request's text does not depend on what else runs; stop ids, stop
   strings (`IncrementalDecoder`), `max_new_tokens` and `cancel()` end a row, which frees it before the next step.

With `admission="static"` new requests start only when the batch is empty, and a new batch waits up to
`static_batch_wait` seconds to fill (what a server without continuous batching does; `benchmarks/bench_serve.py`
compares the two).

Compiled decoding (`compile=True`, through `Engine`): on CPUs the step runs with frozen weights in inductor's C++
GEMM kernels (one graph per batch-size bucket, 1, 2, 4, ... up to `max_batch_size`, with the attended length
dynamic); on CUDA each step is replayed as a CUDA graph over the whole cache (every row and slot: one graph, whose
addresses never change; rows beyond the running ones decode padding that nothing reads).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch

from repolm.errors import RepolmError, one_line
from repolm.infer.engine import FIXED_SHAPE_BUCKET, Engine, check_prompt_ids
from repolm.infer.sampling import SamplingParams, sample_next_token
from repolm.infer.text import IncrementalDecoder, end_of_generation_ids
from repolm.model.llama import KVCache, Transformer
from repolm.tokenizer import CodeTokenizer

logger = logging.getLogger(__name__)

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass
class BatcherConfig:
    """How a `ContinuousBatcher` schedules requests."""

    max_batch_size: int = 16
    """Rows decoded together (the KV cache holds this many requests)."""
    max_waiting: int = 64
    """Requests submitted but not yet running; one more raises `QueueFull`."""
    max_seq_len: int | None = None
    """Prompt plus new tokens of one request, at most; the cache's slots per row. Default: the model's
    `max_position_embeddings`."""
    compile: bool = False
    """Decode steps through `torch.compile` (module doc)."""
    admission: Literal["continuous", "static"] = "continuous"
    """"continuous": waiting requests join between steps; "static": only when the batch is empty."""
    static_batch_wait: float = 0.05
    """With static admission: seconds a new batch waits for `max_batch_size` requests before it starts."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise RepolmError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_waiting < 0:
            raise RepolmError(f"max_waiting must be >= 0, got {self.max_waiting}")
        if self.max_seq_len is not None and self.max_seq_len < 2:
            raise RepolmError(f"max_seq_len must be >= 2, got {self.max_seq_len}")
        if self.admission not in ("continuous", "static"):
            raise RepolmError(f"admission must be 'continuous' or 'static', got {self.admission!r}")


@dataclass
class BatchEvent:
    """What one decode step did for one request."""

    text: str
    """Newly final text ("" while a multi-byte character or a possible stop string is incomplete)."""
    token_ids: list[int]
    """The new token ids (a stop id included)."""
    finished: bool = False
    finish_reason: FinishReason | None = None
    """On the last event: "stop" (a stop id or string), "length" (max_new_tokens), "cancelled" or "error"."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Tokens generated so far."""
    error: str | None = None
    """One line, when `finish_reason` is "error"."""


class QueueFull(RepolmError):
    """`max_waiting` requests are already waiting: try again later."""


class RequestHandle:
    """A submitted request: its events, and a way to cancel it. Events arrive in a thread-safe queue, or in an
    asyncio queue of the loop given to `submit`."""

    def __init__(self, request_id: int, loop: asyncio.AbstractEventLoop | None) -> None:
        self.id = request_id
        self._loop = loop
        self._events: queue.SimpleQueue[BatchEvent] | asyncio.Queue[BatchEvent]
        self._events = asyncio.Queue() if loop is not None else queue.SimpleQueue()
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop generating for this request (thread-safe); its row is freed before the next decode step, and a last
        event with finish_reason "cancelled" follows unless it had already finished."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def _put(self, event: BatchEvent) -> None:
        """Deliver an event (called by the batcher's thread); a closed event loop cancels the request."""
        if self._loop is None:
            self._events.put(event)
            return
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening
            self.cancel()

    def events(self, timeout: float | None = None) -> Iterator[BatchEvent]:
        """The request's events until the last one (blocking; for handles submitted without a loop)."""
        if self._loop is not None:
            raise RuntimeError("this request was submitted with an event loop: iterate async_events()")
        while True:
            event = self._events.get(timeout=timeout)
            yield event
            if event.finished:
                return

    async def async_events(self) -> AsyncIterator[BatchEvent]:
        """The request's events until the last one (for handles submitted with `loop=`)."""
        if self._loop is None:
            raise RuntimeError("this request was submitted without an event loop: iterate events()")
        while True:
            event = await self._events.get()
            yield event
            if event.finished:
                return


@dataclass
class _Request:
    """A request's state in the batcher (waiting, then running in a row)."""

    handle: RequestHandle
    prompt_ids: list[int]
    params: SamplingParams
    decoder: IncrementalDecoder
    generator: torch.Generator | None
    length: int = 0
    """Tokens in this request's cache row."""
    next_token: int = 0
    """The token the next decode step feeds."""
    generated: int = 0
    submitted_at: float = field(default_factory=time.monotonic)

    @property
    def sampling_key(self) -> tuple:
        """Rows with the same key are sampled together."""
        p = self.params
        return (p.temperature, p.top_k, p.top_p, p.repetition_penalty)


class ContinuousBatcher:
    """Serves generation requests with continuous batching from a background thread (see the module doc)."""

    def __init__(self, model: Transformer, tokenizer: CodeTokenizer, config: BatcherConfig | None = None) -> None:
        self.config = config or BatcherConfig()
        self.engine = Engine(model, compile=self.config.compile)
        self.model = self.engine.model
        self.tokenizer = tokenizer
        self.device = self.engine.device
        self.max_seq_len = self.config.max_seq_len or model.config.max_position_embeddings
        self.default_stop_ids = end_of_generation_ids(tokenizer)
        self._condition = threading.Condition()
        self._waiting: deque[_Request] = deque()
        self._rows: list[_Request] = []  # running requests; request i owns cache row i
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._drain = True
        self._cache: KVCache | None = None
        self._seen: torch.Tensor | None = None  # (max_batch_size, V) bool: ids seen, for repetition penalties
        self._counters = dict.fromkeys(
            (
                "requests_total",
                "prompt_tokens_total",
                "generation_tokens_total",
                "steps_total",
                "step_seconds_total",
                "prefill_seconds_total",
                "cancelled_total",
                "errors_total",
            ),
            0.0,
        )

    # -- public API -------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread (idempotent)."""
        with self._condition:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="repolm-batcher", daemon=True)
            self._thread.start()

    def shutdown(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests and end the thread: `drain` finishes the running and waiting requests first;
        otherwise they end with finish_reason "cancelled"."""
        with self._condition:
            self._stopping, self._drain = True, drain
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        stop_strings: Sequence[str] = (),
        seed: int | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> RequestHandle:
        """Queue a request; its events come through the returned handle. Without stop ids in `params`, generation
        ends at end-of-sentence or end-of-turn. `seed` (else `params.seed`, else a random one) seeds the request's
        own sampling generator. ValueError for a prompt that cannot run, `QueueFull` when too many wait."""
        prompt_ids = [int(token) for token in prompt_ids]
        check_prompt_ids(prompt_ids, self.model.config.vocab_size)
        if params.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {params.max_new_tokens}")
        if len(prompt_ids) + params.max_new_tokens > self.max_seq_len:
            raise ValueError(
                f"the prompt's {len(prompt_ids)} tokens plus max_new_tokens {params.max_new_tokens} exceed "
                f"max_seq_len {self.max_seq_len}"
            )
        if not params.stop_token_ids:
            params = replace(params, stop_token_ids=self.default_stop_ids)
        generator = None
        if not params.greedy:
            seed = seed if seed is not None else params.seed
            seed = seed if seed is not None else random.getrandbits(63)
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        decoder = IncrementalDecoder(self.tokenizer, set(params.stop_token_ids), stop_strings)
        with self._condition:
            if self._stopping:
                raise RepolmError("the batcher is shutting down")
            if len(self._waiting) >= self.config.max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting (max_waiting)")
            handle = RequestHandle(next(self._ids), loop)
            self._waiting.append(_Request(handle, prompt_ids, params, decoder, generator))
            self._condition.notify_all()
        self.start()
        return handle

    def stats(self) -> dict[str, float]:
        """Gauges (running, waiting, max_batch_size) and counters since start."""
        with self._condition:
            return {
                "running": float(len(self._rows)),
                "waiting": float(len(self._waiting)),
                "max_batch_size": float(self.config.max_batch_size),
                **self._counters,
            }

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        if self.engine.cuda_graphs:
            _cuda_graph_state_for_this_thread()
        with torch.inference_mode():
            while True:
                with self._condition:
                    while not (self._waiting or self._rows or self._stopping):
                        self._condition.wait()
                    if self._stopping and not self._drain:
                        self._cancel_everything()
                    if self._stopping and not (self._waiting or self._rows):
                        return
                    if self._static_batch_filling():
                        deadline = time.monotonic() + self.config.static_batch_wait
                        while self._static_batch_filling() and (left := deadline - time.monotonic()) > 0:
                            self._condition.wait(left)
                    admitted = self._take_admissions()
                try:
                    self._end_cancelled_rows()
                    for request in admitted:
                        self._prefill(request)
                    if self._rows:
                        self._decode_step()
                except Exception as error:  # one bad step must not end the server: fail what ran, go on
                    logger.exception("decode step failed")
                    self._fail_running(error)

    def _static_batch_filling(self) -> bool:
        """Static admission, an empty batch, and fewer waiting requests than a full batch (lock held)."""
        waiting = len(self._waiting)
        return (
            self.config.admission == "static"
            and not self._rows
            and 0 < waiting < self.config.max_batch_size
            and not self._stopping
        )

    def _take_admissions(self) -> list[_Request]:
        """Waiting requests to start now (called with the lock held)."""
        if self.config.admission == "static" and self._rows:
            return []
        admitted = []
        while self._waiting and len(self._rows) + len(admitted) < self.config.max_batch_size:
            request = self._waiting.popleft()
            if request.handle.cancelled:
                self._finish_unstarted(request, "cancelled")
                continue
            admitted.append(request)
        return admitted

    def _cancel_everything(self) -> None:
        while self._waiting:
            self._finish_unstarted(self._waiting.popleft(), "cancelled")
        for request in self._rows:
            request.handle.cancel()

    def _finish_unstarted(self, request: _Request, reason: FinishReason, error: str | None = None) -> None:
        self._counters["cancelled_total" if reason == "cancelled" else "errors_total"] += 1
        request.handle._put(
            BatchEvent("", [], True, reason, prompt_tokens=len(request.prompt_ids), completion_tokens=0, error=error)
        )

    def _ensure_cache(self) -> KVCache:
        if self._cache is None:
            dtype = self.model.embed_tokens.weight.dtype
            cache = KVCache(self.model.config, self.config.max_batch_size, self.max_seq_len, self.device, dtype)
            if self.engine.cuda_graphs:  # one graph over the whole cache: its addresses must never change
                for tensor in cache.keys + cache.values:
                    torch._dynamo.mark_static_address(tensor, guard=False)
            self._cache = cache
            size = sum(t.numel() * t.element_size() for t in cache.keys + cache.values)
            logger.info(
                "KV cache: %d rows x %d slots, %.1f MiB", self.config.max_batch_size, self.max_seq_len, size / 2**20
            )
        return self._cache

    def _prefill(self, request: _Request) -> None:
        """Run a request's prompt into the next free row and sample its first token."""
        cache = self._ensure_cache()
        row = len(self._rows)
        prompt_length = len(request.prompt_ids)
        started = time.perf_counter()
        try:
            view = KVCache.over(
                [keys[row : row + 1, :, :prompt_length] for keys in cache.keys],
                [values[row : row + 1, :, :prompt_length] for values in cache.values],
            )
            input_ids = torch.tensor([request.prompt_ids], dtype=torch.long, device=self.device)
            logits = self.model(input_ids, kv_cache=view, last_position_only=True)[:, -1]  # (1, V)
        except Exception as error:
            logger.exception("prefill of request %d failed", request.handle.id)
            self._finish_unstarted(request, "error", f"generation failed: {one_line(error)}")
            return
        self._counters["prefill_seconds_total"] += time.perf_counter() - started
        self._counters["requests_total"] += 1
        self._counters["prompt_tokens_total"] += prompt_length
        request.length = prompt_length
        with self._condition:
            self._rows.append(request)
        if request.params.repetition_penalty != 1.0:
            seen = self._seen_rows()
            seen[row] = False
            seen[row, input_ids[0]] = True
        token = self._sample(logits, [request], [row])[0]
        self._advance([(row, request, token)])

    def _seen_rows(self) -> torch.Tensor:
        if self._seen is None:
            shape = (self.config.max_batch_size, self.model.config.vocab_size)
            self._seen = torch.zeros(shape, dtype=torch.bool, device=self.device)
        return self._seen

    def _decode_step(self) -> None:
        """Feed every running row its last token; sample and deliver the next ones."""
        cache = self._ensure_cache()
        rows = list(self._rows)
        running = len(rows)
        started = time.perf_counter()
        if self.engine.cuda_graphs:
            batch, span = self.config.max_batch_size, self.max_seq_len
        else:
            batch = self._batch_bucket(running) if self.engine.compile else running
            span = max(request.length for request in rows) + 1
            if self.engine.compile and not self.engine.freeze_weights:  # a graph per (batch, span): bucket spans
                span = min(-(-span // FIXED_SHAPE_BUCKET) * FIXED_SHAPE_BUCKET, self.max_seq_len)
        lengths = torch.zeros(batch, dtype=torch.long)
        tokens = torch.zeros(batch, dtype=torch.long)
        lengths[:running] = torch.tensor([request.length for request in rows])
        tokens[:running] = torch.tensor([request.next_token for request in rows])
        lengths, tokens = lengths.to(self.device), tokens.to(self.device)
        # row b sees slots 0..length[b]: its cached tokens and the one it writes now (rows past `running` are
        # padding of a compiled batch: they write slot 0 of a free row and see only it)
        # an additive mask (0 or -inf): SDPA's CPU kernels run a decode step's attention about twice as fast with it
        # as with the same mask in booleans (measured: 1.0 vs 2.0 ms a layer at 32 rows x 400 slots)
        slot_index = torch.arange(span, device=self.device)
        hidden = slot_index[None, :] > lengths[:, None]  # (B, S)
        dtype = self.model.embed_tokens.weight.dtype
        mask = torch.zeros(hidden.shape, dtype=dtype, device=self.device).masked_fill_(hidden, float("-inf"))
        mask = mask[:, None, None, :]  # (B, 1, 1, S)
        if self.engine.cuda_graphs:  # the cache's own tensors, marked static: views would be copied into the graph
            view = KVCache.over(cache.keys, cache.values)
        else:
            view = KVCache.over(
                [keys[:batch, :, :span] for keys in cache.keys], [values[:batch, :, :span] for values in cache.values]
            )
        view.row_slots = lengths
        if self.engine.compile:
            if self.engine.freeze_weights:  # one graph per batch bucket for every attended length
                torch._dynamo.maybe_mark_dynamic(mask, 3)
                for tensor in view.keys + view.values:
                    torch._dynamo.maybe_mark_dynamic(tensor, 2)
            if self.engine.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            logits = self.engine.compiled_step(tokens[:, None], lengths[:, None], mask, view)[:running, -1]
        else:
            logits = self.model(tokens[:, None], lengths[:, None], mask, view)[:, -1]  # (B, V)
        for request in rows:
            request.length += 1
        sampled = self._sample(logits, rows, list(range(running)))
        self._counters["steps_total"] += 1
        self._counters["step_seconds_total"] += time.perf_counter() - started
        self._advance([(row, request, token) for row, (request, token) in enumerate(zip(rows, sampled, strict=True))])

    def _batch_bucket(self, running: int) -> int:
        """The compiled batch size for `running` rows: the next power of two, at most max_batch_size."""
        return min(1 << (running - 1).bit_length(), self.config.max_batch_size)

    def _sample(self, logits: torch.Tensor, rows: list[_Request], cache_rows: list[int]) -> list[int]:
        """Next token of each request (logits (B, V) in the order of `rows`, which sit in `cache_rows` of the cache),
        requests with equal settings sampled together."""
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(rows):
            groups.setdefault(request.sampling_key, []).append(index)
        tokens = torch.empty(len(rows), dtype=torch.long, device=logits.device)
        for indices in groups.values():
            params = rows[indices[0]].params
            index = torch.tensor(indices, device=logits.device)
            seen = None
            if params.repetition_penalty != 1.0:
                seen = self._seen_rows()[[cache_rows[i] for i in indices]]
            generators = None if params.greedy else [rows[i].generator for i in indices]
            tokens[index] = sample_next_token(logits.index_select(0, index), params, seen, generators)
        return tokens.tolist()

    def _advance(self, sampled: list[tuple[int, _Request, int]]) -> None:
        """Deliver each row's new token; end the rows that finished (stop, length, cancelled)."""
        finished_rows = []
        for row, request, token in sampled:
            request.generated += 1
            request.next_token = token
            self._counters["generation_tokens_total"] += 1
            if request.params.repetition_penalty != 1.0:
                self._seen_rows()[row, token] = True
            text = request.decoder.add(token)
            reason: FinishReason | None = None
            if token in request.params.stop_token_ids or request.decoder.stopped:
                reason = "stop"
            elif request.generated >= request.params.max_new_tokens:
                reason = "length"
            if reason is not None:
                text += request.decoder.flush()
                finished_rows.append(row)
            request.handle._put(
                BatchEvent(
                    text,
                    [token],
                    reason is not None,
                    reason,
                    prompt_tokens=len(request.prompt_ids),
                    completion_tokens=request.generated,
                )
            )
        self._free_rows(finished_rows)

    def _end_cancelled_rows(self) -> None:
        cancelled = [row for row, request in enumerate(self._rows) if request.handle.cancelled]
        for row in cancelled:
            request = self._rows[row]
            self._counters["cancelled_total"] += 1
            request.handle._put(
                BatchEvent(
                    "",
                    [],
                    True,
                    "cancelled",
                    prompt_tokens=len(request.prompt_ids),
                    completion_tokens=request.generated,
                )
            )
        self._free_rows(cancelled)

    def _free_rows(self, rows: list[int]) -> None:
        """Remove requests from the batch, moving the last rows' caches into the freed rows (rows stay packed)."""
        cache = self._cache
        for row in sorted(rows, reverse=True):
            last = len(self._rows) - 1
            with self._condition:
                moved = self._rows.pop()
                if row != last:
                    self._rows[row] = moved
            if row != last and cache is not None:
                length = moved.length
                for tensors in (cache.keys, cache.values):
                    for tensor in tensors:
                        tensor[row, :, :length] = tensor[last, :, :length]
                if self._seen is not None:
                    self._seen[row] = self._seen[last]

    def _fail_running(self, error: Exception) -> None:
        message = f"generation failed: {one_line(error)}"
        for request in list(self._rows):
            self._counters["errors_total"] += 1
            request.handle._put(
                BatchEvent(
                    "",
                    [],
                    True,
                    "error",
                    prompt_tokens=len(request.prompt_ids),
                    completion_tokens=request.generated,
                    error=message,
                )
            )
        with self._condition:
            self._rows.clear()


def _cuda_graph_state_for_this_thread() -> None:
    """Before torch 2.13, CUDA graph trees keep their state in thread-local storage that only the thread importing
    them gets (pytorch/pytorch#123177): give the batcher's thread its own, as torch 2.13 does lazily."""
    from torch._inductor import cudagraph_trees

    local = cudagraph_trees.local
    if hasattr(local, "tree_manager_containers") or torch._C._is_key_in_tls("tree_manager_containers"):
        return
    local.tree_manager_containers = {}
    local.tree_manager_locks = collections.defaultdict(threading.Lock)
    torch._C._stash_obj_in_tls("tree_manager_containers", local.tree_manager_containers)
    torch._C._stash_obj_in_tls("tree_manager_locks", local.tree_manager_locks)


def collect(handle: RequestHandle, timeout: float | None = None) -> tuple[str, BatchEvent]:
    """The whole text of a request submitted without a loop, and its last event."""
    text = []
    last: Any = None
    for event in handle.events(timeout):
        text.append(event.text)
        last = event
    return "".join(text), last
