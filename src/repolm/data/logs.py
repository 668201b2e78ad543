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

_original_add_task_logger = datatrove_logging.add_task_logger


def add_task_logger(logging_dir, rank: int, local_rank: int = 0, node_rank: int = -1):
    logfile = _original_add_task_logger(logging_dir, rank, local_rank, node_rank=node_rank)
    # the original adds two sinks: the console, then the file; keep the file and re-add the console quieter
    logger.remove()
    console_level = "INFO" if os.environ.get("REPOLM_DATA_VERBOSE") == "1" else "WARNING"
    logger.add(sys.stderr, level=console_level if local_rank == 0 else "ERROR")
    logger.add(logfile, level="DEBUG")
    return logfile


def setup_default_logger() -> None:
    logger.remove()
    logger.add(sys.stderr, level="INFO" if os.environ.get("REPOLM_DATA_VERBOSE") == "1" else "WARNING")


executor_base.add_task_logger = add_task_logger
datatrove_logging.setup_default_logger = setup_default_logger
setup_default_logger()
