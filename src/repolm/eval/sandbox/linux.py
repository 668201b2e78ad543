"""The Linux primitives the sandbox is made of: namespaces, mounts and process controls through the C library.

Standard library only, with no import of repolm: the forkserver loads this module by its path into a bare
interpreter (`python -I -S`), and the harness side imports it as usual. Python 3.10/3.11 lack `os.unshare`
(it arrived in 3.12), hence ctypes.
"""

from __future__ import annotations

import ctypes
import os
import re

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
MOUNT_OPTION_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
"""Per-mount options as /proc/self/mountinfo names them -> the flags that keep them on a read-only remount."""

ISOLATION_NAMESPACES = "namespaces"
"""Root: PID, mount, IPC and network namespaces, an unprivileged uid per run, rlimits."""
ISOLATION_USER_NAMESPACE = "user-namespace"
"""Not root: the same namespaces inside a user namespace, rlimits."""
ISOLATION_RLIMITS = "rlimits-only"
"""Neither: rlimits and a process group only. Never chosen by itself: only when asked for by name."""
ISOLATIONS = (ISOLATION_NAMESPACES, ISOLATION_USER_NAMESPACE, ISOLATION_RLIMITS)

_libc_handle: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library (loaded once)."""
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None, use_errno=True)
    return _libc_handle


def check(result: int, what: str) -> None:
    """Raises OSError with errno's message when a C call returned non-zero."""
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")


def unshare(flags: int) -> None:
    """Moves this process into new namespaces (CLONE_NEW* flags)."""
    if hasattr(os, "unshare"):
        os.unshare(flags)
    else:
        check(libc().unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, namespace_type: int) -> None:
    """Joins the namespace that `fd` (an open /proc/PID/ns/... file) refers to."""
    check(libc().setns(ctypes.c_int(fd), ctypes.c_int(namespace_type)), "setns")


def _encode(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)


def mount(source: str | None, target: str, filesystem: str | None, flags: int, data: str | None = None) -> None:
    """mount(2)."""
    result = libc().mount(_encode(source), _encode(target), _encode(filesystem), ctypes.c_ulong(flags), _encode(data))
    check(result, f"mount {target}")


def unmount(target: str) -> None:
    """umount2(2) with MNT_DETACH."""
    check(libc().umount2(_encode(target), ctypes.c_int(MNT_DETACH)), f"umount {target}")


def prctl(option: int, value: int) -> None:
    """prctl(2) with one argument."""
    zero = ctypes.c_ulong(0)
    check(libc().prctl(ctypes.c_int(option), ctypes.c_ulong(value), zero, zero, zero), "prctl")


def mount_table() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of this mount namespace, from /proc/self/mountinfo."""
    table = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            mount_point = re.sub(r"\\([0-7]{3})", lambda match: chr(int(match[1], 8)), fields[4])
            table.append((mount_point, set(fields[5].split(","))))
    return table


def is_under(path: str, directory: str) -> bool:
    """Whether `path` is `directory` or inside it (plain string paths, already resolved)."""
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def one_line(text: str) -> str:
    """`text` with its whitespace runs (newlines included) made single spaces (the forkserver's stdlib-only
    counterpart of `repolm.errors.one_line`)."""
    return " ".join(text.split())
