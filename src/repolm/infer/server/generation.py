"""What every generating endpoint shares: limits, the prompt (with cross-file context), submitting to the batcher, and
the stream of events back, cancelled when the client leaves.

- `max_new_tokens` checks a request's token budget against the server's limits (400 naming the field).
- `build_prompt` retrieves cross-file context (when asked and the server has a repository) and builds the prompt
  with the shared `PromptBuilder`, in a worker thread: tokenizing a long prompt and re-indexing the repository never
  block the event loop.
- `Generation` submits one batcher request per choice (`n`), maps a full queue to 503 with `Retry-After`, merges
  the choices' events, records time to first token and token counts, enforces a time budget, and cancels every
  choice when the client disconnects or the response ends early (`handle.cancel()` frees the batch row before the
  next decode step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from repolm.errors import RepolmError, one_line
from repolm.infer.batching import BatchEvent, QueueFull, RequestHandle
from repolm.infer.prompt_builder import BuiltPrompt, PromptBudget
from repolm.infer.retrieval import ContextSnippet
from repolm.infer.sampling import SamplingParams
from repolm.infer.server.errors import ApiError
from repolm.infer.server.metrics import request_started_at
from repolm.infer.server.schemas import RepolmOptions
from repolm.infer.server.state import ServerState

logger = logging.getLogger(__name__)

SEED_MODULUS = 2**63
GREEDY_BELOW_TEMPERATURE = 1e-5
"""Temperatures below this decode greedily (as vLLM's do): dividing float32 logits by a temperature near 0
overflows to inf, and the softmax of inf - inf is NaN."""


def max_new_tokens(state: ServerState, requested: int | None, param: str, default: int) -> int:
    """The tokens to generate: `requested` (None or -1: `default`, capped to what fits; 0 stays 0, for llama.cpp's
    n_predict 0), checked against the limits."""
    limit = state.max_new_tokens
    if requested is None or requested < 0:
        return max(1, min(default, limit))
    if requested > limit:
        raise ApiError(
            400,
            f"{param} {requested} is more than this server allows ({limit}; the context window is "
            f"{state.max_seq_len} tokens)",
            param=param,
            code="invalid_value",
        )
    return requested


def sampling_params(
    new_tokens: int, temperature: float, top_p: float, top_k: int, repetition_penalty: float
) -> SamplingParams:
    """SamplingParams from request fields (top_k <= 0 is off; a temperature near 0 is greedy)."""
    return SamplingParams(
        max_new_tokens=new_tokens,
        temperature=0.0 if temperature < GREEDY_BELOW_TEMPERATURE else temperature,
        top_k=max(0, top_k),
        top_p=top_p,
        repetition_penalty=repetition_penalty,
    )


def check_count(value: int, limit: int, param: str) -> None:
    """400 naming `param` when `value` passes the server's `limit`."""
    if value > limit:
        raise ApiError(400, f"{param} {value} is more than this server allows ({limit})", param=param)


def prompt_budget(
    state: ServerState,
    new_tokens: int,
    tail_tokens: int,
    overflow: str,
    suffix_share: float,
    param: str = "max_tokens",
) -> PromptBudget:
    """The prompt's token budget: the window minus the tokens to generate (`param` names them in the 400 when
    nothing is left) and a llama.cpp `prompt` tail."""
    limit = state.max_seq_len - new_tokens
    if state.config.max_prompt_tokens is not None:
        limit = min(limit, state.config.max_prompt_tokens)
    limit -= tail_tokens
    if limit < 1:
        raise ApiError(
            400,
            f"no room for a prompt: the context window is {state.max_seq_len} tokens and {new_tokens} are to be "
            "generated",
            param=param,
            code="context_length_exceeded",
        )
    return PromptBudget(limit, context_share=state.config.context_share, suffix_share=suffix_share, overflow=overflow)


def wants_retrieval(state: ServerState, options: RepolmOptions | None) -> bool:
    """Whether a request retrieves cross-file context: `repolm.retrieve`, by default when the server has a
    repository and the request names its file (`repolm.path`); 400 when it cannot."""
    if options is None:
        return False
    if options.retrieve and state.retriever is None:
        raise ApiError(
            400, "repolm.retrieve: this server has no repository (start it with --repo PATH)", param="repolm.retrieve"
        )
    if options.retrieve and options.path is None:
        raise ApiError(400, "repolm.retrieve needs repolm.path, the current file's path", param="repolm.path")
    if options.retrieve is None:
        return state.retriever is not None and options.path is not None
    return options.retrieve


async def retrieve_context(state: ServerState, path: str, prefix: str, suffix: str) -> list[ContextSnippet]:
    """The repository's snippets for a cursor in `path`, best first (in a worker thread; the repository's changed
    files are re-indexed first when the last refresh is older than `refresh_interval_seconds`)."""

    def run() -> list[ContextSnippet]:
        assert state.retriever is not None
        try:
            state.refresh_repository()
        except (RepolmError, OSError) as error:  # e.g. the folder is gone: serve from the last index
            logger.warning("re-indexing the repository failed: %s", one_line(error))
        return state.retriever.retrieve(path, prefix, suffix, top_k=state.config.retrieval_top_k)

    try:
        return await asyncio.to_thread(run)
    except RepolmError as error:
        raise ApiError(400, f"repolm.path: {one_line(error)}", param="repolm.path") from None


async def build_prompt(
    state: ServerState,
    *,
    prefix: str,
    suffix: str | None,
    budget: PromptBudget,
    options: RepolmOptions | None = None,
    client_context: Sequence[ContextSnippet] = (),
    tail_ids: Sequence[int] = (),
    param: str = "prompt",
) -> BuiltPrompt:
    """The prompt of a completion (`suffix` None) or FIM request, with cross-file context: the client's snippets
    first, then retrieved ones; `tail_ids` (llama.cpp's `prompt`) go after the FIM middle token. A plain completion
    without context is the client's prompt verbatim (special-token strings are tokens); a prompt the server assembles
    encodes every text literally (`ServerState.prompt_builder`)."""
    retrieve = wants_retrieval(state, options)
    path = options.path if options is not None else None
    verbatim = suffix is None and not client_context and not retrieve and not tail_ids
    builder = state.verbatim_prompt_builder if verbatim else state.prompt_builder

    context = list(client_context)
    if retrieve:
        assert path is not None
        context += await retrieve_context(state, path, prefix, suffix or "")

    def build() -> BuiltPrompt:
        built = builder.completion(prefix, suffix, budget=budget, context=context, path=path)
        if tail_ids:
            ids = [*built.ids, *tail_ids]
            built = BuiltPrompt(ids, state.tokenizer.decode(ids), built.kind, built.context, built.cut)
        return built

    try:
        return await asyncio.to_thread(build)
    except RepolmError as error:
        code = "context_length_exceeded" if "max_prompt_tokens" in str(error) else "invalid_value"
        raise ApiError(400, f"{param}: {one_line(error)}", param=param, code=code) from None


async def build_chat_prompt(state: ServerState, messages: list[dict[str, str]], budget: PromptBudget) -> BuiltPrompt:
    try:
        return await asyncio.to_thread(state.prompt_builder.chat, messages, budget=budget)
    except RepolmError as error:
        code = "context_length_exceeded" if "max_prompt_tokens" in str(error) else "invalid_value"
        raise ApiError(400, f"messages: {one_line(error)}", param="messages", code=code) from None


def prompt_report(built: BuiltPrompt) -> dict[str, Any]:
    """The `repolm` field of a response: the exact prompt, its size, the context snippets in it and the cuts."""
    return {
        "prompt": built.text,
        "prompt_tokens": len(built.ids),
        "kind": built.kind,
        "context": [
            {
                "path": snippet.path,
                "start_line": snippet.start_line,
                "score": snippet.score,
                "source": snippet.source,
                "text": snippet.text,
            }
            for snippet in built.context
        ],
        "cut": dict(built.cut),
    }


def choice_seed(seed: int | None, index: int) -> int | None:
    """Choice `index`'s seed: seed + index (kept in torch's range); None: a random one per choice."""
    return None if seed is None else (seed + index) % SEED_MODULUS


@dataclass
class ChoiceResult:
    """What one choice produced, once finished."""

    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    stop_id: bool = False
    """Ended by a stop token id (end of sentence / end of turn), not by a stop string."""
    error: str | None = None


@dataclass
class Generation:
    """The batcher requests of one HTTP request (one per choice) and their events (see the module doc)."""

    state: ServerState
    request: Request
    endpoint: str
    prompt_ids: list[int]
    handles: list[RequestHandle] = field(default_factory=list)
    results: list[ChoiceResult] = field(default_factory=list)
    first_token_at: float | None = None
    time_limit_hit: bool = False
    disconnect_watcher: asyncio.Task | None = None
    """Cancels every choice when the client disconnects; started at submission, so that it also covers a streamed
    response whose body never started (a client gone before the first byte)."""

    @classmethod
    def submit(
        cls,
        state: ServerState,
        request: Request,
        endpoint: str,
        prompt_ids: list[int],
        params: SamplingParams,
        stop_strings: Sequence[str],
        n: int = 1,
        seed: int | None = None,
    ) -> Generation:
        """Queue `n` choices; 503 (`Retry-After`) when the batcher's queue is full or it is shutting down, 400 for a
        prompt the batcher cannot run."""
        generation = cls(state, request, endpoint, prompt_ids)
        loop = asyncio.get_running_loop()
        if seed is None and n > 1:
            seed = random.getrandbits(62)
        try:
            for index in range(n):
                handle = state.batcher.submit(
                    prompt_ids, params, [s for s in stop_strings if s], seed=choice_seed(seed, index), loop=loop
                )
                generation.handles.append(handle)
        except QueueFull:
            generation.cancel()
            retry = str(state.config.retry_after_seconds)
            raise ApiError(
                503,
                "the server is busy: too many requests are waiting; retry later",
                code="server_busy",
                headers={"Retry-After": retry},
            ) from None
        except ValueError as error:  # a token id outside the vocabulary, or too long for the KV cache's rows
            generation.cancel()
            code = "context_length_exceeded" if "exceed" in str(error) else "invalid_value"
            raise ApiError(400, f"prompt: {one_line(error)}", param="prompt", code=code) from None
        except RepolmError as error:  # shutting down
            generation.cancel()
            raise ApiError(503, one_line(error), code="shutting_down", headers={"Retry-After": "5"}) from None
        generation.results = [ChoiceResult() for _ in range(n)]
        generation.disconnect_watcher = asyncio.create_task(generation._watch_disconnect())
        return generation

    async def _watch_disconnect(self) -> None:
        """Cancel the choices when the client disconnects (after the response ended, the server reports a disconnect
        at once, and cancelling finished choices does nothing)."""
        while True:
            message = await self.request.receive()
            if message["type"] == "http.disconnect":
                self.cancel()
                return

    def cancel(self) -> None:
        """Cancel every choice (thread-safe; finished ones are not affected)."""
        for handle in self.handles:
            handle.cancel()

    async def events(self, time_limit_ms: int = 0) -> AsyncIterator[tuple[int, BatchEvent]]:
        """Each choice's events as they come, until every choice finished. Cancels everything when the client
        disconnects or the consumer stops early; `time_limit_ms` > 0 ends generation that long after the first token
        (the choices then finish as "length")."""
        queue: asyncio.Queue[tuple[int, BatchEvent]] = asyncio.Queue()

        async def pump(index: int, handle: RequestHandle) -> None:
            async for event in handle.async_events():
                await queue.put((index, event))

        tasks = [asyncio.create_task(pump(index, handle)) for index, handle in enumerate(self.handles)]
        remaining = len(self.handles)
        started = request_started_at(self.request.scope)
        try:
            while remaining:
                timeout = None
                if time_limit_ms > 0 and self.first_token_at is not None and not self.time_limit_hit:
                    timeout = max(0.0, self.first_token_at + time_limit_ms / 1000 - time.perf_counter())
                try:
                    index, event = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    self.time_limit_hit = True
                    self.cancel()
                    continue
                if self.first_token_at is None and event.token_ids:
                    self.first_token_at = time.perf_counter()
                    self.state.metrics.time_to_first_token.labels(self.endpoint).observe(self.first_token_at - started)
                self._record(index, event)
                if event.finished:
                    remaining -= 1
                yield index, event
        finally:
            self.cancel()  # no-op for finished choices; frees the rows of the others
            for task in tasks:
                task.cancel()
            if self.disconnect_watcher is not None:
                self.disconnect_watcher.cancel()
            generated = sum(result.completion_tokens for result in self.results)
            self.state.metrics.count_tokens(len(self.prompt_ids) * len(self.handles), generated)

    def _record(self, index: int, event: BatchEvent) -> None:
        result = self.results[index]
        result.text += event.text
        result.completion_tokens = max(result.completion_tokens, event.completion_tokens)
        if event.finished:
            reason = event.finish_reason
            if reason == "cancelled":  # a time limit (or a shutdown that does not drain) ended it
                reason = "length"
            result.finish_reason = reason
            result.error = event.error
            stop_ids = self.state.batcher.default_stop_ids
            result.stop_id = reason == "stop" and bool(event.token_ids) and event.token_ids[-1] in stop_ids

    async def run(self, time_limit_ms: int = 0) -> list[ChoiceResult]:
        """Every choice's whole result (for non-streamed responses); 500 when generation failed."""
        async with contextlib.aclosing(self.events(time_limit_ms)) as events:
            async for _ in events:
                pass
        for result in self.results:
            if result.finish_reason == "error":
                raise ApiError(500, result.error or "generation failed", code="generation_failed")
        return self.results

    @property
    def usage(self) -> dict[str, int]:
        completion = sum(result.completion_tokens for result in self.results)
        return {
            "prompt_tokens": len(self.prompt_ids),
            "completion_tokens": completion,
            "total_tokens": len(self.prompt_ids) + completion,
        }
