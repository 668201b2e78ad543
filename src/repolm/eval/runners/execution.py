"""Executing programs: compile and run one program in the sandbox by its language's settings, judge it, and run
many in parallel.

Verdicts: "passed" when the program exited with status 0 *and* reported the run's secret after its tests (see
`languages`); an exit 0 without the report is "failed" ("exited 0 before its tests ended"), as is a non-zero exit
or a compile error (detail: the error line); past the time limit = "timeout"; a toolchain missing here = "skipped"
(detail: the Debian package to install), never "failed"; the sandbox itself failing = "error". `execute_all` never
raises for one program.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from repolm.errors import one_line
from repolm.eval.records import ExecutionResult, Limits, ProcessResult, Program, Verdict
from repolm.eval.runners.languages import (
    DETAIL_CHARACTERS,
    LANGUAGE_SETTINGS,
    RUNTIME_ADDRESS_SPACE,
    Build,
    LanguageSettings,
    go_environment,
)
from repolm.eval.runners.toolchains import Toolchain, ToolchainMissing, find_toolchain
from repolm.eval.sandbox import Sandbox, SandboxError

logger = logging.getLogger(__name__)

COMPILE_LIMITS = Limits(wall_seconds=60.0, memory_bytes=4 * 2**30, max_processes=256, max_file_bytes=256 * 2**20)
"""Limits of a compile step (the program's own limits apply to running it)."""

TAIL_CHARACTERS = 2000
"""How much of stdout and stderr an ExecutionResult keeps (the end)."""

RUNTIME_PROCESSES = 256
"""Processes and threads allowed to runtimes and compilers that start a thread pool per CPU."""

EARLY_EXIT = "failed: exited 0 before its tests ended"
"""The detail of a program that exited with status 0 without reporting the end of its tests."""

_GO_WARM_UP = """package warm_test

import (
    "fmt"
    "math"
    "sort"
    "strconv"
    "strings"
    "testing"
)

func TestWarmUp(t *testing.T) {
    words := strings.Fields("b a c")
    sort.Strings(words)
    if fmt.Sprintf("%v %s %v", words, strconv.Itoa(3), math.Sqrt(4)) != "[a b c] 3 2" {
        t.Errorf("warm-up failed")
    }
}
"""


def _tail(text: str) -> str:
    return text[-TAIL_CHARACTERS:]


_ERROR_WORD = re.compile(r"error|exception|assert|panic|fail|fatal", re.IGNORECASE)
_EXCEPTION_LINE = re.compile(r"^(Exception in thread|[\w.$]*(Error|Exception)\b)")
_LOCATION_LINE = re.compile(r"^\S+?(:\d+|\(\d+,\d+\))")


def _lines(text: str, workdir: Path) -> list[str]:
    return [line.replace(f"{workdir}/", "").replace("./", "", 1) for line in text.splitlines() if line.strip()]


def _compile_error_line(result: ProcessResult, workdir: Path) -> str:
    """The compiler's first error line (paths shortened): a line saying "error", else a file:line message."""
    lines = [line for line in _lines(result.stderr + "\n" + result.stdout, workdir) if not line.startswith("#")]
    for pattern in (re.compile(r"\berror\b", re.IGNORECASE), _LOCATION_LINE):
        for line in lines:
            if pattern.search(line) and not line.startswith("FAIL"):
                return one_line(line, DETAIL_CHARACTERS)
    return one_line(lines[0], DETAIL_CHARACTERS) if lines else result.detail


def _failure_line(result: ProcessResult, workdir: Path) -> str:
    """Why a run failed: the last line naming an exception, else the last error-like line, else the last line."""
    streams = [_lines(result.stderr, workdir), _lines(result.stdout, workdir)]
    for lines in streams:
        for line in reversed(lines):
            if _EXCEPTION_LINE.match(line.strip()):
                return one_line(line, DETAIL_CHARACTERS)
    for lines in streams:
        for line in reversed(lines):
            if _ERROR_WORD.search(line) and not line.lstrip().startswith(("at ", "File ", "#")):
                return one_line(line, DETAIL_CHARACTERS)
    return one_line(streams[0][-1], DETAIL_CHARACTERS) if streams[0] else result.detail


@dataclass
class _Run:
    """One program's steps in one sandbox folder."""

    program: Program
    toolchain: Toolchain
    sandbox: Sandbox
    workdir: Path
    wall_seconds: float = 0.0

    def step(
        self,
        command: list[str],
        limits: Limits,
        files: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
        runtime: bool = False,
        end_of_tests: bool = False,
    ) -> ProcessResult:
        """One sandboxed command; runtimes get address-space headroom and more threads (their heap flag bounds them)."""
        if runtime:
            limits = replace(limits, max_processes=max(limits.max_processes, RUNTIME_PROCESSES))
        result = self.sandbox.run(
            command,
            files or {},
            limits,
            workdir=self.workdir,
            environment={"PATH": self.toolchain.search_path, **(environment or {})},
            extra_address_space=RUNTIME_ADDRESS_SPACE if runtime else 0,
            end_of_tests=end_of_tests,
        )
        self.wall_seconds += result.wall_seconds
        return result

    def compile_step(
        self, command: list[str], files: dict[str, str], environment: dict[str, str], runtime: bool
    ) -> ExecutionResult | None:
        """Writes `files` and runs a compiler; None when it succeeded, else the program's verdict."""
        result = self.step(command, COMPILE_LIMITS, files, environment, runtime)
        if result.timed_out:
            return self.verdict("timeout", f"compile timed out ({result.detail})", result)
        if result.detail.startswith("cannot execute"):
            return self.verdict("error", result.detail, result)
        if result.returncode != 0:
            return self.verdict("failed", f"compile error: {_compile_error_line(result, self.workdir)}", result)
        return None

    def judge(self, result: ProcessResult) -> ExecutionResult:
        """The verdict of a program's run: passed (exit 0 and the end of its tests reported), failed (with the
        error line, or an early exit), timeout or error."""
        if result.timed_out:
            limits = self.program.limits
            seconds = limits.wall_seconds if "wall-clock" in result.detail else (limits.cpu_seconds or 0)
            detail = f"timed out after {seconds:g} s" if seconds else f"timed out ({result.detail})"
            return self.verdict("timeout", detail, result)
        if result.detail.startswith("cannot execute"):
            return self.verdict("error", result.detail, result)
        if result.returncode == 0:
            if result.reached_end is False:
                return self.verdict("failed", EARLY_EXIT, result)
            return self.verdict("passed", "passed", result)
        return self.verdict("failed", f"failed: {_failure_line(result, self.workdir)}", result)

    def verdict(self, verdict: Verdict, detail: str, result: ProcessResult) -> ExecutionResult:
        return ExecutionResult(verdict, detail, self.wall_seconds, _tail(result.stdout), _tail(result.stderr))


def _memory_megabytes(limits: Limits) -> int | None:
    return None if limits.memory_bytes is None else max(16, limits.memory_bytes // 2**20)


def _execute_language(run: _Run, settings: LanguageSettings) -> ExecutionResult:
    """Writes the build's files, compiles (if the language does), runs with the end-of-tests channel, judges."""
    limits = run.program.limits
    build: Build = settings.build(run.program.source, run.toolchain, run.workdir, _memory_megabytes(limits))
    if settings.in_process:
        environment = {"PATH": run.toolchain.search_path, **build.run_environment}
        result = run.sandbox.run_python(
            build.run[0], build.files, limits, workdir=run.workdir, environment=environment, end_of_tests=True
        )
        run.wall_seconds += result.wall_seconds
        return run.judge(result)
    files = build.files
    if build.compile is not None:
        if settings.warm_build_cache:
            _warm_go_cache(run)
        failure = run.compile_step(build.compile, files, build.compile_environment, settings.runtime_compiler)
        if failure is not None:
            return failure
        files = {}  # written by the compile step
    result = run.step(
        build.run, limits, files, build.run_environment, runtime=settings.runtime_program, end_of_tests=True
    )
    from_output = settings.output_verdict(result, limits) if settings.output_verdict else None
    if from_output is not None:
        return run.verdict(*from_output, result)
    return run.judge(result)


# -- Go: a warm build cache (built once from our own program) is copied into each run.

_go_cache_lock = threading.Lock()


def _go_cache_template(run: _Run) -> Path | None:
    """A warm Go build cache in the user's cache folder, made once per Go version from our own warm-up program."""
    version = re.sub(r"[^A-Za-z0-9._-]", "_", run.toolchain.details.get("version", "unknown"))
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    template = cache_home / "repolm" / "sandbox" / f"go-build-{version}"
    with _go_cache_lock:
        if template.is_dir():
            return template
        try:
            with run.sandbox.temporary_directory() as workdir:
                warm = _Run(Program("go", _GO_WARM_UP), run.toolchain, run.sandbox, workdir)
                result = warm.step(
                    [run.toolchain.programs["runtime"], "test", "warm_test.go"],
                    COMPILE_LIMITS,
                    {"warm_test.go": _GO_WARM_UP},
                    go_environment(workdir, None),
                    runtime=True,
                )
                if result.returncode != 0:
                    logger.warning("Go build cache warm-up failed (%s); Go runs start cold", result.detail)
                    return None
                template.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=".go-build-", dir=template.parent))
                shutil.copytree(workdir / ".cache" / "go-build", staging / "go-build", symlinks=False)
                for path in [staging, *staging.rglob("*")]:
                    os.chown(path, os.getuid(), os.getgid(), follow_symlinks=False)
                    path.chmod(0o755 if path.is_dir() else 0o644)
                os.rename(staging / "go-build", template)
                shutil.rmtree(staging, ignore_errors=True)
        except (OSError, SandboxError) as error:
            logger.warning("Go build cache warm-up failed (%s); Go runs start cold", error)
            return None
        return template


def _warm_go_cache(run: _Run) -> None:
    template = _go_cache_template(run)
    if template is not None:
        _copy_into(template, run.workdir / ".cache" / "go-build", run.sandbox.workdir_owner(run.workdir))


def _copy_into(source: Path, destination: Path, owner: int | None) -> None:
    """Copies a folder into a run's folder, owned by the run's uid (so that the program may change its copy)."""
    shutil.copytree(source, destination, symlinks=True)
    if owner is not None:
        for path in [destination, destination.parent, *destination.rglob("*")]:
            os.chown(path, owner, owner, follow_symlinks=False)


def execute(program: Program, sandbox: Sandbox, search_path: str | None = None) -> ExecutionResult:
    """Compiles (where the language needs it) and runs `program` in `sandbox`; see the module docstring."""
    settings = LANGUAGE_SETTINGS.get(program.language)
    if settings is None:
        raise ValueError(f"unknown language {program.language!r}; known: {', '.join(LANGUAGE_SETTINGS)}")
    try:
        toolchain = find_toolchain(program.language, search_path)
    except ToolchainMissing as missing:
        return ExecutionResult("skipped", f"skipped: {program.language} toolchain missing: {missing}", 0.0)
    for path in toolchain.readable_paths:
        sandbox.make_readable(path)
    try:
        with sandbox.temporary_directory() as workdir:
            return _execute_language(_Run(program, toolchain, sandbox, workdir), settings)
    except SandboxError as error:
        return ExecutionResult("error", f"sandbox error: {one_line(str(error), DETAIL_CHARACTERS)}", 0.0)


def _execute_safely(program: Program, sandbox: Sandbox, search_path: str | None) -> ExecutionResult:
    try:
        return execute(program, sandbox, search_path)
    except Exception as error:  # noqa: BLE001 - one program never stops the others
        logger.exception("execution of a %s program failed in the harness", program.language)
        return ExecutionResult(
            "error", f"harness error: {type(error).__name__}: {one_line(str(error), DETAIL_CHARACTERS)}", 0.0
        )


def execute_all(
    programs: Sequence[Program],
    sandbox: Sandbox | None = None,
    workers: int | None = None,
    progress: bool = True,
    search_path: str | None = None,
) -> list[ExecutionResult]:
    """Executes `programs` in parallel (threads driving sandboxed processes); results in input order.

    `workers` defaults to the number of CPUs; a sandbox is created (and closed) when none is given (raising
    SandboxError when this machine cannot isolate programs). Never raises for one program: a harness or sandbox
    failure becomes that program's verdict "error".
    """
    if not programs:
        return []
    own_sandbox = sandbox is None
    active = Sandbox() if sandbox is None else sandbox
    results: list[ExecutionResult | None] = [None] * len(programs)
    try:
        with (
            ThreadPoolExecutor(max_workers=max(1, workers or os.cpu_count() or 1)) as pool,
            tqdm(total=len(programs), desc="execute", unit="program", disable=not progress) as bar,
        ):
            futures = {
                pool.submit(_execute_safely, program, active, search_path): index
                for index, program in enumerate(programs)
            }
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
    finally:
        if own_sandbox:
            active.close()
    return [result for result in results if result is not None]
