"""The sandbox's API on the harness side: `Sandbox` starts the forkserver, probes the isolation (refusing when
none works), makes run folders, and runs commands (`run`, `run_python`), collecting their output, status and
end-of-tests report.

See the package docstring for the threat model and `forkserver` for the child side of a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import pwd
import resource
import secrets
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repolm.eval.records import Limits, ProcessResult
from repolm.eval.sandbox import forkserver, linux
from repolm.eval.sandbox.linux import (
    ISOLATION_NAMESPACES,
    ISOLATION_RLIMITS,
    ISOLATION_USER_NAMESPACE,
    ISOLATIONS,
    MS_NODEV,
    MS_NOSUID,
    is_under,
    mount,
    unmount,
)

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_PATH = "/usr/local/bin:/usr/bin:/bin"
"""PATH inside the sandbox unless the caller names another."""

FIRST_SANDBOX_UID = 45000
"""The first of the unprivileged uids that runs get (one per concurrent run) when the harness is root."""

WORKDIR_BYTES = 1 << 30
"""Size cap of a run's folder (a tmpfs when root): what the program and its compiler may write in all."""

SCRATCH_BYTES = 64 << 20
"""Size cap of each private /tmp, /var/tmp and /dev/shm of a run."""

HIDDEN_DIRECTORIES = ("/root", "/home")
"""Folders hidden from programs (with the harness user's $HOME), apart from paths made readable explicitly."""

SCRATCH_DIRECTORIES = ("/tmp", "/var/tmp", "/dev/shm")
"""Shared writable folders that each run gets a fresh private copy of."""

_KILL_GRACE_SECONDS = 10.0
_ESCAPED_OUTPUT_SECONDS = 1.0
_CHANNEL_BYTES = 1 << 16
"""Most kept of the status line and of what a program writes on its end-of-tests report descriptor."""

_BOOTSTRAP = """
import importlib.util, json, sys
import site
site.main()  # in-process Python programs get the interpreter's site-packages
for name, path in json.loads(sys.argv[1]):  # by path, without the repolm package and what it imports
    spec = importlib.util.spec_from_file_location(name, path)
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
module.serve(int(sys.argv[2]))  # the last module loaded: forkserver
"""
"""The forkserver's start: loads `linux` and `forkserver` by their paths, then serves requests."""


class SandboxError(RuntimeError):
    """The sandbox could not run a command at all (setup failed); never raised for what the program does."""


@dataclass(frozen=True)
class _Request:
    """One command to run, as `run` and `run_python` describe it."""

    command: list[str]
    limits: Limits
    stdin: bytes
    environment: Mapping[str, str] | None
    extra_address_space: int
    python: tuple[str, list[str]] | None
    """(script, arguments) for `run_python`."""
    end_of_tests: bool


class _UidPool:
    """Unprivileged uids for concurrent runs: one per run, never shared, also across processes (lock files)."""

    def __init__(self, first_uid: int, lock_directory: Path) -> None:
        self._next_uid = first_uid
        self._free: list[int] = []
        self._locks: dict[int, int] = {}
        self._lock = threading.Lock()
        self._lock_directory = lock_directory

    def acquire(self) -> int:
        with self._lock:
            if self._free:
                return self._free.pop()
            while self._next_uid < 2**31:
                user_id, self._next_uid = self._next_uid, self._next_uid + 1
                try:
                    pwd.getpwuid(user_id)
                    continue  # a real account: never hand it to a program
                except KeyError:
                    pass
                fd = os.open(self._lock_directory / f"{user_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)  # another harness process holds this uid
                    continue
                self._locks[user_id] = fd
                return user_id
            raise SandboxError("no free sandbox uid")

    def release(self, user_id: int) -> None:
        with self._lock:
            self._free.append(user_id)

    def close(self) -> None:
        with self._lock:
            for fd in self._locks.values():
                os.close(fd)
            self._locks.clear()
            self._free.clear()


def _uid_lock_directory() -> Path:
    """A root-owned folder for the uid lock files, shared by the harness processes of this machine."""
    for candidate in (Path("/run/repolm-sandbox"), Path(tempfile.gettempdir()) / "repolm-sandbox-uids"):
        with contextlib.suppress(OSError):
            candidate.mkdir(mode=0o700, exist_ok=True)
            info = candidate.lstat()
            if stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o022:
                return candidate
    private = Path(tempfile.mkdtemp(prefix="repolm-sandbox-uids-"))
    logger.warning("sandbox: no shared uid lock folder; concurrent harness processes may share sandbox uids")
    return private


def _shutdown(control: socket.socket, server: subprocess.Popen, root: Path, pool: _UidPool | None) -> None:
    with contextlib.suppress(OSError):
        control.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=5)
    if pool is not None:
        pool.close()
    shutil.rmtree(root, ignore_errors=True)


class Sandbox:
    """Runs commands on untrusted code in isolation (see the package docstring); thread-safe; one per harness.

    `isolation` names the mechanism in use: by default the strongest that the probe at construction finds working,
    "namespaces" (root) or "user-namespace"; when none works the constructor raises SandboxError (why, per mode,
    and what to do) instead of weakening. The `isolation` argument asks for one mode by name, and is the only way to
    get "rlimits-only". `network_isolated` is True when runs are cut off from every network (a network namespace
    without a working interface); the harness records it, and `describe()`, with the results.
    `workdir_bytes` caps what a run may write in its folder (as root), `scratch_bytes` its /tmp, /var/tmp and
    /dev/shm, and `first_uid` is where the uids of concurrent runs start (as root).
    """

    def __init__(
        self,
        isolate_network: bool = True,
        *,
        workdir_bytes: int = WORKDIR_BYTES,
        scratch_bytes: int = SCRATCH_BYTES,
        first_uid: int = FIRST_SANDBOX_UID,
        isolation: str | None = None,
    ) -> None:
        if isolation not in (None, *ISOLATIONS):
            raise ValueError(f"unknown sandbox isolation {isolation!r}; known: {', '.join(ISOLATIONS)}")
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._workdir_bytes = workdir_bytes
        self._scratch_bytes = scratch_bytes
        self._isolate_network_requested = isolate_network
        self._is_root = os.geteuid() == 0
        self._root = Path(tempfile.mkdtemp(prefix="repolm-sandbox-"))
        os.chmod(self._root, 0o711)  # runs may pass through, not list
        self._uid_pool = _UidPool(first_uid, _uid_lock_directory()) if self._is_root else None
        self._workdir_uids: dict[Path, int | None] = {}
        self._readable_paths: set[str] = set()
        self._hidden_directories: set[str] = set()
        self._closed = False
        self._control, self._server = self._start_forkserver()
        self._finalizer = weakref.finalize(self, _shutdown, self._control, self._server, self._root, self._uid_pool)
        try:
            self.isolation, self.network_isolated = self._probe(isolation)
        except BaseException:
            self.close()
            raise
        self.uid_isolated = self.isolation == ISOLATION_NAMESPACES
        if self.isolation == ISOLATION_RLIMITS:
            logger.warning(
                "SANDBOX WITH RLIMITS ONLY, as asked: programs can read and write what this user can, reach the "
                "network and leave processes behind (results record isolation=%s, network_isolated=false)",
                ISOLATION_RLIMITS,
            )
        elif isolate_network and not self.network_isolated:
            logger.warning("SANDBOX WITHOUT NETWORK ISOLATION: generated programs CAN reach the network")
        self.make_readable(sys.executable)  # the harness's own interpreter: runners execute Python with it
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
            self.make_readable(prefix)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _start_forkserver(self) -> tuple[socket.socket, subprocess.Popen]:
        harness_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        modules = [(module.__name__, module.__file__) for module in (linux, forkserver)]
        server = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", _BOOTSTRAP, json.dumps(modules), str(server_end.fileno())],
            pass_fds=(server_end.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # site.main() above gives in-process Python programs the interpreter's site-packages (skipping
            # setuptools' distutils hook, which only slows start-up)
            env={"PATH": DEFAULT_SEARCH_PATH, "LANG": "C.UTF-8", "SETUPTOOLS_USE_DISTUTILS": "stdlib"},
            start_new_session=True,
        )
        server_end.close()
        return harness_end, server

    def _probe(self, requested: str | None) -> tuple[str, bool]:
        """The isolation to use and whether runs are cut off from the network: the one requested, or the strongest
        that works here. Raises SandboxError, never falling back to a weaker mode by itself."""
        if requested == ISOLATION_RLIMITS:
            return ISOLATION_RLIMITS, False
        if requested is not None:
            modes = [requested]
        elif self._is_root:
            modes = [ISOLATION_NAMESPACES, ISOLATION_USER_NAMESPACE]
        else:
            modes = [ISOLATION_USER_NAMESPACE]
        reasons = []
        true_command = shutil.which("true") or "/bin/true"
        for mode in modes:
            self.isolation = mode
            self.network_isolated = self._isolate_network_requested
            try:
                result = self.run([true_command], {}, Limits(wall_seconds=10))
            except (SandboxError, OSError) as error:
                if self._server.poll() is not None:
                    raise SandboxError(f"sandbox forkserver failed (exit {self._server.returncode})") from error
                reasons.append(f"{mode}: {error}")
                continue
            if result.returncode == 0:
                if reasons:
                    logger.warning("sandbox: using %s isolation; stronger modes failed: %s", mode, "; ".join(reasons))
                return mode, self._isolate_network_requested
            reasons.append(f"{mode}: probe ended with {result.detail}")
        advice = (
            "run as root, or allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0)"
            if requested is None
            else f"choose another isolation than {requested!r}"
        )
        raise SandboxError(
            f"the sandbox cannot isolate programs here ({'; '.join(reasons)}); refusing to run untrusted code: "
            f"{advice}, or ask for isolation {ISOLATION_RLIMITS!r} (repolm eval --sandbox rlimits) to run it with "
            "resource limits only"
        )

    def close(self) -> None:
        """Stops the forkserver and removes the sandbox's folders (also done at garbage collection / exit)."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """What the harness records about the isolation its results were produced under."""
        return {
            "isolation": self.isolation,
            "network_isolated": self.network_isolated,
            "uid_isolated": self.uid_isolated,
            "workdir_bytes": self._workdir_bytes,
        }

    # -- readable paths -------------------------------------------------------------------------------------

    def make_readable(self, path: str | os.PathLike[str]) -> None:
        """Makes a file or folder (a toolchain) visible read-only to programs at its own path.

        Only needed for paths under the folders that runs hide or replace (/root, /home, $HOME, /tmp, ...) or
        under folders that others may not traverse; a no-op elsewhere. Symbolic links are resolved.
        """
        real = os.path.realpath(path)
        if not os.path.exists(real):
            return
        hidden = self._hidden_ancestor(real)
        covered = hidden is not None or any(is_under(real, directory) for directory in self._scratch_directories())
        if not covered:
            return
        with self._lock:
            self._readable_paths.add(real)
            if hidden is not None:
                self._hidden_directories.add(hidden)

    def _hidden_ancestor(self, path: str) -> str | None:
        """The outermost folder above `path` that runs hide, or that other users may not traverse."""
        candidates = [*HIDDEN_DIRECTORIES, os.path.expanduser("~")]
        for candidate in candidates:
            candidate = os.path.realpath(candidate)
            if candidate != "/" and os.path.isdir(candidate) and is_under(path, candidate) and path != candidate:
                return candidate
        if self.isolation != ISOLATION_NAMESPACES:
            return None
        ancestor = "/"
        for part in Path(path).parts[1:-1]:
            ancestor = os.path.join(ancestor, part)
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                return ancestor
        return None

    @staticmethod
    def _scratch_directories() -> list[str]:
        found = []
        for directory in SCRATCH_DIRECTORIES:
            real = os.path.realpath(directory)
            if os.path.isdir(real) and real not in found:
                found.append(real)
        return found

    def _hidden_directories_now(self) -> list[str]:
        found = set(self._hidden_directories)
        for directory in [*HIDDEN_DIRECTORIES, os.path.expanduser("~")]:
            real = os.path.realpath(directory)
            if real != "/" and os.path.isdir(real):
                found.add(real)
        # outermost first, and none inside another (its tmpfs would be hidden by the outer one anyway)
        ordered = sorted(found, key=len)
        return [path for index, path in enumerate(ordered) if not any(is_under(path, p) for p in ordered[:index])]

    # -- folders --------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def temporary_directory(self) -> Iterator[Path]:
        """A fresh folder for several runs (compile, then run) under one uid; removed with its contents after."""
        own_uid = self._uid_pool is not None and self.isolation == ISOLATION_NAMESPACES
        user_id = self._uid_pool.acquire() if own_uid else None
        path = Path(tempfile.mkdtemp(prefix="run-", dir=self._root))
        mounted = False
        try:
            if user_id is not None:
                options = f"size={self._workdir_bytes},mode=0700,uid={user_id},gid={user_id}"
                mount("tmpfs", str(path), "tmpfs", MS_NOSUID | MS_NODEV, options)
                mounted = True
            with self._lock:
                self._workdir_uids[path] = user_id
            yield path
        finally:
            with self._lock:
                self._workdir_uids.pop(path, None)
            if mounted:
                try:
                    unmount(str(path))
                    os.rmdir(path)
                except OSError as error:
                    logger.warning("sandbox: could not remove %s: %s", path, error)
            else:
                shutil.rmtree(path, ignore_errors=True)
            if user_id is not None and self._uid_pool is not None:
                self._uid_pool.release(user_id)

    def workdir_owner(self, workdir: Path) -> int | None:
        """The uid that runs in `workdir` (a `temporary_directory()`) get; None when runs keep the harness's uid."""
        with self._lock:
            if workdir not in self._workdir_uids:
                raise ValueError(f"workdir {workdir} is not one of this sandbox's temporary_directory() folders")
            return self._workdir_uids[workdir]

    @staticmethod
    def _write_files(workdir: Path, files: Mapping[str, str | bytes], user_id: int | None) -> None:
        """Writes `files` into `workdir` without following links that an earlier run may have planted there."""
        for name, content in files.items():
            parts = Path(name).parts
            if not parts or Path(name).is_absolute() or ".." in parts:
                raise ValueError(f"sandbox file name must be relative, without '..': {name!r}")
            directory_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                for part in parts[:-1]:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=directory_fd)
                        if user_id is not None:
                            os.chown(part, user_id, user_id, dir_fd=directory_fd, follow_symlinks=False)
                    next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory_fd)
                    os.close(directory_fd)
                    directory_fd = next_fd
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(parts[-1], dir_fd=directory_fd)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                file_fd = os.open(parts[-1], flags, 0o644, dir_fd=directory_fd)
                try:
                    data = content.encode("utf-8") if isinstance(content, str) else content
                    view = memoryview(data)
                    while view:
                        view = view[os.write(file_fd, view) :]
                    if user_id is not None:
                        os.fchown(file_fd, user_id, user_id)
                finally:
                    os.close(file_fd)
            finally:
                os.close(directory_fd)

    # -- running --------------------------------------------------------------------------------------------

    def run(
        self,
        command: Sequence[str],
        files: Mapping[str, str | bytes],
        limits: Limits,
        stdin: bytes = b"",
        workdir: Path | None = None,
        *,
        environment: Mapping[str, str] | None = None,
        extra_address_space: int = 0,
        end_of_tests: bool = False,
    ) -> ProcessResult:
        """Runs `command` in a fresh folder holding `files` (or in `workdir`, a `temporary_directory()`).

        `environment` adds to (or overrides) the scrubbed environment; `extra_address_space` is added to
        `limits.memory_bytes` for RLIMIT_AS, for runtimes that reserve much more address space than they use.
        With `end_of_tests`, the program gets the end-of-tests channel: a fresh secret to read on fd 3 and fd 4 to
        write it back on once its tests ran to their end; `ProcessResult.reached_end` says whether it did.
        Raises SandboxError when the sandbox itself fails; whatever the program does ends in the ProcessResult.
        """
        request = _Request(list(command), limits, stdin, environment, extra_address_space, None, end_of_tests)
        return self._dispatch(request, files, workdir)

    def run_python(
        self,
        script: str,
        files: Mapping[str, str | bytes],
        limits: Limits,
        stdin: bytes = b"",
        workdir: Path | None = None,
        *,
        arguments: Sequence[str] = (),
        environment: Mapping[str, str] | None = None,
        end_of_tests: bool = False,
    ) -> ProcessResult:
        """Runs the Python script `script` (one of `files`, or already in `workdir`) as `python -I script` would.

        The program runs with this sandbox's interpreter (the harness's Python, with its site-packages) in a
        fork of the sandbox's already started interpreter, under the same isolation as `run`: no interpreter
        start-up per run. It sees what `python -I` gives a script (sys.argv, `__main__`, sys.path without the
        script's folder, exit codes, tracebacks, atexit); unlike separate interpreters, the programs of one
        sandbox share its string hash seed, and modules the sandbox itself uses (json, socket, ...) are loaded.
        With `end_of_tests`, `ProcessResult.reached_end` says whether the script ran to its end (no exception, no
        SystemExit): the sandbox's interpreter reports the secret itself, the program never sees it.
        """
        command = [sys.executable, "-I", script, *arguments]
        python = (script, list(arguments))
        request = _Request(command, limits, stdin, environment, 0, python, end_of_tests)
        return self._dispatch(request, files, workdir)

    def _dispatch(self, request: _Request, files: Mapping[str, str | bytes], workdir: Path | None) -> ProcessResult:
        if not request.command or not request.command[0]:
            raise ValueError("sandbox command is empty")
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if workdir is None:
            with self.temporary_directory() as fresh:
                return self._dispatch(request, files, fresh)
        workdir = Path(workdir)
        with self._lock:
            if workdir not in self._workdir_uids:
                raise ValueError(f"workdir {workdir} is not one of this sandbox's temporary_directory() folders")
            user_id = self._workdir_uids[workdir]
        self._write_files(workdir, files, user_id)
        return self._run_in(request, workdir, user_id)

    def _rlimits(self, limits: Limits, extra_address_space: int) -> list[tuple[int, int, int]]:
        cpu_seconds = limits.cpu_seconds if limits.cpu_seconds is not None else math.ceil(limits.wall_seconds) + 1
        cpu = max(1, math.ceil(cpu_seconds))
        rlimits = [
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_FSIZE, limits.max_file_bytes, limits.max_file_bytes),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        if limits.memory_bytes is not None:
            address_space = limits.memory_bytes + extra_address_space
            rlimits.append((resource.RLIMIT_AS, address_space, address_space))
        if self.isolation != ISOLATION_RLIMITS:  # counted per uid: only meaningful for a uid of the run's own
            rlimits.append((resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes))
        return rlimits

    def _run_in(self, run: _Request, workdir: Path, user_id: int | None) -> ProcessResult:
        workdir_text = str(workdir)
        program_environment = {
            "PATH": DEFAULT_SEARCH_PATH,
            "HOME": workdir_text,
            "TMPDIR": workdir_text,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            **(run.environment or {}),
        }
        with self._lock:
            ordered = sorted(self._readable_paths)
        # outermost first; a path inside another readable path comes with it
        readable_paths = [
            path for index, path in enumerate(ordered) if not any(is_under(path, p) for p in ordered[:index])
        ]
        request = {
            "mode": self.isolation,
            "isolate_network": self._isolate_network_requested and self.isolation != ISOLATION_RLIMITS,
            "command": run.command,
            "environment": program_environment,
            "workdir": workdir_text,
            "uid": user_id,
            "rlimits": self._rlimits(run.limits, run.extra_address_space),
            "readable_paths": readable_paths,
            "hidden_directories": self._hidden_directories_now(),
            "scratch_directories": self._scratch_directories(),
            "scratch_bytes": self._scratch_bytes,
            "python_script": run.python[0] if run.python else None,
            "python_arguments": run.python[1] if run.python else [],
        }
        harness_fds: list[int] = []
        child_fds: list[int] = []
        secret = secrets.token_hex(16).encode() if run.end_of_tests else None
        try:
            if run.stdin:
                stdin_read, stdin_write = os.pipe()
                harness_fds.append(stdin_write)
            else:
                stdin_read, stdin_write = os.open(os.devnull, os.O_RDONLY), None
            child_fds.append(stdin_read)
            pipes = [os.pipe() for _ in range(4)]  # stdout, stderr, status, kill
            stdout_read, stderr_read, status_read = (pipe[0] for pipe in pipes[:3])
            kill_read, kill_write = pipes[3]
            harness_fds += [stdout_read, stderr_read, status_read, kill_write]
            child_fds += [pipes[0][1], pipes[1][1], pipes[2][1], kill_read]
            report_read = None
            if secret is not None:
                secret_read, secret_write = os.pipe()
                child_fds.append(secret_read)
                os.write(secret_write, secret)  # 32 bytes: never more than a pipe holds
                os.close(secret_write)
                report_read, report_write = os.pipe()
                harness_fds.append(report_read)
                child_fds.append(report_write)
                # the JVM and Mono reopen the pipes as /proc/self/fd/3 and 4, which checks the pipe's mode against
                # the run's uid; only processes that hold a pipe can name it there
                for fd in (secret_read, report_write):
                    os.fchmod(fd, 0o666)
            started = time.monotonic()
            self._send(json.dumps(request).encode(), child_fds)
            for fd in child_fds:
                os.close(fd)
            child_fds = []
            return self._collect(
                run, started, stdin_write, stdout_read, stderr_read, status_read, kill_write, report_read, secret
            )
        finally:
            for fd in child_fds + harness_fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _send(self, message: bytes, fds: list[int]) -> None:
        with self._send_lock:
            try:
                socket.send_fds(self._control, [message], fds)
            except OSError as error:
                raise SandboxError(f"the sandbox forkserver is gone ({error})") from error

    def _collect(
        self,
        run: _Request,
        started: float,
        stdin_write: int | None,
        stdout_read: int,
        stderr_read: int,
        status_read: int,
        kill_write: int,
        report_read: int | None,
        secret: bytes | None,
    ) -> ProcessResult:
        """Feeds stdin, drains stdout/stderr (keeping at most the output limit) and the end-of-tests report,
        enforces the wall-clock limit."""
        command, limits = run.command, run.limits
        readers = [fd for fd in (stdout_read, stderr_read, status_read, report_read) if fd is not None]
        captured = {fd: bytearray() for fd in readers}
        dropped = dict.fromkeys(readers, 0)
        room_of = {stdout_read: limits.max_output_bytes, stderr_read: limits.max_output_bytes}
        pending_stdin = memoryview(run.stdin)
        killed_at: float | None = None
        status_closed_at: float | None = None
        with selectors.DefaultSelector() as selector:
            for fd in readers:
                selector.register(fd, selectors.EVENT_READ)
            if stdin_write is not None:
                os.set_blocking(stdin_write, False)
                selector.register(stdin_write, selectors.EVENT_WRITE)
            open_readers = len(readers)
            while open_readers:
                now = time.monotonic()
                if killed_at is None:
                    remaining = started + limits.wall_seconds - now
                    if remaining <= 0:
                        with contextlib.suppress(OSError):  # the waiter may have just ended
                            os.write(kill_write, b"k")
                        killed_at = now
                        continue
                else:
                    remaining = killed_at + _KILL_GRACE_SECONDS - now
                    if remaining <= 0:
                        raise SandboxError(f"the sandbox did not end {command[0]!r} after killing it")
                if status_closed_at is not None:
                    # the run is over; only a process that escaped it (rlimits-only isolation) can hold the pipes
                    remaining = min(remaining, status_closed_at + _ESCAPED_OUTPUT_SECONDS - now)
                    if remaining <= 0:
                        break
                for key, _events in selector.select(remaining):
                    fd = key.fd
                    if fd == stdin_write:
                        try:
                            pending_stdin = pending_stdin[os.write(fd, pending_stdin[: 1 << 16]) :]
                        except (BrokenPipeError, BlockingIOError) as error:
                            if isinstance(error, BlockingIOError):
                                continue
                            pending_stdin = pending_stdin[:0]
                        if not pending_stdin:
                            selector.unregister(fd)
                            os.close(fd)
                            stdin_write = None
                        continue
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        selector.unregister(fd)
                        open_readers -= 1
                        if fd == status_read:
                            status_closed_at = time.monotonic()
                        continue
                    room = room_of.get(fd, _CHANNEL_BYTES) - len(captured[fd])
                    captured[fd] += chunk[: max(room, 0)]
                    dropped[fd] += max(len(chunk) - max(room, 0), 0)
            if stdin_write is not None:
                selector.unregister(stdin_write)
                os.close(stdin_write)
        wall_seconds = time.monotonic() - started
        stdout = captured[stdout_read].decode("utf-8", "replace")
        stderr = captured[stderr_read].decode("utf-8", "replace")
        status = captured[status_read].decode("utf-8", "replace").split("\n")[0].split(" ", 1)
        kind, rest = status[0], status[1] if len(status) > 1 else ""
        truncated = [name for name, fd in (("stdout", stdout_read), ("stderr", stderr_read)) if dropped[fd]]
        suffix = f"; {' and '.join(truncated)} cut at {limits.max_output_bytes} bytes" if truncated else ""
        reached_end = None if secret is None or report_read is None else secret in captured[report_read]

        def result(returncode: int | None, timed_out: bool, signal_number: int | None, detail: str) -> ProcessResult:
            return ProcessResult(
                returncode, stdout, stderr, wall_seconds, timed_out, signal_number, detail, reached_end
            )

        if kind == "setup-error":
            raise SandboxError(f"sandbox setup failed for {command[0]!r}: {rest}")
        if kind in ("exit", "signal"):
            number_text, _, cpu_text = rest.partition(" ")
            number, cpu = int(number_text), float(cpu_text or 0)
            cpu_limit = limits.cpu_seconds if limits.cpu_seconds is not None else math.ceil(limits.wall_seconds) + 1
            if kind == "exit":
                return result(number, False, None, f"exit {number}{suffix}")
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu >= math.ceil(cpu_limit)):
                return result(-number, True, number, f"CPU-time limit {math.ceil(cpu_limit)} s{suffix}")
            return result(-number, False, number, f"killed by {name}{suffix}")
        if kind == "exec-error":
            message = rest.partition(" ")[2]
            return result(127, False, None, f"cannot execute {command[0]}: {message}")
        if killed_at is not None:
            return result(None, True, signal.SIGKILL, f"wall-clock limit {limits.wall_seconds:g} s{suffix}")
        raise SandboxError(f"the sandbox ended {command[0]!r} without a status")
