"""Repository samples: dependency order and path headers in the text, splitting at file boundaries, file-level
samples for other languages, kinds, part numbering and determinism."""

from __future__ import annotations

import random

import pytest

from repolm.data.assembly import AssemblyConfig, assemble_repository, file_block
from repolm.data.config import load_build_config
from repolm.data.records import KIND_CODE, KIND_CODE_TEXT, KIND_OTHER_TEXT, CodeFile
from repolm.errors import RepolmError

PYAPP = [
    CodeFile("README.md", "# pyapp\n\nA tiny app.\n", "Markdown"),
    CodeFile("pyapp/__init__.py", "from .core import run\n", "Python"),
    CodeFile(
        "pyapp/core.py", "from .util import helper\nfrom . import config\n\ndef run():\n    return helper()\n", "Python"
    ),
    CodeFile("pyapp/util.py", "import os\n\ndef helper():\n    return os.sep\n", "Python"),
    CodeFile("pyapp/config.py", "DEFAULTS = {}", "Python"),  # no final line break
    CodeFile("config.yaml", "name: pyapp\nversion: 1\n", "YAML"),
    CodeFile("scripts/run.sh", "#!/bin/sh\npython -m pyapp\n", "Shell"),
]


def assemble(files: list[CodeFile], config: AssemblyConfig | None = None, kind: str = KIND_CODE, seed=0):
    return assemble_repository("github/pyapp", "github", kind, files, config or AssemblyConfig(), seed=seed)


def test_repository_sample_is_dependency_ordered_with_path_headers():
    samples = assemble(PYAPP)
    repository = samples[0]
    assert repository.part == 0 and repository.kind == KIND_CODE and repository.source == "github"
    assert set(repository.files) == {"pyapp/__init__.py", "pyapp/core.py", "pyapp/util.py", "pyapp/config.py"}
    position = {path: index for index, path in enumerate(repository.files)}
    assert position["pyapp/util.py"] < position["pyapp/core.py"] < position["pyapp/__init__.py"]
    assert position["pyapp/config.py"] < position["pyapp/core.py"]
    assert repository.languages == ["Python"] * 4
    # each file: "# path" line, its text (a final line break added), one blank line before the next file
    expected = "\n".join(file_block(next(file for file in PYAPP if file.path == path)) for path in repository.files)
    assert repository.text == expected
    assert "# pyapp/util.py\nimport os\n" in repository.text
    assert "DEFAULTS = {}\n" in repository.text
    assert repository.text.index("# pyapp/util.py") < repository.text.index("# pyapp/core.py")
    for path in repository.files:
        assert repository.text.count(f"# {path}\n") == 1


def test_other_languages_become_file_level_samples_in_path_order():
    samples = assemble(PYAPP)
    assert [sample.files for sample in samples[1:]] == [["README.md"], ["config.yaml"], ["scripts/run.sh"]]
    assert [sample.part for sample in samples] == [0, 1, 2, 3]
    assert len({sample.sample_id for sample in samples}) == len(samples)
    readme, yaml_file, shell = samples[1:]
    assert readme.kind == KIND_CODE_TEXT  # prose in a code source is code-related text
    assert yaml_file.kind == KIND_CODE and shell.kind == KIND_CODE
    assert yaml_file.text == "# config.yaml\nname: pyapp\nversion: 1\n"
    assert shell.text.startswith("# scripts/run.sh\n#!/bin/sh\n")
    assert readme.text.endswith("# pyapp\n\nA tiny app.\n") and readme.languages == ["Markdown"]


def test_prose_of_a_text_source_keeps_the_source_kind():
    samples = assemble([CodeFile("notes.md", "Some notes.\n", "Markdown")], kind=KIND_OTHER_TEXT)
    assert [(sample.kind, sample.part) for sample in samples] == [(KIND_OTHER_TEXT, 0)]


def test_languages_without_comments_get_no_header():
    samples = assemble([CodeFile("data/settings.json", '{"a": 1}\n', "JSON")])
    assert samples[0].text == '{"a": 1}\n'


def test_several_dependency_groups_and_languages_form_one_sample():
    files = [
        CodeFile("c/list.c", '#include "list.h"\nint f(void) { return 0; }\n', "C"),
        CodeFile("c/list.h", "int f(void);\n", "C"),
        CodeFile("java/App.java", "package app;\nclass App { Helper h; }\n", "Java"),
        CodeFile("java/Helper.java", "package app;\nclass Helper {}\n", "Java"),
        CodeFile("web/main.js", "import { x } from './x.js';\n", "JavaScript"),
        CodeFile("web/x.js", "export const x = 1;\n", "JavaScript"),
        CodeFile("alone.py", "print('alone')\n", "Python"),
    ]
    [sample] = assemble(files)
    assert sorted(sample.files) == sorted(file.path for file in files)
    order = sample.files
    assert order.index("c/list.h") < order.index("c/list.c")
    assert order.index("java/Helper.java") < order.index("java/App.java")
    assert order.index("web/x.js") < order.index("web/main.js")
    assert sample.languages == [next(file.language for file in files if file.path == path) for path in order]
    # groups come in the order of their smallest path
    assert order[0] == "alone.py" and order[1:3] == ["c/list.h", "c/list.c"]


def test_long_repository_is_split_at_file_boundaries():
    files = [CodeFile(f"pkg/m{index:02d}.py", f"VALUE_{index:02d} = {'1' * 80}\n", "Python") for index in range(20)]
    whole = assemble(files)[0]
    block_length = len(file_block(files[0]))
    limit = 3 * block_length + 2 * len("\n")  # room for exactly three files and their separators
    parts = assemble(files, AssemblyConfig(max_sample_chars=limit))
    assert [len(part.files) for part in parts] == [3, 3, 3, 3, 3, 3, 2]
    assert [part.part for part in parts] == list(range(7))
    assert all(len(part.text) <= limit for part in parts)
    assert [path for part in parts for path in part.files] == whole.files  # same order, cut at file boundaries
    assert "\n".join(part.text for part in parts) == whole.text
    for part in parts:
        assert part.text.startswith("# pkg/m") and part.text.endswith("\n")


def test_a_file_longer_than_the_limit_is_a_part_of_its_own():
    files = [
        CodeFile("a.py", "a = 1\n", "Python"),
        CodeFile("big.py", "x = 1\n" * 100, "Python"),
        CodeFile("c.py", "c = 1\n", "Python"),
    ]
    parts = assemble(files, AssemblyConfig(max_sample_chars=50))
    assert sorted(len(part.files) for part in parts) == [1, 1, 1]
    assert max(len(part.text) for part in parts) > 50
    assert [len(part.files) for part in assemble(files, AssemblyConfig(max_sample_chars=0))] == [3]


def test_assembly_is_deterministic_and_seeded_per_repository():
    files = [CodeFile(f"m{index}.py", f"import m{(index + 1) % 6}\n", "Python") for index in range(6)]
    files += [CodeFile(f"free{index}.py", "x = 1\n", "Python") for index in range(6)]
    first = assemble(files, seed=7)
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    assert assemble(shuffled, seed=7) == first
    other_seeds = {tuple(assemble(files, seed=seed)[0].files) for seed in range(12)}
    assert len(other_seeds) > 1
    renamed = assemble_repository("github/other", "github", KIND_CODE, files, AssemblyConfig(), seed=7)
    assert renamed[0].repo == "github/other"


def test_file_level_ablation_and_cycle_aware_switch():
    samples = assemble(PYAPP, AssemblyConfig(repository_level=False))
    assert [sample.files for sample in samples] == [[file.path] for file in sorted(PYAPP, key=lambda f: f.path)]
    files = [
        CodeFile("top.py", "import x\n", "Python"),
        CodeFile("x.py", "import y\n", "Python"),
        CodeFile("y.py", "import x\n", "Python"),
    ]
    for seed in range(20):
        [sample] = assemble(files, AssemblyConfig(cycle_aware_order=True), seed=seed)
        assert sample.files.index("top.py") > sample.files.index("x.py")


def test_empty_repository_and_bad_input():
    assert assemble([]) == []
    with pytest.raises(RepolmError, match="unknown kind"):
        assemble(PYAPP, kind="binary")
    with pytest.raises(RepolmError, match="pyapp/util.py"):
        assemble([*PYAPP, CodeFile("pyapp/util.py", "", "Python")])
    with pytest.raises(RepolmError, match="max_sample_chars"):
        AssemblyConfig(max_sample_chars=-1)


def test_config_file_values_reach_the_assembly_settings(tmp_path):
    config_path = tmp_path / "build.yaml"
    config_path.write_text("assembly:\n  max_sample_chars: 5000\n  cycle_aware_order: true\n", encoding="utf-8")
    config = load_build_config(config_path)
    assert config.assembly == AssemblyConfig(max_sample_chars=5000, cycle_aware_order=True)
    config_path.write_text("assembly:\n  max_sample_chars: -5\n", encoding="utf-8")
    with pytest.raises(RepolmError, match="assembly.*max_sample_chars"):
        load_build_config(config_path)


def test_offsets_point_at_each_file_block():
    small = AssemblyConfig(max_sample_chars=120)
    for config in (AssemblyConfig(), small):
        for sample in assemble(PYAPP, config):
            assert len(sample.offsets) == len(sample.files)
            by_path = {file.path: file for file in PYAPP}
            for offset, path in zip(sample.offsets, sample.files, strict=True):
                assert sample.text.startswith(file_block(by_path[path]), offset), (sample.sample_id, path)


# ------------------------------------------------------------------ the default corpus: a repository's own name

OWN_NAME_REPOSITORIES = {
    "stdlib": ("email", "json", "xml", "importlib", "ctypes", "concurrent", "multiprocessing", "asyncio"),
    "include": ("linux", "asm-generic", "drm", "sound", "rdma", "x86_64-linux-gnu"),
}


def _own_name_edges(repository, files):
    """(dependency, importer) pairs of the imports that name the repository's own top folder."""
    from repolm.data.dependencies import ImportResolver
    from repolm.data.import_extraction import extract_imports

    top = repository.name.split("/", 1)[1]
    resolver = ImportResolver(files)
    edges = set()
    for file in files:
        if file.language not in ("Python", "C", "C++"):
            continue
        for target in extract_imports(file.text, file.language):
            name = target.strip('<>"')
            first = name.split(".")[0] if file.language == "Python" else name.split("/")[0]
            if first == top:
                edges.update((found, file.path) for found in resolver.resolve_import(file.path, target))
    return {(dependency, importer) for dependency, importer in edges if dependency != importer}


@pytest.mark.parametrize("source_name", sorted(OWN_NAME_REPOSITORIES))
def test_default_corpus_imports_of_the_own_name_precede_their_importers(source_name):
    """`from email import errors` inside stdlib/email and `#include <linux/types.h>` inside include/linux resolve (the
    repository keeps its folder in its paths), and in the assembled sample every such dependency comes before its
    importer unless both are in one import cycle. Real local trees; a tree that is absent is skipped."""
    from repolm.data.dependencies import resolve_dependencies
    from repolm.data.dependency_order import dependency_cycles
    from repolm.data.filters import FilterConfig, screen_file
    from repolm.data.sources import default_sources, list_units, read_unit

    sources = {source.name: source for source in default_sources()[0]}
    if source_name not in sources:
        pytest.skip(f"no {source_name} source on this machine")
    source = sources[source_name]
    units = {unit.repo: unit for unit in list_units(source)}
    edges_seen = in_order = 0
    for top in OWN_NAME_REPOSITORIES[source_name]:
        if f"{source_name}/{top}" not in units:
            continue
        [repository] = read_unit(units[f"{source_name}/{top}"], source)
        files = [file for file in (screen_file(repository.name, f, FilterConfig()) for f in repository.files)]
        files = [file for file in files if isinstance(file, CodeFile)]
        assert all(file.path.startswith(f"{top}/") for file in files)
        samples = assemble_repository(repository.name, source_name, KIND_CODE, files, AssemblyConfig(), seed=0)
        position = {path: index for index, path in enumerate(samples[0].files)} if samples else {}
        dependencies = resolve_dependencies(files)
        graph = {path: [found for found in dependencies.get(path, ()) if found in position] for path in position}
        cycle_of = {path: number for number, cycle in enumerate(dependency_cycles(graph)) for path in cycle}
        for dependency, importer in _own_name_edges(repository, files):
            both_placed = dependency in position and importer in position
            if not both_placed or (dependency in cycle_of and cycle_of[dependency] == cycle_of.get(importer)):
                continue
            edges_seen += 1
            in_order += position[dependency] < position[importer]
    assert edges_seen >= 20, f"only {edges_seen} own-name edges outside cycles: the trees are too small to judge"
    assert in_order == edges_seen, f"{edges_seen - in_order} of {edges_seen} own-name imports follow their importer"


def test_sample_records_cut_back_into_their_files_and_at_file_boundaries(tmp_path):
    """The samples' format (data.records): a written shard reads back as written; a record cuts back into each
    file's own text (path header and separator removed); selecting files keeps them whole or their first lines."""
    from repolm.data.records import (
        read_sample_records,
        sample_record_files,
        select_sample_record_files,
        write_sample_records,
    )

    [sample, *_] = assemble(PYAPP)
    record = {"text": sample.text, "id": sample.sample_id, "repo": sample.repo, "files": sample.files,
              "offsets": sample.offsets, "languages": sample.languages, "source": sample.source,
              "kind": sample.kind, "part": sample.part}  # fmt: skip
    texts = {file.path: file.text for file in PYAPP}
    for path, language, text in sample_record_files(record):
        assert language == "Python" and text.rstrip("\n") == texts[path].rstrip("\n")
    write_sample_records(tmp_path / "code" / "00000.jsonl.zst", [record])
    assert list(read_sample_records(tmp_path)) == [record]
    # selecting files: the chosen ones, in the record's order, each cutting back into its own text
    last = len(record["files"]) - 1
    chosen = select_sample_record_files(record, [last, 0])
    assert chosen["files"] == [record["files"][0], record["files"][last]]
    assert chosen["languages"] == [record["languages"][0], record["languages"][last]]
    assert [text for _, _, text in sample_record_files(chosen)] == [
        text for index, (_, _, text) in enumerate(sample_record_files(record)) if index in (0, last)
    ]
    assert select_sample_record_files(record, list(range(last + 1))) == record
    with pytest.raises(ValueError, match="out of range"):
        select_sample_record_files(record, [last + 1])
