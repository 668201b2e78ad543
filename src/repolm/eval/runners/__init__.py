"""Compile and run programs of every language in the sandbox, judge them, and run many in parallel.

`toolchains` finds each language's compilers and runtimes here; `languages` is the table of language settings
(files, compile and run commands, and how each language reports that its tests ran to their end); `execution`
runs and judges programs (`execute`, `execute_all`). A program passes only when it exits with status 0 *and* its
tests reported their end through the sandbox's end-of-tests channel: exiting 0 early (`sys.exit(0)`,
`process.exit(0)`, `System.exit(0)`, `os.Exit(0)`, `exit 0`, ...) or printing a forged secret fails.
"""

from repolm.eval.runners.execution import COMPILE_LIMITS, EARLY_EXIT, execute, execute_all
from repolm.eval.runners.languages import LANGUAGE_SETTINGS, LanguageSettings
from repolm.eval.runners.toolchains import (
    Toolchain,
    ToolchainMissing,
    default_search_path,
    find_toolchain,
    toolchain_status,
)

LANGUAGES: tuple[str, ...] = tuple(LANGUAGE_SETTINGS)
"""Runner names, as `Program.language` gives them."""

__all__ = [
    "COMPILE_LIMITS",
    "EARLY_EXIT",
    "LANGUAGES",
    "LANGUAGE_SETTINGS",
    "LanguageSettings",
    "Toolchain",
    "ToolchainMissing",
    "default_search_path",
    "execute",
    "execute_all",
    "find_toolchain",
    "toolchain_status",
]
