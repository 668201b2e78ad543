"""The sandbox against hostile programs (real processes, no mocks): each test checks the verdict and that nothing
outside the run's folder changed; the harness goes on afterwards.

Python programs mostly, with bash and C++ where they add something (a shell fork bomb, `kill -9 -1`, a native
allocation). A program run by a root harness gets its own uid; the last tests check the weaker isolation modes and,
where this machine allows, a harness that is not root.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from no_namespaces import without_namespaces

from repolm.eval.records import Limits, ProcessResult
from repolm.eval.sandbox import (
    ISOLATION_NAMESPACES,
    ISOLATION_RLIMITS,
    ISOLATION_USER_NAMESPACE,
    Sandbox,
    SandboxError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK = Limits(wall_seconds=5.0)


def run_python(sandbox: Sandbox, source: str, limits: Limits = QUICK, **options: object) -> ProcessResult:
    """A Python program the way the runners execute it: in a fork of the sandbox's started interpreter."""
    return sandbox.run_python("program.py", {"program.py": textwrap.dedent(source)}, limits, **options)


def run_interpreter(sandbox: Sandbox, source: str, limits: Limits = QUICK) -> ProcessResult:
    """The same program in a fresh `python -I` process (exec'd in the sandbox, like any other command)."""
    return sandbox.run([sys.executable, "-I", "program.py"], {"program.py": textwrap.dedent(source)}, limits)


def processes_with(marker: str) -> list[int]:
    """Processes of this machine whose command line contains `marker` (this test process excluded)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


class Outside:
    """A snapshot of what a hostile program must not change: a canary file and folder the program can see
    (read-only), and the places it tries to create files in."""

    def __init__(self, tmp_path: Path, sandbox: Sandbox, marker: str) -> None:
        self.canary_directory = tmp_path / "canary-folder"
        self.canary_directory.mkdir()
        self.canary = self.canary_directory / "canary.txt"
        self.canary.write_text("precious\n")
        (self.canary_directory / "inside.txt").write_text("also precious\n")
        sandbox.make_readable(self.canary_directory)  # visible at its own path, read-only
        self.targets = [
            self.canary_directory / f"new-{marker}",
            Path("/tmp") / f"new-{marker}",
            REPO_ROOT / f"new-{marker}",
            Path.home() / f"new-{marker}",
            Path("/var/tmp") / f"new-{marker}",
            Path("/dev/shm") / f"new-{marker}",
            Path("/etc") / f"new-{marker}",
        ]
        self.before = self.state()

    def state(self) -> tuple:
        info = self.canary.stat()
        return (
            self.canary.read_text(),
            info.st_mtime_ns,
            info.st_mode,
            sorted(path.name for path in self.canary_directory.iterdir()),
        )

    def assert_unchanged(self) -> None:
        assert self.state() == self.before
        created = [str(path) for path in self.targets if path.exists()]
        assert not created, f"the program created files outside its folder: {created}"


@pytest.fixture
def outside(tmp_path: Path, sandbox: Sandbox, request: pytest.FixtureRequest) -> Outside:
    marker = f"{request.node.name}-{os.getpid()}".replace("[", "-").replace("]", "")
    return Outside(tmp_path, sandbox, marker)


def test_a_normal_program_passes(sandbox: Sandbox) -> None:
    result = run_python(sandbox, "import numpy\nprint(int(numpy.arange(4).sum()))\n")
    assert (result.returncode, result.stdout, result.detail) == (0, "6\n", "exit 0")
    assert not result.timed_out


def test_infinite_loop_times_out_at_the_wall_clock_limit(sandbox: Sandbox, outside: Outside) -> None:
    started = time.monotonic()
    result = run_python(sandbox, "while True:\n    pass\n", Limits(wall_seconds=1.0))
    elapsed = time.monotonic() - started
    assert result.timed_out and result.returncode is None
    assert result.detail == "wall-clock limit 1 s"
    assert 1.0 <= elapsed < 2.5
    outside.assert_unchanged()


def test_cpu_time_limit_ends_a_busy_program_before_the_wall_clock(sandbox: Sandbox) -> None:
    # a generous wall-clock limit: on a loaded machine one CPU second may take many seconds
    result = run_python(sandbox, "while True:\n    pass\n", Limits(wall_seconds=60.0, cpu_seconds=1.0))
    assert result.timed_out and result.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert result.detail.startswith("CPU-time limit 1 s")


def test_program_ignoring_signals_is_still_killed(sandbox: Sandbox, outside: Outside) -> None:
    source = """
        import signal, time
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(number, signal.SIG_IGN)
        signal.alarm(1)
        while True:
            time.sleep(0.1)
    """
    result = run_python(sandbox, source, Limits(wall_seconds=1.0))
    assert result.timed_out and result.returncode is None
    assert result.wall_seconds < 2.5
    outside.assert_unchanged()


def test_python_fork_bomb_is_contained(sandbox: Sandbox, outside: Outside) -> None:
    marker = f"forkbomb-{os.getpid()}"
    source = f"""
        import os, sys
        sys.argv[0] = {marker!r}
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """
    result = sandbox.run(
        [sys.executable, "-I", "program.py", marker],
        {"program.py": textwrap.dedent(source)},
        Limits(wall_seconds=1.5, max_processes=32),
    )
    assert result.timed_out or result.returncode != 0
    assert processes_with(marker) == []
    assert run_python(sandbox, "print('still fine')").stdout == "still fine\n"
    outside.assert_unchanged()


def test_process_limit_is_enforced(sandbox: Sandbox) -> None:
    if sandbox.isolation == ISOLATION_RLIMITS:
        pytest.skip("rlimits-only isolation has no process limit")
    source = """
        import os, time
        count = 0
        try:
            while count < 500:
                if os.fork() == 0:
                    time.sleep(3)
                    os._exit(0)
                count += 1
        except OSError as error:
            print(error.errno)
        print(count)
    """
    result = run_python(sandbox, source, Limits(wall_seconds=5.0, max_processes=20))
    errno_line, count_line = result.stdout.split()
    assert errno_line == "11"  # EAGAIN
    assert int(count_line) < 20


def test_shell_fork_bomb_is_contained(sandbox: Sandbox, outside: Outside) -> None:
    marker = f"bomb-{os.getpid()}"
    script = f": {marker}; bomb() {{ bomb | bomb & }}; bomb; sleep 5"
    result = sandbox.run(["bash", "-c", script], {}, Limits(wall_seconds=1.5, max_processes=32))
    assert result.wall_seconds < 3.0
    assert processes_with(marker) == []
    assert run_python(sandbox, "print('still fine')").returncode == 0
    outside.assert_unchanged()


def test_ten_gigabyte_allocation_fails_fast(sandbox: Sandbox, outside: Outside) -> None:
    started = time.monotonic()
    result = run_python(sandbox, "data = b'x' * (10 * 2**30)\n", Limits(wall_seconds=10.0, memory_bytes=2**30))
    assert result.returncode == 1 and "MemoryError" in result.stderr
    assert time.monotonic() - started < 3.0
    outside.assert_unchanged()


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed (apt-get install g++)")
def test_native_allocation_fails_fast(sandbox: Sandbox) -> None:
    source = "#include <cstring>\nint main() { char* p = new char[10UL << 30]; std::memset(p, 1, 10UL << 30); }\n"
    with sandbox.temporary_directory() as workdir:
        compiled = sandbox.run(["g++", "-o", "program", "program.cpp"], {"program.cpp": source}, QUICK, workdir=workdir)
        assert compiled.returncode == 0, compiled.stderr
        result = sandbox.run(["./program"], {}, Limits(wall_seconds=10.0, memory_bytes=2**30), workdir=workdir)
    assert result.signal == signal.SIGABRT  # std::bad_alloc, uncaught
    assert "bad_alloc" in result.stderr
    assert result.wall_seconds < 3.0


def test_writes_and_deletions_outside_the_folder_fail(sandbox: Sandbox, outside: Outside) -> None:
    source = f"""
        import os, shutil
        targets = {[str(path) for path in outside.targets]!r}
        for path in targets:
            try:
                with open(path, "w") as handle:
                    handle.write("x")
                print("wrote", path)
            except OSError as error:
                print("refused", path, error.strerror)
        for action in (lambda: os.remove({str(outside.canary)!r}),
                       lambda: open({str(outside.canary)!r}, "a").write("tampered"),
                       lambda: os.chmod({str(outside.canary)!r}, 0o777),
                       lambda: shutil.rmtree({str(outside.canary_directory)!r}),
                       lambda: os.rename({str(outside.canary)!r}, "stolen.txt")):
            try:
                action()
                print("changed the canary")
            except OSError as error:
                print("refused", error.strerror)
        print(open({str(outside.canary)!r}).read().strip())
    """
    result = run_python(sandbox, source)
    assert result.returncode == 0, result.stderr
    assert "changed the canary" not in result.stdout
    assert result.stdout.rstrip().endswith("precious")  # the canary is visible, read-only
    outside.assert_unchanged()


def test_files_written_in_the_folder_and_private_tmp_vanish(sandbox: Sandbox) -> None:
    source = """
        import os
        open("mine.txt", "w").write("x")
        open("/tmp/scratch.txt", "w").write("x")
        print(os.getcwd())
    """
    result = run_python(sandbox, source)
    workdir = Path(result.stdout.strip())
    assert result.returncode == 0
    assert not workdir.exists()  # removed with its contents
    assert not Path("/tmp/scratch.txt").exists()  # the run's /tmp was its own


def test_file_size_limit(sandbox: Sandbox, outside: Outside) -> None:
    limits = Limits(wall_seconds=5.0, max_file_bytes=2**20)
    result = run_python(sandbox, "open('big', 'wb').write(b'x' * (100 * 2**20))\n", limits)
    assert result.returncode == 1 and "File too large" in result.stderr
    shell = sandbox.run(["bash", "-c", "exec head -c 100000000 /dev/zero > big"], {}, limits)
    assert shell.signal == signal.SIGXFSZ
    outside.assert_unchanged()


def test_filling_the_folder_stops_at_its_size_cap() -> None:
    if os.geteuid() != 0:
        pytest.skip("the folder is a size-capped tmpfs only under a root harness")
    with Sandbox(workdir_bytes=8 * 2**20) as small:
        source = """
            count = 0
            try:
                while count < 100:
                    open(f"file-{count}", "wb").write(b"x" * 2**20)
                    count += 1
            except OSError as error:
                print(error.strerror, count)
        """
        result = run_python(small, source)
    assert result.stdout.startswith("No space left on device")
    assert int(result.stdout.split()[-1]) <= 8


def test_parent_environment_and_secrets_are_invisible(
    sandbox: Sandbox, outside: Outside, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPOLM_TEST_SECRET_API_KEY", "sk-hunter2")
    source = f"""
        import os
        print(sorted(os.environ))
        for path in ("/proc/{os.getpid()}/environ", "/proc/1/environ", "/proc/{os.getppid()}/environ",
                     "/etc/shadow", {str(Path.home() / ".bashrc")!r}):
            try:
                print(open(path, "rb").read())
            except OSError as error:
                print("refused", path, error.strerror)
    """
    result = run_python(sandbox, source)
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "SECRET" not in result.stdout
    names = set(ast.literal_eval(result.stdout.splitlines()[0]))
    assert names <= {"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE"}
    assert result.stdout.count("refused") == 5
    outside.assert_unchanged()


def test_network_is_unreachable(sandbox: Sandbox, outside: Outside) -> None:
    if not sandbox.network_isolated:
        pytest.skip("network isolation unavailable here; test_rlimits_only_runs_when_asked_and_is_loud covers it")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        source = f"""
            import socket
            for address in (("127.0.0.1", {port}), ("1.1.1.1", 53)):
                try:
                    socket.create_connection(address, timeout=2).close()
                    print("connected", address)
                except OSError as error:
                    print("refused", address, error.strerror)
            try:
                socket.getaddrinfo("example.com", 80)
                print("resolved")
            except OSError as error:
                print("no name service")
        """
        result = run_python(sandbox, source)
        with pytest.raises(TimeoutError):
            listener.accept()
    assert result.returncode == 0, result.stderr
    assert "connected" not in result.stdout and "resolved" not in result.stdout
    assert result.stdout.count("refused") == 2
    outside.assert_unchanged()


def test_rlimits_only_runs_when_asked_and_is_loud(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="repolm.eval.sandbox"):
        weak = Sandbox(isolation=ISOLATION_RLIMITS)
    try:
        assert weak.network_isolated is False
        assert weak.describe()["network_isolated"] is False and weak.describe()["isolation"] == ISOLATION_RLIMITS
        assert any("RLIMITS ONLY, as asked" in record.getMessage() for record in caplog.records)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            source = f"import socket\nsocket.create_connection(('127.0.0.1', {listener.getsockname()[1]})).close()\n"
            assert run_python(weak, source).returncode == 0  # the weakness is real, hence the warning
    finally:
        weak.close()


def test_program_cannot_kill_the_harness(sandbox: Sandbox, outside: Outside) -> None:
    harness, group = os.getpid(), os.getpgid(0)
    source = f"""
        import os, signal
        for action in (lambda: os.kill({harness}, signal.SIGKILL), lambda: os.killpg({group}, signal.SIGKILL),
                       lambda: os.kill(-1, signal.SIGKILL), lambda: os.kill(1, signal.SIGKILL),
                       lambda: os.kill(os.getppid(), signal.SIGKILL) if os.getppid() > 1 else None):
            try:
                action()
            except OSError as error:
                print("refused", error.strerror)
        print("done")
    """
    result = run_python(sandbox, source)
    assert result.stdout.rstrip().endswith("done")
    shell = sandbox.run(["bash", "-c", "kill -9 -1; kill -9 0; echo survived-harness-alive"], {}, QUICK)
    assert shell.returncode != 0 or "survived" in shell.stdout
    assert run_python(sandbox, "print('harness still here')").stdout == "harness still here\n"
    outside.assert_unchanged()


def test_stdout_flood_is_cut_and_drained_fast(sandbox: Sandbox, outside: Outside) -> None:
    limits = Limits(wall_seconds=20.0, max_output_bytes=2**20)
    maximum_resident_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    source = """
        import sys
        chunk = "x" * 65536
        for _ in range(800):  # 50 MiB on each stream
            sys.stdout.write(chunk)
            sys.stderr.write(chunk)
        print("end")
    """
    started = time.monotonic()
    result = run_python(sandbox, source, limits)
    assert result.returncode == 0
    assert len(result.stdout) == len(result.stderr) == 2**20
    assert "stdout and stderr cut at 1048576 bytes" in result.detail
    assert time.monotonic() - started < 10.0
    growth_kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maximum_resident_before
    assert growth_kilobytes < 64 * 1024  # far below the 100 MiB the program wrote
    outside.assert_unchanged()


def test_flood_without_end_is_killed_at_the_limit(sandbox: Sandbox) -> None:
    result = run_python(
        sandbox, "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n", Limits(wall_seconds=1.0)
    )
    assert result.timed_out and len(result.stdout) == QUICK.max_output_bytes
    assert result.detail == f"wall-clock limit 1 s; stdout cut at {QUICK.max_output_bytes} bytes"


@pytest.mark.parametrize(
    ("source", "returncode"),
    [
        ("import sys\nsys.exit(0)\nassert False\n", 0),  # an early exit is reported as such; tasks judge it
        ("import sys\nsys.exit(3)\n", 3),
        ("raise SystemExit('bye')\n", 1),
        ("import os\nos._exit(7)\n", 7),
        ("import atexit, os\natexit.register(lambda: os._exit(5))\nassert 1 == 2\n", 5),
        ("import sys\nsys.stdout.close()\nprint('lost')\n", 1),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\nimport time\ntime.sleep(5)\n", -signal.SIGTERM),
    ],
    ids=["sys-exit-0", "sys-exit-3", "system-exit-message", "os-exit", "atexit-override", "closed-stdout", "sigterm"],
)
@pytest.mark.parametrize("runner", [run_python, run_interpreter], ids=["in-process", "interpreter"])
def test_exit_tricks_are_reported_as_they_happened(sandbox: Sandbox, source: str, returncode: int, runner) -> None:
    result = runner(sandbox, source)
    assert result.returncode == returncode
    assert not result.timed_out


@pytest.mark.parametrize(
    "source",
    [
        "import sys\nprint(sys.argv, __name__, sorted(globals()), sys.path[-1] != '')\n",
        "def f(:\n",
        "assert [1, 2] == [2, 1], 'order'\n",
        "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('late'))).start()\n",
        "class Noisy:\n    def __del__(self):\n        print('finalized')\nkeep = Noisy()\nexit(4)\n",
        "import multiprocessing\nif __name__ == '__main__':\n    with multiprocessing.Pool(2) as pool:\n"
        "        print(pool.map(abs, [-1, -2]))\n",
        "import os, sys\nprint(sorted(os.environ), sys.flags.isolated, sys.executable)\n",
    ],
    ids=["main-module", "syntax-error", "assertion", "thread-at-exit", "finalizer", "multiprocessing", "environment"],
)
def test_in_process_python_behaves_like_the_interpreter(sandbox: Sandbox, source: str) -> None:
    in_process, interpreter = run_python(sandbox, source), run_interpreter(sandbox, source)

    def normalized(text: str) -> str:  # the two runs had different folders
        return re.sub(r"/run-[^/]+/", "/run-FOLDER/", text)

    assert in_process.returncode == interpreter.returncode
    assert normalized(in_process.stdout) == normalized(interpreter.stdout)
    assert normalized(in_process.stderr) == normalized(interpreter.stderr)


def test_daemonized_grandchild_is_killed(sandbox: Sandbox, outside: Outside) -> None:
    marker = f"{4242 + os.getpid() % 1000}.5151"
    source = f"""
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("/bin/sleep", ["sleep", {marker!r}])
            os._exit(0)
        print("parent returns at once")
    """
    result = run_python(sandbox, source)
    assert result.returncode == 0 and result.wall_seconds < 2.0
    assert processes_with(marker) == []
    outside.assert_unchanged()


def test_stdin_bytes_reach_the_program_and_unread_stdin_is_fine(sandbox: Sandbox) -> None:
    data = b"line\n" * 200_000  # 1 MB, more than a pipe holds
    echoed = sandbox.run(["wc", "-c"], {}, QUICK, stdin=data)
    assert echoed.stdout.strip() == str(len(data))
    ignored = sandbox.run(["true"], {}, QUICK, stdin=data)
    assert ignored.returncode == 0


def test_compile_then_run_share_one_folder(sandbox: Sandbox) -> None:
    with sandbox.temporary_directory() as workdir:
        first = sandbox.run(["bash", "-c", "echo built > artifact"], {"source.txt": "x"}, QUICK, workdir=workdir)
        second = sandbox.run(["cat", "artifact", "source.txt"], {}, QUICK, workdir=workdir)
        assert first.returncode == 0 and second.stdout == "built\nx"
    assert not workdir.exists()


def test_planted_link_does_not_redirect_the_harness(sandbox: Sandbox, tmp_path: Path) -> None:
    target = tmp_path / "harness-file.txt"
    target.write_text("untouched")
    with sandbox.temporary_directory() as workdir:
        sandbox.run(["ln", "-s", str(target), "next.txt"], {}, QUICK, workdir=workdir)
        sandbox.run(["true"], {"next.txt": "overwritten?"}, QUICK, workdir=workdir)  # the harness writes files
        assert (workdir / "next.txt").read_text() == "overwritten?" and not (workdir / "next.txt").is_symlink()
    assert target.read_text() == "untouched"


def test_bad_calls_are_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="relative"):
        sandbox.run(["true"], {"../escape.txt": "x"}, QUICK)
    with pytest.raises(ValueError, match="relative"):
        sandbox.run(["true"], {"/etc/escape.txt": "x"}, QUICK)
    with pytest.raises(ValueError, match="temporary_directory"):
        sandbox.run(["true"], {}, QUICK, workdir=tmp_path)
    with pytest.raises(ValueError, match="empty"):
        sandbox.run([], {}, QUICK)
    missing = sandbox.run(["no-such-program-here"], {}, QUICK)
    assert missing.returncode == 127 and missing.detail.startswith("cannot execute no-such-program-here")


def test_concurrent_runs_are_isolated_from_each_other(sandbox: Sandbox) -> None:
    source = "import os, time\nprint(os.getuid(), os.getcwd())\ntime.sleep(0.3)\n"
    results: list[ProcessResult] = []
    threads = [threading.Thread(target=lambda: results.append(run_python(sandbox, source))) for _ in range(6)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 1.6  # in parallel, not one after another
    assert all(result.returncode == 0 for result in results)
    folders = {result.stdout.split()[1] for result in results}
    assert len(folders) == 6
    if sandbox.isolation == ISOLATION_NAMESPACES:
        assert len({result.stdout.split()[0] for result in results}) == 6  # one uid per concurrent run


def test_closed_sandbox_refuses_runs() -> None:
    closed = Sandbox()
    closed.close()
    with pytest.raises(SandboxError, match="closed"):
        closed.run(["true"], {}, QUICK)


def test_user_namespace_isolation(outside: Outside) -> None:
    try:
        weaker = Sandbox(isolation=ISOLATION_USER_NAMESPACE)
    except SandboxError as error:
        pytest.skip(f"user namespaces unavailable here: {error}")
    with weaker:
        if weaker.isolation != ISOLATION_USER_NAMESPACE:
            pytest.skip("user namespaces unavailable here")
        assert weaker.network_isolated
        # a path outside the sandbox's private /tmp (a clone of the repository may itself live under /tmp)
        target = Path("/usr/lib/repolm-new-user-namespace")
        result = run_python(weaker, f"open({str(target)!r}, 'w')\n")
        assert result.returncode == 1
        assert "Read-only file system" in result.stderr or "Permission denied" in result.stderr
        assert not target.exists()
        marker = f"{5353 + os.getpid() % 1000}.2727"
        source = f"import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', {marker!r}])\n"
        assert run_python(weaker, source).returncode == 0
        assert processes_with(marker) == []
        assert run_python(weaker, "while True:\n    pass\n", Limits(wall_seconds=1.0)).timed_out
    outside.assert_unchanged()


_UNPRIVILEGED_HARNESS = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from repolm.eval.records import Limits
from repolm.eval.sandbox import Sandbox, SandboxError
try:
    Sandbox().close()
except SandboxError as error:
    print(json.dumps({"refused": str(error)}))
    sys.exit(0)
fork_counter = (
    "import os, time\\ncount = 0\\ntry:\\n    while count < 300:\\n        if os.fork() == 0:\\n"
    "            time.sleep(3)\\n            os._exit(0)\\n        count += 1\\n"
    "except OSError:\\n    pass\\nprint(count)\\n"
)
with Sandbox() as sandbox:
    forks = sandbox.run([sys.executable, "-I", "-c", fork_counter], {}, Limits(wall_seconds=5, max_processes=20))
    write = sandbox.run([sys.executable, "-I", "-c", "import sys; open(sys.argv[1], 'w')", sys.argv[2]], {}, Limits())
    print(json.dumps({"isolation": sandbox.isolation, "network": sandbox.network_isolated,
                      "forks": forks.stdout.strip(), "write": write.returncode}))
"""


def test_unprivileged_harness_uses_a_user_namespace() -> None:
    """A harness that is not root: run this check as an unprivileged uid with the system Python, if both exist."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or python is None or setpriv is None:
        pytest.skip("needs root (to switch to an unprivileged uid), /usr/bin/python3 and setpriv")
    source_root = REPO_ROOT / "src"
    if not all(path.stat().st_mode & 0o005 == 0o005 for path in [source_root, *source_root.parents]):
        pytest.skip("the repository is not readable by other users")
    forbidden = REPO_ROOT / "new-unprivileged"
    with tempfile.TemporaryDirectory(prefix="repolm-unprivileged-") as folder:
        Path(folder).chmod(0o755)
        script = Path(folder) / "unprivileged_harness.py"
        script.write_text(_UNPRIVILEGED_HARNESS)
        script.chmod(0o644)
        completed = subprocess.run(
            [setpriv, "--reuid=45999", "--regid=45999", "--clear-groups", python, str(script), str(source_root)]
            + [str(forbidden)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
            cwd=folder,
        )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    if "refused" in report:  # user namespaces closed to this uid here: refused with the way out, never degraded
        assert "refusing to run untrusted code" in report["refused"] and "--sandbox rlimits" in report["refused"]
        return
    assert report["isolation"] == ISOLATION_USER_NAMESPACE
    assert report["network"] is True
    assert int(report["forks"]) < 20  # RLIMIT_NPROC holds inside the user namespace
    assert report["write"] == 1
    assert not forbidden.exists()


def test_the_harness_goes_on_after_the_hostile_suite(sandbox: Sandbox) -> None:
    result = run_python(sandbox, "assert sum(range(10)) == 45\nprint('ok')\n")
    assert (result.returncode, result.stdout) == (0, "ok\n")


def test_forkserver_modules_import_only_the_standard_library() -> None:
    """The forkserver loads `linux` and `forkserver` by their paths into a bare `python -I -S`: an import of repolm
    (other than `linux`, which it has loaded first) or of a third-party package would fail inside every run."""
    import repolm.eval.sandbox.forkserver as forkserver_module
    import repolm.eval.sandbox.linux as linux_module

    for module in (linux_module, forkserver_module):
        tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                imported.add(node.module)
        foreign = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
        assert foreign <= {"repolm.eval.sandbox.linux"}, f"{module.__name__} imports {sorted(foreign)}"
        assert module is forkserver_module or not foreign


def test_refuses_where_the_probe_fails_and_says_what_to_do() -> None:
    """A real probe failure on a machine with namespaces: the harness runs in a user namespace of its own where it is
    root (so namespaces are expected) but may create no further user namespace and has no uid to give programs.
    `Sandbox()` must raise, not fall back to rlimits; asked for by name, rlimits-only runs and says so."""
    script = textwrap.dedent(
        """
        import json, sys
        from repolm.eval.records import Limits
        from repolm.eval.sandbox import ISOLATION_RLIMITS, Sandbox, SandboxError
        try:
            Sandbox().close()
            print(json.dumps({"refused": None}))
        except SandboxError as error:
            with Sandbox(isolation=ISOLATION_RLIMITS) as weak:
                ran = weak.run(["true"], {}, Limits(wall_seconds=5)).returncode
                print(json.dumps({"refused": str(error), "weak": weak.describe(), "ran": ran}))
        """
    )
    command = without_namespaces([sys.executable, "-c", script])
    if command is None:
        pytest.skip("needs root and util-linux unshare")
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    )
    if completed.returncode != 0 and "max_user_namespaces" in completed.stderr:
        pytest.skip(f"cannot limit user namespaces in a child namespace here: {completed.stderr.strip()}")
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["refused"], "the sandbox fell back instead of refusing"
    assert "refusing to run untrusted code" in report["refused"] and "--sandbox rlimits" in report["refused"]
    assert "namespaces:" in report["refused"] and "user-namespace:" in report["refused"]  # why, per mode
    assert report["weak"]["isolation"] == ISOLATION_RLIMITS and report["ran"] == 0


def test_end_of_tests_secret_is_fresh_and_comes_back_only_when_reported(sandbox: Sandbox) -> None:
    """fd 3 holds a fresh secret per run, found nowhere else (environment, folder); `reached_end` is True only
    when the program wrote it to fd 4, False when it did not, None without the channel."""
    shell = "/bin/sh"
    reveal = 'secret=$(cat <&3); echo "$secret"; env; grep -rl "$secret" . || echo not-in-folder'
    first, second = (sandbox.run([shell, "-c", reveal], {}, QUICK, end_of_tests=True) for _ in range(2))
    secrets_seen = [result.stdout.splitlines()[0] for result in (first, second)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", secret) for secret in secrets_seen) and len(set(secrets_seen)) == 2
    assert first.stdout.count(secrets_seen[0]) == 1 and "not-in-folder" in first.stdout
    assert (first.returncode, first.reached_end) == (0, False)
    reported = sandbox.run(
        [shell, "-c", 'cat <&3 >&4; exec 3<&-; echo "[$(cat <&3 2>&1)]"'], {}, QUICK, end_of_tests=True
    )
    assert reported.reached_end is True and reported.stdout.startswith("[")  # read once, then gone
    forged = sandbox.run(
        [shell, "-c", "cat <&3 >/dev/null; echo 0123456789abcdef0123456789abcdef >&4"], {}, QUICK, end_of_tests=True
    )
    assert (forged.returncode, forged.reached_end) == (0, False)
    assert sandbox.run([shell, "-c", "true"], {}, QUICK).reached_end is None
    # Python in process: the interpreter reports after the script; the script sees no secret descriptor
    python = run_python(
        sandbox, "import os\ntry:\n    os.read(3, 64)\nexcept OSError:\n    print('no fd 3')\n", end_of_tests=True
    )
    assert (python.stdout, python.reached_end) == ("no fd 3\n", True)
    assert run_python(sandbox, "raise SystemExit(0)\n", end_of_tests=True).reached_end is False
