"""Generators: where the completions of an evaluation run come from, a local model folder or an OpenAI-compatible
endpoint, behind one interface.

`Generator.generate(requests, settings)` answers every `GenerationRequest` with one `Generation`, in order. It does
not raise for a single bad request: that request's `Generation` has `text=""` and a one-line `error` (an HTTP status,
a prompt that does not fit, a malformed answer), and the other requests are answered as usual. Settings that are bad
for the whole run (a negative temperature) raise `RepolmError`. `describe()` returns what a results file should
record about the generator.

`LocalGenerator` runs a repolm / Hugging Face model folder with `repolm.infer`:
- prompts come from `repolm.infer.prompt_builder.PromptBuilder`, the builder the server uses too: completion -> BOS
  (when the tokenizer config adds it) and the prompt; chat -> the tokenizer's chat template (DeepSeek-Coder's instruct
  template when the folder has none) with the generation prompt, then encoded (the template writes BOS itself);
  infill -> PSM (`<｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>`, DeepSeek-Coder's training layout);
- a prompt longer than `max_seq_len - max_new_tokens` tokens is cut, not refused, with a logged warning, like the
  DeepSeek-Coder harness's maximum input length: completion and chat prompts keep BOS and their last tokens;
  infilling prompts lose prefix tokens from the left first, then suffix tokens from the right, and keep the sentinels
  (`PromptBudget(suffix_share=1.0)`); no cut starts or ends inside a character.
  A request whose `max_new_tokens` leaves no room for a prompt gets an error;
- requests with the same `max_new_tokens` and stop strings run in batches of `batch_size` prompts of similar length
  (sorted by length), and the answers are put back in request order; generation ends at `<｜end▁of▁sentence｜>` or
  `<|EOT|>` and the text is cut before the first stop string;
- generations do not depend on batching: the engine gives a padded row the logits it would have alone, and when
  sampling each request draws from its own generator seeded with its `seed` (else `request_seed(settings.seed,
  index)`), so a request's sample depends only on its prompt, the settings and its seed.

`EndpointGenerator` talks to any OpenAI-compatible server (vLLM, llama.cpp's server, TGI's OpenAI routes):
- completion and infill -> POST {url}/v1/completions (`prompt`); infilling prompts are built with `fim_template`,
  DeepSeek-Coder's PSM layout by default; chat -> POST {url}/v1/chat/completions (`messages`);
- the OpenAI API takes at most 4 stop strings: the first 4 are sent, and the answer is cut at all of them here;
- each request carries `seed` = the request's own seed, else `request_seed(settings.seed, index)`, so n copies of a
  request sample differently;
- requests run `concurrency` at a time; connection errors, timeouts, HTTP 429 and 5xx are retried `retries` times
  with exponential backoff (`Retry-After` honoured); other 4xx are not retried; a non-JSON or malformed answer is an
  error of that request;
- the API key (the argument, else $OPENAI_API_KEY) goes in an `Authorization: Bearer` header and nowhere else: not
  in `describe()`, not in logs, not in error messages (a server that echoes it gets it replaced by `***`).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from repolm.errors import RepolmError, one_line
from repolm.eval.records import DecodingSettings, Generation, GenerationRequest
from repolm.eval.tasks.base import truncate_at_stops
from repolm.tokenizer.special_tokens import FIM_BEGIN_TOKEN, FIM_END_TOKEN, FIM_HOLE_TOKEN

logger = logging.getLogger(__name__)

DEEPSEEK_FIM_TEMPLATE = FIM_BEGIN_TOKEN + "{prefix}" + FIM_HOLE_TOKEN + "{suffix}" + FIM_END_TOKEN
"""DeepSeek-Coder's PSM infilling prompt: `<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>`."""

MAX_API_STOP_STRINGS = 4
"""The OpenAI API refuses more than 4 stop strings."""

HASH_CHUNK_BYTES = 1 << 24
ERROR_BODY_CHARACTERS = 200
"""An HTTP error message quotes at most this many characters of the response body."""
MAX_BACKOFF_SECONDS = 60.0


# -----------------------------------------------------------------------------
# Shared helpers


class Generator(ABC):
    """Answers generation requests; see the module docstring for the contract."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What a results file records about this generator (JSON-serializable)."""

    @abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], settings: DecodingSettings) -> list[Generation]:
        """One `Generation` per request, in request order; a failed request gets `error`, never an exception."""


def request_seed(seed: int, *keys: int | str) -> int:
    """A 31-bit seed derived from a run's seed and request keys (stable across processes and machines)."""
    key = ",".join(str(part) for part in (seed, *keys)).encode()
    digest = hashlib.blake2b(key, digest_size=8, person=b"repolm-eval").digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def sampling_seed(request: GenerationRequest, settings: DecodingSettings, index: int) -> int:
    """The request's own seed, else `request_seed(settings.seed, index)` (index: its place in the call)."""
    return request.seed if request.seed is not None else request_seed(settings.seed, index)


def _check_settings(settings: DecodingSettings) -> None:
    if settings.temperature < 0:
        raise RepolmError(f"temperature must be >= 0, got {settings.temperature}")
    if not 0.0 < settings.top_p <= 1.0:
        raise RepolmError(f"top_p must be in (0, 1], got {settings.top_p}")


def _check_request(request: GenerationRequest) -> None:
    if request.kind not in ("completion", "chat", "infill"):
        raise RepolmError(f"unknown request kind {request.kind!r} (completion, chat or infill)")
    if request.max_new_tokens < 0:
        raise RepolmError(f"max_new_tokens must be >= 0, got {request.max_new_tokens}")
    if request.kind == "chat" and not request.messages:
        raise RepolmError("a chat request needs at least one message")


# -----------------------------------------------------------------------------
# Local model folders


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 16 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def weights_sha256(model_dir: str | os.PathLike) -> tuple[str, dict[str, str]]:
    """(one hash of all weights, {file name: sha256}). One file: its own sha256 (what `sha256sum` prints); several:
    the sha256 of the `sha256sum`-style lines "<hash>  <name>\\n" of the files in name order."""
    from repolm.hf_folder import weight_files

    hashes = {path.name: file_sha256(path) for path in weight_files(model_dir)}
    if len(hashes) == 1:
        return next(iter(hashes.values())), hashes
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(hashes.items()))
    return hashlib.sha256(listing.encode()).hexdigest(), hashes


class LocalGenerator(Generator):
    """Generates with a model folder on this machine (see the module docstring for prompts, batching and seeds)."""

    def __init__(
        self,
        model_dir: str | os.PathLike,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_seq_len: int = 4096,
        compile: bool = False,
    ) -> None:
        """`max_seq_len`: prompt plus new tokens, at most; longer prompts are cut (see the module docstring).
        `compile`: decode steps through `torch.compile` (`Engine(compile=True)`: frozen weights in C++ GEMM kernels on
        CPUs, CUDA graphs on GPUs; each new batch shape pays a compile)."""
        from repolm.infer.engine import Engine
        from repolm.infer.prompt_builder import PromptBuilder
        from repolm.infer.text import TextGenerator, load_model_and_tokenizer

        if batch_size < 1:
            raise RepolmError(f"batch_size must be >= 1, got {batch_size}")
        if max_seq_len < 2:
            raise RepolmError(f"max_seq_len must be >= 2, got {max_seq_len}")
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size
        self.max_seq_len = max_seq_len
        self.compile = compile
        model, tokenizer = load_model_and_tokenizer(model_dir, device, dtype)
        if max_seq_len > model.config.max_position_embeddings:
            logger.warning(
                "max_seq_len %d is longer than the model's max_position_embeddings %d",
                max_seq_len,
                model.config.max_position_embeddings,
            )
        self.tokenizer = tokenizer
        self.prompt_builder = PromptBuilder(tokenizer, fim_mode="psm")
        self.text_generator = TextGenerator(Engine(model, compile=compile), tokenizer)
        self._description: dict[str, Any] | None = None

    # -- description ----------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """kind, model path, weight hashes, tokenizer hash, model config, parameters, device, dtype, batching."""
        if self._description is None:
            from repolm.tokenizer.tokenizer import tokenizer_sha256

            model = self.text_generator.engine.model
            config = model.config
            combined, per_file = weights_sha256(self.model_dir)
            self._description = {
                "kind": "local",
                "model": str(self.model_dir.resolve()),
                "weights_sha256": combined,
                "weight_files_sha256": per_file,
                "tokenizer_sha256": tokenizer_sha256(self.model_dir),
                "config": config.to_dict(),
                "parameters": model.num_parameters(),
                "device": str(self.text_generator.engine.device),
                "dtype": str(model.embed_tokens.weight.dtype).removeprefix("torch."),
                "batch_size": self.batch_size,
                "max_seq_len": self.max_seq_len,
                "compile": self.compile,
            }
        return copy.deepcopy(self._description)

    # -- prompts --------------------------------------------------------------

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The token ids the model is given for `request`, cut to fit `max_seq_len` (RepolmError if impossible), by
        `repolm.infer.prompt_builder` with the evaluation's rule (no context, the suffix kept whole)."""
        from repolm.infer.prompt_builder import PromptBudget

        _check_request(request)
        budget = self.max_seq_len - request.max_new_tokens
        if budget < 1:
            raise RepolmError(
                f"max_new_tokens {request.max_new_tokens} leaves no room for a prompt in max_seq_len {self.max_seq_len}"
            )
        fit = PromptBudget(budget, context_share=0.0, suffix_share=1.0, overflow="cut")
        if request.kind == "chat":
            built = self.prompt_builder.chat(list(request.messages), budget=fit)
        elif request.kind == "infill":
            built = self.prompt_builder.completion(request.prefix, request.suffix, budget=fit)
        else:
            built = self.prompt_builder.completion(request.prompt, budget=fit)
        cut = built.cut
        if any(cut.values()):
            full = len(built.ids) + sum(cut.values())
            if request.kind == "infill":
                logger.warning(
                    "infilling prompt of %d tokens cut to %d: %d prefix tokens dropped at the start, %d suffix at the "
                    "end",
                    full,
                    len(built.ids),
                    cut["prefix"],
                    cut["suffix"],
                )
            else:
                logger.warning(
                    "%s prompt of %d tokens cut to its last %d (max_seq_len %d - max_new_tokens %d)",
                    request.kind,
                    full,
                    len(built.ids),
                    self.max_seq_len,
                    request.max_new_tokens,
                )
        return built.ids

    # -- generation -----------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], settings: DecodingSettings) -> list[Generation]:
        _check_settings(settings)
        answers: list[Generation | None] = [None] * len(requests)
        groups: dict[tuple[int, tuple[str, ...]], list[tuple[int, list[int]]]] = {}
        for index, request in enumerate(requests):
            try:
                ids = self.prompt_ids(request)
            except RepolmError as error:
                answers[index] = Generation(text="", error=one_line(error))
                continue
            groups.setdefault((request.max_new_tokens, tuple(request.stop)), []).append((index, ids))
        for (max_new_tokens, stop), items in groups.items():
            items.sort(key=lambda item: (-len(item[1]), item[0]))  # longest first: memory trouble shows at once
            for start in range(0, len(items), self.batch_size):
                batch = items[start : start + self.batch_size]
                seeds = [sampling_seed(requests[index], settings, index) for index, _ in batch]
                for index, generation in self._run_batch(batch, seeds, max_new_tokens, stop, settings):
                    answers[index] = generation
        assert all(answer is not None for answer in answers)
        return answers  # type: ignore[return-value]

    def _run_batch(
        self,
        batch: list[tuple[int, list[int]]],
        seeds: list[int],
        max_new_tokens: int,
        stop: tuple[str, ...],
        settings: DecodingSettings,
    ) -> list[tuple[int, Generation]]:
        from repolm.infer.sampling import SamplingParams

        indices = [index for index, _ in batch]
        params = SamplingParams(
            max_new_tokens=max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
        )
        try:
            texts = self.text_generator.generate_ids(
                [ids for _, ids in batch], params, stop, None if settings.temperature == 0 else seeds
            )
        except Exception as error:  # e.g. out of memory: one batch must not end the run
            if len(batch) > 1:
                logger.warning("a batch of %d failed (%s); running it one by one", len(batch), one_line(error))
                return [
                    answer
                    for item, seed in zip(batch, seeds, strict=True)
                    for answer in self._run_batch([item], [seed], max_new_tokens, stop, settings)
                ]
            logger.warning("request %d failed: %s", indices[0], one_line(error))
            return [(indices[0], Generation(text="", error=f"generation failed: {one_line(error)}"))]
        return [(index, Generation(text=text)) for index, text in zip(indices, texts, strict=True)]


# -----------------------------------------------------------------------------
# OpenAI-compatible endpoints


class _RequestFailed(Exception):
    """One request's final failure; the message is its one-line error."""


class EndpointGenerator(Generator):
    """Generates through an OpenAI-compatible HTTP server (see the module docstring)."""

    def __init__(
        self,
        url: str,
        model_name: str,
        api_key: str | None = None,
        timeout_seconds: float = 120.0,
        retries: int = 3,
        concurrency: int = 4,
        *,
        backoff_seconds: float = 1.0,
        fim_template: str = DEEPSEEK_FIM_TEMPLATE,
    ) -> None:
        """`url`: the server's base URL, with or without a trailing /v1. `retries`: further attempts after the first
        (so 1 + retries in all). `timeout_seconds`: httpx's limit on connecting, and on each read and write (not on
        the whole answer). `backoff_seconds`: the wait before the first retry, doubled for each further one.
        `fim_template`: the infilling prompt, with the fields {prefix} and {suffix}."""
        base = url.strip().rstrip("/")
        base = base.removesuffix("/v1").rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise RepolmError(f"endpoint url {url!r} must start with http:// or https://")
        try:
            parsed = httpx.URL(base)
        except httpx.InvalidURL as error:
            raise RepolmError(f"endpoint url {url!r} is not a URL ({one_line(error)})") from None
        if not parsed.host:
            raise RepolmError(f"endpoint url {url!r} has no host")
        if not model_name:
            raise RepolmError("the endpoint needs a model name (the server's name of the model)")
        if timeout_seconds <= 0:
            raise RepolmError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        if retries < 0:
            raise RepolmError(f"retries must be >= 0, got {retries}")
        if concurrency < 1:
            raise RepolmError(f"concurrency must be >= 1, got {concurrency}")
        if backoff_seconds < 0:
            raise RepolmError(f"backoff_seconds must be >= 0, got {backoff_seconds}")
        try:
            fields_ok = fim_template.format(prefix="\0p", suffix="\0s")
        except (KeyError, IndexError, ValueError) as error:
            raise RepolmError(f"fim_template {fim_template!r} is not valid: {one_line(error)}") from None
        if "\0p" not in fields_ok or "\0s" not in fields_ok:
            raise RepolmError(f"fim_template {fim_template!r} must contain {{prefix}} and {{suffix}}")
        self.base_url = base
        self.model_name = model_name
        self.timeout_seconds = float(timeout_seconds)
        self.retries = retries
        self.concurrency = concurrency
        self.backoff_seconds = float(backoff_seconds)
        self.fim_template = fim_template
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None

    def __repr__(self) -> str:
        return f"EndpointGenerator(url={self._public_url()!r}, model_name={self.model_name!r})"

    def _public_url(self) -> str:
        """The base URL without any user:password part."""
        return str(httpx.URL(self.base_url).copy_with(username=None, password=None))

    def describe(self) -> dict[str, Any]:
        """kind, url, model name and the client's settings; never the API key."""
        return {
            "kind": "endpoint",
            "url": self._public_url(),
            "model": self.model_name,
            "api_key": "set" if self._api_key else "none",
            "timeout_seconds": self.timeout_seconds,
            "retries": self.retries,
            "concurrency": self.concurrency,
            "fim_template": self.fim_template,
        }

    def _redact(self, message: str) -> str:
        return message.replace(self._api_key, "***") if self._api_key else message

    def request_body(self, request: GenerationRequest, settings: DecodingSettings, index: int) -> tuple[str, dict]:
        """(path, JSON body) of the API call for one request."""
        _check_request(request)
        body: dict[str, Any] = {"model": self.model_name}
        if request.kind == "chat":
            path = "/v1/chat/completions"
            body["messages"] = [dict(message) for message in request.messages]
        else:
            path = "/v1/completions"
            if request.kind == "infill":
                body["prompt"] = self.fim_template.format(prefix=request.prefix, suffix=request.suffix)
            else:
                body["prompt"] = request.prompt
        body.update(
            max_tokens=request.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            seed=sampling_seed(request, settings, index),
            n=1,
        )
        stop = [s for s in request.stop if s]
        if stop:
            body["stop"] = stop[:MAX_API_STOP_STRINGS]
        return path, body

    def generate(self, requests: Sequence[GenerationRequest], settings: DecodingSettings) -> list[Generation]:
        _check_settings(settings)
        if not requests:
            return []
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        # one client for all worker threads (httpx.Client is thread-safe), closed with its connections at the end
        with (
            httpx.Client(timeout=self.timeout_seconds, headers=headers, limits=limits) as client,
            ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="endpoint") as pool,
        ):
            futures = [
                pool.submit(self._answer, client, request, settings, index) for index, request in enumerate(requests)
            ]
            return [future.result() for future in futures]

    def _answer(
        self, client: httpx.Client, request: GenerationRequest, settings: DecodingSettings, index: int
    ) -> Generation:
        try:
            path, body = self.request_body(request, settings, index)
            data = self._post(client, path, body)
            text = self._text(data, chat=request.kind == "chat")
        except (RepolmError, _RequestFailed) as error:
            message = self._redact(one_line(error))
            logger.warning("request %d: %s", index, message)
            return Generation(text="", error=message)
        return Generation(text=truncate_at_stops(text, request.stop))

    def _post(self, client: httpx.Client, path: str, body: dict) -> Any:
        """The JSON answer of one API call, with retries; raises `_RequestFailed` with a one-line reason."""
        attempts = self.retries + 1
        for attempt in range(attempts):
            retry_after = 0.0
            try:
                response = client.post(self.base_url + path, json=body)
            except httpx.TimeoutException as error:
                reason = f"timed out after {self.timeout_seconds:g} s ({type(error).__name__}) on POST {path}"
            except httpx.TransportError as error:
                reason = f"connection failed on POST {path} ({type(error).__name__}: {one_line(error)})"
            except httpx.HTTPError as error:  # e.g. an invalid URL or header: retrying would not help
                raise _RequestFailed(f"POST {path} failed ({type(error).__name__}: {one_line(error)})") from None
            else:
                if response.is_success:
                    try:
                        return response.json()
                    except ValueError:
                        excerpt = one_line(response.text[:ERROR_BODY_CHARACTERS])
                        raise _RequestFailed(f"malformed answer to POST {path}: not JSON ({excerpt!r})") from None
                excerpt = one_line(response.text[:ERROR_BODY_CHARACTERS])
                reason = f"HTTP {response.status_code} {response.reason_phrase} on POST {path}: {excerpt}".rstrip(": ")
                if response.status_code != 429 and response.status_code < 500:
                    raise _RequestFailed(reason)
                retry_after = _retry_after_seconds(response)
            if attempt + 1 == attempts:
                raise _RequestFailed(f"{reason} (after {attempts} attempt{'s' if attempts > 1 else ''})")
            wait = min(max(self.backoff_seconds * 2**attempt, retry_after), MAX_BACKOFF_SECONDS)
            logger.info("%s; retry %d of %d in %.1f s", self._redact(reason), attempt + 1, self.retries, wait)
            time.sleep(wait)
        raise AssertionError("unreachable")

    @staticmethod
    def _text(data: Any, chat: bool) -> str:
        """The generated text of an API answer; `_RequestFailed` naming what is missing or malformed."""
        if not isinstance(data, dict):
            raise _RequestFailed(f"malformed answer: expected a JSON object, got {type(data).__name__}")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            if "error" in data:
                error = data["error"]
                detail = error.get("message", error) if isinstance(error, dict) else error
                raise _RequestFailed("the server answered an error: " + one_line(str(detail)))
            raise _RequestFailed("malformed answer: no choices")
        choice = choices[0]
        if not isinstance(choice, dict):
            raise _RequestFailed("malformed answer: choices[0] is not an object")
        if chat:
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else None
            field = "choices[0].message.content"
        else:
            text, field = choice.get("text"), "choices[0].text"
        if not isinstance(text, str):
            raise _RequestFailed(f"malformed answer: {field} is {type(text).__name__}, not a string")
        return text


def _retry_after_seconds(response: httpx.Response) -> float:
    """The server's Retry-After in seconds, when it gives a number; 0 otherwise."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return 0.0
