"""The recipe's report: what a run of `repolm recipe run` did and how the model did, as one HTML page and Markdown.

`write_report(output)` reads the recipe's output folder and writes `OUT/report.html` (one self-contained file: plain
CSS, charts as data URIs, no network) and `OUT/report.md` (the same tables; the charts as PNG files in
`OUT/report_files/`). What it reads, all optional (a stage that did not run is shown as "not run"):

    recipe.json                      the resolved recipe config, shown in full under "Settings"
    <stage>/DONE.json                one per finished stage: stage, seconds, started, finished, command, summary
    data/stats.json                  `repolm data build`'s statistics (`repolm.data.summary`)
    tokenize/<folder>/meta.json      the token folders (`repolm.tokenizer.token_shards.read_meta`)
    pretrain/, long_context/, sft/   training run folders with metrics.jsonl (`repolm.train.metrics`), in the folder
                                     or one level below it
    eval/results.json                {"figures": [...], "samples": [...], "meta": {...}}: see `FIGURE_KEYS`

The report's sections, in order: the headline figures against their baselines; the time per stage and the machine;
the data; the tokenizer; training (loss curves, throughput, MFU); every evaluation figure by group, with a chart per
group and the paper's full-scale figure; sample completions and infills next to the real text; the settings.

Everything is read and drawn before anything is written: a broken input (a results.json that is not JSON, a
DONE.json that is not an object) is a `RepolmError` naming the file, and leaves no report file behind. The files are
then written atomically (the charts, report.md, report.html last), so a reader sees the old report or the new one.

Not handled here: running the stages (`repolm.recipe`), drawing (`repolm.recipe.report_charts`) and rendering the
blocks to HTML and Markdown (`repolm.recipe.report_document`).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError, one_line
from repolm.folder_writer import write_file_atomically
from repolm.recipe.config import STAGES, TRAINING_STAGES
from repolm.recipe.evaluation import RESULTS_FILE as EVALUATION_RESULTS_FILE
from repolm.recipe.report_charts import figures_chart, is_number, training_chart
from repolm.recipe.report_document import (
    CHART_FOLDER,
    Block,
    Chart,
    Comparison,
    Heading,
    Note,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)
from repolm.tokenizer.token_shards import META_FILE, read_meta
from repolm.train.metrics import METRICS_FILE

logger = logging.getLogger(__name__)

REPORT_HTML = "report.html"
REPORT_MARKDOWN = "report.md"
RECIPE_FILE = "recipe.json"
DONE_FILE = "DONE.json"
RESULTS_FILE = f"eval/{EVALUATION_RESULTS_FILE}"
STATS_FILE = "data/stats.json"

HEADLINE_GROUPS = (
    "held-out bits per byte",
    "cross-file completion",
    "cross-file completion (context as files)",
    "in-context copying",
    "single-line infilling",
    "FIM",
    "HumanEval",
    "MBPP",
)
"""The evaluation groups of the headline table, in its order (matched without regard to case)."""
TOKENIZER_GROUP = "tokenizer"
FIGURE_KEYS = ("group", "name", "metric", "value", "better", "baselines", "paper", "note", "count")
"""The keys of a figure in results.json; `value` is a number or null, `better` "lower" or "higher" (the default),
`baselines` {name: number}, `paper` {"value", "model", "note"} or null (the paper's figure at full scale)."""

DASH = "–"
MAX_SAMPLES = 40
MAX_SAMPLE_CHARACTERS = 4000
MAX_SUMMARY_CHARACTERS = 300


# -----------------------------------------------------------------------------
# Inputs


@dataclass
class RecipeOutput:
    """What the report reads from a recipe's output folder (None or empty where a file is absent)."""

    folder: Path
    recipe: dict | None = None
    done: dict[str, dict] = field(default_factory=dict)
    stats: dict | None = None
    results: dict | None = None
    metrics: dict[str, list[dict]] = field(default_factory=dict)
    token_folders: dict[str, dict] = field(default_factory=dict)


def _read_json(path: Path) -> dict | None:
    """The JSON object in `path`, None when the file does not exist; anything else unreadable names the file."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise RepolmError(f"{path}: not readable as JSON ({one_line(error, 200)})") from None
    if not isinstance(value, dict):
        raise RepolmError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def _metrics_file(stage_folder: Path) -> Path | None:
    """The stage's metrics.jsonl: in its folder, or in one run folder below it."""
    if (stage_folder / METRICS_FILE).is_file():
        return stage_folder / METRICS_FILE
    found = sorted(stage_folder.glob(f"*/{METRICS_FILE}")) if stage_folder.is_dir() else []
    return found[0] if found else None


def _read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a torn last line (a run killed while writing) is left out."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise RepolmError(f"{path}: cannot read the training metrics ({one_line(error, 200)})") from None
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError as error:
            if number == len(lines):
                logger.warning("%s: last line is not complete JSON; left out", path)
                break
            raise RepolmError(f"{path}: line {number} is not JSON ({one_line(error, 200)})") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def _check_results(path: Path, results: dict) -> None:
    for key in ("figures", "samples"):
        items = results.get(key, [])
        if not isinstance(items, list):
            raise RepolmError(f"{path}: {key!r} must be a list, found {type(items).__name__}")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise RepolmError(f"{path}: {key}[{index}] must be an object, found {type(item).__name__}")
    if not isinstance(results.get("meta", {}), dict):
        raise RepolmError(f"{path}: 'meta' must be an object")


def read_inputs(output: Path) -> RecipeOutput:
    """Everything the report shows, read from the recipe's output folder (see the module docstring)."""
    output = Path(output)
    inputs = RecipeOutput(folder=output, recipe=_read_json(output / RECIPE_FILE), stats=_read_json(output / STATS_FILE))
    for stage in STAGES:
        done = _read_json(output / stage / DONE_FILE)
        if done is not None:
            inputs.done[stage] = done
    inputs.results = _read_json(output / RESULTS_FILE)
    if inputs.results is not None:
        _check_results(output / RESULTS_FILE, inputs.results)
    for stage in TRAINING_STAGES:
        path = _metrics_file(output / stage)
        if path is not None:
            inputs.metrics[stage] = _read_metrics(path)
    for meta_path in sorted((output / "tokenize").glob(f"*/{META_FILE}")):
        inputs.token_folders[meta_path.parent.name] = read_meta(meta_path.parent)
    return inputs


# -----------------------------------------------------------------------------
# Formatting


def format_value(value: Any) -> str:
    """A value as a table cell: numbers readable (NaN, infinity and None as "–"), containers as compact JSON."""
    if value is None or value == "":
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not is_number(value):
            return DASH
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _seconds(value: Any) -> str:
    if not is_number(value):
        return DASH
    if value < 100:
        return f"{value:.1f} s"
    minutes = f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.2f} h"
    return f"{value:,.0f} s ({minutes})"


def _percent(value: Any) -> str:
    return f"{100 * value:.2f}%" if is_number(value) else DASH


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """A nested object as (dotted key, leaf value) pairs; lists are leaves."""
    if isinstance(value, Mapping) and value:
        pairs = []
        for key, item in value.items():
            pairs += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return pairs
    return [(prefix, value)]


def _summary_table(summary: Any, leave_out: Sequence[str] = ()) -> Table | None:
    if not isinstance(summary, Mapping):
        return None
    pairs = [(key, value) for key, value in _flatten(summary) if key.split(".")[0] not in leave_out]
    if not pairs:
        return None
    rows = [[key, _shorten(format_value(value), MAX_SUMMARY_CHARACTERS)] for key, value in pairs]
    return Table(["key", "value"], rows, kind="summary")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def _baselines(figure: Mapping[str, Any]) -> dict[str, Any]:
    baselines = figure.get("baselines")
    return {str(name): value for name, value in baselines.items()} if isinstance(baselines, Mapping) else {}


def beats_baselines(figure: Mapping[str, Any]) -> str:
    """The verdict against the figure's baselines: "yes" when the value is better than every one, "no" (naming those
    it does beat, if any) otherwise, "–" without a value or without baselines."""
    value = figure.get("value")
    baselines = {name: b for name, b in _baselines(figure).items() if is_number(b)}
    if not is_number(value) or not baselines:
        return DASH
    lower = figure.get("better") == "lower"
    beaten = [name for name, baseline in baselines.items() if (value < baseline if lower else value > baseline)]
    if len(beaten) == len(baselines):
        return "yes"
    return f"no (beats {', '.join(beaten)})" if beaten else "no"


def _paper(figure: Mapping[str, Any]) -> str:
    paper = figure.get("paper")
    if not isinstance(paper, Mapping) or not is_number(paper.get("value")):
        return DASH
    details = [str(paper[key]) for key in ("model", "note") if paper.get(key)]
    return format_value(paper["value"]) + (f" ({', '.join(details)})" if details else "")


def _figures(inputs: RecipeOutput) -> list[dict]:
    return list((inputs.results or {}).get("figures", []))


def _groups(figures: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for figure in figures:
        groups.setdefault(str(figure.get("group") or "other"), []).append(figure)
    return groups


def _stage_state(inputs: RecipeOutput, stage: str) -> str:
    """done, disabled (its recipe section says enabled: false), this report, or not run."""
    if stage in inputs.done:
        return "done"
    section = (inputs.recipe or {}).get(stage)
    if section is False or (isinstance(section, Mapping) and section.get("enabled") is False):
        return "disabled"
    return "this report" if stage == "report" else "not run"


def _not_run(inputs: RecipeOutput, stage: str, missing: str) -> Note:
    state = _stage_state(inputs, stage)
    reason = "disabled in recipe.json" if state == "disabled" else f"not run (no {missing})"
    return Note(f"{stage}: {reason}")


# -----------------------------------------------------------------------------
# Sections


def _headline_section(inputs: RecipeOutput) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Headline", "headline")]
    if inputs.results is None:
        return [*blocks, _not_run(inputs, "eval", RESULTS_FILE)]
    groups = _groups(_figures(inputs))
    rows = []
    for wanted in HEADLINE_GROUPS:
        for group, figures in groups.items():
            if group.casefold() != wanted.casefold():
                continue
            for figure in figures:
                baselines = "; ".join(f"{name} {format_value(value)}" for name, value in _baselines(figure).items())
                rows.append(
                    [
                        group,
                        format_value(figure.get("name")),
                        format_value(figure.get("metric")),
                        format_value(figure.get("value")),
                        baselines or DASH,
                        beats_baselines(figure),
                        _paper(figure),
                    ]
                )
    if not rows:
        return [*blocks, Note(f"eval: {RESULTS_FILE} has none of the headline groups ({', '.join(HEADLINE_GROUPS)})")]
    verdicts = [row[5] for row in rows if row[5] != DASH]
    blocks.append(
        Paragraph(
            f"The model beats all its baselines on {sum(v == 'yes' for v in verdicts)} of the {len(verdicts)} "
            "headline figures that have baselines. The paper's figures are DeepSeek-Coder's at full scale (1.3B to 33B "
            "parameters, 2T tokens): they show where the recipe leads, not what this run should reach."
        )
    )
    header = ["group", "figure", "metric", "model", "baselines", "beats baseline", "paper at full scale"]
    return [*blocks, Table(header, rows, kind="headline")]


def describe_machine() -> list[tuple[str, str]]:
    """The machine writing the report: CPU model, cores, memory, GPUs, torch and Python versions."""
    cpu = platform.processor() or platform.machine()
    memory = DASH
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        import torch

        torch_version = torch.__version__
        gpus = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
    except Exception as error:  # a broken torch or CUDA setup must not stop the report
        torch_version, gpus = f"unavailable ({one_line(error, 80)})", []
    return [
        ("CPU", cpu),
        ("cores", f"{usable} usable of {os.cpu_count()}"),
        ("memory", memory),
        ("GPU", ", ".join(f"{count} x {name}" for name, count in _counted(gpus)) or "none"),
        ("torch", torch_version),
        ("Python", platform.python_version()),
        ("system", platform.platform()),
    ]


def _counted(names: Sequence[str]) -> list[tuple[str, int]]:
    return [(name, names.count(name)) for name in dict.fromkeys(names)]


def _time_section(inputs: RecipeOutput) -> list[Block]:
    rows, total = [], 0.0
    for stage in STAGES:
        done = inputs.done.get(stage)
        if done is None:
            rows.append([stage, _stage_state(inputs, stage), DASH, DASH, DASH, DASH])
            continue
        seconds = done.get("seconds")
        total += seconds if is_number(seconds) else 0.0
        rows.append(
            [
                stage,
                "done",
                _seconds(seconds),
                format_value(done.get("started")),
                format_value(done.get("finished")),
                format_value(done.get("command")),
            ]
        )
    rows.append(["total", f"{len(inputs.done)} of {len(STAGES)} stages done", _seconds(total), DASH, DASH, DASH])
    blocks: list[Block] = [
        Heading(2, "Time and machine", "time"),
        Table(["stage", "status", "time", "started", "finished", "equivalent command"], rows, kind="stages"),
    ]
    started = sorted(str(d["started"]) for d in inputs.done.values() if d.get("started"))
    finished = sorted(str(d["finished"]) for d in inputs.done.values() if d.get("finished"))
    if started and finished:
        blocks.append(Paragraph(f"Run from {started[0]} to {finished[-1]}; the stages took {_seconds(total)} in all."))
    machine = describe_machine()
    for stage in TRAINING_STAGES:
        start = next((r for r in inputs.metrics.get(stage, []) if r.get("event") in ("start", "resume")), None)
        if start is not None:
            machine.append(
                (
                    f"{stage} device",
                    f"{format_value(start.get('device'))} x "
                    f"{format_value(start.get('world_size'))}, measured peak "
                    f"{_flops(start.get('peak_flops'))}",
                )
            )
    machine.append(("report written", datetime.now(timezone.utc).isoformat(timespec="seconds")))
    blocks += [Heading(3, "Machine"), Table(["", ""], [[key, value] for key, value in machine], kind="machine")]
    return blocks


def _flops(value: Any) -> str:
    return f"{value / 1e12:.3g} TFLOP/s" if is_number(value) else DASH


def _data_section(inputs: RecipeOutput) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Data", "data")]
    stats = inputs.stats
    if stats is None:
        blocks.append(_not_run(inputs, "data", STATS_FILE))
    else:
        source = stats.get("input", {})
        blocks.append(
            Paragraph(
                f"Input: {format_value(source.get('repositories'))} repositories, "
                f"{format_value(source.get('files'))} files, {format_value(source.get('bytes'))} bytes."
            )
        )
        kept = stats.get("kept_after_screening", {})
        in_output = stats.get("output", {}).get("files_per_language", {})
        languages = list(dict.fromkeys([*kept.get("files", {}), *in_output]))
        rows = [
            [
                language,
                format_value(kept.get("files", {}).get(language)),
                format_value(kept.get("bytes", {}).get(language)),
                format_value(in_output.get(language)),
            ]
            for language in languages
        ]
        blocks += [Heading(3, "Languages")]
        blocks.append(Table(["language", "files kept", "bytes kept", "files in output"], rows, kind="languages"))
        excluded = [
            [stage, reason, format_value(count)]
            for stage, reasons in stats.get("excluded", {}).items()
            for reason, count in reasons.items()
        ]
        blocks += [Heading(3, "Filters")]
        blocks.append(
            Table(["stage", "reason", "files dropped"], excluded, kind="filters")
            if excluded
            else Paragraph("No file was dropped.")
        )
        near = stats.get("near_dedup", {})
        exact = stats.get("excluded", {}).get("exact-dedup", {}).get("identical-file", 0)
        dedup = [
            ["exact duplicates removed (files)", format_value(exact)],
            ["near-duplicate clusters (MinHash)", format_value(near.get("clusters"))],
            ["near-duplicate samples removed", format_value(near.get("removed_samples"))],
            ["largest cluster", format_value(near.get("largest_cluster"))],
        ]
        blocks += [Heading(3, "Deduplication"), Table(["", ""], dedup, kind="dedup")]
        output, mixture = stats.get("output", {}), stats.get("mixture", {})
        kinds = list(dict.fromkeys([*output.get("samples", {}), *mixture.get("bytes", {})]))
        rows = [
            [
                kind,
                format_value(output.get("samples", {}).get(kind)),
                format_value(mixture.get("bytes", {}).get(kind)),
                format_value(mixture.get("share", {}).get(kind)),
                format_value(mixture.get("target", {}).get(kind)),
            ]
            for kind in kinds
        ]
        blocks += [Heading(3, "Output and mixture")]
        blocks.append(Table(["kind", "samples", "bytes", "share", "target share"], rows, kind="mixture"))
    blocks += [Heading(3, "Train and held-out split")]
    split = _summary_table((inputs.done.get("data") or {}).get("summary"))
    blocks.append(split or Note("data: no stage summary (no data/DONE.json)"))
    folders = _token_folders(inputs)
    if folders:
        rows = [
            [
                name,
                "held-out" if name == "validation" else "train",
                format_value(info.get("tokens")),
                format_value(info.get("documents")),
                format_value(info.get("shards")),
            ]
            for name, info in folders.items()
        ]
        blocks.append(Table(["token folder", "role", "tokens", "documents", "shards"], rows, kind="token-split"))
    return blocks


def _token_folders(inputs: RecipeOutput) -> dict[str, dict]:
    """{folder: {tokens, documents, shards}} from the tokenize stage's summary, else from its meta.json files."""
    summary = (inputs.done.get("tokenize") or {}).get("summary") or {}
    folders = summary.get("folders") if isinstance(summary, Mapping) else None
    if isinstance(folders, Mapping) and folders:
        return {str(name): dict(info) for name, info in folders.items() if isinstance(info, Mapping)}
    return {
        name: {"tokens": meta.get("tokens"), "documents": meta.get("documents"), "shards": len(meta.get("shards", []))}
        for name, meta in inputs.token_folders.items()
    }


def _vocabulary_size(inputs: RecipeOutput) -> Any:
    summary = (inputs.done.get("tokenizer") or {}).get("summary") or {}
    for key, value in _flatten(summary) if isinstance(summary, Mapping) else []:
        if key.split(".")[-1] in ("vocab_size", "vocabulary_size") and is_number(value):
            return value
    return next((meta.get("vocab_size") for meta in inputs.token_folders.values() if meta.get("vocab_size")), None)


def _figure_table(figures: Sequence[Mapping[str, Any]]) -> Table:
    """One row per figure: the model's value, a column per baseline, the verdict and the paper's figure."""
    baseline_names = list(dict.fromkeys(name for figure in figures for name in _baselines(figure)))
    with_count = any("count" in figure for figure in figures)
    with_note = any(figure.get("note") for figure in figures)
    header = ["figure", "metric", "model", *baseline_names, "better", "beats baselines", "paper at full scale"]
    header += ["count"] * with_count + ["note"] * with_note
    rows = []
    for figure in figures:
        baselines = _baselines(figure)
        row = [format_value(figure.get("name")), format_value(figure.get("metric")), format_value(figure.get("value"))]
        row += [format_value(baselines.get(name)) for name in baseline_names]
        row += [format_value(figure.get("better") or "higher"), beats_baselines(figure), _paper(figure)]
        row += [format_value(figure.get("count"))] * with_count + [format_value(figure.get("note"))] * with_note
        rows.append(row)
    return Table(header, rows, kind="figures")


def _tokenizer_section(inputs: RecipeOutput) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Tokenizer", "tokenizer")]
    if "tokenizer" not in inputs.done and not inputs.token_folders:
        blocks.append(_not_run(inputs, "tokenizer", "tokenizer/DONE.json"))
    else:
        blocks.append(Paragraph(f"Vocabulary size: {format_value(_vocabulary_size(inputs))} ids."))
    tokenizer_figures = _groups(_figures(inputs)).get(TOKENIZER_GROUP)
    if tokenizer_figures:
        blocks += [Heading(3, "Bytes per token"), _figure_table(tokenizer_figures)]
    for stage in ("tokenizer", "tokenize"):
        table = _summary_table((inputs.done.get(stage) or {}).get("summary"), leave_out=("folders",))
        if table is not None:
            blocks += [Heading(3, f"{stage} stage"), table]
    if "tokenize" not in inputs.done:
        blocks.append(_not_run(inputs, "tokenize", "tokenize/DONE.json"))
    return blocks


def _training_rows(records: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    train = [r for r in records if "loss" in r]
    validation = [r["val_loss"] for r in records if is_number(r.get("val_loss"))]
    start = next((r for r in records if r.get("event") in ("start", "resume")), {})
    last = train[-1] if train else {}
    rates = sorted(r["tokens_per_second"] for r in train if is_number(r.get("tokens_per_second")))
    mfus = sorted(r["mfu"] for r in train if is_number(r.get("mfu")))
    return [
        ["parameters", format_value(start.get("parameters"))],
        ["steps", f"{format_value(last.get('step'))} of {format_value(start.get('max_steps'))}"],
        ["tokens seen", format_value(last.get("tokens"))],
        ["first training loss", format_value(train[0].get("loss") if train else None)],
        ["last training loss", format_value(last.get("loss"))],
        ["last validation loss", format_value(validation[-1] if validation else None)],
        ["best validation loss", format_value(min(validation) if validation else None)],
        ["tokens per second (median of the logged windows)", format_value(rates[len(rates) // 2] if rates else None)],
        ["MFU (median of the logged windows)", _percent(mfus[len(mfus) // 2] if mfus else None)],
        ["training time", _seconds(last.get("elapsed_seconds"))],
    ]


def _training_section(inputs: RecipeOutput) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Training", "training")]
    for stage in TRAINING_STAGES:
        blocks.append(Heading(3, stage))
        records = inputs.metrics.get(stage)
        if records is None and stage not in inputs.done:
            blocks.append(_not_run(inputs, stage, f"{stage}/{METRICS_FILE}"))
            continue
        if records is None:
            blocks.append(Note(f"{stage}: no {METRICS_FILE} in {stage}/"))
        else:
            png = training_chart(stage, records)
            if png is not None:
                blocks.append(
                    Chart(
                        f"training-{_slug(stage)}",
                        png,
                        f"{stage}: loss (train and validation) and "
                        "throughput (tokens/s, MFU) against the optimizer step",
                    )
                )
            else:
                blocks.append(Note(f"{stage}: no training step logged yet"))
            blocks.append(Table(["", ""], _training_rows(records), kind="training"))
        table = _summary_table((inputs.done.get(stage) or {}).get("summary"))
        if table is not None:
            blocks += [Heading(4, f"{stage} stage summary"), table]
    return blocks


def _evaluation_section(inputs: RecipeOutput) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Evaluation", "evaluation")]
    if inputs.results is None:
        return [*blocks, _not_run(inputs, "eval", RESULTS_FILE)]
    meta = _summary_table(inputs.results.get("meta"))
    if meta is not None:
        blocks.append(meta)
    groups = _groups(_figures(inputs))
    if not groups:
        blocks.append(Note(f"eval: {RESULTS_FILE} holds no figures"))
    names: set[str] = set()
    for group, figures in groups.items():
        blocks += [Heading(3, group), _figure_table(figures)]
        png = figures_chart(group, figures)
        if png is not None:
            name = f"eval-{_slug(group)}"
            while name in names:
                name += "-x"
            names.add(name)
            blocks.append(Chart(name, png, f"{group}: the model against its baselines"))
    return blocks


def _sample_text(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_SAMPLE_CHARACTERS else text[:MAX_SAMPLE_CHARACTERS] + "\n[… cut]"


def _samples_section(inputs: RecipeOutput) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Samples", "samples")]
    if inputs.results is None:
        return [*blocks, _not_run(inputs, "eval", RESULTS_FILE)]
    samples = inputs.results.get("samples", [])
    if not samples:
        return [*blocks, Paragraph(f"{RESULTS_FILE} holds no samples.")]
    if len(samples) > MAX_SAMPLES:
        blocks.append(Paragraph(f"The first {MAX_SAMPLES} of {len(samples)} samples."))
    for sample in samples[:MAX_SAMPLES]:
        kind = str(sample.get("kind") or "completion")
        where = "/".join(str(sample[key]) for key in ("repo", "path") if sample.get(key)) or "unknown file"
        title = f"{kind}: {where}" + (f" ({sample['language']})" if sample.get("language") else "")
        context = [("left context (its end)", _sample_text(sample.get("prompt")))]
        if kind == "infill":
            context.append(("right context (its start)", _sample_text(sample.get("suffix"))))
        panes = [("model", _sample_text(sample.get("model"))), ("real", _sample_text(sample.get("real")))]
        blocks.append(Comparison(title, context, panes))
    return blocks


def _settings_section(inputs: RecipeOutput) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Settings", "settings")]
    if inputs.recipe is None:
        return [*blocks, Note(f"no {RECIPE_FILE}: the settings are unknown")]
    blocks.append(Paragraph(f"The resolved recipe ({RECIPE_FILE}), every key."))
    plain = [[key, _setting(value)] for key, value in inputs.recipe.items() if not isinstance(value, Mapping)]
    if plain:
        blocks.append(Table(["setting", "value"], plain, kind="settings"))
    for section, values in inputs.recipe.items():
        if isinstance(values, Mapping):
            rows = [[key, _setting(value)] for key, value in _flatten(values)]
            blocks += [Heading(3, section), Table(["setting", "value"], rows, kind="settings")]
    return blocks


def _setting(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, allow_nan=True)


def build_report(inputs: RecipeOutput) -> list[Block]:
    """The report's blocks, in the order of the module docstring."""
    return [
        *_headline_section(inputs),
        *_time_section(inputs),
        *_data_section(inputs),
        *_tokenizer_section(inputs),
        *_training_section(inputs),
        *_evaluation_section(inputs),
        *_samples_section(inputs),
        *_settings_section(inputs),
    ]


# -----------------------------------------------------------------------------
# Writing


def _write_bytes_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".partial")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_charts(folder: Path, charts: Mapping[str, bytes]) -> None:
    """The Markdown's PNG files; those of an earlier report that this one does not link are removed."""
    if charts:
        folder.mkdir(exist_ok=True)
    for name, data in charts.items():
        _write_bytes_atomically(folder / name, data)
    if folder.is_dir():
        for stale in folder.glob("*.png"):
            if stale.name not in charts:
                stale.unlink(missing_ok=True)
        if not any(folder.iterdir()):
            folder.rmdir()


def write_report(output: Path) -> tuple[Path, Path]:
    """Write `output/report.html` and `output/report.md` (and the Markdown's charts); returns (html, markdown)."""
    output = Path(output)
    if not output.is_dir():
        raise RepolmError(f"{output}: no such folder (the recipe's output folder)")
    blocks = build_report(read_inputs(output))
    title = f"repolm recipe report: {output.resolve().name}"
    subtitle = (
        f"What repolm recipe run did in {output} and how the model did: DeepSeek-Coder's recipe "
        f"(arXiv 2401.14196) at the scale of this run. Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC."
    )
    page = render_html(title, subtitle, blocks)
    markdown, charts = render_markdown(title, subtitle, blocks)
    html_path, markdown_path = output / REPORT_HTML, output / REPORT_MARKDOWN
    try:
        _write_charts(output / CHART_FOLDER, charts)
        write_file_atomically(markdown_path, markdown)
        write_file_atomically(html_path, page)
    except OSError as error:
        for path in (html_path, markdown_path):
            path.with_name(path.name + ".partial").unlink(missing_ok=True)
        raise RepolmError(f"{output}: cannot write the report ({one_line(error, 200)})") from None
    logger.info("wrote %s and %s (%d charts)", html_path, markdown_path, len(charts))
    return html_path, markdown_path
