"""Sources: listing units and reading repositories from folders, git, archives, JSONL/Parquet and the default corpus.

Every fixture is built in tmp_path; the default-corpus tests read the real trees of this machine and skip what is
absent.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pickle
import shutil
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import pyarrow as arrow
import pyarrow.parquet as parquet
import pytest
import zstandard

from repolm.data.records import Repository, SourceFile
from repolm.data.sources import (
    DEFAULT_MAX_FILE_BYTES,
    SourceConfig,
    SourceUnit,
    default_sources,
    describe_source,
    detect_format,
    ensure_sources_exist,
    list_units,
    locate_jdk_src_zip,
    read_unit,
)
from repolm.errors import RepolmError

logger = logging.getLogger(__name__)


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


def read_all(source: SourceConfig) -> list[Repository]:
    return [repository for unit in list_units(source) for repository in read_unit(unit, source)]


def by_path(repository: Repository) -> dict[str, SourceFile]:
    return {file.path: file for file in repository.files}


def test_folder_of_repositories(tmp_path: Path):
    write_tree(tmp_path / "corpus" / "beta", {"package.json": "{}", "src/index.js": "let x = 1;\n"})
    write_tree(tmp_path / "corpus" / "alpha", {"setup.py": "import setuptools\n", "alpha/__init__.py": "", "b.py": "1"})
    write_tree(tmp_path / "corpus" / "alpha" / "__pycache__", {"b.cpython-311.pyc": b"\x00\x01"})
    write_tree(tmp_path / "corpus" / "gamma", {"README": "notes\n", "run.sh": "echo hi\n"})
    write_tree(tmp_path / "corpus", {"README.md": "# a folder of repositories\n"})  # ignored, with a log line
    source = SourceConfig(name="mine", path=str(tmp_path / "corpus"))
    assert detect_format(tmp_path / "corpus") == "repos"
    units = list_units(source)
    assert [unit.repo for unit in units] == ["mine/alpha", "mine/beta", "mine/gamma"]
    repositories = read_all(source)
    assert [file.path for file in repositories[0].files] == ["alpha/__init__.py", "b.py", "setup.py"]
    assert repositories[1].files[1] == SourceFile("src/index.js", b"let x = 1;\n")
    assert {(repository.source, repository.kind) for repository in repositories} == {("mine", "code")}


def test_how_a_source_is_read_is_said_in_words(tmp_path: Path):
    write_tree(tmp_path / "in", {"lib/a.py": "import b\n", "lib/b.py": "x = 1\n", "docs/x.md": "# x\n"})
    source = SourceConfig(name="in", path=str(tmp_path / "in"))
    described = describe_source(source, list_units(source))
    assert described["how"] == (
        f"in: {tmp_path / 'in'}: one repository (format auto: no repository markers at its top or in its subfolders)"
    )
    write_tree(tmp_path / "in", {"pyproject.toml": "[project]\n"})
    reason = describe_source(source, list_units(source))["reason"]
    assert reason == "format auto: a repository marker at its top: pyproject.toml"
    write_tree(tmp_path / "many" / "a", {"README.md": "a\n"})
    write_tree(tmp_path / "many" / "b", {"go.mod": "module b\n"})
    write_tree(tmp_path / "many" / "c", {"x.c": "int x;\n"})
    many = SourceConfig(name="many", path=str(tmp_path / "many"), repositories=["a", "b", "c"])
    described = describe_source(many, list_units(many))
    assert described["how"] == (
        f"many: {tmp_path / 'many'}: a folder of 3 repositories (3 folders), those that repositories ['a', 'b', 'c'] "
        "select (format auto: 2 of its 3 subfolders and archives look like repositories)"
    )
    stdlib = SourceConfig(name="stdlib", format="stdlib")
    described = describe_source(stdlib, list_units(stdlib))
    assert described["repositories"] > 20 and described["format"] == "stdlib"
    assert described["how"].endswith("(the Python standard library: each top-level package a repository, the "
                                     "top-level modules one) (format stdlib set)")  # fmt: skip


def test_single_repository_binary_and_empty(tmp_path: Path):
    write_tree(tmp_path / "one", {"Makefile": "all:\n", "lib/z.c": "int z;\n", "logo.png": b"\x89PNG\r\n\x00\xff"})
    (tmp_path / "one" / "empty-folder").mkdir()
    source = SourceConfig(name="one", path=str(tmp_path / "one"), kind="code-text")
    assert detect_format(tmp_path / "one") == "repo"
    [repository] = read_all(source)
    assert (repository.name, repository.kind) == ("one", "code-text")
    assert by_path(repository)["logo.png"].content == b"\x89PNG\r\n\x00\xff"  # binary passes through
    (tmp_path / "empty").mkdir()
    [empty] = read_all(SourceConfig(name="empty", path=str(tmp_path / "empty"), format="repo"))
    assert empty.files == []


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_repository_reads_only_tracked_files(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    repo = write_tree(
        tmp_path / "project", {"main.py": "print(1)\n", "pkg/util.py": "X = 2\n", ".gitignore": "*.log\n"}
    )
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-C", str(repo)]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "first"]):
        subprocess.run(git + command, check=True, capture_output=True)
    write_tree(repo, {"untracked.py": "secret = 1\n", "debug.log": "noise\n"})
    source = SourceConfig(name="project", path=str(repo))
    assert [unit.reader for unit in list_units(source)] == ["git"]
    [repository] = read_all(source)
    assert [file.path for file in repository.files] == [".gitignore", "main.py", "pkg/util.py"]
    broken = write_tree(tmp_path / "broken", {"a.py": "1\n"})
    (broken / ".git").mkdir()  # not a repository: git fails and the folder is walked instead
    with caplog.at_level(logging.WARNING):
        [repository] = read_all(SourceConfig(name="broken", path=str(broken)))
    assert [file.path for file in repository.files] == ["a.py"]
    assert "reading the folder instead" in caplog.text


def make_archives(folder: Path) -> dict[str, Path]:
    files = {"README.md": b"# demo\n", "src/app.py": b"import os\n"}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for suffix, mode in ((".tar", "w"), (".tar.gz", "w:gz")):
        paths[suffix] = folder / f"demo-1.0{suffix}"
        with tarfile.open(paths[suffix], mode) as archive:
            for name, content in files.items():
                info = tarfile.TarInfo(f"demo-1.0/{name}")
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    paths[".zip"] = folder / "demo-1.0.zip"
    with zipfile.ZipFile(paths[".zip"], "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(f"demo-1.0/{name}", content)
    return paths


def test_archives_strip_their_top_folder(tmp_path: Path):
    for suffix, path in make_archives(tmp_path / "archives").items():
        [repository] = read_all(SourceConfig(name="demo", path=str(path)))
        assert repository.name == "demo"
        assert repository.files == [SourceFile("README.md", b"# demo\n"), SourceFile("src/app.py", b"import os\n")], (
            suffix
        )
    units = list_units(SourceConfig(name="many", path=str(tmp_path / "archives")))  # a folder of archives: "repos"
    assert [unit.repo for unit in units] == ["many/demo-1.0", "many/demo-1.0.tar.gz", "many/demo-1.0.zip"]


def test_broken_archives_yield_what_they_can(tmp_path: Path):
    paths = make_archives(tmp_path)
    with tarfile.open(tmp_path / "big.tar.gz", "w:gz") as archive:
        for number in range(40):
            content = os.urandom(50_000)  # incompressible, so a cut lands in the middle
            info = tarfile.TarInfo(f"top/file{number:02d}.bin")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
        evil = tarfile.TarInfo("../evil.sh")
        archive.addfile(evil, io.BytesIO(b""))
    data = (tmp_path / "big.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    [repository] = read_all(SourceConfig(name="cut", path=str(tmp_path / "cut.tar.gz")))
    good = [file for file in repository.files if file.content is not None]
    assert 5 < len(good) < 40 and all(len(file.content) == 50_000 for file in good)
    assert good[0].path == "file00.bin"  # the top folder is stripped even when the archive is cut
    assert [file.error.split(":")[0] for file in repository.files if file.error] == ["corrupt-archive"]
    [whole] = read_all(SourceConfig(name="whole", path=str(tmp_path / "big.tar.gz")))
    assert by_path(whole)["../evil.sh"].error == "unsafe-path: leaves the archive"
    with zipfile.ZipFile(tmp_path / "stored.zip", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("README.md", "# demo\n")
        archive.writestr("src/app.py", "import os\n")
    zip_bytes = bytearray((tmp_path / "stored.zip").read_bytes())
    zip_bytes[zip_bytes.index(b"import os")] ^= 0xFF  # a bad CRC in one member
    (tmp_path / "crc.zip").write_bytes(bytes(zip_bytes))
    [repository] = read_all(SourceConfig(name="crc", path=str(tmp_path / "crc.zip")))
    assert repository.files[0].content == b"# demo\n" and repository.files[1].error.startswith("broken-member:")
    (tmp_path / "cut.zip").write_bytes(paths[".zip"].read_bytes()[:40])
    [repository] = read_all(SourceConfig(name="cutzip", path=str(tmp_path / "cut.zip")))
    assert [file.error.split(":")[0] for file in repository.files] == ["corrupt-archive"]


def test_jsonl_corpora_group_rows_and_record_malformed_lines(tmp_path: Path):
    rows = [
        {"repo": "b/two", "path": "z.py", "content": "z = 1\n"},
        {"repo": "a/one", "path": "./src/m.py", "content": "m = 2\n"},
        {"repo": "b/two", "path": "a.py", "content": "a = 3\n"},
        {"repo": "a/one", "content": "no path\n"},
        {"repo": "a/one", "path": "src/m.py", "content": "again\n"},
        {"repo": "a/one", "path": "big.py", "content": "x" * 100},
    ]
    lines = [json.dumps(row) for row in rows[:4]] + ["{not json", ""] + [json.dumps(row) for row in rows[4:]]
    text = "\n".join(lines) + "\n"
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "x.jsonl").write_text(text)
    (tmp_path / "corpus" / "y.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(text.encode()))
    assert detect_format(tmp_path / "corpus") == "jsonl"
    source = SourceConfig(name="c", path=str(tmp_path / "corpus"), max_file_bytes=50)
    units = list_units(source)
    assert [(unit.reader, Path(unit.locator).name) for unit in units] == [
        ("jsonl", "x.jsonl"),
        ("jsonl", "y.jsonl.zst"),
    ]
    for unit in units:
        one, two, problems = read_unit(unit, source)
        assert [one.name, two.name] == ["c/b/two", "c/a/one"]  # first-appearance order
        assert two.files == [SourceFile("big.py", None, "too-large: 100 bytes"), SourceFile("src/m.py", b"m = 2\n")]
        assert [file.path for file in one.files] == ["a.py", "z.py"]
        name = Path(unit.locator).name
        assert problems.name == f"c/<{name}>"
        assert problems.files[0] == SourceFile(f"<{name}:4>", None, f"malformed: line 4 of {name}: missing 'path'")
        assert problems.files[1].path == f"<{name}:5>" and problems.files[1].error.startswith("malformed: line 5")
        assert problems.files[2].error.startswith(f"duplicate: line 7 of {name}")
    compressed = gzip.compress(text.encode() + json.dumps({"noise": os.urandom(3000).hex()}).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(compressed[: len(compressed) // 2])
    repositories = read_all(SourceConfig(name="cut", path=str(tmp_path / "cut.jsonl.gz")))
    assert repositories[-1].files[-1].error.startswith("corrupt-file: cut.jsonl.gz after line")


def test_parquet_corpus(tmp_path: Path):
    table = arrow.table(
        {
            "repo": ["r1", "r2", "r1", None],
            "path": ["b.py", "x.c", "a.py", "c.py"],
            "content": [b"b\n", b"\xff\xfe binary", b"a\n", b"c\n"],
            "stars": [1, 2, 3, 4],
        }
    )
    parquet.write_table(table, tmp_path / "part.parquet", row_group_size=2)
    source = SourceConfig(name="pq", path=str(tmp_path / "part.parquet"))
    r1, r2, problems = read_all(source)
    assert r1.files == [SourceFile("a.py", b"a\n"), SourceFile("b.py", b"b\n")] and r2.name == "pq/r2"
    assert problems.files == [SourceFile("<part.parquet:4>", None, "malformed: row 4 of part.parquet: missing 'repo'")]
    (tmp_path / "bad.parquet").write_bytes((tmp_path / "part.parquet").read_bytes()[:100])
    [broken] = read_all(SourceConfig(name="bad", path=str(tmp_path / "bad.parquet")))
    assert broken.files[0].error.startswith("corrupt-file: bad.parquet")
    parquet.write_table(arrow.table({"repo": ["r"], "text": ["t"]}), tmp_path / "other.parquet")
    [wrong] = read_all(SourceConfig(name="wrong", path=str(tmp_path / "other.parquet")))
    assert wrong.files[0].error == "malformed: other.parquet: missing column 'path'"


def test_awkward_files_become_errors_not_exceptions(tmp_path: Path):
    repo = write_tree(tmp_path / "repo", {"Makefile": "all:\n", "pkg/ok.py": "ok = 1\n"})
    (repo / "pkg" / "loop").symlink_to("..")  # a directory symlink to its parent
    (repo / "dangling.py").symlink_to(repo / "missing.py")
    os.mkfifo(repo / "pipe")
    with open(repo / "huge.bin", "wb") as handle:
        handle.truncate(50 * 1024 * 1024)  # sparse: 50 MB that cost no disk
    (repo / "locked.py").write_text("hidden = 1\n")
    (repo / "locked.py").chmod(0)
    started = time.perf_counter()
    [repository] = read_all(SourceConfig(name="repo", path=str(repo)))
    assert time.perf_counter() - started < 2  # the loop is not followed, the FIFO not opened, the big file not read
    files = by_path(repository)
    assert files["pkg/loop"] == SourceFile("pkg/loop", None, "symlink: -> ..")
    assert files["dangling.py"].error == f"symlink: -> {repo / 'missing.py'}"
    assert files["pipe"] == SourceFile("pipe", None, "special-file: fifo")
    assert files["huge.bin"] == SourceFile("huge.bin", None, f"too-large: {50 * 1024 * 1024} bytes")
    assert files["pkg/ok.py"].content == b"ok = 1\n"
    assert [file.path for file in repository.files] == sorted(files)
    if os.geteuid() == 0:
        pytest.skip("running as root: a chmod 000 file is still readable, so 'unreadable' cannot be produced")
    assert files["locked.py"] == SourceFile("locked.py", None, "unreadable: PermissionError")


def test_configuration_errors_name_the_source_and_field(tmp_path: Path):
    for fields, message in (
        ({"name": "a b", "path": "x"}, "a name must be"),
        ({"name": "s", "path": "x", "kind": "prose"}, "source 's': kind 'prose'"),
        ({"name": "s", "path": "x", "format": "rar"}, "source 's': format 'rar'"),
        ({"name": "s", "path": "x", "weight": 0}, "source 's': weight"),
        ({"name": "s", "path": "x", "max_file_bytes": 0}, "source 's': max_file_bytes"),
        ({"name": "s"}, "source 's': path is required"),
    ):
        with pytest.raises(RepolmError, match=message):
            SourceConfig(**fields)
    assert SourceConfig(name="s", path="x").max_file_bytes == DEFAULT_MAX_FILE_BYTES
    missing = SourceConfig(name="gone", path=str(tmp_path / "gone"))
    with pytest.raises(RepolmError, match=f"source 'gone': path {tmp_path / 'gone'} does not exist"):
        ensure_sources_exist([missing])
    with pytest.raises(RepolmError, match="does not exist"):
        list_units(missing)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RepolmError, match="cannot tell the format"):
        ensure_sources_exist([SourceConfig(name="t", path=str(tmp_path / "notes.txt"))])
    with pytest.raises(RepolmError, match="needs a folder"):
        ensure_sources_exist([SourceConfig(name="t", path=str(tmp_path / "notes.txt"), format="repos")])
    twice = [SourceConfig(name="same", path=str(tmp_path)), SourceConfig(name="same", path=str(tmp_path))]
    with pytest.raises(RepolmError, match="used twice"):
        ensure_sources_exist(twice)
    unit = SourceUnit("other", "folder", str(tmp_path), "other")
    with pytest.raises(RepolmError, match="read with the config of source 'same'"):
        list(read_unit(unit, twice[0]))


def test_jdk_is_found_and_split_into_modules(tmp_path: Path):
    jvm = tmp_path / "jvm"
    for version in ("temurin-21-jdk", "temurin-25-jdk"):
        (jvm / version / "lib").mkdir(parents=True)
        with zipfile.ZipFile(jvm / version / "lib" / "src.zip", "w") as archive:
            archive.writestr("java.base/java/lang/Object.java", "package java.lang;\npublic class Object {}\n")
            archive.writestr("java.logging/java/util/logging/Logger.java", "package java.util.logging;\n")
    (jvm / "openjdk-30" / "lib").mkdir(parents=True)
    (jvm / "openjdk-30" / "lib" / "src.zip").symlink_to(tmp_path / "nowhere.zip")  # dangling: skipped
    found = locate_jdk_src_zip(jvm)
    assert found == jvm / "temurin-25-jdk" / "lib" / "src.zip"
    assert locate_jdk_src_zip(tmp_path / "no-jvm") is None
    source = SourceConfig(name="jdk", path=str(found), format="jdk")
    units = list_units(source)
    assert [(unit.reader, unit.repo) for unit in units] == [
        ("zip-prefix", "jdk/java.base"),
        ("zip-prefix", "jdk/java.logging"),
    ]
    base = next(read_unit(units[0], source))
    assert [file.path for file in base.files] == ["java/lang/Object.java"]


def test_default_corpus_on_this_machine():
    sources, notes = default_sources()
    names = [source.name for source in sources]
    assert "stdlib" in names
    for name in ("jdk", "include", "npm", "perl"):  # each one found, or absent with a note
        assert (name in names) != any(note.startswith(f"{name}: ") for note in notes), (name, notes)
    ensure_sources_exist(sources)
    stdlib = sources[names.index("stdlib")]
    units = list_units(stdlib)
    assert units == list_units(stdlib)  # deterministic
    assert pickle.loads(pickle.dumps(units)) == units and pickle.loads(pickle.dumps(stdlib)) == stdlib
    repos = [unit.repo for unit in units]
    assert {"stdlib/json", "stdlib/email", "stdlib/_modules"} <= set(repos)
    assert not {"stdlib/test", "stdlib/site-packages", "stdlib/lib-dynload", "stdlib/__pycache__"} & set(repos)
    [email] = read_unit(units[repos.index("stdlib/email")], stdlib)
    paths = [file.path for file in email.files]
    assert "email/__init__.py" in paths and "email/mime/text.py" in paths  # the package keeps its folder
    assert not any("__pycache__" in path for path in paths)
    [modules] = read_unit(units[repos.index("stdlib/_modules")], stdlib)
    assert "os.py" in by_path(modules) and all("/" not in file.path for file in modules.files)


@pytest.mark.slow
def test_read_rates_of_the_default_corpus():
    sources, notes = default_sources()
    for source in sources:
        started, files, size, errors = time.perf_counter(), 0, 0, 0
        for repository in read_all(source):
            files += len(repository.files)
            size += sum(len(file.content or b"") for file in repository.files)
            errors += sum(file.error is not None for file in repository.files)
        seconds = time.perf_counter() - started
        logger.info(
            "%s: %d files, %.1f MB, %d errors, %.1f MB/s", source.name, files, size / 1e6, errors, size / 1e6 / seconds
        )
        assert files > 0 and errors < files // 10


def test_repositories_patterns_select_what_a_source_reads():
    sources = {source.name: source for source in default_sources()[0]}
    stdlib = SourceConfig(name="stdlib", format="stdlib", repositories=["json", "stdlib/email", "xml*"])
    assert {unit.repo for unit in list_units(stdlib)} == {"stdlib/json", "stdlib/email", "stdlib/xml", "stdlib/xmlrpc"}
    with pytest.raises(RepolmError, match="select none"):
        list_units(SourceConfig(name="stdlib", format="stdlib", repositories=["no-such-package"]))
    with pytest.raises(RepolmError, match="repositories must be a list"):
        SourceConfig(name="stdlib", format="stdlib", repositories="json")
    assert "stdlib" in sources
