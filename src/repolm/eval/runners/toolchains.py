"""Finding each language's compilers and runtimes on this machine (a toolchain missing here = "skipped").

Toolchains are looked up on a search path: by default $PATH plus ~/.cargo/bin and `<repo>/.tools/node_modules/.bin`
(where `make toolchains` installs TypeScript), and $REPOLM_TSC for tsc; every function takes `search_path` to look
elsewhere instead (an empty string finds nothing, which is how tests check the "skipped" path). One finder per
language in `FINDERS`; results are cached per (language, search path).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from repolm.eval.sandbox import DEFAULT_SEARCH_PATH

JAVATUPLES_JAR = "/usr/share/java/javatuples.jar"
"""The javatuples library that MultiPL-E's Java programs import (Debian package libjavatuples-java)."""

REPO_ROOT = Path(__file__).resolve().parents[4]

PACKAGES = {
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
"""What to install (Debian package names, or the step) when a program is missing."""


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
    extra = [str(Path.home() / ".cargo" / "bin"), str(REPO_ROOT / ".tools" / "node_modules" / ".bin")]
    return os.pathsep.join([os.environ.get("PATH", DEFAULT_SEARCH_PATH), *extra])


def _which(name: str, search_path: str, package_key: str) -> str:
    found = shutil.which(name, path=search_path) if search_path else None
    if found is None:
        raise ToolchainMissing(f"{name} not found (apt-get install {PACKAGES[package_key]})")
    return os.path.abspath(found)


def _sandbox_path(*programs: str) -> str:
    directories = []
    for program in programs:
        directory = os.path.dirname(program)
        if directory not in directories:
            directories.append(directory)
    return os.pathsep.join([*directories, DEFAULT_SEARCH_PATH])


def _trusted_output(command: list[str]) -> str:
    """Output of a toolchain query (our own fixed command, outside the sandbox); "" if it fails."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return completed.stdout.strip() if completed.returncode == 0 else ""


def _one_runtime(language: str, name: str) -> Callable[[str, bool], Toolchain]:
    """A finder for a language run by one interpreter (`name`) and nothing else."""

    def find(path: str, explicit: bool) -> Toolchain:
        runtime = _which(name, path, language)
        return Toolchain(language, {"runtime": runtime}, search_path=_sandbox_path(runtime))

    return find


def _find_python(path: str, explicit: bool) -> Toolchain:
    return Toolchain("python", {"runtime": sys.executable})


def _find_cpp(path: str, explicit: bool) -> Toolchain:
    compiler = _which("g++", path, "cpp")
    return Toolchain("cpp", {"compiler": compiler}, search_path=_sandbox_path(compiler))


def _find_java(path: str, explicit: bool) -> Toolchain:
    compiler, runtime = _which("javac", path, "java"), _which("java", path, "java")
    if not os.path.isfile(JAVATUPLES_JAR):
        raise ToolchainMissing(f"{JAVATUPLES_JAR} not found (apt-get install {PACKAGES['javatuples']})")
    jar = os.path.realpath(JAVATUPLES_JAR)
    programs = {"compiler": compiler, "runtime": runtime}
    return Toolchain("java", programs, (jar,), _sandbox_path(runtime, compiler), {"javatuples": jar})


def _find_ts(path: str, explicit: bool) -> Toolchain:
    node = _which("node", path, "js")
    candidates = []
    if not explicit:
        if os.environ.get("REPOLM_TSC"):
            candidates.append(os.environ["REPOLM_TSC"])
        candidates.append(str(REPO_ROOT / ".tools" / "node_modules" / ".bin" / "tsc"))
    found = shutil.which("tsc", path=path) if path else None
    if found:
        candidates.append(found)
    tsc = next((candidate for candidate in candidates if os.path.isfile(candidate)), None)
    if tsc is None:
        raise ToolchainMissing(f"tsc not found (apt-get install {PACKAGES['ts']}; or set REPOLM_TSC)")
    script = os.path.realpath(tsc)
    package = str(Path(script).parents[1])  # node_modules/typescript
    return Toolchain("ts", {"runtime": node, "tsc": script}, (package,), _sandbox_path(node))


def _find_go(path: str, explicit: bool) -> Toolchain:
    go = _which("go", path, "go")
    version = _trusted_output([go, "env", "GOVERSION"]) or "unknown"
    root = _trusted_output([go, "env", "GOROOT"])
    readable = (root,) if root else ()
    return Toolchain("go", {"runtime": go}, readable, _sandbox_path(go), {"version": version})


def _find_rs(path: str, explicit: bool) -> Toolchain:
    rustc = _which("rustc", path, "rs")
    linker = _which("cc", path, "cc")
    sysroot = _trusted_output([rustc, "--print", "sysroot"])
    real = os.path.join(sysroot, "bin", "rustc") if sysroot else ""
    if not os.access(real, os.X_OK):
        raise ToolchainMissing(f"{rustc} has no usable toolchain (rustup default stable, or apt-get install rustc)")
    return Toolchain("rs", {"compiler": real}, (sysroot,), _sandbox_path(real, linker))


def _find_cs(path: str, explicit: bool) -> Toolchain:
    compiler, runtime = _which("mcs", path, "cs"), _which("mono", path, "mono")
    return Toolchain("cs", {"compiler": compiler, "runtime": runtime}, search_path=_sandbox_path(runtime))


FINDERS: dict[str, Callable[[str, bool], Toolchain]] = {
    "python": _find_python,
    "cpp": _find_cpp,
    "java": _find_java,
    "js": _one_runtime("js", "node"),
    "ts": _find_ts,
    "php": _one_runtime("php", "php"),
    "sh": _one_runtime("sh", "bash"),
    "go": _find_go,
    "rs": _find_rs,
    "cs": _find_cs,
}
"""language -> finder(search path, whether the path was given explicitly): its Toolchain, or ToolchainMissing."""

_toolchain_cache: dict[tuple[str, str], Toolchain | ToolchainMissing] = {}
_toolchain_lock = threading.Lock()


def find_toolchain(language: str, search_path: str | None = None) -> Toolchain:
    """The toolchain of `language` on `search_path` (default: `default_search_path()`); raises ToolchainMissing."""
    if language not in FINDERS:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(FINDERS)}")
    explicit = search_path is not None
    path = search_path if explicit else default_search_path()
    key = (language, path if explicit else f"default:{path}:{os.environ.get('REPOLM_TSC', '')}")
    with _toolchain_lock:
        cached = _toolchain_cache.get(key)
    if cached is None:
        try:
            cached = FINDERS[language](path, explicit)
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
