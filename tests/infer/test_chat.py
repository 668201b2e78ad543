"""`repolm chat`: the session (history through the chat template, answers as the model wrote them, /reset, a window
that drops the oldest exchanges), the terminal loop, and the command driven in a pseudo-terminal as a person uses it:
two streamed turns, then /exit, and Ctrl-D."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from repolm.infer.chat import PROMPT, ChatSession, run_terminal_chat
from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
from repolm.infer.sampling import SamplingParams

MAX_NEW_TOKENS = 12


@pytest.fixture
def session(tiny_generator) -> ChatSession:
    return ChatSession(tiny_generator, SamplingParams(max_new_tokens=MAX_NEW_TOKENS))


class RecordingOutput(io.StringIO):
    """A stream that records each write and flush."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1


def test_the_history_goes_through_the_chat_template(session: ChatSession) -> None:
    pieces = list(session.ask("Write a function."))
    first = "".join(pieces)
    assert len(pieces) > 1  # streamed: text comes out token by token
    content = session.chat_format.answer_content(first)
    assert session.history == [
        {"role": "user", "content": "Write a function."},
        {"role": "assistant", "content": content},
    ]
    builder = PromptBuilder(session.generator.tokenizer)
    messages = [*session.history, {"role": "user", "content": "And another."}]
    expected = builder.chat(messages, budget=PromptBudget(4096 - MAX_NEW_TOKENS)).ids
    assert session.prompt_ids("And another.") == expected
    assert session.generator.tokenizer.decode(expected).endswith("### Instruction:\nAnd another.\n### Response:\n")
    session.reset()
    assert (
        session.history == []
        and session.prompt_ids("x")
        == builder.chat([{"role": "user", "content": "x"}], budget=PromptBudget(4096 - MAX_NEW_TOKENS)).ids
    )


def test_a_system_message_heads_every_prompt(tiny_generator) -> None:
    session = ChatSession(tiny_generator, SamplingParams(max_new_tokens=4), system="Be terse.\n")
    text = tiny_generator.tokenizer.decode(session.prompt_ids("hi"))
    assert text.startswith(tiny_generator.tokenizer.bos_token + "Be terse.\n### Instruction:\nhi\n")


def test_old_exchanges_leave_the_prompt_when_the_window_is_full(tiny_generator) -> None:
    session = ChatSession(tiny_generator, SamplingParams(max_new_tokens=MAX_NEW_TOKENS), max_seq_len=260)
    for turn in range(6):
        list(session.ask(f"question number {turn} " * 3))
    ids = session.prompt_ids("the last question")
    text = tiny_generator.tokenizer.decode(ids)
    assert len(ids) <= 260 - MAX_NEW_TOKENS
    assert text.endswith("### Instruction:\nthe last question\n### Response:\n")
    assert "question number 5" in text and "question number 0" not in text
    assert len(session.history) == 12  # the history itself is kept


def test_the_terminal_loop(session: ChatSession) -> None:
    lines = iter(["first\\", "line two", "", "/help", "/reset", "second", "/exit", "never read"])
    output = RecordingOutput()
    asked: list[str] = []
    original_ask = session.ask

    def ask(message: str):
        asked.append(message)
        yield from original_ask(message)

    session.ask = ask  # type: ignore[method-assign]
    run_terminal_chat(session, read_line=lambda prompt: next(lines), output=output, banner="hello")
    assert asked == ["first\nline two", "second"]  # a trailing backslash continues the message
    text = output.getvalue()
    assert text.startswith("hello\n(/reset starts")
    assert "(unknown command /help" in text and "(new conversation)" in text
    assert len(session.history) == 2  # /reset dropped the first exchange
    assert output.flushes > len(asked) * 2  # every piece is flushed as it comes


def test_end_of_input_ends_the_loop(session: ChatSession) -> None:
    def read_line(prompt: str) -> str:
        raise EOFError

    output = RecordingOutput()
    run_terminal_chat(session, read_line=read_line, output=output)
    assert output.getvalue().endswith("\n")


# -----------------------------------------------------------------------------
# a pseudo-terminal


def expected_answers(tiny_generator, turns: list[str]) -> list[str]:
    session = ChatSession(tiny_generator, SamplingParams(max_new_tokens=MAX_NEW_TOKENS))
    return ["".join(session.ask(turn)) for turn in turns]


def spawn_chat(model_dir: Path):
    pexpect = pytest.importorskip("pexpect")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TERM": "dumb"}
    command = [sys.executable, "-m", "repolm", "chat", "--model", str(model_dir), "--max-new-tokens", "12"]
    return pexpect.spawn(command[0], command[1:], env=environment, encoding="utf-8", timeout=120)


def on_terminal(text: str) -> str:
    return text.replace("\n", "\r\n")  # the terminal's output processing


def test_two_turns_in_a_pseudo_terminal_then_exit(tiny_model_dir: Path, tiny_generator) -> None:
    turns = ["Write a function that adds two numbers.", "Now subtract them."]
    answers = expected_answers(tiny_generator, turns)
    child = spawn_chat(tiny_model_dir)
    child.expect_exact(PROMPT)
    for turn, answer in zip(turns, answers, strict=True):
        child.sendline(turn)
        child.expect_exact(on_terminal(answer))  # the same text the engine streams, with the history of turn one
        child.expect_exact(PROMPT)
    child.sendline("/exit")
    child.expect(__import__("pexpect").EOF)
    child.close()
    assert child.exitstatus == 0


def test_ctrl_d_ends_the_chat(tiny_model_dir: Path) -> None:
    child = spawn_chat(tiny_model_dir)
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(__import__("pexpect").EOF)
    child.close()
    assert child.exitstatus == 0
