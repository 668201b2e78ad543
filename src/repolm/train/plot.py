"""Curves of a training run as PNG files: loss (train and validation) and learning rate against the step.

`plot_run(run_dir)` reads `<run_dir>/metrics.jsonl` (lines with "loss" are training steps, lines with "val_loss"
validation points) and writes `<run_dir>/loss.png` and `<run_dir>/lr.png` with matplotlib's Agg backend (no
display needed). matplotlib is optional: it is imported only here, and a missing one is a `RepolmError` that says
how to install it.

Not handled here: writing the metrics (`repolm.train.metrics`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from repolm.errors import RepolmError
from repolm.train.metrics import METRICS_FILE, read_metrics

logger = logging.getLogger(__name__)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise RepolmError("matplotlib is needed: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as pyplot

    return pyplot


def plot_run(run_dir: str | Path) -> list[Path]:
    """Writes loss.png and lr.png into `run_dir` from its metrics.jsonl; returns their paths."""
    run_dir = Path(run_dir)
    if not (run_dir / METRICS_FILE).is_file():
        raise RepolmError(f"{run_dir}: no {METRICS_FILE} (not a training run folder)")
    records = read_metrics(run_dir)
    train_points = [(r["step"], r["loss"]) for r in records if "loss" in r]
    validation_points = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    lr_points = [(r["step"], r["lr"]) for r in records if "lr" in r]
    if not train_points:
        raise RepolmError(f"{run_dir / METRICS_FILE}: no training steps logged yet")
    pyplot = _pyplot()
    written = []

    figure, axes = pyplot.subplots(figsize=(8, 5))
    axes.plot(*zip(*train_points, strict=True), label="train", linewidth=1)
    if validation_points:
        axes.plot(*zip(*validation_points, strict=True), label="validation", marker="o", linewidth=1.5)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (nats per token)")
    axes.set_title(f"loss: {run_dir.name}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    written.append(run_dir / "loss.png")
    figure.savefig(written[-1], dpi=120)
    pyplot.close(figure)

    figure, axes = pyplot.subplots(figsize=(8, 3.5))
    axes.plot(*zip(*lr_points, strict=True), linewidth=1)
    axes.set_xlabel("step")
    axes.set_ylabel("learning rate")
    axes.set_title(f"learning rate: {run_dir.name}")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    written.append(run_dir / "lr.png")
    figure.savefig(written[-1], dpi=120)
    pyplot.close(figure)
    logger.info("wrote %s", ", ".join(str(path) for path in written))
    return written
