"""Reading the files of one unit of work: folder walks, git's tracked files, tar/zip archives, JSONL/Parquet corpora.

`repolm.data.sources` lists a source's units and dispatches each to a reader here. The readers return the files of a
repository as `SourceFile`s (folders, git, archives) or group the rows of one corpus file into `Repository` objects
(JSONL, Parquet); `sources.read_unit` sorts the files by path.

- Folders are walked iteratively without following symlinks (`SKIPPED_DIRECTORY_NAMES` and a unit's skipped
  directory names are not entered); a file is opened with O_NOFOLLOW and O_NONBLOCK, so neither a symlink loop nor
  a FIFO that replaced a file can hang the walk. Git reads the files `git ls-files` lists, and falls back to a walk
  (with a warning) when git is missing or fails.
- Archives: tar (any compression tarfile reads) member by member, so what precedes a truncation is kept; zip, also
  restricted to the members under a prefix (a JDK module inside src.zip). Member names that leave the archive
  ("..") are never read; a single common top folder is stripped.
- Corpora: JSONL (plain, .gz or .zst) line by line and Parquet row group by row group; rows need `repo`, `path` and
  `content` and are grouped by repo in first-appearance order.

Nothing here raises for a bad file: it becomes a `SourceFile` with `content=None` and `error="reason: detail"`, and
the problems of a whole corpus file or of one of its lines or rows go to the pseudo-repository "<source>/<x.jsonl>"
(reasons listed in `repolm.data.sources`). Not handled here: finding sources, detecting formats, listing units and
checking configuration (`repolm.data.sources`), and deciding which files are code (later stages).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import zstandard

from repolm.data.records import Repository, SourceFile
from repolm.errors import one_line

if TYPE_CHECKING:
    from repolm.data.sources import SourceConfig

logger = logging.getLogger(__name__)

SKIPPED_DIRECTORY_NAMES = frozenset({".git", ".hg", ".svn", "__pycache__"})  # never read, at any depth
GIT_TIMEOUT_SECONDS = 120
UNSAFE_MEMBER = "unsafe-path: leaves the archive"


def _has_suffix(path: Path | str, suffixes: Sequence[str]) -> bool:
    return str(path).lower().endswith(tuple(suffixes))


def _path_key(file: SourceFile) -> str:
    return file.path


def _display(name: str | bytes) -> str:
    """A file name as text: UTF-8, with undecodable bytes shown as backslash escapes."""
    return (name if isinstance(name, bytes) else os.fsencode(name)).decode("utf-8", "backslashreplace")


def _error_name(error: BaseException) -> str:
    return type(error).__name__


def _read_regular_file(path: Path | str, relative: str, limit: int) -> SourceFile:
    """Read one file without following a symlink and without blocking on a FIFO that replaced it."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        if os.path.islink(path):
            return SourceFile(relative, None, f"symlink: -> {_display(os.readlink(path))}")
        return SourceFile(relative, None, f"unreadable: {_error_name(error)}")
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            return SourceFile(relative, None, f"special-file: {_special_kind(status.st_mode)}")
        if status.st_size > limit:
            return SourceFile(relative, None, f"too-large: {status.st_size} bytes")
        try:
            content = handle.read(limit + 1)
        except OSError as error:
            return SourceFile(relative, None, f"unreadable: {_error_name(error)}")
    if len(content) > limit:  # it grew since fstat
        return SourceFile(relative, None, f"too-large: over {limit} bytes")
    return SourceFile(relative, content)


def _special_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character-device"))
    return next((name for test, name in kinds if test(mode)), "block-device" if stat.S_ISBLK(mode) else "other")


def _walk_folder(root: Path, limit: int, skipped: frozenset[str], top_only: bool = False) -> list[SourceFile]:
    """Every file under `root` (iteratively, symlinks never followed), or only its top-level files."""
    files: list[SourceFile] = []
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as error:
            files.append(SourceFile(prefix.rstrip("/") or "<root>", None, f"unreadable: {_error_name(error)} (folder)"))
            continue
        for entry in entries:
            relative = prefix + _display(entry.name)
            try:
                if entry.is_symlink():
                    files.append(SourceFile(relative, None, f"symlink: -> {_display(os.readlink(entry.path))}"))
                elif entry.is_dir(follow_symlinks=False):
                    if not top_only and entry.name not in SKIPPED_DIRECTORY_NAMES and entry.name not in skipped:
                        pending.append((Path(entry.path), relative + "/"))
                elif entry.is_file(follow_symlinks=False):
                    files.append(_read_regular_file(entry.path, relative, limit))
                else:
                    mode = entry.stat(follow_symlinks=False).st_mode
                    files.append(SourceFile(relative, None, f"special-file: {_special_kind(mode)}"))
            except OSError as error:
                files.append(SourceFile(relative, None, f"unreadable: {_error_name(error)}"))
    return files


def _read_git(root: Path, limit: int) -> list[SourceFile]:
    """The files git tracks in `root`; a plain walk (with a warning) when git is missing or fails."""
    git = shutil.which("git")
    command = [git or "git", "-c", "core.fsmonitor=false", "-C", str(root), "ls-files", "-z", "--cached"]
    try:
        if git is None:
            raise FileNotFoundError("git is not installed")
        completed = subprocess.run(command, capture_output=True, timeout=GIT_TIMEOUT_SECONDS)
    except (OSError, subprocess.SubprocessError) as error:
        logger.warning("git ls-files failed in %s (%s); reading the folder instead", root, one_line(error))
        return _walk_folder(root, limit, frozenset())
    if completed.returncode != 0:
        detail = " ".join(completed.stderr.decode(errors="replace").split())
        logger.warning("git ls-files failed in %s (%s); reading the folder instead", root, detail)
        return _walk_folder(root, limit, frozenset())
    listed = completed.stdout
    files = []
    real_root = os.path.realpath(root)
    for raw in sorted(set(listed.split(b"\0")) - {b""}):
        relative, full = _display(raw), os.path.join(os.fsencode(root), raw)
        parent = os.path.realpath(os.path.dirname(full))
        if parent != os.fsencode(real_root) and not parent.startswith(os.fsencode(real_root) + b"/"):
            files.append(SourceFile(relative, None, "symlink: a parent folder is a symlink"))
        elif os.path.isdir(full) and not os.path.islink(full):
            files.append(SourceFile(relative, None, "submodule: not read"))
        else:
            files.append(_read_regular_file(full, relative, limit))
    return files


def _clean_member_path(name: str) -> str | None:
    """An archive member name as a repository path, or None when it escapes the archive ("..")."""
    parts = [part for part in name.replace("\\", "/").split("/") if part not in ("", ".")]
    return None if ".." in parts or not parts else "/".join(parts)


def _strip_common_top(files: list[SourceFile]) -> list[SourceFile]:
    """Remove the first path component when all members share it (the "<archive>" and unsafe entries aside)."""
    members = [file for file in files if not file.path.startswith("<") and file.error != UNSAFE_MEMBER]
    if members and len({file.path.split("/", 1)[0] for file in members}) == 1 and all("/" in f.path for f in members):
        for file in members:
            file.path = file.path.split("/", 1)[1]
    return files


def _read_archive(path: Path, limit: int) -> list[SourceFile]:
    if _has_suffix(path, (".zip",)):
        return _strip_common_top(_read_zip(path, limit, ""))
    by_path: dict[str, SourceFile] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:  # reading member by member keeps what precedes a truncation
                relative = _clean_member_path(member.name)
                if member.isdir():
                    continue
                if relative is None:
                    by_path[member.name] = SourceFile(_display(member.name), None, UNSAFE_MEMBER)
                    continue
                by_path[relative] = _tar_member(archive, member, relative, limit)
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as error:
        by_path[f"<{path.name}>"] = SourceFile(f"<{path.name}>", None, f"corrupt-archive: {one_line(error)}")
    return _strip_common_top(list(by_path.values()))


def _tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo, relative: str, limit: int) -> SourceFile:
    if member.issym() or member.islnk():
        return SourceFile(relative, None, f"symlink: -> {_display(member.linkname)}")
    if not member.isreg():
        kinds = ((member.isfifo(), "fifo"), (member.ischr(), "character-device"), (member.isblk(), "block-device"))
        return SourceFile(relative, None, f"special-file: {next((kind for test, kind in kinds if test), 'other')}")
    if member.size > limit:
        return SourceFile(relative, None, f"too-large: {member.size} bytes")
    handle = archive.extractfile(member)
    content = handle.read() if handle is not None else None
    if content is None or len(content) != member.size:
        return SourceFile(relative, None, "broken-member: truncated")
    return SourceFile(relative, content)


def _read_zip(path: Path, limit: int, prefix: str) -> list[SourceFile]:
    """The members of a zip under `prefix` (prefix stripped from their paths); the last of duplicate names wins."""
    by_path: dict[str, SourceFile] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir() or not info.filename.startswith(prefix):
                    continue
                relative = _clean_member_path(info.filename[len(prefix) :])
                if relative is None:
                    by_path[info.filename] = SourceFile(_display(info.filename), None, UNSAFE_MEMBER)
                    continue
                by_path[relative] = _zip_member(archive, info, relative, limit)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        by_path[f"<{path.name}>"] = SourceFile(f"<{path.name}>", None, f"corrupt-archive: {one_line(error)}")
    return list(by_path.values())


def _zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, relative: str, limit: int) -> SourceFile:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        target = archive.read(info)[:4096] if info.file_size <= 4096 else b"?"
        return SourceFile(relative, None, f"symlink: -> {_display(target)}")
    if info.file_size > limit:
        return SourceFile(relative, None, f"too-large: {info.file_size} bytes")
    try:
        return SourceFile(relative, archive.read(info))
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, EOFError, OSError) as error:
        return SourceFile(relative, None, f"broken-member: {_error_name(error)}: {one_line(error)}")


# ---------------------------------------------------------------------------------------------- JSONL and Parquet

# A row of a corpus file: (line or row number, the parsed object or None, an error for the whole line or file).
Row = tuple[int, object, str | None]


def _open_jsonl(path: Path) -> io.BufferedIOBase:
    if _has_suffix(path, (".gz",)):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if _has_suffix(path, (".zst",)):
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _jsonl_rows(path: Path) -> Iterator[Row]:
    number = 0
    try:
        with _open_jsonl(path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line), None
                except (ValueError, RecursionError) as error:
                    yield number, None, f"malformed: line {number} of {path.name}: {one_line(error)}"
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as error:
        yield number + 1, None, f"corrupt-file: {path.name} after line {number}: {one_line(error)}"


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow as arrow
    import pyarrow.parquet as parquet

    try:
        table_file = parquet.ParquetFile(path)
    except (arrow.ArrowException, OSError) as error:
        yield 0, None, f"corrupt-file: {path.name}: {one_line(error)}"
        return
    present = set(table_file.schema_arrow.names)
    missing = [column for column in ("repo", "path", "content") if column not in present]
    if missing:
        yield 0, None, f"malformed: {path.name}: missing column {missing[0]!r}"
        return
    first_row = 1
    for group in range(table_file.num_row_groups):
        try:
            batch = table_file.read_row_group(group, columns=["repo", "path", "content"]).to_pydict()
        except (arrow.ArrowException, OSError) as error:
            yield first_row, None, f"corrupt-file: {path.name}: row group {group}: {one_line(error)}"
        else:
            columns = zip(batch["repo"], batch["path"], batch["content"], strict=True)
            for number, (repo, file_path, content) in enumerate(columns, start=first_row):
                yield number, {"repo": repo, "path": file_path, "content": content}, None
        first_row += table_file.metadata.row_group(group).num_rows


def _row_problem(row: object) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    for key in ("repo", "path", "content"):
        if key not in row or row[key] is None:
            return f"missing {key!r}"
    for key in ("repo", "path"):
        if not isinstance(row[key], str) or not row[key]:
            return f"{key!r} is not a non-empty string"
    if not isinstance(row["content"], (str, bytes)):
        return "'content' is not a string"
    return None


def _add_row(repositories: dict[str, dict[str, SourceFile]], row: dict, limit: int) -> tuple[str, str] | None:
    """Add a well-formed row to its repository; (reason, detail) when its path is unsafe or already seen."""
    relative = _clean_member_path(row["path"])
    if relative is None:
        return "unsafe-path", repr(row["path"])
    files = repositories.setdefault(row["repo"], {})
    if relative in files:
        return "duplicate", f"{row['repo']}/{relative} seen before"
    content = row["content"]
    data = content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content
    if len(data) > limit:
        files[relative] = SourceFile(relative, None, f"too-large: {len(data)} bytes")
    else:
        files[relative] = SourceFile(relative, data)
    return None


def _group_rows(rows: Iterator[Row], file_name: str, counted: str, source: SourceConfig) -> Iterator[Repository]:
    """Group rows by repo (first-appearance order); problems go to the pseudo-repository "<source>/<file name>".

    `counted` names what the numbers count in error messages: "line" (JSONL) or "row" (Parquet).
    """
    repositories: dict[str, dict[str, SourceFile]] = {}
    problems: list[SourceFile] = []
    for number, row, error in rows:
        problem = error or _row_problem(row)
        if problem is None:
            assert isinstance(row, dict)
            problem = _add_row(repositories, row, source.max_file_bytes)
            if problem is None:
                continue
            problem = f"{problem[0]}: {counted} {number} of {file_name}: {problem[1]}"
        elif error is None:
            problem = f"malformed: {counted} {number} of {file_name}: {problem}"
        problems.append(SourceFile(f"<{file_name}:{number}>", None, problem))
    for repo, files in repositories.items():
        yield Repository(f"{source.name}/{repo}", source.name, source.kind, sorted(files.values(), key=_path_key))
    if problems:
        yield Repository(f"{source.name}/<{file_name}>", source.name, source.kind, problems)
