"""The benchmark tasks of the DeepSeek-Coder paper, by name: HumanEval (Python and nine MultiPL-E languages), MBPP,
LeetCode contests (plain and chain-of-thought), HumanEval infilling (four sets) and PAL math (four sets).

`TASKS` maps each name to its task; `get_task(name)` looks one up with an error that lists the known names.
"""

from __future__ import annotations

from repolm.errors import RepolmError
from repolm.eval.tasks.base import BASE, INSTRUCT, Problem, Task
from repolm.eval.tasks.humaneval import HumanEvalTask, MultiplETask, multipl_e_tasks
from repolm.eval.tasks.infilling import InfillingTask, infilling_tasks
from repolm.eval.tasks.leetcode import COT_SENTENCE_PAPER, LeetCodeTask
from repolm.eval.tasks.mbpp import MbppTask
from repolm.eval.tasks.pal import PalTask, pal_tasks


def _all_tasks() -> dict[str, Task]:
    tasks: list[Task] = [
        HumanEvalTask(),
        *multipl_e_tasks(),
        MbppTask(),
        LeetCodeTask(),
        LeetCodeTask(chain_of_thought=COT_SENTENCE_PAPER),
        *infilling_tasks(),
        *pal_tasks(),
    ]
    return {task.name: task for task in tasks}


TASKS: dict[str, Task] = _all_tasks()
"""Every task, by name, in the order of the paper's sections."""


def get_task(name: str) -> Task:
    """The task called `name`; RepolmError listing the known names for any other."""
    try:
        return TASKS[name]
    except KeyError:
        raise RepolmError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


__all__ = [
    "BASE",
    "INSTRUCT",
    "TASKS",
    "HumanEvalTask",
    "InfillingTask",
    "LeetCodeTask",
    "MbppTask",
    "MultiplETask",
    "PalTask",
    "Problem",
    "Task",
    "get_task",
]
