"""Where repositories come from: folders, git repositories, archives, JSONL/Parquet corpora, the default corpus.

A source is a `SourceConfig` (one mixture entry). Reading happens in two steps so that datatrove tasks can share the
work: `list_units` lists cheap, picklable `SourceUnit`s in a fixed order (a folder, an archive, a JDK module inside
src.zip, one JSONL file, ...), and `read_unit` turns one unit into `Repository` objects whose files are sorted by their
POSIX repository-relative path (the readers of folders, git, archives and corpus files are in
`repolm.data.source_readers`).

Formats ("auto" picks one from the path, see `detect_format`):
- "repo": one folder, one repository (all files, except VCS internals and `__pycache__`).
- "git": the files git tracks (`git ls-files -z`); untracked files are not read. If git fails, a plain walk.
- "repos": every non-hidden subfolder (read as "git" when it holds `.git`) and every archive file is a repository.
- "archive": .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz, .zip; a single common top folder is stripped.
- "jsonl" (.jsonl, .jsonl.gz, .jsonl.zst, .json: one JSON object a line) and "parquet": rows with `repo`, `path` and
  `content` (str, encoded UTF-8, or bytes), grouped by repo in first-appearance order. A folder gives one unit per file.
  A unit holds one whole file in memory; a repository split across two files comes out as two repositories of the
  same name (shard corpora by repository).
- "stdlib", "jdk", "include", "npm", "perl": the real source found on this machine (`default_sources`).
Repository names are "<source>" for a single repository and "<source>/<name>" otherwise.

Reading never raises for a bad file: it becomes a `SourceFile` with `content=None` and `error="reason: detail"`.
Reasons: "symlink" (never followed, so a symlink loop cannot hang), "special-file", "unreadable", "too-large" (the
file is not read), "unsafe-path", "broken-member", "corrupt-archive", "corrupt-file", "malformed", "duplicate",
"submodule". Problems of a whole JSONL/Parquet file or of one line or row go to a pseudo-repository named
"<source>/<x.jsonl>" whose files are named "<x.jsonl:17>" (file name and line or row number). Bad configuration
and missing paths raise `RepolmError` (`ensure_sources_exist` checks them all at the start of a run). Deciding which
files are code is left to the later stages: binary files pass through as bytes.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import math
import os
import re
import sysconfig
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from repolm.data.records import KIND_CODE, KINDS, Repository
from repolm.data.source_readers import (
    _group_rows,
    _has_suffix,
    _jsonl_rows,
    _parquet_rows,
    _path_key,
    _read_archive,
    _read_git,
    _read_zip,
    _walk_folder,
)
from repolm.errors import RepolmError

logger = logging.getLogger(__name__)

FORMATS = ("auto", "repo", "repos", "git", "archive", "jsonl", "parquet", "stdlib", "jdk", "include", "npm", "perl")
MACHINE_FORMATS = ("stdlib", "jdk", "include", "npm", "perl")
DEFAULT_MAX_FILE_BYTES = 1 << 20  # The Stack and StarCoderData drop files over about 1 MB

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json")
PARQUET_SUFFIXES = (".parquet",)
FORMAT_SUFFIXES = {"jsonl": JSONL_SUFFIXES, "parquet": PARQUET_SUFFIXES}
# A folder holding one of these at its top is a repository (used by "auto" to tell a repo from a folder of repos);
# a README also marks the subfolders of a folder of repos (a folder of repos may have a README of its own).
REPOSITORY_MARKERS = frozenset(
    {".git", "setup.py", "pyproject.toml", "setup.cfg", "package.json", "pom.xml", "build.gradle", "build.gradle.kts",
     "Cargo.toml", "go.mod", "Makefile", "CMakeLists.txt", "configure.ac", "meson.build", "composer.json", "Gemfile",
     "build.sbt", "mix.exs", "stack.yaml", "pubspec.yaml", "Package.swift"}
)  # fmt: skip
README_MARKERS = frozenset({"README", "README.md", "README.rst", "README.txt"})

# The default corpus. The stdlib leaves out third-party packages, compiled modules, build files and the test suites
# (test/ is 17 MB of regression tests with deliberately broken files; the nested idle_test, tkinter/test,
# lib2to3/tests, ... likewise), so it is the library code itself.
STDLIB_SKIPPED_TOP_NAMES = frozenset({"site-packages", "dist-packages", "lib-dynload", "test", "__pycache__"})
STDLIB_SKIPPED_TOP_PREFIX = "config-"  # config-3.11-x86_64-linux-gnu: Makefile, libpython.a
STDLIB_SKIPPED_DIRECTORY_NAMES = frozenset({"test", "tests", "idle_test"})
JVM_FOLDER = Path("/usr/lib/jvm")
INCLUDE_FOLDER = Path("/usr/include")
NPM_FOLDER = Path("/usr/lib/node_modules/npm")
PERL_FOLDER = Path("/usr/share/perl")
_SOURCE_NAME = re.compile(r"[^\s/\\<>]+")  # it prefixes repository names: no "/", no spaces


@dataclass
class SourceConfig:
    """One input of the mixture.

    Attributes:
        name: unique name; it prefixes the names of the source's repositories (no "/", "\\", "<", ">", spaces).
        path: the folder or file to read; None for a machine format ("stdlib", ...) means "find it on this machine".
        kind: one of `KINDS` ("code", "code-text", "other-text").
        format: one of `FORMATS`; "auto" detects it from the path.
        weight: the mixture weight of this source within its kind (> 0).
        max_file_bytes: files larger than this are not read (`SourceFile.error` = "too-large: N bytes").
        repositories: glob patterns (fnmatch) of the repositories to read, matched against the name inside the
            source ("email", "java.*", "linux") and the full name ("stdlib/email"); empty = all. Only for sources
            that list their repositories (not JSONL/Parquet corpora, whose names are in the rows).
    """

    name: str
    path: str | None = None
    kind: str = KIND_CODE
    format: str = "auto"
    weight: float = 1.0
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    repositories: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _SOURCE_NAME.fullmatch(self.name):
            raise RepolmError(f"source {self.name!r}: a name must be non-empty, without '/', '\\', '<', '>', spaces")
        where = f"source {self.name!r}"
        if self.kind not in KINDS:
            raise RepolmError(f"{where}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.format not in FORMATS:
            raise RepolmError(f"{where}: format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.path is None and self.format not in MACHINE_FORMATS:
            raise RepolmError(f"{where}: path is required for format {self.format!r}")
        if self.path is not None and (not isinstance(self.path, str) or not self.path):
            raise RepolmError(f"{where}: path must be a non-empty string")
        weight_ok = isinstance(self.weight, (int, float)) and not isinstance(self.weight, bool)
        if not weight_ok or not math.isfinite(self.weight) or self.weight <= 0:
            raise RepolmError(f"{where}: weight must be a number > 0, got {self.weight!r}")
        if isinstance(self.max_file_bytes, bool) or not isinstance(self.max_file_bytes, int) or self.max_file_bytes < 1:
            raise RepolmError(f"{where}: max_file_bytes must be an integer >= 1, got {self.max_file_bytes!r}")
        if not isinstance(self.repositories, list) or not all(isinstance(item, str) for item in self.repositories):
            raise RepolmError(f"{where}: repositories must be a list of glob patterns, got {self.repositories!r}")


@dataclass(frozen=True)
class SourceUnit:
    """One piece of work: yields one repository (folders, archives, a JDK module) or many (a JSONL/Parquet file).

    Attributes:
        source: the name of the `SourceConfig` it belongs to.
        reader: how to read it: "folder", "folder-top" (only the files at the folder's top), "git", "archive",
            "zip-prefix" (the members of a zip under a prefix), "jsonl" or "parquet".
        locator: the folder or file path; for "zip-prefix", "<zip path>::<member prefix>".
        repo: the repository name for single-repository units; "" for corpus files (names come from the rows).
        skipped_directories: directory names not read at any depth, besides
            `source_readers.SKIPPED_DIRECTORY_NAMES`.
        path_prefix: put in front of every file path ("email/"): a repository cut out of a larger tree (a stdlib
            package, an /usr/include folder, a Perl or npm package) keeps its own folder, so that its imports of its
            own name resolve (`from email import errors` -> email/errors.py, `#include <linux/types.h>` ->
            linux/types.h) and its path comments say where a file is ("# ctypes/__init__.py").
    """

    source: str
    reader: str
    locator: str
    repo: str = ""
    skipped_directories: tuple[str, ...] = ()
    path_prefix: str = ""


def _archive_stem(name: str) -> str:
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _visible_entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return sorted((entry for entry in entries if not entry.name.startswith(".")), key=lambda entry: entry.name)


def _is_real_dir(entry: os.DirEntry) -> bool:
    return entry.is_dir(follow_symlinks=False)


def _repository_marker(folder: Path, markers: frozenset[str] = REPOSITORY_MARKERS) -> str | None:
    """The first (by name) of `markers` at the top of `folder`, or None (also for an unreadable folder)."""
    try:
        return min((name for name in os.listdir(folder) if name in markers), default=None)
    except OSError:
        return None


def _looks_like_repository(folder: Path, markers: frozenset[str] = REPOSITORY_MARKERS) -> bool:
    return _repository_marker(folder, markers) is not None


def detect_format(path: Path) -> str:
    """The format "auto" resolves to for an existing path (raises `RepolmError` when nothing fits).

    A file: by suffix ("archive", "jsonl", "parquet"). A folder: "git" if it holds `.git`; "repo" if it holds a
    repository marker (`REPOSITORY_MARKERS`); "jsonl"/"parquet" if it holds only corpus files; "repos" if at least half
    of its non-hidden subfolders and archives are repositories (an archive, or a marker or README inside); else "repo".
    """
    return detect_format_and_reason(path)[0]


def detect_format_and_reason(path: Path) -> tuple[str, str]:
    """`detect_format`'s answer and why, in words ("a repository marker at its top: pyproject.toml")."""
    if path.is_file():
        for found, suffixes in (("archive", ARCHIVE_SUFFIXES), *FORMAT_SUFFIXES.items()):
            suffix = next((suffix for suffix in suffixes if path.name.lower().endswith(suffix)), None)
            if suffix is not None:
                return found, f"the file name ends in {suffix}"
        raise RepolmError(f"{path}: cannot tell the format from the file name; set the source's format")
    if (path / ".git").exists():
        return "git", "it holds .git"
    marker = _repository_marker(path)
    if marker is not None:
        return "repo", f"a repository marker at its top: {marker}"
    entries = _visible_entries(path)
    files = [entry for entry in entries if entry.is_file(follow_symlinks=False)]
    folders = [entry for entry in entries if _is_real_dir(entry)]
    if files and not folders and all(_has_suffix(entry.name, JSONL_SUFFIXES + PARQUET_SUFFIXES) for entry in files):
        found = "jsonl" if any(_has_suffix(entry.name, JSONL_SUFFIXES) for entry in files) else "parquet"
        return found, "it holds only corpus files"
    archives = [entry for entry in files if _has_suffix(entry.name, ARCHIVE_SUFFIXES)]
    candidates = len(folders) + len(archives)
    markers = REPOSITORY_MARKERS | README_MARKERS
    repositories = len(archives) + sum(_looks_like_repository(Path(entry.path), markers) for entry in folders)
    looking = f"{repositories} of its {candidates} subfolders and archives look like repositories"
    if candidates and 2 * repositories >= candidates:
        return "repos", looking
    if not candidates:
        return "repo", "no repository markers at its top and no subfolders"
    if not repositories:
        return "repo", "no repository markers at its top or in its subfolders"
    return "repo", f"no repository markers at its top; only {looking}"


# ----------------------------------------------------------------------------------------------- the default corpus


def locate_stdlib() -> Path | None:
    """The running Python's standard library folder."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    return folder if folder.is_dir() else None


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(number) for number in re.findall(r"\d+", text))


def locate_jdk_src_zip(jvm_folder: Path = JVM_FOLDER) -> Path | None:
    """The newest readable `<jvm_folder>/*/lib/src.zip` (by the JDK folder name's version); dangling links skipped."""
    found: dict[Path, Path] = {}
    for candidate in sorted(jvm_folder.glob("*/lib/src.zip")):
        try:
            real = candidate.resolve(strict=True)
            with zipfile.ZipFile(real):
                pass
        except (OSError, zipfile.BadZipFile, RuntimeError):
            continue
        found.setdefault(real, candidate)
    if not found:
        return None
    return max(found.values(), key=lambda zip_path: (_version_key(zip_path.parent.parent.name), str(zip_path)))


def locate_perl(perl_folder: Path = PERL_FOLDER) -> Path | None:
    """The newest real `<perl_folder>/5.*` folder (symlinks such as 5.36 -> 5.36.0 resolved)."""
    folders = {path.resolve() for path in perl_folder.glob("5.*") if path.is_dir()}
    return max(folders, key=lambda path: (_version_key(path.name), str(path))) if folders else None


def _locate(source: SourceConfig) -> Path:
    """The path a source reads, found on this machine for machine formats with no path."""
    if source.path is not None:
        path = Path(source.path).expanduser()
        if not path.exists():
            raise RepolmError(f"source {source.name!r}: path {source.path} does not exist")
        return path
    found = {
        "stdlib": locate_stdlib,
        "jdk": locate_jdk_src_zip,
        "include": lambda: INCLUDE_FOLDER if INCLUDE_FOLDER.is_dir() else None,
        "npm": lambda: NPM_FOLDER if NPM_FOLDER.is_dir() else None,
        "perl": locate_perl,
    }[source.format]()
    if found is None:
        raise RepolmError(f"source {source.name!r}: no {source.format} source found on this machine")
    return found


def default_sources() -> tuple[list[SourceConfig], list[str]]:
    """The local corpus found on this machine, and one note for each part that is absent.

    stdlib (each top-level package a repository, the top-level modules one "stdlib/_modules"), the JDK src.zip (each
    module a repository), /usr/include (each top-level folder a repository, the top-level headers "include/_top"), npm
    (npm itself and each package of its node_modules), Perl core modules (each top-level folder a repository, the
    top-level modules "perl/_modules").
    """
    wanted = [
        ("stdlib", locate_stdlib(), f"no standard library folder at {sysconfig.get_paths()['stdlib']}"),
        ("jdk", locate_jdk_src_zip(), f"no readable lib/src.zip under {JVM_FOLDER}"),
        ("include", INCLUDE_FOLDER if INCLUDE_FOLDER.is_dir() else None, f"no {INCLUDE_FOLDER} folder"),
        ("npm", NPM_FOLDER if NPM_FOLDER.is_dir() else None, f"no {NPM_FOLDER} folder"),
        ("perl", locate_perl(), f"no {PERL_FOLDER}/5.* folder"),
    ]
    sources, notes = [], []
    for name, path, absent in wanted:
        if path is None:
            notes.append(f"{name}: {absent} (skipped)")
        else:
            sources.append(SourceConfig(name=name, path=str(path), format=name))
    for note in notes:
        logger.info("default corpus: %s", note)
    return sources, notes


# -------------------------------------------------------------------------------------------------------- listing


def ensure_sources_exist(sources: Sequence[SourceConfig]) -> None:
    """The start-of-run check: names are unique, every path exists and its format can be read (else `RepolmError`)."""
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise RepolmError(f"source {source.name!r}: the name is used twice")
        seen.add(source.name)
        _resolved_format(source, _locate(source))


def _resolved_format(source: SourceConfig, path: Path) -> str:
    return _resolved_format_and_reason(source, path)[0]


def _resolved_format_and_reason(source: SourceConfig, path: Path) -> tuple[str, str]:
    """The format a source is read in and why ("format auto: ..." or "format X set"); `RepolmError` for a path that
    the format cannot read."""
    if source.format == "auto":
        resolved, reason = detect_format_and_reason(path)
        reason = f"format auto: {reason}"
    else:
        resolved, reason = source.format, f"format {source.format} set"
    needs_folder = resolved in ("repo", "repos", "git", "stdlib", "include", "npm", "perl")
    if needs_folder and not path.is_dir():
        raise RepolmError(f"source {source.name!r}: format {resolved!r} needs a folder, {path} is not one")
    if resolved in ("archive", "jdk") and not path.is_file():
        raise RepolmError(f"source {source.name!r}: format {resolved!r} needs a file, {path} is not one")
    return resolved, reason


MACHINE_SOURCE_WORDS = {
    "stdlib": "the Python standard library: each top-level package a repository, the top-level modules one",
    "jdk": "the JDK's src.zip: each module a repository",
    "include": "C/C++ headers: each top-level folder a repository, the top-level headers one",
    "npm": "npm: npm itself and each of its bundled packages a repository",
    "perl": "Perl's core modules: each top-level folder a repository, the top-level modules one",
}


def describe_source(source: SourceConfig, units: Sequence[SourceUnit]) -> dict:
    """How a source is read, before any work: its path, the format it resolves to and why, what it gives (the
    repositories of `units`, or corpus files), and `how`, one line for people ("in/: one repository (no repository
    markers at its top or in its subfolders)")."""
    path = _locate(source)
    resolved, reason = _resolved_format_and_reason(source, path)
    repositories = sorted({unit.repo for unit in units if unit.repo})
    readers = [unit.reader for unit in units]
    if resolved in ("jsonl", "parquet"):
        kind = "JSONL" if resolved == "jsonl" else "Parquet"
        gives = f"{len(units)} {kind} file{'s' if len(units) != 1 else ''}, rows grouped into repositories by `repo`"
    elif resolved == "repos":
        words = (("folder", "folders"), ("git", "git repositories"), ("archive", "archives"))
        parts = [f"{readers.count(reader)} {word}" for reader, word in words if reader in readers]
        gives = f"a folder of {len(repositories)} repositories ({', '.join(parts) or 'none'})"
    elif resolved in MACHINE_SOURCE_WORDS:
        gives = f"{len(repositories)} repositories ({MACHINE_SOURCE_WORDS[resolved]})"
    else:
        gives = {"repo": "one repository", "git": "one repository (the files git tracks)",
                 "archive": "one repository in an archive"}[resolved]  # fmt: skip
    if source.repositories:
        gives += f", those that repositories {source.repositories} select"
    return {
        "source": source.name,
        "path": str(path),
        "format": resolved,
        "reason": reason,
        "repositories": len(repositories),
        "units": len(units),
        "how": f"{source.name}: {path}: {gives} ({reason})",
    }


def _top_level_units(
    source: str,
    folder: Path,
    top_repo: str,
    skip_top: Callable[[str], bool] = lambda name: False,
    skipped: Sequence[str] = (),
) -> list[SourceUnit]:
    """Each real top-level folder of `folder` a repository, and its top-level files one repository `top_repo`."""
    entries = _visible_entries(folder)
    units = [
        SourceUnit(source, "folder", entry.path, f"{source}/{entry.name}", tuple(sorted(skipped)), f"{entry.name}/")
        for entry in entries
        if _is_real_dir(entry) and not skip_top(entry.name)
    ]
    if any(not _is_real_dir(entry) for entry in entries):
        units.append(SourceUnit(source, "folder-top", str(folder), f"{source}/{top_repo}"))
    return units


def _corpus_files(path: Path, suffixes: Sequence[str]) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(file for file in path.rglob("*") if file.is_file() and _has_suffix(file, suffixes))


def list_units(source: SourceConfig) -> list[SourceUnit]:
    """The source's units of work, in a deterministic (sorted) order, only the repositories that
    `source.repositories` selects. Raises `RepolmError` for a bad path or format, or patterns that select nothing."""
    units = _all_units(source)
    if not source.repositories:
        return units
    if any(not unit.repo for unit in units):
        raise RepolmError(f"source {source.name!r}: repositories: only for sources that list repositories")

    def selected(unit: SourceUnit) -> bool:
        inside = unit.repo.split("/", 1)[-1]
        return any(fnmatch.fnmatchcase(inside, pattern) or fnmatch.fnmatchcase(unit.repo, pattern)
                   for pattern in source.repositories)  # fmt: skip

    chosen = [unit for unit in units if selected(unit)]
    if not chosen:
        raise RepolmError(f"source {source.name!r}: repositories {source.repositories} select none of its repositories")
    return chosen


def _all_units(source: SourceConfig) -> list[SourceUnit]:
    path = _locate(source)
    resolved = _resolved_format(source, path)
    name = source.name
    if resolved in ("repo", "git"):
        return [SourceUnit(name, "git" if resolved == "git" else "folder", str(path), name)]
    if resolved == "archive":
        return [SourceUnit(name, "archive", str(path), name)]
    if resolved in ("jsonl", "parquet"):
        auto_folder = source.format == "auto" and path.is_dir()
        suffixes = JSONL_SUFFIXES + PARQUET_SUFFIXES if auto_folder else FORMAT_SUFFIXES[resolved]
        return [
            SourceUnit(name, "parquet" if _has_suffix(file, PARQUET_SUFFIXES) else "jsonl", str(file))
            for file in _corpus_files(path, suffixes)
        ]
    if resolved == "repos":
        units, taken = [], set()
        for entry in _visible_entries(path):
            if _is_real_dir(entry):
                repo = entry.name
            elif entry.is_file(follow_symlinks=False) and _has_suffix(entry.name, ARCHIVE_SUFFIXES):
                repo = _archive_stem(entry.name) if _archive_stem(entry.name) not in taken else entry.name
            else:
                logger.info("source %r: %s is neither a folder nor an archive (ignored)", name, entry.path)
                continue
            taken.add(repo)
            if not _is_real_dir(entry):
                reader = "archive"
            else:
                reader = "git" if os.path.exists(os.path.join(entry.path, ".git")) else "folder"
            units.append(SourceUnit(name, reader, entry.path, f"{name}/{repo}"))
        return units
    if resolved == "stdlib":
        skip_top = lambda folder: folder in STDLIB_SKIPPED_TOP_NAMES or folder.startswith(STDLIB_SKIPPED_TOP_PREFIX)  # noqa: E731
        return _top_level_units(name, path, "_modules", skip_top, STDLIB_SKIPPED_DIRECTORY_NAMES)
    if resolved in ("include", "perl"):
        return _top_level_units(name, path, "_top" if resolved == "include" else "_modules")
    if resolved == "npm":
        units = [SourceUnit(name, "folder", str(path), f"{name}/npm", ("node_modules",), "npm/")]
        packages = path / "node_modules"
        if packages.is_dir():
            for entry in _visible_entries(packages):
                scoped = entry.name.startswith("@") and _is_real_dir(entry)
                for package in _visible_entries(Path(entry.path)) if scoped else [entry]:
                    if _is_real_dir(package):
                        package_name = f"{entry.name}/{package.name}" if scoped else package.name
                        units.append(
                            SourceUnit(name, "folder", package.path, f"{name}/{package_name}", (), f"{package_name}/")
                        )
        return units
    # jdk: one unit per module, the first path component of the members (src.zip has no files at its top); paths
    # start at the package folders (java/lang/String.java), which Java's own imports name in full
    with zipfile.ZipFile(path) as archive:
        modules = sorted({member.split("/", 1)[0] for member in archive.namelist() if "/" in member})
    return [SourceUnit(name, "zip-prefix", f"{path}::{module}/", f"{name}/{module}") for module in modules]


# -------------------------------------------------------------------------------------------------------- reading


def read_unit(unit: SourceUnit, source: SourceConfig) -> Iterator[Repository]:
    """The repositories of one unit, files sorted by path. Bad files become `SourceFile` errors, never exceptions."""
    if unit.source != source.name:
        raise RepolmError(f"unit of source {unit.source!r} read with the config of source {source.name!r}")
    limit = source.max_file_bytes
    if unit.reader in ("jsonl", "parquet"):
        read_rows = _jsonl_rows if unit.reader == "jsonl" else _parquet_rows
        counted = "line" if unit.reader == "jsonl" else "row"
        yield from _group_rows(read_rows(Path(unit.locator)), Path(unit.locator).name, counted, source)
        return
    if unit.reader == "git":
        files = _read_git(Path(unit.locator), limit)
    elif unit.reader in ("folder", "folder-top"):
        skipped = frozenset(unit.skipped_directories)
        files = _walk_folder(Path(unit.locator), limit, skipped, top_only=unit.reader == "folder-top")
    elif unit.reader == "archive":
        files = _read_archive(Path(unit.locator), limit)
    elif unit.reader == "zip-prefix":
        zip_path, prefix = unit.locator.split("::", 1)
        files = _read_zip(Path(zip_path), limit, prefix)
    else:
        raise RepolmError(f"unit {unit.locator}: unknown reader {unit.reader!r}")
    if unit.path_prefix:
        files = [dataclasses.replace(file, path=unit.path_prefix + file.path) for file in files]
    yield Repository(name=unit.repo, source=source.name, kind=source.kind, files=sorted(files, key=_path_key))
