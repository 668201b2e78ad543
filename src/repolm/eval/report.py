"""Evaluation reports: `report.md` for people and `report.png` (bar charts) from a run's summary and per-problem rows.

`write_report(summary, per_problem, directory)` writes both files atomically (a temporary file in the same folder,
then `os.replace`), so a reader never sees half a report. Every key is optional: a missing one is shown as absent,
never a crash. The summary it reads (what the harness writes to summary.json):

    task: str                 benchmark name: "humaneval", "humaneval-cpp", "mbpp", "leetcode", ...
    mode: str                 prompt mode: "base" or "instruct"
    generator: dict           `Generator.describe()`: kind, model + weights_sha256 (local) or url + model (endpoint)
    settings: dict            what defines the run, one table row per key (a nested dict is one row,
                              "key value, ..."), e.g. stop, max_new_tokens, samples_per_problem, timeout_seconds,
                              decoding {temperature, top_p, seed}
    pass_at_k: dict           {"pass@1": 0.348, "pass@10": ...}: fractions in [0, 1]
    metrics: dict             optional, other per-sample rates, fractions: {"exact_match": 0.8}
    verdicts: dict            {"passed": int, "failed": int, "timeout": int, "skipped": int, "error": int}
    groups: dict              optional, {group name: {"count": int, "pass@1": float, ...}} (LeetCode easy/medium/hard)
    reference: dict           optional, the paper's figures, fractions, shown beside this run's: one figure per metric
                              {"pass@1": 0.344, "source": "..."} or one per model {"pass@1": {"DeepSeek-Coder-Base
                              1.3B": 0.348, "DeepSeek-Coder-Base 6.7B": 0.494}, "source": "..."}
    network_isolated: bool    False: a loud warning at the top (generated code could reach the network)
    sandbox: dict             optional, the sandbox's description {"isolation": "namespaces" | "user-namespace" |
                              "rlimits-only", ...}; rlimits-only (asked for by name): a loud warning at the top
    started: str              ISO 8601 start time
    seconds: float | dict     wall-clock seconds of the run, or per phase {"generation": s, "execution": s}
    problems: int             optional, number of problems (else: distinct task ids of the rows)
    problems_scored: int      optional, problems with at least one sample
    problems_without_samples: list   optional, task ids that got no sample (listed)
    samples: int              optional (else: the number of rows)
    versions: dict            optional, package versions {"torch": "2.13.0", ...}; platform: dict, optional

Per-problem rows (one per sample; several per task id when n > 1):

    task_id: str, completion: str, passed: bool, verdict: one of records.VERDICTS,
    result: str (one-line detail: "failed: AssertionError", "timed out after 10.0 s", ...), group: str (optional)

The Markdown report lists the run (task, generator, settings, environment), the pass@k table (with the reference
where given), other metrics, verdict counts, the per-group table, and the first failing and skipped samples with
their one-line detail. The PNG has a panel of pass@k (reference bars beside), one of pass@1 per group (when there
are groups) and one of verdicts.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError, one_line
from repolm.eval.records import VERDICTS
from repolm.eval.sandbox import ISOLATION_RLIMITS
from repolm.folder_writer import write_file_atomically

logger = logging.getLogger(__name__)

REPORT_MARKDOWN = "report.md"
REPORT_PNG = "report.png"
MAX_LISTED_FAILURES = 20
MAX_LISTED_SKIPPED = 10
MAX_CELL_CHARACTERS = 300
MAX_DETAIL_CHARACTERS = 200

VERDICT_COLORS = {
    "passed": "#2e7d32",
    "failed": "#c62828",
    "timeout": "#ef6c00",
    "skipped": "#9e9e9e",
    "error": "#6a1b9a",
}


# -----------------------------------------------------------------------------
# Markdown


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(text.replace("|", "\\|").split())


def _quoted(text: str) -> str:
    """A string shown as a JSON literal when it has whitespace other than single spaces, or is empty."""
    plain = bool(text) and text.isprintable() and text == text.strip()
    return text if plain else json.dumps(text, ensure_ascii=False)


def _value(value: Any) -> str:
    """A summary value as table-cell text (before escaping)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{key} {_value(item)}" for key, item in value.items()) or "—"
    if isinstance(value, Sequence):
        return (
            ", ".join(json.dumps(item, ensure_ascii=False) if isinstance(item, str) else _value(item) for item in value)
            or "none"
        )
    return str(value)


def _cell(value: Any) -> str:
    return _escape(_shorten(_value(value), MAX_CELL_CHARACTERS))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if _is_number(value) else "—"


def _metric_order(name: str) -> tuple[int, str]:
    """pass@1 < pass@10 < pass@100; other names after, alphabetically."""
    prefix, _, number = name.partition("@")
    return (int(number), prefix) if number.isdigit() else (1 << 30, name)


def _model_name(generator: Mapping[str, Any]) -> str:
    model = generator.get("model")
    if not isinstance(model, str) or not model:
        return "unknown model"
    return Path(model).name if generator.get("kind") == "local" else model


def _references(summary: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """The summary's reference figures as {metric: {label: fraction}} (one label "reference" for a single figure)."""
    reference = summary.get("reference") or {}
    if not isinstance(reference, Mapping):
        return {}
    figures: dict[str, dict[str, float]] = {}
    for metric, value in reference.items():
        if _is_number(value):
            figures[str(metric)] = {"reference": float(value)}
        elif isinstance(value, Mapping):
            per_label = {str(label): float(v) for label, v in value.items() if _is_number(v)}
            if per_label:
                figures[str(metric)] = per_label
    return figures


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _duration(seconds: Any) -> str:
    if _is_number(seconds):
        return f"{seconds:.1f} s"
    if isinstance(seconds, Mapping):
        phases = {str(name): value for name, value in seconds.items() if _is_number(value)}
        if phases:
            parts = ", ".join(f"{name} {value:.1f} s" for name, value in phases.items())
            return f"{sum(phases.values()):.1f} s ({parts})"
    return "—"


def _problem_count(summary: Mapping[str, Any], per_problem: Sequence[Mapping[str, Any]]) -> int:
    problems = summary.get("problems")
    return problems if isinstance(problems, int) else len({row.get("task_id") for row in per_problem})


def _isolation(summary: Mapping[str, Any]) -> str | None:
    """The sandbox isolation the run's programs ran under, when the summary records it."""
    return (summary.get("sandbox") or {}).get("isolation")


def render_markdown(summary: Mapping[str, Any], per_problem: Sequence[Mapping[str, Any]]) -> str:
    """The text of report.md (see the module docstring for the shapes)."""
    task, mode = summary.get("task", "unknown task"), summary.get("mode")
    generator = summary.get("generator") or {}
    lines = [f"# repolm eval: {task}" + (f" ({mode})" if mode else "") + f" — {_model_name(generator)}", ""]

    isolated = summary.get("network_isolated")
    isolation = _isolation(summary)
    if isolation == ISOLATION_RLIMITS:
        lines += [
            "> **WARNING: SANDBOX WITH RESOURCE LIMITS ONLY** (asked for with `--sandbox rlimits`). The generated",
            "> programs ran without namespaces: they could read and write what the harness's user can, reach the",
            "> network and leave processes behind. Results are valid; the isolation was not.",
            "",
        ]
    elif isolated is False:
        lines += [
            "> **WARNING: NO NETWORK ISOLATION.** The sandbox could not create a network namespace here: the generated",
            "> programs ran with network access. Results are valid, but untrusted code could reach the network.",
            "",
        ]
    verdicts = summary.get("verdicts") or {}
    if verdicts.get("error"):
        lines += [
            f"> **WARNING: {verdicts['error']} program(s) could not be run by the harness (verdict `error`).** "
            "They are neither passes nor failures of the model; see the list below.",
            "",
        ]

    samples = summary.get("samples") if isinstance(summary.get("samples"), int) else len(per_problem)
    without_samples = summary.get("problems_without_samples") or []
    overview = [
        ("task", _cell(task)),
        ("prompt mode", _cell(mode)),
        ("started", _cell(summary.get("started"))),
        ("duration", _duration(summary.get("seconds"))),
        ("problems", str(_problem_count(summary, per_problem))),
        *([("problems scored", str(summary["problems_scored"]))] if "problems_scored" in summary else []),
        ("samples", str(samples)),
        ("sandbox", f"**{isolation}**" if isolation == ISOLATION_RLIMITS else _cell(isolation or "unknown")),
        ("network isolation", {True: "yes", False: "**NO**"}.get(isolated, "unknown")),
    ]
    lines += _table(["run", ""], overview) + [""]
    if without_samples:
        listed = ", ".join(map(str, without_samples[:MAX_LISTED_FAILURES]))
        more = (
            f" and {len(without_samples) - MAX_LISTED_FAILURES} more"
            if len(without_samples) > MAX_LISTED_FAILURES
            else ""
        )
        lines += [
            f"**{len(without_samples)} problem(s) have no sample and are not scored:** {_escape(listed)}{more}.",
            "",
        ]

    lines += ["## Generator", ""]
    lines += _table(["key", "value"], [(_escape(str(key)), _cell(value)) for key, value in generator.items()]) + [""]

    settings = summary.get("settings") or {}
    lines += ["## Settings", ""]
    if settings:
        lines += _table(["setting", "value"], [(_escape(str(key)), _cell(value)) for key, value in settings.items()])
    else:
        lines.append("(none recorded)")
    lines.append("")

    environment = [(name, summary[name]) for name in ("versions", "platform") if isinstance(summary.get(name), Mapping)]
    if environment:
        lines += ["## Environment", ""]
        lines += _table(["", ""], [(_escape(name), _cell(value)) for name, value in environment]) + [""]

    lines += ["## pass@k", ""]
    pass_at_k = summary.get("pass_at_k") or {}
    references = _references(summary)
    labels = list(dict.fromkeys(label for per_label in references.values() for label in per_label))
    metrics = sorted(set(pass_at_k) | set(references), key=_metric_order)
    if metrics:
        rows = []
        for metric in metrics:
            ours = pass_at_k.get(metric)
            row = [_escape(metric), _percent(ours)]
            for label in labels:
                paper = references.get(metric, {}).get(label)
                row.append(_percent(paper))
            if len(labels) == 1:
                paper = references.get(metric, {}).get(labels[0])
                both = _is_number(ours) and _is_number(paper)
                row.append(f"{100 * (ours - paper):+.1f} points" if both else "—")
            rows.append(row)
        header = ["metric", "this run", *map(_escape, labels)] + (["difference"] if len(labels) == 1 else [])
        lines += _table(header, rows)
        if labels:
            source = (summary.get("reference") or {}).get("source", "the DeepSeek-Coder paper")
            lines += ["", f"Reference figures: {_escape(str(source))}."]
    else:
        lines.append("(no pass@k computed)")
    lines.append("")

    other_metrics = {key: value for key, value in (summary.get("metrics") or {}).items() if _is_number(value)}
    if other_metrics:
        lines += ["## Other metrics", ""]
        lines += _table(["metric", "this run"], [(_escape(str(k)), _percent(v)) for k, v in other_metrics.items()])
        lines.append("")

    lines += ["## Verdicts", ""]
    total = sum(value for value in verdicts.values() if isinstance(value, int))
    names = [*VERDICTS, *sorted(set(verdicts) - set(VERDICTS))]
    rows = [
        (name, str(verdicts.get(name, 0)), _percent(verdicts.get(name, 0) / total) if total else "—") for name in names
    ]
    lines += _table(["verdict", "count", "share"], [*rows, ("total", str(total), "")])
    if verdicts.get("skipped"):
        lines += ["", "Skipped: the language's toolchain is missing here; not counted as failures."]
    lines.append("")

    groups = summary.get("groups") or {}
    if groups:
        lines += ["## Groups", ""]
        group_metrics = sorted(
            {key for values in groups.values() for key in values if key != "count"}, key=_metric_order
        )
        rows = []
        for name, values in groups.items():
            rows.append(
                [_escape(str(name)), str(values.get("count", "—"))]
                + [
                    _percent(values.get(metric)) if "@" in metric else _cell(values.get(metric))
                    for metric in group_metrics
                ]
            )
        lines += _table(["group", "count", *map(_escape, group_metrics)], rows) + [""]

    lines += _listing(per_problem, ("failed", "timeout", "error"), "Failures", MAX_LISTED_FAILURES)
    lines += _listing(per_problem, ("skipped",), "Skipped", MAX_LISTED_SKIPPED)
    return "\n".join(lines).rstrip() + "\n"


def _listing(rows: Sequence[Mapping[str, Any]], verdicts: tuple[str, ...], title: str, limit: int) -> list[str]:
    """A section listing the first rows whose verdict is in `verdicts`, with their one-line detail."""
    chosen = [row for row in rows if row.get("verdict") in verdicts]
    if not chosen:
        return []
    with_group = any(row.get("group") for row in chosen)
    shown = chosen[:limit]
    heading = f"## {title} (first {len(shown)} of {len(chosen)})" if len(chosen) > limit else f"## {title}"
    table_rows = []
    for row in shown:
        detail = _escape(_shorten(" ".join(str(row.get("result", "")).split()), MAX_DETAIL_CHARACTERS)) or "—"
        cells = [_escape(str(row.get("task_id", "?"))), _escape(str(row.get("verdict")))]
        table_rows.append([*cells, *([_escape(str(row.get("group") or "—"))] if with_group else []), detail])
    header = ["task_id", "verdict", *(["group"] if with_group else []), "detail"]
    return [heading, "", *_table(header, table_rows), ""]


# -----------------------------------------------------------------------------
# PNG


def render_png(summary: Mapping[str, Any], path: Path) -> None:
    """Draw the charts of the summary into the PNG file `path` (matplotlib's Agg canvas, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pass_at_k = {k: v for k, v in (summary.get("pass_at_k") or {}).items() if _is_number(v)}
    references = _references(summary)
    groups = summary.get("groups") or {}
    group_values = {
        str(name): values["pass@1"]
        for name, values in groups.items()
        if isinstance(values, Mapping) and _is_number(values.get("pass@1"))
    }
    verdicts = summary.get("verdicts") or {}

    panels = 2 + bool(group_values)
    figure = Figure(figsize=(4.2 * panels, 3.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    title = f"{summary.get('task', 'unknown task')}"
    if summary.get("mode"):
        title += f" ({summary['mode']})"
    title += f" — {_model_name(summary.get('generator') or {})}"
    weak = _isolation(summary) == ISOLATION_RLIMITS
    if weak:
        title += "   [SANDBOX: RLIMITS ONLY]"
    elif summary.get("network_isolated") is False:
        title += "   [NO NETWORK ISOLATION]"
    figure.suptitle(title, color="#c62828" if weak or summary.get("network_isolated") is False else "black")

    metric_axes = axes[0]
    metrics = sorted(set(pass_at_k) | set(references), key=_metric_order)
    labels = list(dict.fromkeys(label for per_label in references.values() for label in per_label))
    series = [("this run", pass_at_k, "#1565c0")]
    palette = ("#90a4ae", "#607d8b", "#b0bec5", "#455a64", "#cfd8dc")
    for number, label in enumerate(labels):
        values = {metric: per_label[label] for metric, per_label in references.items() if label in per_label}
        series.append((label, values, palette[number % len(palette)]))
    positions = list(range(len(metrics)))
    width = 0.8 / len(series)
    for number, (label, values, color) in enumerate(series):
        offset = (number - (len(series) - 1) / 2) * width
        # bars only where the series has the metric: a missing figure is not a zero
        drawn = [(position, metric) for position, metric in zip(positions, metrics, strict=True) if metric in values]
        bars = metric_axes.bar(
            [position + offset for position, _ in drawn],
            [100 * values[metric] for _, metric in drawn],
            width,
            label=label,
            color=color,
        )
        metric_axes.bar_label(bars, fmt="%.1f", fontsize=7)
    if labels:
        metric_axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    metric_axes.set_xticks(positions, metrics)
    if metrics:
        metric_axes.set_xlim(-0.5, len(metrics) - 0.5)
    metric_axes.set_ylim(0, 105)
    metric_axes.set_ylabel("%")
    metric_axes.set_title("pass@k" if metrics else "pass@k (none)")

    next_axes = 1
    if group_values:
        group_axes = axes[next_axes]
        next_axes += 1
        names = list(group_values)
        bars = group_axes.bar(range(len(names)), [100 * group_values[n] for n in names], 0.6, color="#00838f")
        group_axes.bar_label(bars, fmt="%.1f", fontsize=8)
        group_axes.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0)
        group_axes.set_ylim(0, 105)
        group_axes.set_title("pass@1 per group")

    verdict_axes = axes[next_axes]
    names = [*VERDICTS, *sorted(set(verdicts) - set(VERDICTS))]
    counts = [verdicts.get(name, 0) if isinstance(verdicts.get(name, 0), int) else 0 for name in names]
    bars = verdict_axes.bar(
        range(len(names)), counts, 0.6, color=[VERDICT_COLORS.get(name, "#455a64") for name in names]
    )
    verdict_axes.bar_label(bars, fontsize=8)
    verdict_axes.set_xticks(range(len(names)), names, rotation=20)
    verdict_axes.set_title("verdicts (samples)")
    figure.savefig(path, format="png")


# -----------------------------------------------------------------------------


def write_report(
    summary: Mapping[str, Any], per_problem: Sequence[Mapping[str, Any]], directory: Path
) -> tuple[Path, Path]:
    """Write `directory/report.md` and `directory/report.png` atomically; returns their paths."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RepolmError(f"{directory}: cannot create the report folder ({one_line(error)})") from None
    markdown_path, png_path = directory / REPORT_MARKDOWN, directory / REPORT_PNG
    text = render_markdown(summary, per_problem)
    temporary = directory / f".{REPORT_PNG}.{uuid.uuid4().hex[:12]}.partial"
    try:
        render_png(summary, temporary)
        os.replace(temporary, png_path)
        write_file_atomically(markdown_path, text)
    except OSError as error:
        raise RepolmError(f"{directory}: cannot write the report ({one_line(error)})") from None
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("wrote %s and %s", markdown_path, png_path)
    return markdown_path, png_path
