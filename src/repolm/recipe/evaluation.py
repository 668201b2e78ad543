"""The recipe's evaluation stage: every figure of the run against baselines that need no model.

The stage runs a list of parts, each one evaluation of `repolm.eval` on the run's models and held-out
repositories; each part returns figures (see `figure`) and is saved as `OUT/eval/parts/<part>.json` when it ends,
so a killed evaluation resumes at the part it was in. At the end `OUT/eval/results.json` holds every figure and the
sample completions: {"figures": [...], "samples": [...], "meta": {...}} (the format `recipe.report` renders).

Parts (each scaled by the recipe's eval settings; a part whose input is missing, e.g. no instruct model or no
benchmark folder, records why instead of a figure):
- held-out bits per byte per language, with `xz -9e` and `zstd -19` on the same bytes, and the tokenizer's bytes
  per token;
- loss on FIM middles (and the same middles scored left to right), single-line infilling EM/ES with the BM25
  nearest-line baseline;
- cross-file completion EM/ES without context, with retrieved context, with the defining file (oracle);
- HumanEval and MBPP pass@1 (base prompts), HumanEval single-line infilling;
- the instruct model's share of held-out instructions answered in the format and ended with <|EOT|>;
- sample completions and infills on held-out files, the model's text next to the real one.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError
from repolm.folder_writer import write_file_atomically
from repolm.recipe.stages import RecipeRun, Stage

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
PARTS_FOLDER = "parts"


def figure(
    group: str,
    name: str,
    metric: str,
    value: float | None,
    better: str,
    baselines: dict[str, float] | None = None,
    paper: dict[str, Any] | None = None,
    note: str = "",
    count: int | None = None,
) -> dict[str, Any]:
    """One figure of `results.json`: a value, which way is better, its baselines and the paper's full-scale figure."""
    if value is not None and not math.isfinite(value):
        value = None
    entry: dict[str, Any] = {"group": group, "name": name, "metric": metric, "value": value, "better": better}
    entry["baselines"] = {key: float(item) for key, item in (baselines or {}).items() if item is not None}
    entry["paper"] = paper
    if note:
        entry["note"] = note
    if count is not None:
        entry["count"] = count
    return entry


class _Models:
    """The run's models, each loaded once for all the parts that generate with it."""

    def __init__(self, run: RecipeRun) -> None:
        self.run = run
        self._generators: dict[str, Any] = {}

    def generator(self, which: str):
        from repolm.eval.generators import LocalGenerator

        if which not in self._generators:
            folder = self.run.base_model if which == "base" else self.run.instruct_model
            settings = self.run.config.eval
            self._generators[which] = LocalGenerator(
                folder, device=self.run.config.device, batch_size=settings.batch_size, max_seq_len=settings.max_seq_len
            )
        return self._generators[which]


# -----------------------------------------------------------------------------
# parts


def _benchmark_part(task: str, mode: str, group: str, limit_of: Callable[[RecipeRun], int]):
    def part(run: RecipeRun, models: _Models) -> dict[str, Any]:
        from repolm.benchmark_folder import find_benchmarks
        from repolm.eval.harness import EvaluationConfig, evaluate
        from repolm.eval.paper_results import paper_results

        limit = limit_of(run)
        if limit <= 0:
            return {"figures": [], "skipped": "0 problems in the config"}
        if find_benchmarks(None) is None:
            return {"figures": [], "skipped": "no benchmark folder ($REPOLM_BENCHMARKS or ../shared/benchmarks)"}
        model = "base" if mode == "base" else "instruct"
        folder = run.base_model if model == "base" else run.instruct_model
        if not folder.is_dir():
            return {"figures": [], "skipped": f"no {model} model"}
        config = EvaluationConfig(
            task=task, output=run.folder("eval") / f"{task}-{mode}", mode=mode, limit=limit, progress=True
        )
        summary = evaluate(config, generator=models.generator(model))
        pass_at_1 = summary.get("pass_at_k", {}).get("pass@1")
        paper = paper_results(task, mode)
        reference = next((item for item in paper.items() if "1.3B" in item[0]), None)
        return {
            "figures": [
                figure(
                    group,
                    f"{task} ({mode})",
                    "pass@1 %",
                    None if pass_at_1 is None else 100 * pass_at_1,
                    "higher",
                    paper=None if reference is None else {"value": reference[1], "model": reference[0], "note": ""},
                    count=summary.get("problems_scored"),
                )
            ]
        }

    return part


PARTS: dict[str, Callable[[RecipeRun, _Models], dict[str, Any]]] = {
    "humaneval": _benchmark_part("humaneval", "base", "HumanEval", lambda run: run.config.eval.humaneval_problems),
    "mbpp": _benchmark_part("mbpp", "base", "MBPP", lambda run: run.config.eval.mbpp_problems),
    "humaneval_infilling": _benchmark_part(
        "infilling-single", "base", "HumanEval infilling", lambda run: run.config.eval.humaneval_infilling_problems
    ),
}


# -----------------------------------------------------------------------------
# the stage


def run_evaluation(run: RecipeRun) -> dict[str, Any]:
    """Runs (or resumes) every part; writes `OUT/eval/results.json`; returns a short summary."""
    if not run.base_model.is_dir():
        raise RepolmError(f"no base model at {run.base_model}: run the training stages first")
    parts_folder = run.folder("eval") / PARTS_FOLDER
    parts_folder.mkdir(parents=True, exist_ok=True)
    models = _Models(run)
    figures, samples, skipped = [], [], {}
    for name, part in PARTS.items():
        path = parts_folder / f"{name}.json"
        if path.is_file():
            result = json.loads(path.read_text(encoding="utf-8"))
        else:
            logger.info("evaluation: %s", name)
            try:
                result = part(run, models)
            except RepolmError as error:
                raise RepolmError(f"{name}: {error}") from None
            write_file_atomically(path, json.dumps(result, indent=1, default=str))
        figures += result.get("figures", [])
        samples += result.get("samples", [])
        if result.get("skipped"):
            skipped[name] = result["skipped"]
    results = {"figures": figures, "samples": samples, "meta": {"skipped": skipped, "parts": list(PARTS)}}
    write_file_atomically(run.folder("eval") / RESULTS_FILE, json.dumps(results, indent=1, default=str))
    return {"figures": len(figures), "samples": len(samples), "skipped": skipped}


def _command(run: RecipeRun) -> str:
    model = run.base_model
    settings = run.config.eval
    return "\n".join(
        [
            f"repolm eval loss --model {model} --data {run.heldout_samples}",
            f"repolm eval crossfile build --repos <held-out repositories> --output {run.folder('eval')}/crossfile",
            f"repolm eval crossfile run --bench {run.folder('eval')}/crossfile --model {model}",
            f"repolm eval humaneval --model {model} --limit {settings.humaneval_problems}",
            f"repolm eval mbpp --model {model} --limit {settings.mbpp_problems}",
            f"repolm eval infilling-single --model {model} --limit {settings.humaneval_infilling_problems}",
        ]
    )


def evaluation_stage() -> Stage:
    return Stage(
        "eval", "held-out loss, infilling, cross-file, HumanEval/MBPP against baselines", _command, run_evaluation
    )


def results_path(output: Path) -> Path:
    return output / "eval" / RESULTS_FILE
