"""The records that flow through evaluation: programs and their verdicts, generation requests and answers.

One place for the types that the sandbox, the runners, the benchmark tasks, the generators and the harness exchange,
so that each of those modules depends on these records and not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Verdict = Literal["passed", "failed", "timeout", "skipped", "error"]
"""passed / failed / timeout: the program's verdict. skipped: its toolchain is missing here (never counted as a
failure; reported apart). error: the harness could not run it at all (sandbox setup failed)."""

VERDICTS: tuple[Verdict, ...] = ("passed", "failed", "timeout", "skipped", "error")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed command."""

    wall_seconds: float = 10.0
    """Wall-clock limit; the whole process group is killed when it passes."""
    cpu_seconds: float | None = None
    """CPU-time limit (RLIMIT_CPU); None = the wall-clock limit rounded up, plus one second."""
    memory_bytes: int | None = 4 * 2**30
    """Memory limit of the program; None = no limit."""
    max_processes: int = 64
    """Processes and threads the program may have at once."""
    max_file_bytes: int = 64 * 2**20
    """Largest file the program may write (RLIMIT_FSIZE)."""
    max_output_bytes: int = 1 * 2**20
    """Captured stdout and stderr are each cut to this many bytes (the rest is read and dropped)."""

    def __post_init__(self) -> None:
        if self.wall_seconds <= 0:
            raise ValueError(f"wall_seconds must be > 0, got {self.wall_seconds}")
        if self.cpu_seconds is not None and self.cpu_seconds <= 0:
            raise ValueError(f"cpu_seconds must be > 0, got {self.cpu_seconds}")
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be > 0, got {self.memory_bytes}")
        if self.max_processes < 1:
            raise ValueError(f"max_processes must be >= 1, got {self.max_processes}")


@dataclass(frozen=True)
class ProcessResult:
    """What the sandbox reports of one command."""

    returncode: int | None
    """Exit status; None when the harness killed the process (time limit)."""
    stdout: str
    """Standard output, decoded as UTF-8 (errors replaced), cut to the output limit."""
    stderr: str
    """Standard error, likewise."""
    wall_seconds: float
    timed_out: bool
    signal: int | None
    """The signal that ended the process, if one did."""
    detail: str
    """One line: "exit 0", "exit 1", "killed by SIGKILL", "wall-clock limit 10.0 s", ..."""
    reached_end: bool | None = None
    """With the end-of-tests channel: True when the program reported the run's secret (its tests ran to their
    end), False when it did not (it exited early, or failed first); None when the run had no such channel."""


@dataclass(frozen=True)
class ExecutionResult:
    """The verdict of one program (compiled where its language needs it, then run)."""

    verdict: Verdict
    detail: str
    """One line for people: "passed", "failed: AssertionError", "compile error: ...", "timed out after 10.0 s",
    "skipped: go toolchain not found (apt-get install golang-go)"."""
    wall_seconds: float
    stdout: str = ""
    """The tail of standard output (at most 2,000 characters), for reports."""
    stderr: str = ""
    """The tail of standard error (at most 2,000 characters)."""

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"


@dataclass(frozen=True)
class Program:
    """A whole program to execute: the task has already joined prompt, completion and tests."""

    language: str
    """Runner name: python, cpp, java, js, ts, php, sh, go, rs or cs."""
    source: str
    limits: Limits = field(default_factory=Limits)


GenerationKind = Literal["completion", "chat", "infill"]


@dataclass(frozen=True)
class GenerationRequest:
    """What a benchmark task asks a generator for."""

    kind: GenerationKind
    prompt: str = ""
    """completion: the text to continue."""
    messages: tuple[dict[str, str], ...] = ()
    """chat: the conversation, e.g. ({"role": "user", "content": ...},)."""
    prefix: str = ""
    """infill: the code before the hole."""
    suffix: str = ""
    """infill: the code after the hole."""
    stop: tuple[str, ...] = ()
    """Stop strings: the returned text is cut before the first one."""
    max_new_tokens: int = 512
    seed: int | None = None
    """Sampling seed of this request; None: derived from the run's seed and the request's place in the call. An
    evaluation run sets it from the problem and sample index, so a resumed run samples the same."""


@dataclass(frozen=True)
class DecodingSettings:
    """How every request of a run is decoded."""

    temperature: float = 0.0
    """0 = greedy, as in all of the paper's pass@1 figures."""
    top_p: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    """A generator's answer to one request."""

    text: str
    """The generated text, cut before the first stop string; "" when the generator failed."""
    error: str | None = None
    """One line when the generator failed for this request (HTTP error, empty or malformed answer, ...)."""
