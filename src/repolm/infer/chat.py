"""`repolm chat`: a multi-turn conversation with an instruct model, streamed to a terminal.

`ChatSession` keeps the conversation (an optional system message, then user and assistant turns) and answers a new
user message by building the whole conversation's prompt with `PromptBuilder.chat` (the folder's chat template,
DeepSeek-Coder's instruct template when it has none: the same rendering as the server's `/v1/chat/completions`,
the evaluation's instruct prompts and SFT's training samples) and streaming the model's answer. Generation stops at
`<|EOT|>` or `<｜end▁of▁sentence｜>`. The answer joins the history as the assistant's content, with the template's own
text around it removed (`ChatFormat.answer_content`), so the next prompt holds exactly what the model wrote. When the
conversation no longer fits the window (`max_seq_len - max_new_tokens` prompt tokens), its oldest exchanges are left
out of the prompt (the system message stays); a single message too long for the window is cut to its last tokens.

`run_terminal_chat` is the terminal loop: a `>>> ` prompt (readline editing when the terminal has it); a line
ending with `\\` continues on the next line; `/reset` starts a new conversation, `/exit` (or `/quit`, or Ctrl-D at
the prompt) ends it; Ctrl-C during an answer stops that answer (the exchange is dropped), Ctrl-C at the prompt
clears the line. Answers are written piece by piece as they are decoded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TextIO

from repolm.errors import RepolmError
from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
from repolm.infer.sampling import SamplingParams
from repolm.infer.text import TextGenerator
from repolm.tokenizer import ChatFormat

logger = logging.getLogger(__name__)

PROMPT = ">>> "
CONTINUATION_PROMPT = "... "
HELP = "/reset starts a new conversation, /exit (or Ctrl-D) ends it; end a line with \\ to continue it"


class ChatSession:
    """A conversation with one model (see the module docstring).

    Args:
        generator: the model and tokenizer (`TextGenerator`).
        params: sampling settings; their stop ids default to end of sentence and `<|EOT|>`.
        system: a system message, or None for the template's default.
        max_seq_len: prompt + answer tokens at most (the model's window, or less).
    """

    def __init__(
        self, generator: TextGenerator, params: SamplingParams, system: str | None = None, max_seq_len: int = 4096
    ) -> None:
        if params.max_new_tokens >= max_seq_len:
            raise RepolmError(f"--max-new-tokens {params.max_new_tokens} leaves no room in --max-seq-len {max_seq_len}")
        self.generator = generator
        self.params = params if params.stop_token_ids else replace(params, stop_token_ids=generator.default_stop_ids())
        self.system = system
        self.max_seq_len = max_seq_len
        self.builder = PromptBuilder(generator.tokenizer)
        self.chat_format = ChatFormat(generator.tokenizer, self.builder.chat_template)
        self.history: list[dict[str, str]] = []

    def reset(self) -> None:
        """Forget the conversation (the system message stays)."""
        self.history = []

    def messages(self, user: str) -> list[dict[str, str]]:
        """The conversation so far, then `user`."""
        system = [{"role": "system", "content": self.system}] if self.system is not None else []
        return [*system, *self.history, {"role": "user", "content": user}]

    def prompt_ids(self, user: str) -> list[int]:
        """The prompt for `user` after the history: the whole conversation if it fits, else without its oldest
        exchanges, else the last message cut to the window."""
        budget = PromptBudget(self.max_seq_len - self.params.max_new_tokens, overflow="refuse")
        history = list(self.history)
        while True:
            system = [{"role": "system", "content": self.system}] if self.system is not None else []
            messages = [*system, *history, {"role": "user", "content": user}]
            try:
                return self.builder.chat(messages, budget=budget).ids
            except RepolmError:
                if not history:
                    logger.warning("the message does not fit the window: only its last tokens are sent")
                    return self.builder.chat(messages, budget=replace(budget, overflow="cut")).ids
                history = history[2:]  # leave out the oldest exchange

    def ask(self, user: str) -> Iterator[str]:
        """Stream the answer to `user`; the exchange joins the history once the answer is complete."""
        ids = self.prompt_ids(user)
        pieces: list[str] = []
        for delta in self.generator.stream_ids([ids], self.params):
            if delta.text:
                pieces.append(delta.text)
                yield delta.text
        answer = self.chat_format.answer_content("".join(pieces))
        self.history += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def _read_message(read_line: Callable[[str], str]) -> str:
    """One message: a line, and the following ones while a line ends with a backslash."""
    lines = []
    line = read_line(PROMPT)
    while line.endswith("\\"):
        lines.append(line[:-1])
        line = read_line(CONTINUATION_PROMPT)
    lines.append(line)
    return "\n".join(lines)


def run_terminal_chat(
    session: ChatSession, read_line: Callable[[str], str] = input, output: TextIO | None = None, banner: str = ""
) -> None:
    """The terminal loop (see the module docstring); returns on /exit, /quit or end of input."""
    import sys

    output = output or sys.stdout
    if banner:
        output.write(banner + "\n")
    output.write(f"({HELP})\n")
    output.flush()
    while True:
        try:
            message = _read_message(read_line)
        except EOFError:
            output.write("\n")
            output.flush()
            return
        except KeyboardInterrupt:
            output.write("\n")
            continue
        command = message.strip()
        if not command:
            continue
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            session.reset()
            output.write("(new conversation)\n")
            output.flush()
            continue
        if command.startswith("/") and " " not in command:
            output.write(f"(unknown command {command}: {HELP})\n")
            output.flush()
            continue
        ended_with_newline = True
        try:
            for piece in session.ask(message):
                output.write(piece)
                output.flush()
                ended_with_newline = piece.endswith("\n")
        except KeyboardInterrupt:
            output.write("\n(answer stopped)\n")
            output.flush()
            continue
        if not ended_with_newline:
            output.write("\n")
        output.flush()
