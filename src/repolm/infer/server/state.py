"""What one running server holds: its settings (`ServerConfig`) and the objects its requests share (`ServerState`)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from repolm.errors import RepolmError

if TYPE_CHECKING:
    from repolm.infer.batching import ContinuousBatcher
    from repolm.infer.prompt_builder import PromptBuilder
    from repolm.infer.retrieval import RepositoryRetriever
    from repolm.infer.server.metrics import ServerMetrics
    from repolm.tokenizer import CodeTokenizer

logger = logging.getLogger(__name__)


@dataclass
class ServerConfig:
    """Settings and limits of `repolm serve` (every limit answers 400 naming the field when a request passes it)."""

    model_name: str = "repolm"
    """The model's id in /v1/models and in responses (the `model` of requests is not checked: one model is served)."""
    api_key: str | None = None
    """When set, every endpoint but the page, /health and the API description needs `Authorization: Bearer KEY`."""
    max_body_bytes: int = 2 * 1024 * 1024
    """Largest request body (by Content-Length and by the bytes actually read); more answers 413."""
    max_json_depth: int = 32
    """Deepest nesting of arrays and objects in a request body."""
    max_tokens_limit: int = 4096
    """Most tokens one request may generate (`max_tokens`, `n_predict`); also bounded by the batcher's max_seq_len."""
    default_max_tokens: int = 256
    """Tokens generated when a chat request gives no `max_tokens` or an /infill request `n_predict` -1."""
    max_n: int = 8
    """Most choices per OpenAI request (`n`)."""
    max_prompt_tokens: int | None = None
    """Longest prompt in tokens; None: the batcher's max_seq_len minus the tokens to generate."""
    context_share: float = 0.25
    """Share of the prompt budget that cross-file context (retrieved and `input_extra`) may take."""
    infill_suffix_share: float = 0.25
    """Share of the local window the suffix keeps when an /infill prompt is cut (llama.cpp's 3:1)."""
    retry_after_seconds: int = 1
    """`Retry-After` of the 503 answered when the batcher's queue is full."""
    refresh_interval_seconds: float = 5.0
    """A retrieval first re-indexes the repository's changed files when the last refresh is older than this."""
    retrieval_top_k: int | None = None
    """Snippets retrieved per request; None: the retriever's default."""
    shutdown_timeout_seconds: float = 30.0
    """On SIGTERM, requests still running after this long are cancelled."""

    def __post_init__(self) -> None:
        positive = ("max_body_bytes", "max_json_depth", "max_tokens_limit", "default_max_tokens", "max_n")
        for name in positive:
            if getattr(self, name) < 1:
                raise RepolmError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise RepolmError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        for name in ("context_share", "infill_suffix_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise RepolmError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.api_key is not None and not self.api_key:
            raise RepolmError("api_key must not be empty (leave it unset to serve without a key)")
        if not self.model_name:
            raise RepolmError("model_name must not be empty")


@dataclass
class ServerState:
    """The objects every request of one server uses."""

    config: ServerConfig
    batcher: ContinuousBatcher
    tokenizer: CodeTokenizer
    prompt_builder: PromptBuilder
    """Builds the prompts the server assembles (FIM from a prefix and a suffix, /infill, cross-file context): the
    client's and the repository's texts are encoded literally (`literal_special_tokens`), so a special-token string
    inside them is text, never a sentinel."""
    verbatim_prompt_builder: PromptBuilder
    """Builds a plain completion prompt as the client wrote it: special-token strings in it are their tokens (a
    client such as Continue writes DeepSeek-Coder's FIM template itself)."""
    metrics: ServerMetrics
    retriever: RepositoryRetriever | None = None
    """Cross-file retrieval over `--repo`; None without a repository."""
    created: int = field(default_factory=lambda: int(time.time()))
    refresh_lock: threading.Lock = field(default_factory=threading.Lock)
    """Held while the repository is re-indexed (in a worker thread); retrievals meanwhile use the last index."""
    last_refresh: float = field(default_factory=time.monotonic)
    """`time.monotonic()` of the repository's last (re-)indexing (the retriever indexes when it is built)."""

    @property
    def max_seq_len(self) -> int:
        """Prompt plus generated tokens of one request, at most (the batcher's KV cache row)."""
        return self.batcher.max_seq_len

    @property
    def max_new_tokens(self) -> int:
        """Most tokens one request may ask for."""
        return max(1, min(self.config.max_tokens_limit, self.max_seq_len - 1))

    def refresh_repository(self, force: bool = False) -> int | None:
        """Re-index the repository's changed files when the last refresh is older than the interval (or `force`);
        the number of files that changed, None when nothing ran (also when another thread is re-indexing: its
        index comes soon enough). Call from a worker thread: it reads the repository's changed files."""
        if self.retriever is None:
            return None
        if not force and time.monotonic() - self.last_refresh < self.config.refresh_interval_seconds:
            return None
        if not self.refresh_lock.acquire(blocking=False):
            return None
        try:
            started = time.perf_counter()
            changed = self.retriever.refresh()
            self.last_refresh = time.monotonic()
            logger.info("repository re-indexed: %d files changed (%.2f s)", changed, time.perf_counter() - started)
            return changed
        finally:
            self.refresh_lock.release()
