"""End-to-end tests of `repolm data build` on a corpus the tests write: output, exclusions, stats, shard-count
invariance, resume after kill -9, the Ray executor, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from repolm.data.languages import path_header

REPO_ROOT = Path(__file__).resolve().parents[2]


def benchmarks_folder() -> Path | None:
    candidate = Path(os.environ.get("REPOLM_BENCHMARKS", REPO_ROOT.parent / "shared" / "benchmarks"))
    return candidate if candidate.is_dir() else None


def run_cli(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "repolm", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        cwd=REPO_ROOT,
    )


def read_jsonl_zst(path: Path) -> list[dict]:
    with path.open("rb") as file:
        text = zstandard.ZstdDecompressor().stream_reader(file).read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line]


def output_samples(output: Path, folder: str = "data") -> list[dict]:
    samples = []
    for path in sorted((output / folder).glob("*/*.jsonl.zst")):
        samples.extend(read_jsonl_zst(path))
    return sorted(samples, key=lambda sample: sample["id"])


def exclusions(output: Path) -> list[dict]:
    records = []
    for path in sorted((output / "excluded").glob("*/*.jsonl.zst")):
        records.extend(read_jsonl_zst(path))
    return records


def build_arguments(corpus: Path, output: Path, tasks: int, *extra: str) -> list[str]:
    arguments = ["data", "build", "--input", str(corpus), "--output", str(output), "--tasks", str(tasks)]
    benchmarks = benchmarks_folder()
    arguments += ["--benchmarks", str(benchmarks)] if benchmarks else ["--no-decontamination"]
    return [*arguments, *extra]


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("build") / "out"
    result = run_cli(*build_arguments(corpus, output, 2, "--workers", "1"))
    assert result.returncode == 0, result.stderr[-3000:]
    (output.parent / "stdout.txt").write_text(result.stdout, encoding="utf-8")
    return output


def test_the_build_says_how_it_read_its_input_before_the_work(built, corpus):
    [described] = json.loads((built / "stats.json").read_text())["inputs"]
    repositories = len([entry for entry in corpus.iterdir() if not entry.name.startswith(".")])
    assert (described["source"], described["format"], described["repositories"]) == ("repos", "repos", repositories)
    assert described["reason"].startswith("format auto: ")
    assert "subfolders and archives look like repositories" in described["reason"]
    assert described["how"].startswith(f"repos: {corpus}: a folder of {repositories} repositories (")
    stdout = (built.parent / "stdout.txt").read_text(encoding="utf-8")
    assert stdout.index(f"reading {described['how']}\n") < stdout.index("[1/8] screen")  # before the work
    assert f"- read {described['how']}" in (built / "summary.md").read_text(encoding="utf-8")


def test_build_writes_samples_with_the_documented_fields(built):
    samples = output_samples(built)
    assert samples, "no samples written"
    for sample in samples:
        assert set(sample) == {"text", "id", "repo", "files", "offsets", "languages", "source", "kind", "part"}
        assert len(sample["offsets"]) == len(sample["files"]) and sample["offsets"][0] == 0
        assert len(sample["files"]) == len(sample["languages"]) >= 1
        pairs = zip(sample["files"], sample["languages"], strict=True)
        headers = [path_header(language, path) for path, language in pairs]
        headers = [header for header in headers if header]  # JSON and plain text have no comment syntax
        for header in headers:
            assert header in sample["text"], f"{sample['id']}: header {header!r} is not in the text"
        for offset, path, language in zip(sample["offsets"], sample["files"], sample["languages"], strict=True):
            assert sample["text"].startswith(path_header(language, path), offset), f"{sample['id']}: offset of {path}"
        positions = [sample["text"].index(header) for header in headers]
        assert positions == sorted(positions), f"{sample['id']}: files are not listed in text order"


def test_python_files_come_after_what_they_import(built):
    by_repo = {sample["repo"]: sample for sample in output_samples(built) if "pyapp/core.py" in sample["files"]}
    sample = next(iter(by_repo.values()))
    order = sample["files"]
    # core imports util, models (package) and config; models/base imports util and mixins (mixins<->base cycle)
    assert order.index("pyapp/util.py") < order.index("pyapp/core.py")
    assert order.index("pyapp/config.py") < order.index("pyapp/core.py")
    assert order.index("pyapp/util.py") < order.index("pyapp/models/base.py")
    assert sample["text"].startswith("# ")  # every file is headed by a path comment


def test_every_file_is_kept_or_excluded_with_a_reason(built):
    stats = json.loads((built / "stats.json").read_text())
    excluded = exclusions(built)
    reasons = {(record["stage"], record["reason"]) for record in excluded}
    assert ("read", "binary") in reasons
    assert ("read", "undecodable") in reasons
    assert ("filter", "max-line-length") in reasons or ("filter", "average-line-length") in reasons
    assert ("filter", "lock-file") in reasons
    assert ("exact-dedup", "identical-file") in reasons  # webapp/tools/util.py == pyapp/pyapp/util.py
    files_excluded = sum(
        sum(by_reason.values()) for stage, by_reason in stats["excluded"].items() if stage != "near-dedup"
    )
    files_kept = sum(stats["kept_after_screening"]["files"].values())
    exact = stats["excluded"].get("exact-dedup", {}).get("identical-file", 0)
    assert files_kept + files_excluded - exact == stats["input"]["files"]
    assert (built / "summary.md").read_text().startswith("# Data build summary")
    mixture = json.loads((built / "mixture.json").read_text())
    assert abs(sum(mixture["target_share"].values()) - 1) < 1e-9


def test_near_duplicate_repository_is_removed(built):
    repos = {sample["repo"] for sample in output_samples(built) if "pyapp/core.py" in sample["files"]}
    assert len(repos) == 1, f"the fork survived near-dedup: {repos}"
    stats = json.loads((built / "stats.json").read_text())
    assert stats["near_dedup"]["removed_samples"] >= 1


def test_contaminated_file_is_removed(built):
    if benchmarks_folder() is None:
        pytest.skip("benchmark folder ../shared/benchmarks absent (set REPOLM_BENCHMARKS)")
    removed = [record for record in exclusions(built) if record["stage"] == "decontamination"]
    assert [record["path"] for record in removed] == ["solutions/closest.py"]
    assert "HumanEval/0" in removed[0]["detail"]
    kept_paths = {path for sample in output_samples(built) for path in sample["files"]}
    assert "solutions/other.py" in kept_paths


def test_output_does_not_depend_on_the_number_of_tasks(built, corpus, tmp_path):
    output = tmp_path / "out3"
    result = run_cli(*build_arguments(corpus, output, 3, "--workers", "2"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert output_samples(output) == output_samples(built)


def test_rerun_of_a_complete_build_does_nothing_and_another_config_is_refused(built, corpus):
    result = run_cli(*build_arguments(corpus, built, 2, "--workers", "1"))
    assert result.returncode == 0 and "complete already" in result.stderr
    result = run_cli(*build_arguments(corpus, built, 5))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "another config" in result.stderr
    assert "Traceback" not in result.stderr


def _shard_contents(output: Path) -> dict[str, list[dict]]:
    return {
        str(path.relative_to(output)): read_jsonl_zst(path)
        for folder in ("data", "excluded")
        for path in sorted((output / folder).glob("*/*.jsonl.zst"))
    }


def test_kill_9_then_resume_gives_the_output_of_an_uninterrupted_run(built, corpus, tmp_path):
    output = tmp_path / "killed"
    arguments = build_arguments(corpus, output, 2, "--workers", "1")
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "repolm", *arguments],
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # kill as soon as the first stage has finished a task, in the middle of the build
    completions = output / "work" / "logs" / "assemble" / "completions"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if completions.is_dir() and any(completions.iterdir()):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the build ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output / "stats.json").exists()
    result = run_cli(*arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _shard_contents(output) == _shard_contents(built)


@pytest.mark.slow
def test_ray_executor_gives_the_same_output(built, corpus, tmp_path):
    pytest.importorskip("ray")
    output = tmp_path / "ray"
    result = run_cli(*build_arguments(corpus, output, 2, "--workers", "2", "--executor", "ray"), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert output_samples(output) == output_samples(built)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--input", "/no/such/folder"], "/no/such/folder"),
        (["--tasks", "0"], "run.tasks"),
        (["--benchmarks", "/no/such/benchmarks"], "decontamination.benchmarks"),
    ],
)
def test_bad_input_fails_at_start_with_one_line(tmp_path, corpus, arguments, message):
    output = tmp_path / "out"
    base = ["data", "build", "--output", str(output)]
    if "--input" not in arguments:
        base += ["--input", str(corpus)]
    result = run_cli(*base, *arguments)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()


def test_bad_config_file_names_the_key(tmp_path, corpus):
    config = tmp_path / "build.yaml"
    config.write_text("filters:\n  max_line_length: long\n")
    result = run_cli("data", "build", "--config", str(config), "--input", str(corpus), "--output", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "filters.max_line_length" in result.stderr and "Traceback" not in result.stderr
    config.write_text("filterz: {}\n")
    result = run_cli("data", "build", "--config", str(config), "--input", str(corpus), "--output", str(tmp_path / "o"))
    assert result.returncode == 2 and "filterz: unknown key" in result.stderr


def test_slurm_stages_are_chained_job_arrays(corpus, tmp_path):
    """Without a Slurm cluster here, check what would be submitted: one job array per stage, each depending on the
    previous stage, with the partition and time of the config (datatrove's own sbatch arguments)."""
    from repolm.data.config import load_build_config
    from repolm.data.pipeline import build_stages, make_executor, plan_build, prepare_output
    from repolm.data.sources import SourceConfig

    config = load_build_config(
        None,
        {"run.executor": "slurm", "run.slurm": {"partition": "cpu", "time": "02:00:00"}, "run.tasks": 3},
    )
    config.sources = [SourceConfig(name="repos", path=str(corpus))]
    config.decontamination.enabled = False
    plan = plan_build(config, tmp_path / "out")
    prepare_output(plan, overwrite=False)
    previous = None
    executors = []
    for name, pipeline, tasks in build_stages(plan):
        previous = make_executor(config, pipeline, tasks, tasks, str(plan.work / "logs" / name), depends=previous)
        executors.append((name, tasks, previous))
    assert [name for name, _, _ in executors][-1] == "summary"
    for index, (name, tasks, executor) in enumerate(executors):
        arguments = executor.get_sbatch_args(max_array=tasks)
        assert arguments["partition"] == "cpu" and arguments["time"] == "02:00:00"
        assert arguments["job-name"] == f"repolm-{name}"
        assert executor.world_size == tasks
        assert executor.depends is (executors[index - 1][2] if index else None)


def test_heldout_split_moves_whole_repositories_and_nothing_else(built, corpus, tmp_path):
    """split.heldout_fraction: the held-out repositories' samples go to heldout/ (same format), the rest to data/;
    together they are the unsplit output; the choice is by a hash of the name, the same for any number of tasks."""
    from repolm.data.split import SplitConfig, heldout_repositories

    config = tmp_path / "split.yaml"
    config.write_text("split:\n  heldout_fraction: 0.3\n  seed: 1\n")
    outputs = []
    for tasks in (2, 3):
        output = tmp_path / f"split{tasks}"
        result = run_cli(*build_arguments(corpus, output, tasks, "--config", str(config)))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(output)
    train, heldout = output_samples(outputs[0]), output_samples(outputs[0], "heldout")
    assert heldout and train
    assert sorted(train + heldout, key=lambda sample: sample["id"]) == output_samples(built)
    held_repositories = {sample["repo"] for sample in heldout}
    assert not held_repositories & {sample["repo"] for sample in train}
    listed = {sample["repo"] for sample in output_samples(built)}
    expected = heldout_repositories({"corpus": sorted(listed)}, SplitConfig(0.3, 1))
    assert held_repositories <= expected  # a listed repository may have no output sample (all files excluded)
    stats = json.loads((outputs[0] / "stats.json").read_text())
    assert stats["heldout"]["repositories"] == sorted(held_repositories)
    assert sum(stats["heldout"]["samples"].values()) == len(heldout)
    assert output_samples(outputs[1]) == train and output_samples(outputs[1], "heldout") == heldout
    assert "Held out (never trained on)" in (outputs[0] / "summary.md").read_text()


def test_heldout_rule_takes_the_smallest_keys_of_each_source():
    from repolm.data.split import SplitConfig, heldout_repositories, repository_key

    names = {"a": [f"a/{number}" for number in range(20)], "b": ["b/x", "b/y"], "c": ["c/only"]}
    chosen = heldout_repositories(names, SplitConfig(heldout_fraction=0.1, seed=3))
    smallest = sorted(names["a"], key=lambda name: repository_key(name, 3))[:2]
    assert chosen == {*smallest, min(names["b"], key=lambda name: repository_key(name, 3))}
    assert heldout_repositories(names, SplitConfig(0.0)) == frozenset()
    with pytest.raises(Exception, match="heldout_fraction"):
        SplitConfig(heldout_fraction=1.0)
