"""A real host on which the sandbox's probe fails although namespaces work: a command wrapped by `without_namespaces`
runs as root of a user namespace of its own (so the sandbox expects namespaces) that may create no further user
namespace (`user.max_user_namespaces` = 0 there) and has no uid to give programs."""

from __future__ import annotations

import os
import shlex
import shutil


def without_namespaces(command: list[str]) -> list[str] | None:
    """`command` wrapped so that it runs on such a host; None where this machine cannot make one (not root, or no
    util-linux `unshare`)."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return None
    inner = "echo 0 > /proc/sys/user/max_user_namespaces && exec " + shlex.join(command)
    return [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", inner]
