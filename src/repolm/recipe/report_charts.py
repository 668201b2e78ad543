"""The charts of the recipe's report, drawn as PNG bytes: training curves per stage and evaluation figures per group.

`training_chart(stage, records)` draws a training run's `metrics.jsonl` records (`repolm.train.metrics`): the loss
(training lines and validation points) against the step, and the throughput (tokens/s) with the MFU beside it.
`figures_chart(group, figures)` draws an evaluation group as bars, one panel per metric: the model's value next to
each baseline's, per figure. Both return None when there is nothing to draw.

matplotlib's Agg canvas is used directly (a `Figure`, no pyplot): no display, no global state, safe in threads.
Not handled here: where the charts go (`repolm.recipe.report` embeds them in the HTML and saves them beside the
Markdown).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

MODEL_COLOR = "#1565c0"
BASELINE_COLORS = ("#90a4ae", "#ef6c00", "#607d8b", "#8d6e63", "#b0bec5", "#455a64")
VALIDATION_COLOR = "#c62828"
MFU_COLOR = "#2e7d32"


def is_number(value: Any) -> bool:
    """True for an int or a finite float (not a bool, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _new_figure(width: float, height: float, panels: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(1, panels, squeeze=False)[0]


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def training_chart(stage: str, records: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Loss and throughput of one training stage's metric records; None when no training step has a loss."""
    train = [(r["step"], r["loss"]) for r in records if is_number(r.get("step")) and is_number(r.get("loss"))]
    if not train:
        return None
    validation = [
        (r["step"], r["val_loss"]) for r in records if is_number(r.get("step")) and is_number(r.get("val_loss"))
    ]
    speed = [
        (r["step"], r["tokens_per_second"], r.get("mfu"))
        for r in records
        if is_number(r.get("step")) and is_number(r.get("tokens_per_second")) and "loss" in r
    ]
    figure, (loss_axes, speed_axes) = _new_figure(10, 3.6, 2)
    figure.suptitle(f"{stage}: loss and throughput")

    loss_axes.plot(*zip(*train, strict=True), label="train", linewidth=1.2, color=MODEL_COLOR)
    if validation:
        loss_axes.plot(
            *zip(*validation, strict=True), label="validation", marker="o", linewidth=1.2, color=VALIDATION_COLOR
        )
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("loss (nats per token)")
    loss_axes.grid(alpha=0.3)
    loss_axes.legend(fontsize=8)

    if speed:
        steps = [step for step, _, _ in speed]
        rates = [rate for _, rate, _ in speed]
        speed_axes.plot(steps, rates, marker=".", linewidth=1, color=MODEL_COLOR)
        speed_axes.set_ylabel("tokens per second", color=MODEL_COLOR)
        mfu = [(step, 100 * value) for step, _, value in speed if is_number(value)]
        if mfu:
            mfu_axes = speed_axes.twinx()
            mfu_axes.plot(*zip(*mfu, strict=True), marker=".", linewidth=1, color=MFU_COLOR)
            mfu_axes.set_ylabel("MFU (%)", color=MFU_COLOR)
            mfu_axes.set_ylim(0, 1.15 * max(value for _, value in mfu) or 1)
        speed_axes.set_ylim(0, 1.15 * max(rates) or 1)
    else:
        speed_axes.text(0.5, 0.5, "no throughput logged", ha="center", va="center", transform=speed_axes.transAxes)
    speed_axes.set_xlabel("step")
    speed_axes.grid(alpha=0.3)
    return _png(figure)


def figures_chart(group: str, figures: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Bars of a group's figures (the model and each baseline), one panel per metric; None when no figure has a
    value or when a lone figure has no baseline (a single bar says nothing a table does not)."""
    by_metric: dict[str, list[Mapping[str, Any]]] = {}
    for figure_record in figures:
        if is_number(figure_record.get("value")):
            by_metric.setdefault(str(figure_record.get("metric", "")), []).append(figure_record)
    if not by_metric:
        return None
    if all(len(items) == 1 and not _baselines(items[0]) for items in by_metric.values()) and len(by_metric) == 1:
        return None
    panels = len(by_metric)
    widest = max(len(items) for items in by_metric.values())
    figure, axes_list = _new_figure(min(5.0 + 4.2 * (panels - 1) + 0.4 * widest, 16.0), 3.2, panels)
    figure.suptitle(group)
    for axes, (metric, items) in zip(axes_list, by_metric.items(), strict=True):
        names = [str(item.get("name", "")) for item in items]
        baseline_names = list(dict.fromkeys(name for item in items for name in _baselines(item)))
        series = [("model", {n: item["value"] for n, item in zip(names, items, strict=True)}, MODEL_COLOR)]
        for number, baseline in enumerate(baseline_names):
            values = {
                n: _baselines(item)[baseline]
                for n, item in zip(names, items, strict=True)
                if baseline in _baselines(item)
            }
            series.append((baseline, values, BASELINE_COLORS[number % len(BASELINE_COLORS)]))
        width = 0.8 / len(series)
        for number, (label, values, color) in enumerate(series):
            offset = (number - (len(series) - 1) / 2) * width
            # a bar only where the series has the figure: a missing baseline is not a zero
            drawn = [(position, values[name]) for position, name in enumerate(names) if name in values]
            bars = axes.bar([p + offset for p, _ in drawn], [v for _, v in drawn], width, label=label, color=color)
            axes.bar_label(bars, fmt="%.3g", fontsize=7)
        axes.set_xticks(range(len(names)), names, rotation=25 if len(names) > 4 else 0)
        axes.set_xlim(-0.5, len(names) - 0.5)
        better = {str(item.get("better")) for item in items} & {"lower", "higher"}
        axes.set_title(f"{metric}" + (f" ({better.pop()} is better)" if len(better) == 1 else ""), fontsize=10)
        axes.grid(axis="y", alpha=0.3)
        if len(series) > 1:
            axes.legend(fontsize=7, frameon=False)
    return _png(figure)


def _baselines(figure_record: Mapping[str, Any]) -> dict[str, float]:
    baselines = figure_record.get("baselines")
    if not isinstance(baselines, Mapping):
        return {}
    return {str(name): float(value) for name, value in baselines.items() if is_number(value)}
