"""The instruction JSONL format: what `repolm data instructions` writes and `repolm sft` reads (the one module that
owns it).

One JSON object per line, in one of two shapes:
- Alpaca-style: "instruction" (a non-empty string), optional "input" (a string), "output" (a non-empty string),
  optional "system" (a string: the system message; without it the chat template writes its default one);
- a conversation: "messages", a list of {"role": "system" | "user" | "assistant", "content": string}: an optional
  first system message, then user and assistant turns in turn, starting with the user's and ending with the
  assistant's; every answer non-empty.
Any other keys are kept as metadata (mined pairs carry "id", "kind", "language" and "source").
An Alpaca record becomes the conversation [system], user, assistant: the user turn is the instruction, or the
instruction, a blank line and the input when the input is not empty (Alpaca's order); the answer is the output.

Reading (`read_instructions`) checks every line. A bad line is skipped and counted under one reason: "invalid-json"
(not JSON, or not UTF-8), "not-an-object", "missing-field" (no instruction/output and no messages, or a message
without role or content), "wrong-type" (a field of the wrong JSON type), "empty-instruction", "empty-answer" (an
output or an assistant turn that is empty or only whitespace), "bad-turns" (an unknown role or turns out of order);
the trainer adds "too-long" (a conversation longer than a training window, `SkipReport.add`). Nothing else is
dropped. Blank lines are not records. The first line of each reason is logged with its file and line number, and
the counts are returned with the samples, so the caller can report them; a file list with no usable record is a
`RepolmError` (exit code 2 in the CLI).

Writing (`write_instructions`) is atomic: the file appears whole or not at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError, one_line

logger = logging.getLogger(__name__)

SKIP_REASONS = (
    "invalid-json",
    "not-an-object",
    "missing-field",
    "wrong-type",
    "empty-instruction",
    "empty-answer",
    "bad-turns",
    "too-long",
)
"""Why a record can be skipped, in report order."""

INSTRUCTION_SUFFIX = ".jsonl"
_ROLES = ("system", "user", "assistant")


@dataclass
class InstructionSample:
    """One usable record.

    Attributes:
        messages: the conversation, plain {"role", "content"} dicts (an Alpaca record converted).
        where: "file:line" of the record, for messages to people.
        metadata: the record's other keys (e.g. "id", "kind", "language", "source").
    """

    messages: list[dict[str, str]]
    where: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The JSON object of this sample: Alpaca-style when it is one system-less or system + user + assistant
        exchange, else with "messages"; the metadata first."""
        turns = [message for message in self.messages if message["role"] != "system"]
        systems = [message["content"] for message in self.messages if message["role"] == "system"]
        if len(turns) == 2:
            record = {**self.metadata, "instruction": turns[0]["content"], "output": turns[1]["content"]}
            if systems:
                record["system"] = systems[0]
            return record
        return {**self.metadata, "messages": [dict(message) for message in self.messages]}


class _Skip(Exception):
    """A record that is not usable: `reason` (one of SKIP_REASONS) and a detail for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class SkipReport:
    """What reading (and training) skipped.

    Attributes:
        lines: records read (non-blank lines); kept: records usable.
        counts: skipped records per reason (only reasons that occurred).
        examples: the first skipped record of each reason, "file:line: detail".
    """

    lines: int = 0
    kept: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, reason: str, where: str, detail: str) -> None:
        """Counts one skipped record (the first of a reason is logged as a warning)."""
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if reason not in self.examples:
            self.examples[reason] = f"{where}: {detail}"
            logger.warning("skipped %s (%s): %s; further ones are only counted", where, reason, detail)

    @property
    def skipped(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """One line: "kept 9 of 12 records; skipped: 2 invalid-json, 1 empty-answer"."""
        text = f"kept {self.kept} of {self.lines} records"
        if self.counts:
            parts = [f"{self.counts[reason]} {reason}" for reason in SKIP_REASONS if reason in self.counts]
            text += "; skipped: " + ", ".join(parts)
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"lines": self.lines, "kept": self.kept, "skipped": dict(self.counts), "examples": dict(self.examples)}


def _string(record: Mapping[str, Any], key: str, required: bool) -> str | None:
    if key not in record:
        if required:
            raise _Skip("missing-field", f'no "{key}" field')
        return None
    value = record[key]
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _Skip("wrong-type", f'"{key}" must be a string, got {_json_type(value)}')
    return value


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _alpaca_messages(record: Mapping[str, Any]) -> list[dict[str, str]]:
    instruction = _string(record, "instruction", required=True)
    output = _string(record, "output", required=True)
    extra = _string(record, "input", required=False)
    system = _string(record, "system", required=False)
    assert instruction is not None and output is not None
    if not instruction.strip():
        raise _Skip("empty-instruction", '"instruction" is empty')
    if not output.strip():
        raise _Skip("empty-answer", '"output" is empty')
    user = instruction if not extra else f"{instruction}\n\n{extra}"
    messages = [{"role": "system", "content": system}] if system is not None else []
    return [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": output}]


def _conversation_messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise _Skip("wrong-type", f'"messages" must be a list, got {_json_type(value)}')
    if not value:
        raise _Skip("missing-field", '"messages" is empty')
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise _Skip("wrong-type", f"messages[{index}] must be an object, got {_json_type(message)}")
        for key in ("role", "content"):
            if key not in message:
                raise _Skip("missing-field", f'messages[{index}] has no "{key}"')
            if not isinstance(message[key], str):
                raise _Skip("wrong-type", f"messages[{index}].{key} must be a string, got {_json_type(message[key])}")
        role = message["role"]
        if role not in _ROLES:
            raise _Skip("bad-turns", f"messages[{index}].role {role!r} is not one of {', '.join(_ROLES)}")
        messages.append({"role": role, "content": message["content"]})
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            position = index + len(messages) - len(turns)
            raise _Skip("bad-turns", f"messages[{position}] is a {message['role']} turn where a {expected} turn goes")
        if expected == "user" and not message["content"].strip():
            raise _Skip("empty-instruction", f"messages[{index + len(messages) - len(turns)}] (user) is empty")
        if expected == "assistant" and not message["content"].strip():
            raise _Skip("empty-answer", f"messages[{index + len(messages) - len(turns)}] (assistant) is empty")
    if not turns or turns[-1]["role"] != "assistant":
        raise _Skip("bad-turns", "the conversation does not end with an assistant turn")
    return messages


def parse_record(line: bytes | str) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """(messages, metadata) of one line; raises `_Skip` with the reason when it is not usable."""
    try:
        text = line.decode("utf-8") if isinstance(line, bytes) else line
        record = json.loads(text)
    except UnicodeDecodeError as error:
        raise _Skip("invalid-json", f"not UTF-8 ({one_line(error, 120)})") from None
    except json.JSONDecodeError as error:
        raise _Skip("invalid-json", f"not JSON ({one_line(error, 120)})") from None
    if not isinstance(record, dict):
        raise _Skip("not-an-object", f"the line holds {_json_type(record)}, not an object")
    if "messages" in record:
        messages = _conversation_messages(record["messages"])
        metadata = {key: value for key, value in record.items() if key != "messages"}
    elif "instruction" in record or "output" in record:
        messages = _alpaca_messages(record)
        metadata = {
            key: value for key, value in record.items() if key not in ("instruction", "input", "output", "system")
        }
    else:
        raise _Skip("missing-field", 'neither "instruction" and "output" nor "messages"')
    return messages, metadata


def instruction_files(path: str | Path) -> list[Path]:
    """The files of `path`: the file itself, or a folder's `*.jsonl` files in name order (RepolmError if none)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(child for child in path.iterdir() if child.is_file() and child.name.endswith(INSTRUCTION_SUFFIX))
        if not files:
            raise RepolmError(f"{path}: holds no {INSTRUCTION_SUFFIX} file")
        return files
    raise RepolmError(f"{path}: no such file or folder")


def iter_instructions(path: str | Path, report: SkipReport) -> Iterator[InstructionSample]:
    """The usable records of a file or folder (see `instruction_files`), counting skipped ones in `report`."""
    for file in instruction_files(path):
        try:
            handle = open(file, "rb")  # noqa: SIM115 (closed below; lines are decoded one by one)
        except OSError as error:
            raise RepolmError(f"{file}: cannot read it ({one_line(error)})") from None
        with handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                report.lines += 1
                where = f"{file}:{number}"
                try:
                    messages, metadata = parse_record(line)
                except _Skip as skip:
                    report.add(skip.reason, where, skip.detail)
                    continue
                report.kept += 1
                yield InstructionSample(messages, where, metadata)


def read_instructions(path: str | Path) -> tuple[list[InstructionSample], SkipReport]:
    """Every usable record of a file or folder and the report of what was skipped; RepolmError when none is usable."""
    report = SkipReport()
    samples = list(iter_instructions(path, report))
    if not samples:
        raise RepolmError(f"{path}: no usable instruction record ({report.summary()})")
    logger.info("%s: %s", path, report.summary())
    return samples, report


def write_instructions(path: str | Path, samples: Iterable[InstructionSample | Mapping[str, Any]]) -> int:
    """Writes samples (or plain record objects) as instruction JSONL, atomically; returns the records written."""
    path = Path(path)
    if path.is_dir():
        raise RepolmError(f"{path}: is a folder, expected a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    count = 0
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            for sample in samples:
                record = sample.to_record() if isinstance(sample, InstructionSample) else dict(sample)
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return count


def held_out(messages: list[dict[str, str]], share: float) -> bool:
    """Whether a conversation belongs to the held-out share (SFT's validation, the instruct format measurement):
    the first 8 bytes of the SHA-256 of its messages (JSON, sorted keys), read as a fraction of 2**64, are below
    `share`. It depends on the conversation's content only."""
    if share <= 0:
        return False
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
