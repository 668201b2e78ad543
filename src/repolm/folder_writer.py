"""Writing a folder of files so that no reader ever sees a half-written file or a half-written new folder.

Model folders (`repolm.hf_folder`) and tokenizer folders (`repolm.tokenizer`) are saved the same way, often into
the same folder, through `write_folder`:

- the caller writes every file into a staging folder, a hidden sibling of the target (same filesystem);
- a target that does not exist yet is the staging folder renamed into place: complete or absent;
- into an existing target each staged file is moved with `os.replace` (atomic per file); files the caller owns
  (`owned(name)`, e.g. weight files) go first, then owned files of an earlier save that this one did not
  rewrite are removed as stale, then the rest, the names in `last` at the very end (`config.json`, so that a
  folder whose config is new has new weights too); files the caller does not own
  (a tokenizer beside the weights) are left alone;
- on any failure the staging folder is removed and the target is as it was (for an existing target, as it was
  after the moves already done: each file is whole, old or new).

`write_file_atomically` does the same for a single file (configs, stats, indexes written by many stages).

Standard library only, so every stage can use it without importing torch.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from repolm.errors import RepolmError, one_line

logger = logging.getLogger(__name__)


def write_file_atomically(path: Path, text: str | bytes) -> None:
    """Writes one file (text as UTF-8, or bytes) so that readers see the old content or the new, never a part: a
    sibling `<name>.partial` is written, then renamed over `path`."""
    path = Path(path)
    temporary = path.with_name(path.name + ".partial")
    if isinstance(text, bytes):
        temporary.write_bytes(text)
    else:
        temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_folder(
    directory: Path,
    write_into: Callable[[Path], None],
    owned: Callable[[str], bool] = lambda name: False,
    last: tuple[str, ...] = (),
    staging: Path | None = None,
) -> None:
    """Let `write_into(staging)` write the files, then put them in `directory` as the module docstring says.
    `staging`: a folder from `staging_folder(directory)` that others (the ranks of a run) have written into."""
    staging = staging or staging_folder(directory)
    try:
        write_into(staging)
        for path in staging.rglob("*"):
            _fsync(path)
        _fsync(staging)
        if directory.exists():
            _move_files(staging, directory, owned, last)
        else:
            try:
                os.rename(staging, directory)
            except OSError as error:
                raise RepolmError(f"{directory}: cannot move the saved files into place ({one_line(error)})") from error
        _fsync(directory.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def staging_folder(directory: Path) -> Path:
    """A new, empty hidden sibling of `directory` to stage its files in (`write_folder` renames it into place)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex[:12]}"
    staging.mkdir()  # plain mkdir: the folder gets the usual permissions (umask), unlike mkdtemp's 0700
    return staging


def _move_files(staging: Path, directory: Path, owned: Callable[[str], bool], last: tuple[str, ...]) -> None:
    """`os.replace` the staged files into `directory`: owned ones, then stale removal, then the others."""
    names = sorted(path.name for path in staging.iterdir())
    names = [n for n in names if n not in last] + [n for n in last if n in names]
    stale = sorted(p for p in directory.iterdir() if owned(p.name) and p.name not in names)
    for name in [n for n in names if owned(n)]:
        os.replace(staging / name, directory / name)
    for path in stale:  # e.g. shards of an earlier, larger save: would shadow or confuse the new files
        logger.info("removing stale file %s", path)
        path.unlink(missing_ok=True)
    for name in [n for n in names if not owned(n)]:
        os.replace(staging / name, directory / name)
    _fsync(directory)


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(descriptor)
