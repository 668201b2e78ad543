"""Run metrics: the JSON-lines log, optional TensorBoard, the peak FLOP/s of the device and model FLOPs utilization.

`MetricsLog` appends one JSON object per line to `<run_dir>/metrics.jsonl` (train lines carry "loss", validation
lines "val_loss", event lines "event") and mirrors its numbers to TensorBoard event files when asked
(`torch.utils.tensorboard` with the `tensorboard` package). A resumed run opens it with `keep_lines`: the file is
cut back to what the checkpoint had seen, and TensorBoard's events past the checkpoint are purged, so both curves
equal an uninterrupted run's. `measure_peak_flops` times
dense matmuls (fp32 on CPU, bf16 on CUDA) for about half a second: the denominator of MFU.

Not handled here: what to log and when (`repolm.train.loop`) and drawing the curves (`repolm.train.plot`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from repolm.errors import RepolmError
from repolm.folder_writer import write_file_atomically

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Appends records to a JSON-lines file (and TensorBoard); does nothing when `enabled` is False (rank > 0)."""

    def __init__(
        self,
        run_dir: str | Path,
        enabled: bool = True,
        keep_lines: int | None = None,
        tensorboard: bool = False,
        tensorboard_start_step: int = 0,
    ) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.enabled = enabled
        self.lines = 0
        self._file = None
        self._tensorboard = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_lines is None:
            self.path.write_text("", encoding="utf-8")
        else:
            self._truncate(keep_lines)
        self._file = self.path.open("a", encoding="utf-8")
        if tensorboard:
            self._tensorboard = _tensorboard_writer(Path(run_dir) / "tensorboard", tensorboard_start_step)

    def _truncate(self, keep_lines: int) -> None:
        """Keeps the first `keep_lines` lines (atomically); a missing or shorter file is an error in the run."""
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True) if self.path.exists() else []
        if len(lines) < keep_lines:
            logger.warning("%s has %d lines, the checkpoint saw %d", self.path, len(lines), keep_lines)
        kept = lines[:keep_lines]
        write_file_atomically(self.path, "".join(kept))
        self.lines = len(kept)

    def write(self, record: dict[str, Any]) -> None:
        """Appends `record` as one line (flushed: a `kill -9` loses nothing written before)."""
        if not self.enabled:
            return
        self._file.write(json.dumps(record, allow_nan=True) + "\n")
        self._file.flush()
        self.lines += 1
        if self._tensorboard is not None and "step" in record:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tensorboard.add_scalar(key, value, record["step"])

    def sync(self) -> None:
        """Forces the lines to disk (before a checkpoint records their count)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
        if self._tensorboard is not None:
            self._tensorboard.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None


def _tensorboard_writer(log_dir: Path, start_step: int):
    """A SummaryWriter; `start_step` is the last step the resumed checkpoint holds (0 for a fresh run)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:  # a dependency of repolm: only a broken install lacks it
        raise RepolmError(f"logging.tensorboard is set but TensorBoard does not import ({error})") from error
    # purge_step drops the events at or after it that an interrupted run had written past its checkpoint; the
    # checkpoint's own step was logged before it was saved and stays
    return SummaryWriter(log_dir=str(log_dir), purge_step=start_step + 1 if start_step else None)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of `<run_dir>/metrics.jsonl` (a run folder or the file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def measure_peak_flops(device: torch.device | str, seconds: float = 0.5) -> float:
    """Dense matmul FLOP/s of `device`: fp32 on CPU, bf16 on CUDA; the best of repeated timings over ~`seconds`."""
    device = torch.device(device)
    if device.type == "cuda":
        size, dtype = 8192, torch.bfloat16
    else:
        size, dtype = 1024, torch.float32
    generator = torch.Generator(device="cpu").manual_seed(0)
    left = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    right = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    output = torch.empty(size, size, device=device, dtype=dtype)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    torch.matmul(left, right, out=output)  # warm-up: kernels chosen, caches and clocks up
    synchronize()
    best = 0.0
    deadline = time.perf_counter() + seconds
    repeats = 1
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(left, right, out=output)
        synchronize()
        took = time.perf_counter() - start
        best = max(best, 2 * size**3 * repeats / took)
        if took < 0.02:
            repeats *= 2  # time windows long enough for the clock
    return best


def model_flops_utilization(flops_per_token: float, tokens_per_second: float, peak_flops: float) -> float:
    """MFU: the model's FLOP/s (forward + backward, `repolm.model.flops_per_token`) over the peak FLOP/s."""
    if peak_flops <= 0 or not math.isfinite(tokens_per_second):
        return 0.0
    return flops_per_token * tokens_per_second / peak_flops
