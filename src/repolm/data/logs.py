"""Keeps datatrove's per-task logs in their files and off the console, in every process that runs a task.

datatrove sets up logging for each task itself (`add_task_logger`): a file `logs/task_NNNNN.log` in the stage's
logging folder at DEBUG, and the console at INFO, which buries the build's progress bars under a few hundred
lines per stage. This module replaces that function, in datatrove's executor module, by one that keeps the log
file as it is and shows the console only warnings, or INFO when `REPOLM_DATA_VERBOSE=1` (set by `repolm -v`).
It is imported by the pipeline steps, so it takes effect wherever a step is unpickled: in the local executor's
worker processes and on Ray and Slurm workers alike.
"""

from __future__ import annotations

import os
import sys

import datatrove.executor.base as executor_base
from datatrove.utils import logging as datatrove_logging
from loguru import logger

# datatrove warns for every rank of the MinHash filter stage that has nothing to remove: expected, not a problem
_EXPECTED_WARNINGS = ("No .remove file for",)


def _console_level() -> str:
    return "INFO" if os.environ.get("REPOLM_DATA_VERBOSE") == "1" else "WARNING"


def _console_filter(record) -> bool:
    return not record["message"].startswith(_EXPECTED_WARNINGS)


def add_task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    """datatrove's `add_task_logger` with a quieter console: the task's log file at DEBUG, the console at WARNING."""
    logger.remove()
    logfile = logging_dir.open(f"logs/task_{rank:05d}.log", "w")
    prefix = f"[NODE {node_rank}] " if node_rank != -1 else ""
    file_format = prefix + "{time:YYYY-MM-DD HH:mm:ss.SSS} | {level: <8} | {name}:{function}:{line} - {message}"
    logger.add(sys.stderr, level=_console_level() if local_rank == 0 else "ERROR", filter=_console_filter)
    logger.add(logfile, level="DEBUG", format=file_format, colorize=False)
    logger.info(f"Launching pipeline for {rank=}")
    return logfile


def setup_default_logger() -> None:
    logger.remove()
    logger.add(sys.stderr, level=_console_level(), filter=_console_filter)


executor_base.add_task_logger = add_task_logger
datatrove_logging.setup_default_logger = setup_default_logger
setup_default_logger()
