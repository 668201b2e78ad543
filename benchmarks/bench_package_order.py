"""Order inside packages on real code: how many name references between files of one package come in order.

In Go, Java and C# the files of a package use each other's names without import lines. Before `repolm` read those
names (`ImportResolver(package_names=False)`: Java matched file names only, Go had no edges inside a package), the
order within a package was partly a seeded random choice. This script resolves real repositories both ways, orders
them (`dependency_order`, cycle-aware, as the data build does) and counts, outside the cycles of the full graph:
- reference edges: the edges that only the package names give (a file uses a top-level name another file of its
  package declares, or a Go test file and its package's code), and how many of them come in order before and after;
- import edges: the edges of import lines, which must all stay in order.
Repositories: the JDK's src.zip modules (the default corpus cuts them the same way) and, when a Go toolchain is
installed (`make toolchains`), the Go standard library's packages under $GOROOT/src as one repository.
Run: `python benchmarks/bench_package_order.py` (options: --jdk-modules M [M ...], --json FILE).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

from machine import machine_description
from repolm.data.dependencies import package_name_order
from repolm.data.records import CodeFile

DEFAULT_JDK_MODULES = ("java.base", "java.desktop", "java.sql", "java.logging", "java.net.http", "jdk.compiler")


def jdk_modules(modules: tuple[str, ...]) -> dict[str, list[CodeFile]]:
    """Each module of the newest JDK src.zip as a repository of Java files ({} without a src.zip)."""
    zips = sorted(glob.glob("/usr/lib/jvm/*/lib/src.zip"))
    if not zips:
        return {}
    repositories: dict[str, list[CodeFile]] = {}
    with zipfile.ZipFile(zips[-1]) as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".java"))
        for module in modules:
            members = [name for name in names if name.startswith(module + "/")]
            files = [CodeFile(name[len(module) + 1 :], archive.read(name).decode("utf-8", "replace"), "Java")
                     for name in members]  # fmt: skip
            if files:
                repositories[f"jdk/{module}"] = files
    return repositories


def go_standard_library() -> dict[str, list[CodeFile]]:
    """$GOROOT/src (without testdata and vendor folders) as one repository ({} without a Go toolchain)."""
    go = shutil.which("go")
    if go is None:
        return {}
    root = Path(subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip())
    source = root / "src"
    files = []
    for folder, folder_names, file_names in os.walk(source):
        folder_names[:] = sorted(name for name in folder_names if name not in ("testdata", "vendor"))
        for name in sorted(file_names):
            if name.endswith(".go") or name == "go.mod":  # src/go.mod: "module std" (bare import paths), cmd's
                path = Path(folder, name)
                language = "Go" if name.endswith(".go") else "Text"
                files.append(
                    CodeFile(path.relative_to(source).as_posix(), path.read_text("utf-8", "replace"), language)
                )
    return {"go/std": files}


def measure(name: str, files: list[CodeFile]) -> dict:
    started = time.perf_counter()
    figures = package_name_order(files, seed=name)
    (reference_before, counted), (reference_after, _) = figures["references_before"], figures["references_after"]
    imports_after, imports_counted = figures["imports_after"]
    return {
        "repository": name,
        "files": figures["files"],
        "import_edges": figures["import_edges"],
        "reference_edges": figures["reference_edges"],
        "reference_edges_outside_cycles": counted,
        "reference_in_order_before": reference_before / counted if counted else None,
        "reference_in_order_after": reference_after / counted if counted else None,
        "import_edges_outside_cycles": imports_counted,
        "import_in_order_after": imports_after / imports_counted if imports_counted else None,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jdk-modules", nargs="+", default=list(DEFAULT_JDK_MODULES))
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    repositories = {**jdk_modules(tuple(args.jdk_modules)), **go_standard_library()}
    print(machine_description(("tree-sitter-language-pack",)))
    if not repositories:
        print("no JDK src.zip and no Go toolchain on this machine: nothing to measure")
        return
    header = f"{'repository':20} {'files':>6} {'imports':>8} {'references':>10} {'outside cycles':>14} "
    header += f"{'in order before':>15} {'after':>6} {'imports in order':>16}"
    print(header)
    results = []
    for name, files in repositories.items():
        row = measure(name, files)
        results.append(row)

        def share(value: float | None) -> str:
            return "-" if value is None else f"{value:.1%}"

        print(
            f"{name:20} {row['files']:>6} {row['import_edges']:>8} {row['reference_edges']:>10} "
            f"{row['reference_edges_outside_cycles']:>14} {share(row['reference_in_order_before']):>15} "
            f"{share(row['reference_in_order_after']):>6} {share(row['import_in_order_after']):>16}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
