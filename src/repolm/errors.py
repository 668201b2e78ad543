"""User-facing errors.

`RepolmError` is raised for bad input that a person can fix: a missing folder, a config of the wrong
architecture, a truncated weights file, an unknown preset. Its message is one line that names the file,
field or option at fault. The CLI prints it as `error: <message>` and exits with code 2, without a
traceback. Anything else that escapes is a bug in repolm and keeps its traceback.
"""

from __future__ import annotations


class RepolmError(Exception):
    """An error in the user's input; the message names what is wrong and where."""


def one_line(error: BaseException | str, limit: int | None = None) -> str:
    """An exception's message (or a text) on one line, whitespace runs collapsed, cut to `limit` characters with
    "..." when given (for messages that quote a library's error or a program's output)."""
    line = " ".join(str(error).split())
    if not line and isinstance(error, BaseException):
        line = type(error).__name__
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."
