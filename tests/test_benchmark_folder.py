"""Tests of repolm.benchmark_folder: the one registry of benchmark files that decontamination and evaluation share."""

from __future__ import annotations

import pytest

from repolm.benchmark_folder import BENCHMARK_FILES, HUMANEVAL_INFILLING, find_benchmarks
from repolm.data.decontamination import INDEXED_FILES, read_benchmark_strings
from repolm.eval.tasks import TASKS


def test_every_task_reads_registered_files_and_decontamination_indexes_all_but_infilling() -> None:
    registered = {file.path for file in BENCHMARK_FILES}
    assert len(registered) == len(BENCHMARK_FILES) == 22
    read_by_tasks = {path for task in TASKS.values() for path in task.data_files}
    assert read_by_tasks <= registered, read_by_tasks - registered
    indexed = {file.path for file in INDEXED_FILES}
    assert indexed == registered - {file.path for file in HUMANEVAL_INFILLING.values()}
    assert read_by_tasks - {file.path for file in HUMANEVAL_INFILLING.values()} <= indexed  # evaluated => screened


def test_the_registry_matches_the_shared_folder() -> None:
    folder = find_benchmarks(None)
    if folder is None:
        pytest.skip("no benchmark folder (../shared/benchmarks or $REPOLM_BENCHMARKS)")
    missing = [file.path for file in BENCHMARK_FILES if not (folder / file.path).is_file()]
    assert not missing, f"registered but absent from {folder}: {missing}"
    on_disk = {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and path.suffix in (".gz", ".jsonl", ".json")
    }
    assert on_disk == {file.path for file in BENCHMARK_FILES}, on_disk ^ {file.path for file in BENCHMARK_FILES}
    strings, notes = read_benchmark_strings(folder)
    assert not notes and {string.benchmark for string in strings} == {file.benchmark for file in INDEXED_FILES}
