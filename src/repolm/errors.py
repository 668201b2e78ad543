"""User-facing errors.

`RepolmError` is raised for bad input that a person can fix: a missing folder, a config of the wrong
architecture, a truncated weights file, an unknown preset. Its message is one line that names the file,
field or option at fault. The CLI prints it as `error: <message>` and exits with code 2, without a
traceback. Anything else that escapes is a bug in repolm and keeps its traceback.
"""

from __future__ import annotations


class RepolmError(Exception):
    """An error in the user's input; the message names what is wrong and where."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (for `RepolmError` messages that quote a library's error)."""
    return " ".join(str(error).split()) or type(error).__name__
