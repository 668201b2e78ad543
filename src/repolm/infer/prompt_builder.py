"""One prompt builder: every completion-like request becomes the exact token ids the model is given.

Used by the evaluation's `LocalGenerator`, the server (`/v1/completions` with `suffix`, `/v1/chat/completions`,
llama.cpp's `/infill` with `input_extra`) and `repolm complete`, so that all of them fit prompts the same way.
`PromptBuilder.completion` and `PromptBuilder.chat` return a `BuiltPrompt`: the ids, the same decoded with special
tokens (what `--show-prompt` and the page show), the cross-file snippets that fit and the tokens cut.

Layouts (`[BOS]` when the tokenizer adds BOS, as DeepSeek-Coder's do):
- completion (no suffix): `[BOS] context header prefix`;
- FIM PSM (a suffix, even ""): `[BOS] <｜fim▁begin｜> context header prefix <｜fim▁hole｜> suffix <｜fim▁end｜>`;
- FIM SPM: `[BOS] <｜fim▁begin｜><｜fim▁hole｜> suffix <｜fim▁end｜> context header prefix` (repolm.infer.prompts);
- chat: the messages through the tokenizer's chat template, else DeepSeek-Coder's instruct template
  (`repolm.tokenizer.DEEPSEEK_CODER_CHAT_TEMPLATE`) when the folder has none, with the generation prompt, rendered
  by `repolm.tokenizer.ChatFormat`, the renderer `repolm sft` trains with.
Every part (each snippet, the header, prefix, suffix) is encoded on its own and the ids are joined, so no BPE
merge crosses a sentinel or a part; the snippets and the header end in a line break, where DeepSeek-Coder's
pre-tokenizer splits anyway.

Cross-file context (CrossCodeEval's format, ../shared/docs/peers.md 4.4), in the current file's comment syntax
(`#` for Python, `//` for Java/JavaScript/C/Go/Rust, `--` for SQL/Lua/Haskell, `;` for Lisps, ...; per line block
comments for languages that have only those, e.g. CSS; `#` when the language is unknown or has no comments):

    # Here are some relevant code fragments from other files of the repo:
    <blank line>
    # the below code fragment can be found in:
    # pkg/util.py
    # def helper():
    #     return 42
    <blank line>

With `context_format="files"` each snippet is written instead as a file of a repository-level sample, the layout
the model was pretrained on and DeepSeek-Coder's README (section 4.4) shows for repository-level completion: the
snippet's path comment, its code as it is, a blank line; no header line:

    # pkg/util.py
    def helper():
        return 42
    <blank line>

Snippets are taken whole, in the order given (a retriever gives the best first): one that does not fit the
context budget is dropped and the next, smaller ones are still tried; the header is written only when at least one
snippet fits. `BuiltPrompt.context` lists the snippets that fit, in prompt order.

The path header: when `path` is given and `path_comment` is on, the prefix is headed by the file's path comment
(`repolm.data.languages.path_header`, e.g. "# pkg/main.py"), the line that heads every file of the repository-level
samples DeepSeek-Coder and repolm's data pipeline train on (paper section 2.2). It is written whether or not the
prefix starts at the top of the file (an editor's window often does not), is never cut, and is left out for
languages without comment syntax (JSON, Text).

Budgets (`PromptBudget`), in tokens, for `max_prompt_tokens` = model window - max_tokens:
- fixed parts first: BOS, the sentinels, the path header; a budget smaller than those is an error;
- cross-file context: at most `context_share` of `max_prompt_tokens`; it is reserved before the local window is cut
  (as CrossCodeEval's scripts reserve `cfc_seq_length`), so in a long file it displaces the prefix's oldest tokens;
- the local window gets the rest. It is prefix-heavy: when prefix + suffix overflow, the suffix keeps at most
  `suffix_share` of the window (more when the prefix is short) and the prefix the rest; the prefix loses tokens
  from its start, the suffix from its end (llama.cpp's /infill keeps prefix:suffix 3:1, `suffix_share=0.25`).
  `suffix_share=1.0` is the evaluation's rule: the suffix is kept whole and the prefix is cut first, then the
  suffix from its end;
- a plain completion keeps its last tokens (and BOS); a chat prompt too: BOS and its last tokens (the
  evaluation's rule), or, with `overflow="refuse"`, a `RepolmError` with the token counts (what a server answers
  with 400). With "refuse", completion and FIM prompts are refused when prefix + suffix + fixed parts do not fit;
  context snippets are never a reason to refuse: they take at most what is left, up to their share.
Cuts fall on token boundaries of each part's own encoding and never inside a character: when a byte-level token
boundary splits a multi-byte character, one to three more tokens are dropped. `BuiltPrompt.cut` counts the tokens
dropped per part: "prefix" (of a completion's text too), "suffix", "context" (tokens of the rendered snippets
left out) and "prompt" (of a chat prompt).

Special-token strings inside the texts (e.g. "<|EOT|>" in a prefix) become their single ids, as everywhere in
repolm's encoding (`CodeTokenizer.encode`).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from repolm.data.languages import get_language, language_of, path_header
from repolm.errors import RepolmError
from repolm.infer.prompts import FimMode, fim_layout_ids
from repolm.infer.retrieval import ContextSnippet
from repolm.tokenizer import DEEPSEEK_CODER_CHAT_TEMPLATE, ChatFormat, CodeTokenizer

logger = logging.getLogger(__name__)

PromptKind = Literal["completion", "fim-psm", "fim-spm", "chat"]
Overflow = Literal["cut", "refuse"]
ContextFormat = Literal["comments", "files"]
CONTEXT_FORMATS: tuple[str, ...] = ("comments", "files")

CONTEXT_HEADER = "Here are some relevant code fragments from other files of the repo:"
"""First line of the cross-file context (CrossCodeEval's wording)."""
SNIPPET_HEADER = "the below code fragment can be found in:"
"""First line of each snippet, followed by its path (CrossCodeEval's wording)."""
DEFAULT_COMMENT_MARK = "#"
"""The line-comment mark when the current file's language is unknown or has no comment syntax."""
LANGUAGE_HEAD_CHARACTERS = 200
"""How much of the prefix `language_of` reads for a shebang or modeline when the path has no known extension."""

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


@dataclass(frozen=True)
class PromptBudget:
    """How many tokens a prompt may have and how they are shared (see the module docstring).

    Attributes:
        max_prompt_tokens: the prompt's length limit in tokens (the model's window minus the tokens to generate).
        context_share: at most this share of `max_prompt_tokens` goes to cross-file context, in [0, 1]. The
            default 0.25 is DeepSeek-Coder's CrossCodeEval setting (512 context tokens of a 2048 window).
        suffix_share: when prefix + suffix overflow, the suffix keeps at most this share of the local window, in
            [0, 1] (more if the prefix leaves room). 0.25: llama.cpp's prefix:suffix 3:1; 1.0: the evaluation's
            rule (the suffix whole, the prefix cut first).
        overflow: "cut" (the prompt is cut to fit) or "refuse" (a `RepolmError` naming the token counts when the
            prompt without context does not fit).
    """

    max_prompt_tokens: int
    context_share: float = 0.25
    suffix_share: float = 0.25
    overflow: Overflow = "cut"

    def __post_init__(self) -> None:
        if isinstance(self.max_prompt_tokens, bool) or not isinstance(self.max_prompt_tokens, int):
            raise RepolmError(f"max_prompt_tokens must be an integer, got {self.max_prompt_tokens!r}")
        if self.max_prompt_tokens < 1:
            raise RepolmError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        for name in ("context_share", "suffix_share"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
                raise RepolmError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.overflow not in ("cut", "refuse"):
            raise RepolmError(f"overflow must be 'cut' or 'refuse', got {self.overflow!r}")


@dataclass
class BuiltPrompt:
    """A prompt as the model gets it.

    Attributes:
        ids: the token ids the model is given, exactly.
        text: the same ids decoded with special tokens (`tokenizer.decode(ids)`), for people to read.
        kind: "completion", "fim-psm", "fim-spm" or "chat".
        context: the cross-file snippets in the prompt, in prompt order.
        cut: tokens dropped per part: {"prefix": n, "suffix": n, "context": n, "prompt": n}.
    """

    ids: list[int]
    text: str
    kind: PromptKind
    context: list[ContextSnippet] = field(default_factory=list)
    cut: dict[str, int] = field(default_factory=lambda: {"prefix": 0, "suffix": 0, "context": 0, "prompt": 0})


# -----------------------------------------------------------------------------
# Rendering cross-file context


def comment_line(text: str, language: str | None) -> str:
    """One line of text as a comment line of `language` (a name of `repolm.data.languages`), ending in "\\n".

    The language's line comment ("# text"; an empty line is the mark alone); for languages with only block
    comments, one block comment per line with the markers inside the text broken up (`path_header`); "# text" when
    the language is None or has no comment syntax.
    """
    entry = get_language(language) if language is not None else None
    if entry is not None and entry.line_comment is None and entry.block_comment is not None:
        return path_header(entry.name, text)
    mark = entry.line_comment if entry is not None and entry.line_comment is not None else DEFAULT_COMMENT_MARK
    return f"{mark} {text}\n" if text else f"{mark}\n"


def render_context_header(language: str | None) -> str:
    """The line that opens the cross-file context, then a blank line."""
    return comment_line(CONTEXT_HEADER, language) + "\n"


def render_snippet(snippet: ContextSnippet, language: str | None) -> str:
    """One snippet as comment lines of `language`: the snippet header, its path, its code lines, then a blank line.

    Lines are split with `str.splitlines` (every line break Python knows, so that no code escapes its comment);
    control characters in the path become spaces.
    """
    lines = [SNIPPET_HEADER, _CONTROL_CHARACTERS.sub(" ", snippet.path), *snippet.text.splitlines()]
    return "".join(comment_line(line, language) for line in lines) + "\n"


def render_snippet_as_file(snippet: ContextSnippet) -> str:
    """One snippet as a file of a repository-level sample: its path comment (in the snippet's own language, or "#"
    when unknown), its text ending in a line break, then a blank line."""
    path = _CONTROL_CHARACTERS.sub(" ", snippet.path)
    language = language_of(path, snippet.text[:LANGUAGE_HEAD_CHARACTERS])
    header = path_header(language, path) if language is not None else ""
    header = header or comment_line(path, None)
    text = snippet.text if snippet.text.endswith("\n") or not snippet.text else snippet.text + "\n"
    return header + text + "\n"


def render_context(
    snippets: Sequence[ContextSnippet], language: str | None, context_format: ContextFormat = "comments"
) -> str:
    """The whole cross-file context block of `snippets` ("" for none), as the builder writes it."""
    if not snippets:
        return ""
    if context_format == "files":
        return "".join(render_snippet_as_file(snippet) for snippet in snippets)
    return render_context_header(language) + "".join(render_snippet(snippet, language) for snippet in snippets)


# -----------------------------------------------------------------------------
# Encoding with character boundaries


@dataclass
class _Encoded:
    """Ids of one part, and where a cut may fall: `starts[i]` is True when a cut before token i (or i == len(ids))
    does not split a character."""

    ids: list[int]
    starts: list[bool]

    def keep_last(self, count: int) -> int:
        """The index from which at most `count` last tokens are kept without starting inside a character."""
        start = len(self.ids) - max(0, min(count, len(self.ids)))
        while not self.starts[start]:
            start += 1
        return start

    def keep_first(self, count: int) -> int:
        """The end index of at most `count` first tokens, not ending inside a character."""
        end = max(0, min(count, len(self.ids)))
        while not self.starts[end]:
            end -= 1
        return end


def _encode(tokenizer: CodeTokenizer, text: str, literal_special_tokens: bool) -> _Encoded:
    """`tokenizer.encode(text)` with character boundaries from the encoding's character offsets: the byte-level
    tokens of one character all carry that character's offsets, so a token starts a character when it begins at or
    after the end of the token before it."""
    encoding = tokenizer.encoding_backend(literal_special_tokens).encode(text, add_special_tokens=False)
    offsets = encoding.offsets
    starts = [True] + [offsets[i][0] >= offsets[i - 1][1] for i in range(1, len(offsets))] + [True]
    return _Encoded(list(encoding.ids), starts)


# -----------------------------------------------------------------------------
# The builder


def _check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise RepolmError(f"{name} must be a string, got {type(value).__name__}")


class PromptBuilder:
    """Builds completion, FIM and chat prompts for one tokenizer (see the module docstring).

    `fim_mode`: "psm" (DeepSeek-Coder's training layout) or "spm". `chat_template`: a Jinja chat template to use
    instead of the tokenizer's; None: the tokenizer's, else DeepSeek-Coder's instruct template. `path_comment`: head
    the prefix with the current file's path comment when a path is given. `literal_special_tokens`: special-token
    strings inside prefixes, suffixes, snippets and paths are encoded as the plain text they are, never as the
    sentinels themselves (a server sets it: a client's text or a repository's file must not inject `<｜fim▁hole｜>`
    or `<|EOT|>`); off by default, as Hugging Face tokenizers and the DeepSeek-Coder evaluation encode.
    """

    def __init__(
        self,
        tokenizer: CodeTokenizer,
        fim_mode: FimMode = "psm",
        chat_template: str | None = None,
        path_comment: bool = True,
        literal_special_tokens: bool = False,
    ) -> None:
        if fim_mode not in ("psm", "spm"):
            raise RepolmError(f"unknown FIM mode {fim_mode!r}; use 'psm' or 'spm'")
        if chat_template is not None and not isinstance(chat_template, str):
            raise RepolmError(f"chat_template must be a string, got {type(chat_template).__name__}")
        self.tokenizer = tokenizer
        self.fim_mode: FimMode = fim_mode
        self.path_comment = path_comment
        self.literal_special_tokens = literal_special_tokens
        if chat_template is not None:
            self.chat_template = chat_template
        elif tokenizer.chat_template is not None:
            self.chat_template = tokenizer.chat_template
        else:
            logger.info("the tokenizer has no chat template: chat prompts use DeepSeek-Coder's instruct template")
            self.chat_template = DEEPSEEK_CODER_CHAT_TEMPLATE
        self.chat_format = ChatFormat(tokenizer, self.chat_template)

    def _bos(self) -> list[int]:
        bos = self.tokenizer.bos_id
        return [bos] if self.tokenizer.add_bos_token and bos is not None else []

    # -- completion and fill-in-the-middle -----------------------------------

    def completion(
        self,
        prefix: str,
        suffix: str | None = None,
        *,
        budget: PromptBudget,
        context: Sequence[ContextSnippet] = (),
        path: str | None = None,
        context_format: ContextFormat = "comments",
    ) -> BuiltPrompt:
        """The prompt for text before a cursor (`prefix`) and, for fill-in-the-middle, after it (`suffix`).

        `suffix` None: a plain completion; a string (even ""): FIM in the builder's mode. `context`: cross-file
        snippets, best first, written as `context_format` says ("comments": CrossCodeEval's; "files": as files of a
        repository-level sample). `path`: the current file's path (its language picks the comment syntax of the
        context; with `path_comment`, its path comment heads the prefix). RepolmError for bad arguments, for a
        tokenizer without FIM tokens, for a budget without room for the fixed parts, and for a prompt that does
        not fit with `overflow="refuse"`.
        """
        _check_text("prefix", prefix)
        if suffix is not None:
            _check_text("suffix", suffix)
        if path is not None:
            _check_text("path", path)
        if not isinstance(budget, PromptBudget):
            raise RepolmError(f"budget must be a PromptBudget, got {type(budget).__name__}")
        if context_format not in CONTEXT_FORMATS:
            raise RepolmError(f"context_format must be one of {', '.join(CONTEXT_FORMATS)}, got {context_format!r}")
        snippets = list(context)
        for index, snippet in enumerate(snippets):
            if not isinstance(snippet, ContextSnippet):
                raise RepolmError(f"context[{index}] must be a ContextSnippet, got {type(snippet).__name__}")
            _check_text(f"context[{index}].path", snippet.path)
            _check_text(f"context[{index}].text", snippet.text)
        fim = suffix is not None
        tokenizer = self.tokenizer
        if fim and None in (tokenizer.fim_begin_id, tokenizer.fim_hole_id, tokenizer.fim_end_id):
            raise RepolmError("the tokenizer has no FIM tokens (<｜fim▁begin｜>, <｜fim▁hole｜>, <｜fim▁end｜>)")

        language = language_of(path, prefix[:LANGUAGE_HEAD_CHARACTERS]) if path else None
        header = path_header(language, path) if path and language is not None and self.path_comment else ""
        header_ids = tokenizer.encode(header, literal_special_tokens=self.literal_special_tokens) if header else []
        fixed = len(self._bos()) + (3 if fim else 0) + len(header_ids)
        limit = budget.max_prompt_tokens
        room = limit - fixed
        if room < 0:
            raise RepolmError(
                f"max_prompt_tokens {limit} leaves no room for the prompt: BOS, FIM sentinels and the path comment "
                f"take {fixed} tokens"
            )
        prefix_part = _encode(tokenizer, prefix, self.literal_special_tokens)
        suffix_part = _encode(tokenizer, suffix, self.literal_special_tokens) if fim else _Encoded([], [True])
        local_tokens = len(prefix_part.ids) + len(suffix_part.ids)
        if not fim and room == 0 and prefix_part.ids:
            raise RepolmError(f"max_prompt_tokens {limit} leaves no room for the prompt's text")
        if budget.overflow == "refuse" and local_tokens > room:
            raise RepolmError(
                f"the prompt has {fixed + local_tokens} tokens (prefix {len(prefix_part.ids)}, suffix "
                f"{len(suffix_part.ids)}, BOS/sentinels/path comment {fixed}), more than max_prompt_tokens {limit}"
            )

        context_limit = min(math.floor(budget.context_share * limit), room)
        if budget.overflow == "refuse":
            context_limit = min(context_limit, room - local_tokens)
        context_ids, fitted, context_cut = self._fit_context(snippets, language, context_limit, context_format)

        window = room - len(context_ids)
        suffix_keep = min(
            len(suffix_part.ids), max(math.floor(window * budget.suffix_share), window - len(prefix_part.ids))
        )
        prefix_keep = min(len(prefix_part.ids), window - suffix_keep)
        prefix_start = prefix_part.keep_last(prefix_keep)
        suffix_end = suffix_part.keep_first(suffix_keep)
        prefix_region = [*context_ids, *header_ids, *prefix_part.ids[prefix_start:]]
        if fim:
            kept_suffix = suffix_part.ids[:suffix_end]
            ids = fim_layout_ids(tokenizer, prefix_region, kept_suffix, self.fim_mode)
            kind: PromptKind = "fim-psm" if self.fim_mode == "psm" else "fim-spm"
        else:
            ids = [*self._bos(), *prefix_region]
            kind = "completion"
        if not ids:
            raise RepolmError("empty prompt (and the tokenizer adds no BOS): nothing to continue")
        cut = {
            "prefix": prefix_start,
            "suffix": len(suffix_part.ids) - suffix_end,
            "context": context_cut,
            "prompt": 0,
        }
        if cut["prefix"] or cut["suffix"]:
            logger.debug("%s prompt cut to %d tokens: %s", kind, len(ids), cut)
        return BuiltPrompt(ids, tokenizer.decode(ids), kind, fitted, cut)

    def _fit_context(
        self, snippets: list[ContextSnippet], language: str | None, limit: int, context_format: ContextFormat
    ) -> tuple[list[int], list[ContextSnippet], int]:
        """(ids of the context block, the snippets in it, tokens of the snippets left out) for at most `limit`
        tokens: whole snippets in order, each one that fits the room left (the header, if any, counted once)."""
        if not snippets:
            return [], [], 0
        literal = self.literal_special_tokens
        header_ids = self.tokenizer.encode(render_context_header(language), literal_special_tokens=literal) if (
            context_format == "comments") else []  # fmt: skip
        room = limit - len(header_ids)
        parts: list[list[int]] = []
        fitted: list[ContextSnippet] = []
        dropped = 0
        for snippet in snippets:
            rendered = render_snippet(snippet, language) if context_format == "comments" else (
                render_snippet_as_file(snippet))  # fmt: skip
            ids = self.tokenizer.encode(rendered, literal_special_tokens=literal)
            if len(ids) <= room:
                parts.append(ids)
                fitted.append(snippet)
                room -= len(ids)
            else:
                dropped += len(ids)
        if not fitted:
            return [], [], dropped
        return [*header_ids, *(token for part in parts for token in part)], fitted, dropped

    # -- chat -----------------------------------------------------------------

    def chat(self, messages: Sequence[Mapping[str, Any]], *, budget: PromptBudget) -> BuiltPrompt:
        """The prompt of a conversation: the chat template with the generation prompt, encoded (the template writes
        BOS itself). Too long for `budget`: BOS and the last tokens are kept ("cut"), or RepolmError ("refuse").
        `context_share` and `suffix_share` do not apply."""
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise RepolmError(f"messages must be a list of {{role, content}} objects, got {type(messages).__name__}")
        if not messages:
            raise RepolmError("messages must hold at least one message")
        plain: list[dict[str, Any]] = []
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise RepolmError(f"messages[{index}] must be an object with role and content")
            for key in ("role", "content"):
                if not isinstance(message.get(key), str):
                    raise RepolmError(f"messages[{index}].{key} must be a string")
            if not message["role"]:
                raise RepolmError(f"messages[{index}].role must not be empty")
            plain.append(dict(message))
        if not isinstance(budget, PromptBudget):
            raise RepolmError(f"budget must be a PromptBudget, got {type(budget).__name__}")
        tokenizer = self.tokenizer
        rendered = self.chat_format.prompt_text(plain)  # the rendering SFT trains on (repolm.tokenizer.chat_format)
        part = _encode(tokenizer, rendered, False)  # the template writes its special tokens as text
        ids, limit = part.ids, budget.max_prompt_tokens
        if not ids:
            raise RepolmError("empty prompt (the chat template rendered nothing): nothing to continue")
        cut = {"prefix": 0, "suffix": 0, "context": 0, "prompt": 0}
        if len(ids) > limit:
            if budget.overflow == "refuse":
                raise RepolmError(f"the chat prompt has {len(ids)} tokens, more than max_prompt_tokens {limit}")
            keep_head = 1 if ids[0] == tokenizer.bos_id else 0
            if limit <= keep_head:
                raise RepolmError(f"max_prompt_tokens {limit} leaves no room for the prompt's text")
            start = max(part.keep_last(limit - keep_head), keep_head)
            cut["prompt"] = start - keep_head
            ids = [*ids[:keep_head], *ids[start:]]
            logger.debug("chat prompt cut to %d tokens: %d dropped", len(ids), cut["prompt"])
        return BuiltPrompt(ids, tokenizer.decode(ids), "chat", [], cut)
