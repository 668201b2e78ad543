"""llama.cpp-compatible endpoints: `/infill` (what llama.vim and llama.vscode speak), `/completion`, `/tokenize`,
`/detokenize`, and repolm's `/repolm/prompt` (the prompt an /infill request would get, without generating).

`/infill` takes `input_prefix`, `input_suffix`, `input_extra` (`[{filename, text}]`: context the editor gathered,
placed before the snippets the server retrieves), `prompt` (text after the FIM middle token: the start of the
middle, as llama.cpp places it), `n_predict`, `temperature`, `top_k`, `top_p`, `seed`, `stop`, `stream`,
`t_max_predict_ms`, and repolm's `repolm` object. Too long a prompt is cut as llama.cpp cuts it: the prefix loses
its start, the suffix its end, prefix:suffix 3:1 (`ServerConfig.infill_suffix_share`). Other llama.cpp fields
(`n_indent`, `samplers`, `cache_prompt`, `t_max_prompt_ms`, `id_slot`, ...) are accepted and ignored.

Answers have llama.cpp's shape: `{"content", "stop": true, "tokens_predicted", "tokens_evaluated", "stop_type",
"truncated", "timings", ...}`; streamed, one `data: {"content": ..., "stop": false}` event per piece of text and a
last event with `"stop": true` and the totals (no `[DONE]`, as llama.cpp's own endpoints).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from repolm.infer.prompt_builder import BuiltPrompt
from repolm.infer.retrieval import ContextSnippet
from repolm.infer.server.errors import ApiError, error_body
from repolm.infer.server.generation import (
    ChoiceResult,
    Generation,
    build_prompt,
    max_new_tokens,
    prompt_budget,
    prompt_report,
    sampling_params,
)
from repolm.infer.server.metrics import request_started_at
from repolm.infer.server.openai_api import ERROR_RESPONSES, event_stream, sse
from repolm.infer.server.schemas import (
    DetokenizeRequest,
    InfillRequest,
    LlamaCompletionRequest,
    LlamaSampling,
    TokenizeRequest,
)
from repolm.infer.server.state import ServerState
from repolm.tokenizer.special_tokens import byte_level_char

_BYTE_OF_CHARACTER = {byte_level_char(byte): byte for byte in range(256)}


def token_piece(state: ServerState, token: int) -> str | list[int]:
    """A token's text, or its bytes when they are not whole UTF-8 characters (as llama.cpp's /tokenize)."""
    text = state.tokenizer.decode([token])
    if "\ufffd" not in text:
        return text
    entry = state.tokenizer.id_to_token(token) or ""
    if all(character in _BYTE_OF_CHARACTER for character in entry):
        return [_BYTE_OF_CHARACTER[character] for character in entry]
    return text


def select_fields(answer: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """llama.cpp's `response_fields`: only the named fields, nested ones by "a/b" paths (kept under that key, as
    llama.vim reads "timings/prompt_n"); None: the whole answer."""
    if fields is None:
        return answer
    selected = {}
    for path in fields:
        value: Any = answer
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            selected[path] = value
    return selected


def make_router(state: ServerState) -> APIRouter:
    """The llama.cpp endpoints over one server's state."""
    router = APIRouter(responses=ERROR_RESPONSES)
    config = state.config

    async def infill_prompt(body: InfillRequest, new_tokens: int) -> BuiltPrompt:
        tail_ids = []
        if body.prompt:
            tail_ids = await asyncio.to_thread(state.tokenizer.encode, body.prompt, literal_special_tokens=True)
        budget = prompt_budget(state, new_tokens, len(tail_ids), "cut", config.infill_suffix_share, "n_predict")
        client_context = [
            ContextSnippet(chunk.filename, chunk.text, source="client") for chunk in body.input_extra if chunk.text
        ]
        return await build_prompt(
            state,
            prefix=body.input_prefix,
            suffix=body.input_suffix,
            budget=budget,
            options=body.repolm,
            client_context=client_context,
            tail_ids=tail_ids,
            param="input_prefix",
        )

    @router.post("/infill", summary="Fill in the middle (llama.cpp's /infill)")
    async def infill(body: InfillRequest, request: Request) -> Response:
        new_tokens = max_new_tokens(state, body.n_predict, "n_predict", config.default_max_tokens)
        built = await infill_prompt(body, new_tokens)
        truncated = bool(built.cut.get("prefix") or built.cut.get("suffix"))
        return await _generate(body, request, "/infill", built.ids, built.text, new_tokens, truncated, built)

    @router.post("/completion", summary="Complete a prompt (llama.cpp's /completion)")
    async def completion(body: LlamaCompletionRequest, request: Request) -> Response:
        new_tokens = max_new_tokens(state, body.n_predict, "n_predict", config.default_max_tokens)
        budget = prompt_budget(state, new_tokens, 0, "refuse", 1.0, "n_predict")
        if isinstance(body.prompt, str):
            built = await build_prompt(state, prefix=body.prompt, suffix=None, budget=budget, options=body.repolm)
            ids, text = built.ids, built.text
        else:
            if len(body.prompt) > budget.max_prompt_tokens:
                raise ApiError(
                    400,
                    f"prompt: {len(body.prompt)} tokens, more than {budget.max_prompt_tokens} (the context window "
                    "minus n_predict)",
                    param="prompt",
                    code="context_length_exceeded",
                )
            built, ids = None, list(body.prompt)
            text = state.tokenizer.decode([token for token in ids if token < len(state.tokenizer)])
        return await _generate(body, request, "/completion", ids, text, new_tokens, False, built)

    async def _generate(
        body: LlamaSampling,
        request: Request,
        endpoint: str,
        ids: list[int],
        prompt_text: str,
        new_tokens: int,
        truncated: bool,
        built: BuiltPrompt | None,
    ) -> Response:
        report = prompt_report(built) if built is not None and body.repolm and body.repolm.return_prompt else None
        started = request_started_at(request.scope)
        if new_tokens == 0:  # llama.vim sends n_predict 0 to hand over context ahead of time: nothing to generate
            answer = _final(None, ids, prompt_text, truncated, report, started)
            if body.stream:
                return event_stream(_one_event(answer))
            return JSONResponse(select_fields(answer, body.response_fields))
        params = sampling_params(new_tokens, body.temperature, body.top_p, body.top_k, body.repeat_penalty)
        seed = None if body.seed < 0 else body.seed
        generation = Generation.submit(state, request, endpoint, ids, params, body.stop, seed=seed)
        if body.stream:
            return event_stream(_chunks(generation, body, prompt_text, truncated, report, started))
        await generation.run(body.t_max_predict_ms)
        answer = _final(generation, ids, prompt_text, truncated, report, started)
        return JSONResponse(select_fields(answer, body.response_fields))

    async def _one_event(answer: dict[str, Any]) -> AsyncIterator[bytes]:
        yield sse(answer)

    def _final(
        generation: Generation | None,
        ids: list[int],
        prompt_text: str,
        truncated: bool,
        report: dict | None,
        started: float,
        content: str | None = None,
    ) -> dict[str, Any]:
        """llama.cpp's last answer of a request (`content`: the text when not the whole result)."""
        result = generation.results[0] if generation is not None else ChoiceResult(finish_reason="length")
        if generation is None or generation.time_limit_hit or result.finish_reason == "length":
            stop_type = "limit"
        elif result.stop_id:
            stop_type = "eos"
        else:
            stop_type = "word"
        elapsed_ms = (time.perf_counter() - started) * 1000
        first = generation.first_token_at if generation is not None else None
        prompt_ms = (first - started) * 1000 if first is not None else elapsed_ms
        predicted_ms = max(elapsed_ms - prompt_ms, 1e-6)
        predicted = result.completion_tokens
        answer: dict[str, Any] = {
            "index": 0,
            "content": result.text if content is None else content,
            "tokens": [],
            "id_slot": -1,
            "stop": True,
            "model": config.model_name,
            "tokens_predicted": predicted,
            "tokens_evaluated": len(ids),
            "prompt": prompt_text,
            "has_new_line": "\n" in result.text,
            "truncated": truncated,
            "stop_type": stop_type,
            "stopping_word": "",
            "tokens_cached": 0,
            "timings": {
                "prompt_n": len(ids),
                "prompt_ms": prompt_ms,
                "prompt_per_token_ms": prompt_ms / max(len(ids), 1),
                "prompt_per_second": len(ids) / max(prompt_ms, 1e-6) * 1000,
                "predicted_n": predicted,
                "predicted_ms": predicted_ms,
                "predicted_per_token_ms": predicted_ms / max(predicted, 1),
                "predicted_per_second": predicted / predicted_ms * 1000,
            },
        }
        if report is not None:
            answer["repolm"] = report
        return answer

    async def _chunks(
        generation: Generation,
        body: LlamaSampling,
        prompt_text: str,
        truncated: bool,
        report: dict | None,
        started: float,
    ) -> AsyncIterator[bytes]:
        if report is not None:
            yield sse({"index": 0, "content": "", "stop": False, "repolm": report})
        async with contextlib.aclosing(generation.events(body.t_max_predict_ms)) as events:
            async for _index, event in events:
                if event.finish_reason == "error":
                    yield sse(error_body(500, event.error or "generation failed", code="generation_failed"))
                    return
                if event.text:
                    yield sse(
                        {
                            "index": 0,
                            "content": event.text,
                            "tokens": event.token_ids,
                            "stop": False,
                            "id_slot": -1,
                            "tokens_predicted": event.completion_tokens,
                            "tokens_evaluated": len(generation.prompt_ids),
                        }
                    )
        yield sse(_final(generation, generation.prompt_ids, prompt_text, truncated, None, started, content=""))

    @router.post("/repolm/prompt", summary="The exact prompt an /infill request gets (nothing is generated)")
    async def show_prompt(body: InfillRequest) -> dict[str, Any]:
        new_tokens = max_new_tokens(state, body.n_predict, "n_predict", config.default_max_tokens)
        return prompt_report(await infill_prompt(body, new_tokens))

    @router.post("/tokenize", summary="Text -> token ids (llama.cpp's /tokenize)")
    async def tokenize(body: TokenizeRequest) -> dict[str, Any]:
        literal = not body.parse_special
        ids = await asyncio.to_thread(state.tokenizer.encode, body.content, literal_special_tokens=literal)
        bos = state.tokenizer.bos_id
        if body.add_special and state.tokenizer.add_bos_token and bos is not None:
            ids = [bos, *ids]
        if body.with_pieces:
            return {"tokens": [{"id": token, "piece": token_piece(state, token)} for token in ids]}
        return {"tokens": ids}

    @router.post("/detokenize", summary="Token ids -> text (llama.cpp's /detokenize)")
    async def detokenize(body: DetokenizeRequest) -> dict[str, Any]:
        size = len(state.tokenizer)
        for index, token in enumerate(body.tokens):
            if token >= size:
                raise ApiError(
                    400, f"tokens[{index}]: id {token} is outside the vocabulary [0, {size})", param=f"tokens[{index}]"
                )
        return {"content": await asyncio.to_thread(state.tokenizer.decode, body.tokens)}

    return router
