"""Request bodies of the server's endpoints, with explicit limits (they are also the OpenAPI spec's schemas).

Types are strict (`"max_tokens": "16"` is refused, not converted; integers are accepted where floats are), unknown
fields are ignored (clients send many: `user`, llama.vim's `n_indent`, `samplers`, `cache_prompt`, ...), and every
bound is a field constraint, so a bad request answers 400 naming the field. Limits that depend on the served model
or the server's settings (tokens of the prompt, `max_tokens` within the context window, `n`) are checked by the
handlers against `ServerConfig`, with the same error shape. Features that the server does not have (`echo`,
`logprobs`, `best_of`, penalties, `logit_bias`, tools) are fields too, so that asking for them is refused clearly
instead of being ignored.

repolm's own options ride in a `repolm` object (`RepolmOptions`), e.g. with the openai client
`extra_body={"repolm": {"path": "pkg/a.py"}}`: the current file's path (its language picks the comment syntax of the
cross-file context and heads the prompt), whether to retrieve cross-file context from the server's repository, and
whether to return the exact prompt and the snippets used.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WrapValidator
from pydantic_core import PydanticCustomError

MAX_TOKENS_FIELD = 2**31 - 1
"""Schema bound of token counts; the server's own limit (`ServerConfig.max_tokens_limit`) is checked per request."""
MAX_N_FIELD = 128
"""Schema bound of `n`; the server's limit is `ServerConfig.max_n`."""
MAX_STOP_STRINGS = 32
"""Stop strings per request. OpenAI allows 4, but Continue's autocomplete sends about 10 (its template's, blank
lines, code fences, the language's), so the limit is higher, as vLLM's and llama.cpp's servers have none."""
MAX_STOP_CHARACTERS = 256
MAX_PATH_CHARACTERS = 4096
MAX_NAME_CHARACTERS = 256
MAX_MESSAGES = 1024
MAX_INPUT_EXTRA = 256
MAX_TOKEN_IDS = 1 << 20
TOKEN_ID = Annotated[int, Field(ge=0, le=2**31 - 1)]
SEED_MINIMUM, SEED_MAXIMUM = -(2**63), 2**63 - 1


def one_of(description: str) -> WrapValidator:
    """A validator of a union field that reports one clear message ("must be ...") instead of one per member."""

    def validate(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("union_type", "must be {description}", {"description": description}) from None

    return WrapValidator(validate)


StopText = Annotated[str, Field(max_length=MAX_STOP_CHARACTERS)]
_STOP_RULE = f"at most {MAX_STOP_STRINGS} strings (each at most {MAX_STOP_CHARACTERS} characters)"
OpenAIStop = Annotated[
    StopText | Annotated[list[StopText], Field(max_length=MAX_STOP_STRINGS)] | None,
    one_of(f"a string or a list of {_STOP_RULE}"),
]
TokenIds = Annotated[list[TOKEN_ID], Field(min_length=1, max_length=MAX_TOKEN_IDS)]
CompletionPrompt = Annotated[
    str
    | Annotated[list[str], Field(min_length=1, max_length=1)]
    | TokenIds
    | Annotated[list[TokenIds], Field(min_length=1, max_length=1)],
    one_of("a string, a list of one string, a list of token ids, or a list of one list of token ids"),
]


class RequestModel(BaseModel):
    """Base of request bodies: strict types, unknown fields ignored."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)


class RepolmOptions(RequestModel):
    """repolm's extension of the completion requests (`"repolm": {...}` in the body)."""

    path: str | None = Field(
        None,
        max_length=MAX_PATH_CHARACTERS,
        description="The current file's path in the repository (e.g. pkg/a.py): picks the comment syntax of the "
        "cross-file context, heads the prompt with the file's path comment, and is the retrieval's current file.",
    )
    retrieve: bool | None = Field(
        None,
        description="Retrieve cross-file context from the server's --repo. Default: when the server has a "
        "repository and `path` is given.",
    )
    return_prompt: bool = Field(
        False, description="Return the exact prompt, its token count and the context snippets in `repolm`."
    )


class StreamOptions(RequestModel):
    include_usage: bool = False


class OpenAISampling(RequestModel):
    """Fields shared by /v1/completions and /v1/chat/completions."""

    model: str | None = Field(None, max_length=MAX_NAME_CHARACTERS, description="Ignored: one model is served.")
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1, le=MAX_TOKENS_FIELD, description="Extension (as vLLM): 0 or -1 = off.")
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0, description="Extension (as vLLM): 1.0 = off.")
    n: int = Field(1, ge=1, le=MAX_N_FIELD, description="Choices to generate (at most the server's --max-n).")
    seed: int | None = Field(None, ge=SEED_MINIMUM, le=SEED_MAXIMUM, description="Choice i samples with seed + i.")
    stop: OpenAIStop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="Only 0 is supported.")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="Only 0 is supported.")
    logit_bias: dict[str, float] | None = Field(None, description="Not supported (refused when not empty).")
    user: str | None = Field(None, max_length=MAX_NAME_CHARACTERS)


class CompletionRequest(OpenAISampling):
    """`POST /v1/completions` (OpenAI's legacy completions; `suffix` makes it fill-in-the-middle)."""

    prompt: CompletionPrompt = ""
    suffix: str | None = Field(None, description="Text after the cursor: the prompt becomes a FIM prompt.")
    max_tokens: int | None = Field(16, ge=1, le=MAX_TOKENS_FIELD, description="Default 16, as OpenAI's.")
    echo: bool = Field(False, description="Not supported (refused when true).")
    logprobs: int | None = Field(None, ge=0, le=20, description="Not supported (refused when given).")
    best_of: int | None = Field(None, ge=1, le=MAX_N_FIELD, description="Only 1 is supported.")
    repolm: RepolmOptions | None = None


class TextPart(RequestModel):
    type: Literal["text"]
    text: str


ChatContent = Annotated[
    str | Annotated[list[TextPart], Field(max_length=MAX_MESSAGES)] | None,
    one_of('a string or a list of {"type": "text", "text": ...} parts'),
]


class ChatMessage(RequestModel):
    role: Literal["system", "developer", "user", "assistant"] = Field(description='"developer" is treated as "system".')
    content: ChatContent = None
    name: str | None = Field(None, max_length=MAX_NAME_CHARACTERS, description="Ignored.")


class ChatCompletionRequest(OpenAISampling):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_FIELD, description="Default: the server's default.")
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_FIELD, description="Same as max_tokens.")
    logprobs: bool = Field(False, description="Not supported (refused when true).")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="Not supported (refused when given).")
    tools: list[dict[str, Any]] | None = Field(None, max_length=128, description="Not supported.")
    response_format: dict[str, Any] | None = Field(None, description='Only {"type": "text"} is supported.')


class InputExtra(RequestModel):
    """One chunk of llama.cpp's `input_extra`: context from another file, given by the editor."""

    filename: str = Field("", max_length=MAX_PATH_CHARACTERS)
    text: str


LlamaStop = Annotated[list[StopText], Field(max_length=MAX_STOP_STRINGS)]


class LlamaSampling(RequestModel):
    """Fields shared by llama.cpp's /completion and /infill (defaults as llama.cpp's server)."""

    n_predict: int = Field(
        -1, ge=-1, le=MAX_TOKENS_FIELD, description="-1: the server's default; 0: only check the prompt."
    )
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_k: int = Field(40, ge=-1, le=MAX_TOKENS_FIELD, description="0 or -1 = off.")
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    repeat_penalty: float = Field(1.0, gt=0.0, le=10.0)
    seed: int = Field(-1, ge=-1, le=SEED_MAXIMUM, description="-1: random.")
    stop: LlamaStop = Field(default_factory=list)
    stream: bool = False
    t_max_predict_ms: int = Field(
        0, ge=0, le=86_400_000, description="Stop generating this long after the first token (0 = no limit)."
    )
    response_fields: list[Annotated[str, Field(max_length=MAX_NAME_CHARACTERS)]] | None = Field(
        None, max_length=64, description='Only these fields of the answer ("timings/prompt_n": nested, flattened).'
    )
    repolm: RepolmOptions | None = None


class InfillRequest(LlamaSampling):
    """`POST /infill` (llama.cpp's fill-in-the-middle endpoint, as llama.vim and llama.vscode send it)."""

    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[InputExtra] = Field(default_factory=list, max_length=MAX_INPUT_EXTRA)
    prompt: str = Field("", description="Text after the FIM middle token: the start of the middle, as llama.cpp.")


LlamaPrompt = Annotated[str | TokenIds, one_of("a string or a list of token ids")]


class LlamaCompletionRequest(LlamaSampling):
    """`POST /completion` (llama.cpp's completion endpoint)."""

    prompt: LlamaPrompt


class TokenizeRequest(RequestModel):
    content: str
    add_special: bool = Field(False, description="Prepend BOS when the tokenizer adds one.")
    with_pieces: bool = Field(False, description="Return [{id, piece}] instead of ids.")
    parse_special: bool = Field(True, description="Special-token strings become their ids (false: plain text).")


class DetokenizeRequest(RequestModel):
    tokens: Annotated[list[TOKEN_ID], Field(max_length=MAX_TOKEN_IDS)]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error object."""

    error: ErrorDetail
