"""OpenAI-compatible endpoints: `/v1/models`, `/v1/completions` (with `suffix` -> fill-in-the-middle) and
`/v1/chat/completions`, plain or streamed as server-sent events (`data: {chunk}` ... `data: [DONE]`).

Differences from OpenAI's API, all explicit: `model` is not checked (one model is served and named in responses);
`echo`, `logprobs`, `best_of` > 1, non-zero penalties, `logit_bias`, tools and non-text response formats are refused
with 400; `top_k` and `repetition_penalty` are accepted as vLLM accepts them; the `repolm` object (`RepolmOptions`)
asks for cross-file retrieval and for the exact prompt. A plain or FIM prompt that does not fit the context window
with `max_tokens` is refused (400, `context_length_exceeded`), as OpenAI does; cross-file context only takes room
that is left.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from repolm.infer.server.errors import ApiError, error_body
from repolm.infer.server.generation import (
    Generation,
    build_chat_prompt,
    build_prompt,
    check_count,
    max_new_tokens,
    prompt_budget,
    prompt_report,
    sampling_params,
)
from repolm.infer.server.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    ErrorResponse,
    OpenAISampling,
)
from repolm.infer.server.state import ServerState

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Invalid request (the message and `param` name the field)"),
        (401, "Missing or wrong API key"),
        (413, "Request body too large"),
        (503, "Queue full or shutting down (see Retry-After)"),
    )
}
COMPLETION_DEFAULT_MAX_TOKENS = 16
"""OpenAI's default `max_tokens` of /v1/completions."""


def sse(data: Any) -> bytes:
    """One server-sent event carrying JSON (or the literal `[DONE]`)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


def event_stream(chunks: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        chunks, media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


def refuse_unsupported(body: OpenAISampling) -> None:
    """400 for OpenAI features the server does not have (instead of silently ignoring them)."""
    unsupported = {
        "presence_penalty": body.presence_penalty != 0.0,
        "frequency_penalty": body.frequency_penalty != 0.0,
        "logit_bias": bool(body.logit_bias),
    }
    for param, asked in unsupported.items():
        if asked:
            raise ApiError(
                400,
                f"{param} is not supported by this server (use repetition_penalty)",
                param=param,
                code="unsupported",
            )


def make_router(state: ServerState) -> APIRouter:
    """The OpenAI endpoints over one server's state."""
    router = APIRouter(responses=ERROR_RESPONSES)
    config = state.config

    @router.get("/v1/models", summary="The served model")
    async def list_models() -> dict[str, Any]:
        model = {"id": config.model_name, "object": "model", "created": state.created, "owned_by": "repolm"}
        return {"object": "list", "data": [model]}

    @router.post("/v1/completions", summary="Complete a prompt, or fill in the middle with `suffix`")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        refuse_unsupported(body)
        if body.echo:
            raise ApiError(400, "echo is not supported by this server", param="echo", code="unsupported")
        if body.logprobs is not None:
            raise ApiError(400, "logprobs are not supported by this server", param="logprobs", code="unsupported")
        if body.best_of not in (None, 1, body.n):
            raise ApiError(400, "best_of other than 1 (or n) is not supported", param="best_of", code="unsupported")
        check_count(body.n, config.max_n, "n")
        new_tokens = max_new_tokens(state, body.max_tokens, "max_tokens", COMPLETION_DEFAULT_MAX_TOKENS)
        params = sampling_params(new_tokens, body.temperature, body.top_p, body.top_k, body.repetition_penalty)
        options = body.repolm
        prompt = body.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        if isinstance(prompt, list):  # token ids
            ids = prompt[0] if isinstance(prompt[0], list) else prompt
            if body.suffix is not None:
                raise ApiError(400, "suffix needs a text prompt, not token ids", param="suffix")
            if options is not None and (options.retrieve or options.path):
                raise ApiError(400, "repolm options need a text prompt, not token ids", param="repolm")
            prompt_limit = prompt_budget(state, new_tokens, 0, "refuse", 1.0).max_prompt_tokens
            if len(ids) > prompt_limit:
                raise ApiError(
                    400,
                    f"prompt: {len(ids)} tokens, more than {prompt_limit} (the context window minus max_tokens)",
                    param="prompt",
                    code="context_length_exceeded",
                )
            built = None
        else:
            budget = prompt_budget(state, new_tokens, 0, "refuse", 1.0)
            built = await build_prompt(state, prefix=prompt, suffix=body.suffix, budget=budget, options=options)
            ids = built.ids
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        generation = Generation.submit(state, request, "/v1/completions", ids, params, stops, body.n, body.seed)
        report = prompt_report(built) if built is not None and options is not None and options.return_prompt else None
        response_id = f"cmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return event_stream(_completion_chunks(generation, response_id, created, report, include_usage))
        results = await generation.run()
        choices = [
            {"text": result.text, "index": index, "logprobs": None, "finish_reason": result.finish_reason}
            for index, result in enumerate(results)
        ]
        answer: dict[str, Any] = {
            "id": response_id,
            "object": "text_completion",
            "created": created,
            "model": config.model_name,
            "choices": choices,
            "usage": generation.usage,
        }
        if report is not None:
            answer["repolm"] = report
        return JSONResponse(answer)

    async def _completion_chunks(
        generation: Generation, response_id: str, created: int, report: dict | None, include_usage: bool
    ) -> AsyncIterator[bytes]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            head = {"id": response_id, "object": "text_completion", "created": created, "model": config.model_name}
            return sse({**head, "choices": choices, **extra})

        if report is not None:
            yield chunk([], repolm=report)
        async with contextlib.aclosing(generation.events()) as events:
            async for index, event in events:
                if event.finish_reason == "error":
                    yield sse(error_body(500, event.error or "generation failed", code="generation_failed"))
                    return
                result = generation.results[index]
                if event.text or event.finished:
                    finish = result.finish_reason if event.finished else None
                    yield chunk([{"text": event.text, "index": index, "logprobs": None, "finish_reason": finish}])
        if include_usage:
            yield chunk([], usage=generation.usage)
        yield sse("[DONE]")

    @router.post("/v1/chat/completions", summary="Answer a conversation")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        refuse_unsupported(body)
        if body.logprobs or body.top_logprobs is not None:
            raise ApiError(400, "logprobs are not supported by this server", param="logprobs", code="unsupported")
        if body.tools:
            raise ApiError(400, "tools are not supported by this server", param="tools", code="unsupported")
        if body.response_format is not None and body.response_format.get("type") != "text":
            raise ApiError(
                400, 'only response_format {"type": "text"} is supported', param="response_format", code="unsupported"
            )
        check_count(body.n, config.max_n, "n")
        requested = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
        new_tokens = max_new_tokens(state, requested, param, config.default_max_tokens)
        params = sampling_params(new_tokens, body.temperature, body.top_p, body.top_k, body.repetition_penalty)
        messages = []
        for message in body.messages:
            content = message.content
            if isinstance(content, list):
                content = "".join(part.text for part in content)
            role = "system" if message.role == "developer" else message.role
            messages.append({"role": role, "content": content or ""})
        built = await build_chat_prompt(state, messages, prompt_budget(state, new_tokens, 0, "refuse", 1.0))
        stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
        endpoint = "/v1/chat/completions"
        generation = Generation.submit(state, request, endpoint, built.ids, params, stops, body.n, body.seed)
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return event_stream(_chat_chunks(generation, response_id, created, body.n, include_usage))
        results = await generation.run()
        choices = [
            {
                "index": index,
                "message": {"role": "assistant", "content": result.text},
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
            for index, result in enumerate(results)
        ]
        return JSONResponse(
            {
                "id": response_id,
                "object": "chat.completion",
                "created": created,
                "model": config.model_name,
                "choices": choices,
                "usage": generation.usage,
            }
        )

    async def _chat_chunks(
        generation: Generation, response_id: str, created: int, n: int, include_usage: bool
    ) -> AsyncIterator[bytes]:
        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            head = {"id": response_id, "object": "chat.completion.chunk", "created": created}
            return sse({**head, "model": config.model_name, "choices": choices, **extra})

        for index in range(n):  # the role comes first, as OpenAI streams it
            yield chunk([{"index": index, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        async with contextlib.aclosing(generation.events()) as events:
            async for index, event in events:
                if event.finish_reason == "error":
                    yield sse(error_body(500, event.error or "generation failed", code="generation_failed"))
                    return
                if event.text:
                    yield chunk([{"index": index, "delta": {"content": event.text}, "finish_reason": None}])
                if event.finished:
                    reason = generation.results[index].finish_reason
                    yield chunk([{"index": index, "delta": {}, "finish_reason": reason}])
        if include_usage:
            yield chunk([], usage=generation.usage)
        yield sse("[DONE]")

    return router
