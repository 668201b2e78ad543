"""`repolm recipe run`: the stages one after the other, each finished one marked, a killed run resumed.

    data -> tokenizer -> tokenize -> pretrain -> long_context -> sft -> eval -> report

Each stage writes `OUT/<stage>/` and, when it has finished, `OUT/<stage>/DONE.json` (stage, seconds, started,
finished, the equivalent standalone command, a summary). Running the same command again skips the stages that
have a marker and resumes the one that was interrupted: the data build and the tokenization resume their
completed shards, a training stage continues from its last checkpoint. `--from STAGE` deletes that stage's
folder and those of the stages after it and runs them again. The run's config is saved as `OUT/recipe.json`;
resuming a folder with another config (other settings, another budget) is refused, since finished stages would no
longer match it.

Bad input (a config error, a missing corpus path, an output folder that cannot be written) is a `RepolmError`
raised before the stage does any work, or, for a failure during a stage, naming the stage; finished stages keep
their markers either way.
"""

from __future__ import annotations

import datetime
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError, one_line
from repolm.folder_writer import write_file_atomically
from repolm.recipe.config import STAGES, RecipeConfig, load_recipe_config, scaled
from repolm.recipe.stages import RecipeRun, Stage, base_export_stage, preparation_stages, training_stages

logger = logging.getLogger(__name__)

DONE_FILE = "DONE.json"
RECIPE_FILE = "recipe.json"


def all_stages() -> list[Stage]:
    """The recipe's stages in order."""
    from repolm.recipe.evaluation import evaluation_stage

    def report_work(run: RecipeRun) -> dict[str, Any]:
        from repolm.recipe.report import write_report

        return {"files": [str(path) for path in write_report(run.output)]}

    report = Stage(
        "report",
        "one HTML page and Markdown: data, training curves, every figure against its baselines",
        lambda run: f"repolm recipe report {run.output}",
        report_work,
    )
    stages = [*preparation_stages(), *training_stages(), evaluation_stage(), report]
    assert [stage.name for stage in stages] == list(STAGES)
    return stages


def done_marker(output: Path, stage: str) -> dict[str, Any] | None:
    """The stage's DONE.json, or None when the stage has not finished."""
    path = output / stage / DONE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


@dataclass
class StageOutcome:
    name: str
    status: str  # "done" (run now), "skipped (finished before)", "disabled"
    seconds: float


def _stamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).isoformat(timespec="seconds")


def _check_writable(output: Path) -> None:
    """An output folder that cannot be written fails before any stage runs, with one line."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise RepolmError(f"--output {output}: cannot write there ({one_line(error)})") from None


def _check_same_run(output: Path, config: RecipeConfig) -> None:
    saved = output / RECIPE_FILE
    wanted = json.loads(json.dumps(config.to_dict()))
    if saved.is_file() and json.loads(saved.read_text(encoding="utf-8")) != wanted:
        raise RepolmError(
            f"--output {output} holds a run of another recipe config (or budget); use another --output, or "
            "--from data to start it again there"
        )
    write_file_atomically(saved, json.dumps(wanted, indent=1))


def plan_lines(run: RecipeRun, stages: list[Stage]) -> list[str]:
    """The plan: every stage with what it does and its standalone command(s)."""
    config = run.config
    lines = [
        f"recipe: {config.description or '(no description)'}",
        f"output: {run.output}   budget: {config.budget_minutes:g} minutes (x{run.factor:.2f} of the config's)",
    ]
    for number, stage in enumerate(stages, start=1):
        marker = done_marker(run.output, stage.name)
        state = "disabled" if not stage.enabled(config) else ("finished" if marker else "to run")
        minutes = getattr(getattr(config, stage.name, None), "minutes", None)
        budget = f", {minutes:.1f} min" if minutes else ""
        lines.append(f"[{number}/{len(stages)}] {stage.name} ({state}{budget}): {stage.description}")
        if stage.enabled(config):
            lines += [f"    $ {line}" for line in stage.command(run).splitlines()]
    return lines


def _restart_from(run: RecipeRun, from_stage: str) -> None:
    """Deletes `from_stage`'s folder and those of the stages after it (and the models they exported)."""
    again = STAGES[STAGES.index(from_stage) :]
    for name in again:
        path = run.folder(name)
        if path.is_symlink():  # an ablation arm's stage shared with an earlier arm: unlink, never delete theirs
            path.unlink()
        else:
            shutil.rmtree(path, ignore_errors=True)
    exported = [("model", {"pretrain", "long_context"}), ("instruct", {"sft"})]
    for name, owners in exported:
        if owners & set(again):
            path = run.folder(name)
            path.unlink() if path.is_symlink() else shutil.rmtree(path, ignore_errors=True)
    (run.output / RECIPE_FILE).unlink(missing_ok=True)


def run_stages(run: RecipeRun, stages: list[Stage], announce, prefix: str = "") -> list[StageOutcome]:
    """Runs the stages of one run that have no marker, in order, writing each marker when the stage ends."""
    config = run.config
    run.output.mkdir(parents=True, exist_ok=True)
    _check_same_run(run.output, config)
    started_run = time.time()
    outcomes = []
    for number, stage in enumerate(stages, start=1):
        heading = f"{prefix}[{number}/{len(stages)}] {stage.name}"
        if not stage.enabled(config):
            announce(f"{heading}: disabled by the config")
            outcomes.append(StageOutcome(stage.name, "disabled", 0.0))
            continue
        if marker := done_marker(run.output, stage.name):
            shared = " (shared with an earlier arm)" if run.folder(stage.name).is_symlink() else ""
            announce(f"{heading}: finished before ({marker['seconds']:.0f} s){shared}, skipped")
            outcomes.append(StageOutcome(stage.name, "skipped (finished before)", 0.0))
            continue
        left = config.budget_minutes - (time.time() - started_run) / 60
        announce(f"{heading}: {stage.description} ({left:.1f} of {config.budget_minutes:g} budget minutes left)")
        started = time.time()
        try:
            run.folder(stage.name).mkdir(parents=True, exist_ok=True)
            summary = stage.work(run)
        except RepolmError as error:
            raise RepolmError(f"stage {stage.name}: {error}") from None
        except OSError as error:
            raise RepolmError(f"stage {stage.name}: {one_line(error)}") from None
        finished = time.time()
        marker = {
            "stage": stage.name,
            "seconds": round(finished - started, 2),
            "started": _stamp(started),
            "finished": _stamp(finished),
            "command": stage.command(run),
            "summary": summary,
        }
        write_file_atomically(run.folder(stage.name) / DONE_FILE, json.dumps(marker, indent=1, default=str))
        announce(f"{heading}: done in {finished - started:.0f} s")
        outcomes.append(StageOutcome(stage.name, "done", finished - started))
    return outcomes


def run_recipe(
    config_path: str | Path,
    output: str | Path,
    budget_minutes: float | None = None,
    from_stage: str | None = None,
    dry_run: bool = False,
    announce=print,
) -> list[StageOutcome]:
    """Runs (or resumes, or with `dry_run` only prints) a recipe, or each arm of an ablation; returns what each
    stage did."""
    from repolm.recipe.arms import arm_config, link_shared_stages, stage_fingerprints, write_comparison

    config, factor = scaled(load_recipe_config(config_path), budget_minutes)
    if from_stage is not None and from_stage not in STAGES:
        raise RepolmError(f"--from {from_stage}: not a stage (stages: {', '.join(STAGES)})")
    output = Path(output).resolve()
    stages = all_stages()
    if not config.arms:
        runs = [RecipeRun(config, output, factor)]
    else:
        where, folder = str(config_path), Path(config_path).resolve().parent
        runs = [
            RecipeRun(arm_config(config, overrides, f"{where}: arms.{name}", folder), output / name, factor)
            for name, overrides in config.arms.items()
        ]
    if dry_run:
        for run in runs:
            if config.arms:
                announce(f"== arm {run.output.name}: {config.arms[run.output.name]}")
            for line in plan_lines(run, stages):
                announce(line)
        return []
    _check_writable(output)
    if config.arms:
        write_file_atomically(output / RECIPE_FILE, json.dumps(json.loads(json.dumps(config.to_dict())), indent=1))
    outcomes, earlier = [], []
    for run in runs:
        if from_stage is not None:
            _restart_from(run, from_stage)
        prefix = ""
        if config.arms:
            prefix = f"{run.output.name} "
            fingerprints = stage_fingerprints(run.config)
            link_shared_stages(run.output, earlier, fingerprints, base_export_stage(run.config))
            earlier.append((run.output, fingerprints))
        outcomes += run_stages(run, stages, announce, prefix)
    if config.arms:
        comparison = write_comparison(output, list(config.arms), config.claims)
        announce(f"ablation: {output / 'ablation.md'} ({len(comparison['figures'])} figures, "
                 f"{sum(claim['holds'] is True for claim in comparison['claims'])} of {len(comparison['claims'])} "
                 "findings hold)")  # fmt: skip
    return outcomes
