"""Instruct conversations as text and token ids: the one place where the chat template meets ids and loss masks.

Training, inference and evaluation all render conversations here, so the model is tuned on exactly the prompts it
is later given: `repolm.train.sft` takes ids and a loss mask from `ChatFormat.conversation`; `PromptBuilder.chat`
(which `repolm chat`, the server's `/v1/chat/completions` and the evaluation's instruct prompts of HumanEval, MBPP
and LeetCode with or without chain of thought go through) takes the prompt text from `ChatFormat.prompt_text`.

The template is the tokenizer's own chat template, else DeepSeek-Coder's (`DEEPSEEK_CODER_CHAT_TEMPLATE`, rendered
as `transformers` renders it). With it a conversation reads (deepseek-coder-facts.md section 5; `[BOS]` is
`<｜begin▁of▁sentence｜>`):

    [BOS]{system}### Instruction:\\n{user}\\n### Response:\\n{assistant}\\n<|EOT|>\\n### Instruction:\\n{user}\\n...

`{system}` is the system message's content as given (the template adds no line break after it; DeepSeek's default
system text, written when the conversation has no system message, ends with one). The generation prompt of a
conversation that ends with a user turn is `### Response:\\n`.

Loss mask. An assistant turn's answer is what the model must produce after the generation prompt: its content,
then everything the template writes up to and including `<|EOT|>` (`{assistant}\\n<|EOT|>` here, the target of
DeepSeek's finetune script). Only the answers' tokens are trained; the system text, the instructions, the template's
markers, BOS and the line break after `<|EOT|>` are not. The answer spans are found by rendering: the prompt of
turn i (messages before it, with the generation prompt) must be a prefix of the whole conversation's text, and the
answer runs from there to the end of the first `<|EOT|>` after its content. The whole text is encoded once (special
-token strings written by the template become their ids, as in `transformers`) and a token is an answer token when
it starts inside an answer span. With DeepSeek-Coder's pre-tokenizer, which splits at every line break, no token
crosses a span's edge, so the ids equal those of the prompt and the answer encoded apart.

`ChatFormat.answer_content` inverts the answer layout for a generated answer (which ends before `<|EOT|>`, a stop
id): `repolm chat` keeps the text the model wrote as the assistant's content, so the next turn's prompt holds the
same text the model generated.

Not handled here: reading instruction files (`repolm.data.instruction_records`), packing (`repolm.train.sft`),
cutting long prompts (`repolm.infer.prompt_builder`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from repolm.errors import RepolmError
from repolm.tokenizer.special_tokens import DEEPSEEK_CODER_CHAT_TEMPLATE, EOS_TOKEN, EOT_TOKEN
from repolm.tokenizer.tokenizer import CodeTokenizer

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
"""The roles a conversation may hold."""

_PROBE = "\x00repolm-probe\x00"
"""Assistant content used to learn what a template writes around an answer (never appears in real text)."""


def user_turn(content: str) -> list[dict[str, str]]:
    """A one-turn conversation: the messages of an instruct prompt (HumanEval, MBPP, LeetCode, `repolm generate
    --instruct`)."""
    return [{"role": "user", "content": content}]


def check_conversation(messages: Any, where: str = "messages", needs_answer: bool = True) -> list[dict[str, str]]:
    """`messages` as plain {"role", "content"} dicts after checking their shape; RepolmError naming `where` else.

    A conversation is an optional first system message, then user and assistant turns alternating, starting with a
    user turn; with `needs_answer` it ends with an assistant turn, else with a user turn (a prompt).
    """
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise RepolmError(f"{where}: must be a list of {{role, content}} objects, got {type(messages).__name__}")
    if not messages:
        raise RepolmError(f"{where}: holds no message")
    plain = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise RepolmError(f"{where}[{index}]: must be an object with role and content")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                raise RepolmError(f"{where}[{index}].{key}: must be a string")
        if message["role"] not in ROLES:
            raise RepolmError(f"{where}[{index}].role: {message['role']!r} is not one of {', '.join(ROLES)}")
        plain.append({"role": message["role"], "content": message["content"]})
    turns = plain[1:] if plain[0]["role"] == "system" else plain
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            position = index + len(plain) - len(turns)
            raise RepolmError(
                f"{where}[{position}].role: expected {expected} (an optional system message first, then user and "
                f"assistant turns in turn), got {message['role']}"
            )
    if not turns:
        raise RepolmError(f"{where}: holds no user turn")
    last = turns[-1]["role"]
    if needs_answer and last != "assistant":
        raise RepolmError(f"{where}: the last message must be the assistant's answer, got {last}")
    if not needs_answer and last != "user":
        raise RepolmError(f"{where}: the last message must be the user's, got {last}")
    return plain


@dataclass
class RenderedConversation:
    """A conversation as training sees it.

    Attributes:
        text: the chat template's rendering of the whole conversation (no generation prompt).
        ids: the token ids of `text`.
        loss_mask: per id, True when the id belongs to an assistant answer (trained), False otherwise.
        answer_spans: (start, end) character spans of the answers in `text`.
    """

    text: str
    ids: list[int]
    loss_mask: list[bool]
    answer_spans: list[tuple[int, int]]

    @property
    def answer_tokens(self) -> int:
        """How many ids are trained."""
        return sum(self.loss_mask)


def chat_template_of(tokenizer: CodeTokenizer, template: str | None = None) -> str:
    """The template a conversation is rendered with: `template`, else the tokenizer's, else DeepSeek-Coder's."""
    if template is not None:
        return template
    return tokenizer.chat_template if tokenizer.chat_template is not None else DEEPSEEK_CODER_CHAT_TEMPLATE


class ChatFormat:
    """Renders conversations for one tokenizer and chat template (see the module docstring).

    `template` None: the tokenizer's chat template, else DeepSeek-Coder's. RepolmError when the tokenizer has no
    `<|EOT|>` or the template does not end an assistant turn with it.
    """

    def __init__(self, tokenizer: CodeTokenizer, template: str | None = None) -> None:
        if not isinstance(tokenizer, CodeTokenizer):
            raise RepolmError(f"tokenizer must be a CodeTokenizer, got {type(tokenizer).__name__}")
        if template is not None and not isinstance(template, str):
            raise RepolmError(f"chat_template must be a string, got {type(template).__name__}")
        self.tokenizer = tokenizer
        self.template = chat_template_of(tokenizer, template)
        self._layout: tuple[str, str] | None = None

    # -- prompts --------------------------------------------------------------

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
        """The template's text of `messages` (checked by the caller), as `transformers` renders it."""
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt, template=self.template)

    def prompt_text(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The text of a prompt: the messages with the generation prompt (the template writes BOS itself)."""
        return self.render([dict(message) for message in messages], add_generation_prompt=True)

    def prompt_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """The ids of `prompt_text` (special-token strings the template writes become their ids)."""
        return self.tokenizer.encode(self.prompt_text(messages))

    # -- answers --------------------------------------------------------------

    def _answer_layout(self) -> tuple[str, str]:
        """(what the template writes before an answer's content, after it up to `<|EOT|>`), found by rendering a
        probe conversation once."""
        if self._layout is None:
            user = [{"role": "user", "content": "probe"}]
            prompt = self.render(user, add_generation_prompt=True)
            whole = self.render([*user, {"role": "assistant", "content": _PROBE}], add_generation_prompt=False)
            if not whole.startswith(prompt) or _PROBE not in whole[len(prompt) :]:
                raise RepolmError(
                    "the chat template does not render a prompt as the start of the conversation it begins; "
                    "answers cannot be located in it"
                )
            before, _, after = whole[len(prompt) :].partition(_PROBE)
            if EOT_TOKEN not in after:
                raise RepolmError(f"the chat template does not end an assistant turn with {EOT_TOKEN}")
            self._layout = before, after[: after.index(EOT_TOKEN)]
        return self._layout

    def answer_content(self, generated: str) -> str:
        """The assistant message content of a generated answer (the text before `<|EOT|>`): the template's own
        text around the content removed ("\\n" before `<|EOT|>` for DeepSeek-Coder's)."""
        before, after = self._answer_layout()
        if before and generated.startswith(before):
            generated = generated[len(before) :]
        if after and generated.endswith(after):
            generated = generated[: -len(after)]
        return generated

    def conversation(self, messages: Sequence[Mapping[str, Any]], where: str = "messages") -> RenderedConversation:
        """Text, ids and loss mask of a whole conversation (ending with an assistant turn); RepolmError naming
        `where` for a malformed conversation or a template whose prompts are not prefixes of the conversation."""
        plain = check_conversation(messages, where, needs_answer=True)
        if self.tokenizer.eot_id is None:
            raise RepolmError(f"the tokenizer has no {EOT_TOKEN} token to end answers with")
        self._answer_layout()
        text = self.render(plain, add_generation_prompt=False)
        spans: list[tuple[int, int]] = []
        for index, message in enumerate(plain):
            if message["role"] != "assistant":
                continue
            prompt = self.render(plain[:index], add_generation_prompt=True)
            if not text.startswith(prompt) or (spans and len(prompt) < spans[-1][1]):
                raise RepolmError(
                    f"{where}[{index}]: the chat template's prompt for this turn is not the start of the "
                    f"conversation's text; answers cannot be located"
                )
            content_start = text.find(message["content"], len(prompt))
            end = text.find(EOT_TOKEN, content_start + len(message["content"])) if content_start >= 0 else -1
            if end < 0:
                raise RepolmError(f"{where}[{index}]: the chat template does not end this answer with {EOT_TOKEN}")
            spans.append((len(prompt), end + len(EOT_TOKEN)))
        encoding = self.tokenizer.encoding_backend(False).encode(text, add_special_tokens=False)
        mask = []
        span_index = 0
        for start, _ in encoding.offsets:
            while span_index < len(spans) and start >= spans[span_index][1]:
                span_index += 1
            mask.append(span_index < len(spans) and spans[span_index][0] <= start)
        return RenderedConversation(text, list(encoding.ids), mask, spans)


def instruct_tokenizer(tokenizer: CodeTokenizer, template: str | None = None) -> CodeTokenizer:
    """The tokenizer of an instruct model folder: the same vocabulary, the chat template it was tuned with, `<|EOT|>`
    as its eos token (the end of a turn, where generation stops) and `<｜end▁of▁sentence｜>` as pad, as in
    DeepSeek-Coder's instruct folders."""
    if tokenizer.eot_id is None:
        raise RepolmError(f"the tokenizer has no {EOT_TOKEN} token")
    return CodeTokenizer(
        tokenizer.backend,
        bos_token=tokenizer.bos_token,
        eos_token=EOT_TOKEN,
        pad_token=EOS_TOKEN if tokenizer.token_to_id(EOS_TOKEN) is not None else tokenizer.pad_token,
        chat_template=chat_template_of(tokenizer, template),
        add_bos_token=tokenizer.add_bos_token,
        model_max_length=tokenizer.model_max_length,
    )
