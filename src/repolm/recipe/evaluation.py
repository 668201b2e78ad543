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
- in-context copying: the loss on the second copy of a repeated span against the first (code and random tokens),
  which says whether the model can use what its context holds (cross-file context, repeated code);
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

    def text(self, which: str):
        """The model's `TextGenerator` (the held-out evaluations take it)."""
        return self.generator(which).text_generator

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
# the held-out subset: every language and every held-out repository of it, in about equal shares


SUBSET_FOLDER = "heldout_subset"
SUBSET_FILE = "subset.json"
NEAR_DUPLICATE_JACCARD = 0.7  # the paper's near-deduplication threshold, applied to the subset's files
MIN_FILE_CHARACTERS = 1000  # a file cut to fit gives at least this much, or is passed over


def _main_language(record: dict[str, Any]) -> str:
    offsets = record.get("offsets") or [0]
    ends = [*offsets[1:], len(record["text"])]
    sizes: dict[str, int] = {}
    for language, start, end in zip(record["languages"], offsets, ends, strict=True):
        sizes[language] = sizes.get(language, 0) + end - start
    return max(sizes, key=sizes.get)


def choose_heldout_files(
    repositories: dict[str, list[dict[str, Any]]], budget: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Files of one language's held-out repositories (name -> its sample records, in order) for a subset of about
    `budget` characters: each step takes the next file (by path, so that samples holding the same files in
    another order or grouping give the same choice) of the repository that has given the fewest characters so
    far, so every repository gets an equal share (a small one gives all it has, the others share the rest); a file
    longer than one repository's share (or than what is left) gives its first lines, at least
    `MIN_FILE_CHARACTERS` (else it is passed over), and a near-duplicate (word 5-gram Jaccard >= 0.7, the
    paper's threshold) of a file already taken, so that 18 variants of one platform header count once. Each
    record keeps its chosen files in its own order. Returns (records, {repository: {"files", "characters",
    "near_duplicates_skipped"}})."""
    import numpy as np

    from repolm.data.minhash import shingle_hashes
    from repolm.data.records import first_lines, sample_record_blocks, select_sample_record_files

    blocks = {name: [sample_record_blocks(record) for record in records] for name, records in repositories.items()}
    queues = {  # each repository's files by path: the same files whatever the samples' order (an ablation's arms)
        name: sorted(
            ((position, index) for position, record in enumerate(records) for index in range(len(record["files"]))),
            key=lambda item, records=records: records[item[0]]["files"][item[1]],
        )
        for name, records in repositories.items()
    }
    taken: dict[tuple[str, int], dict[int, int]] = {}  # (repository, record position) -> {file index: characters}
    share = budget / max(1, len(repositories))
    summary = {name: {"files": 0, "characters": 0, "near_duplicates_skipped": 0} for name in repositories}
    kept_shingles: list[np.ndarray] = []
    used = 0
    while used < budget:
        open_names = [name for name in repositories if queues[name]]
        if not open_names:
            break
        name = min(open_names, key=lambda item: (summary[item]["characters"], item))
        position, index = queues[name].pop(0)
        # a long file gives its first lines, not the whole share of the others
        block = first_lines(blocks[name][position][index], int(min(share, budget - used)))
        if len(block) < min(MIN_FILE_CHARACTERS, len(blocks[name][position][index])):
            continue
        shingles = shingle_hashes(block)
        if len(shingles) and any(
            len(np.intersect1d(shingles, other, assume_unique=True))
            >= NEAR_DUPLICATE_JACCARD * len(np.union1d(shingles, other))
            for other in kept_shingles
        ):
            summary[name]["near_duplicates_skipped"] += 1
            continue
        kept_shingles.append(shingles)
        taken.setdefault((name, position), {})[index] = len(block)
        summary[name]["files"] += 1
        summary[name]["characters"] += len(block)
        used += len(block)
    chosen = [
        select_sample_record_files(repositories[name][position], list(files), files)
        for name in repositories
        for (taken_name, position), files in sorted(taken.items())
        if taken_name == name
    ]
    return chosen, {name: row for name, row in summary.items() if row["files"] or row["near_duplicates_skipped"]}


def heldout_subset(run: RecipeRun) -> Path:
    """`OUT/eval/heldout_subset/code/00000.jsonl.zst`: held-out code files for `heldout_megabytes` in all, the same
    share for every language (by each record's main language) and, within a language, for every held-out
    repository (`choose_heldout_files`), so that no one repository (a generated table, a folder of near-identical
    headers) stands for its language. `subset.json` beside it says which repositories gave how many files. Written
    once."""
    from repolm.data.records import KIND_CODE, read_sample_records, write_sample_records

    target = run.folder("eval") / SUBSET_FOLDER / KIND_CODE / "00000.jsonl.zst"
    if (target.parent.parent / SUBSET_FILE).is_file():  # written last
        return target.parent.parent
    by_language: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for record in read_sample_records(run.heldout_samples):
        if record.get("kind") == KIND_CODE:
            repositories = by_language.setdefault(_main_language(record), {})
            repositories.setdefault(record["repo"], []).append(record)
    if not by_language:
        raise RepolmError(f"{run.heldout_samples}: no held-out code samples")
    budget = run.config.eval.heldout_megabytes * 1e6 / len(by_language)
    chosen, description = [], {}
    for language, repositories in sorted(by_language.items()):
        records, description[language] = choose_heldout_files(repositories, budget)
        chosen.extend(records)
    write_sample_records(target, chosen)
    write_file_atomically(target.parent.parent / SUBSET_FILE, json.dumps(description, indent=1) + "\n")
    return target.parent.parent


# -----------------------------------------------------------------------------
# parts


def _bits_per_byte_part(run: RecipeRun, models: _Models) -> dict[str, Any]:
    from repolm.eval.heldout_tasks import bits_per_byte_by_language

    window = run.config.eval.max_seq_len
    # windows half a window apart: every scored token has at least half a window of context (a sliding-window score,
    # as perplexity of fixed-length models is measured), not the few tokens the start of a fresh window has
    result = bits_per_byte_by_language(
        models.text("base"), heldout_subset(run), max_seq_len=window, stride=max(1, window // 2), batch_size=4
    )
    figures = []
    rows = [*result["languages"].items(), ("all", result["total"])]
    for language, row in rows:
        baselines = {"xz -9e": row["xz_bits_per_byte"], "zstd -19": row["zstd_bits_per_byte"]}
        name = language.lower()
        figures.append(figure("held-out bits per byte", name, "bits per byte", row["bits_per_byte"], "lower",
                              baselines, count=row["bytes"]))  # fmt: skip
        if row["tokens"]:
            figures.append(figure("tokenizer", name, "bytes per token", row["bytes"] / row["tokens"], "higher",
                                  count=row["tokens"]))  # fmt: skip
    for repository, row in result["repositories"].items():
        baselines = {"xz -9e": row["xz_bits_per_byte"], "zstd -19": row["zstd_bits_per_byte"]}
        figures.append(figure("held-out bits per byte by repository", repository, "bits per byte",
                              row["bits_per_byte"], "lower", baselines, count=row["bytes"]))  # fmt: skip
    return {"figures": figures, "details": result}


def _fim_part(run: RecipeRun, models: _Models) -> dict[str, Any]:
    from repolm.eval.heldout_tasks import fim_middle_loss

    examples = run.config.eval.fim_examples
    if examples <= 0:
        return {"figures": [], "skipped": "0 examples in the config"}
    result = fim_middle_loss(
        models.text("base"), run.heldout_samples, max_examples=examples, max_seq_len=run.config.eval.max_seq_len
    )
    fim, left_to_right = result["fim"], result["left_to_right"]
    note = "the middle scored after prefix and suffix (PSM) vs after the prefix only"
    return {
        "figures": [
            figure(
                "FIM",
                "middles",
                "bits per byte",
                fim["bits_per_byte"],
                "lower",
                {"left to right (prefix only)": left_to_right["bits_per_byte"]},
                note=note,
                count=result["examples"],
            ),
            figure(
                "FIM",
                "middles",
                "loss per token",
                fim["loss_per_token"],
                "lower",
                {"left to right (prefix only)": left_to_right["loss_per_token"]},
                count=result["middle_tokens"],
            ),
        ],  # fmt: skip
        "details": result,
    }


def _infilling_part(run: RecipeRun, models: _Models) -> dict[str, Any]:
    from repolm.eval.heldout_infilling import line_infilling

    examples = run.config.eval.infilling_examples
    if examples <= 0:
        return {"figures": [], "skipped": "0 examples in the config"}
    result = line_infilling(
        models.text("base"), run.heldout_samples, max_examples=examples, max_seq_len=run.config.eval.max_seq_len,
        batch_size=run.config.eval.batch_size,
    )  # fmt: skip
    figures = []
    rows = [("single-line infilling", "model", result)]
    rows += [("single-line infilling by language", name.lower(), row) for name, row in result["languages"].items()]
    for group, name, row in rows:
        for metric, key in (("exact match", "exact_match"), ("edit similarity", "edit_similarity")):
            figures.append(figure(group, name, metric, row[f"model_{key}"], "higher",
                                  {"BM25 nearest line": row[f"baseline_{key}"]}, count=row["examples"]))  # fmt: skip
    return {"figures": figures, "details": {key: value for key, value in result.items() if key != "samples"}}


CROSSFILE_PAPER = {  # DeepSeek-Coder-Base 6.7B on CrossCodeEval Python (paper Table 7)
    ("retrieval", "exact match"): 16.14, ("retrieval", "edit similarity"): 66.51,
    ("none", "exact match"): 9.53, ("none", "edit similarity"): 61.65,
}  # fmt: skip


def _crossfile_part(run: RecipeRun, models: _Models) -> dict[str, Any]:
    from repolm.eval.crossfile import CrossfileConfig, build_crossfile_benchmark, repositories_in_samples, run_crossfile
    from repolm.eval.crossfile.build import META_FILE

    examples = run.config.eval.crossfile_examples
    if examples <= 0:
        return {"figures": [], "skipped": "0 examples in the config"}
    bench = run.folder("eval") / "crossfile"
    if not (bench / META_FILE).is_file():
        config = CrossfileConfig(max_examples=examples, seed=run.config.seed)
        try:
            build_crossfile_benchmark(repositories_in_samples(run.heldout_samples), bench, config)
        except RepolmError as error:
            if "no cross-file examples" not in str(error):
                raise
            return {"figures": [], "skipped": f"the held-out repositories: {error}"}
    settings = {"max_seq_len": run.config.eval.max_seq_len, "batch_size": run.config.eval.batch_size}
    summary = run_crossfile(bench, models.text("base"), bench / "run", **settings)
    # the same retrieved and oracle snippets written as files of a repository-level sample (what the model trained
    # on, DeepSeek-Coder's README 4.4) instead of CrossCodeEval's comments; "none" is the same prompt in both
    as_files = run_crossfile(bench, models.text("base"), bench / "run_files", context_format="files",
                             variants=("retrieval", "oracle"), **settings)  # fmt: skip
    figures = []
    none = summary["variants"]["none"]
    for suffix, variants in (("", summary["variants"]), (" (context as files)", as_files["variants"])):
        compared_with = {"retrieval": ("no context", none), "oracle": ("retrieval", variants.get("retrieval"))}
        for variant, scores in variants.items():
            for metric, key, group in (
                ("exact match", "exact_match", "cross-file completion"),
                ("edit similarity", "edit_similarity", "cross-file completion"),
                ("identifier exact match", "identifier_exact_match", "cross-file completion (identifiers)"),
                ("identifier F1", "identifier_f1", "cross-file completion (identifiers)"),
            ):
                baseline = compared_with.get(variant)
                baselines = {baseline[0]: baseline[1][key]} if baseline else {}
                reference = CROSSFILE_PAPER.get((variant, metric)) if not suffix else None
                paper = None if reference is None else {"value": reference, "model": "DeepSeek-Coder-Base 6.7B",
                                                         "note": "CrossCodeEval Python"}  # fmt: skip
                figures.append(figure(group + suffix, variant, metric, scores[key], "higher", baselines, paper,
                                      count=scores["count"]))  # fmt: skip
    for language, variants in summary["languages"].items():
        for variant, scores in variants.items():
            name = f"{variant} ({language.lower()})"
            figures.append(figure("cross-file completion by language", name, "edit similarity",
                                  scores["edit_similarity"], "higher", count=scores["count"]))  # fmt: skip
    return {"figures": figures, "details": summary, "details_context_as_files": as_files}


def _instruct_part(run: RecipeRun, models: _Models) -> dict[str, Any]:
    from repolm.eval.heldout_tasks import instruct_format_share
    from repolm.recipe.stages import heldout_instructions_file

    examples = run.config.eval.instruct_examples
    instructions = heldout_instructions_file(run)
    if examples <= 0 or not run.config.sft.enabled:
        return {"figures": [], "skipped": "no instruct model in this recipe"}
    if not instructions.is_file():
        return {"figures": [], "skipped": f"no held-out instructions ({instructions})"}
    result = instruct_format_share(models.text("instruct"), instructions, max_examples=examples,
                                   batch_size=run.config.eval.batch_size)  # fmt: skip
    note = "answers in the ### Response format that end with <|EOT|> within the token budget"
    return {
        "figures": [
            figure(
                "instruct format",
                "held-out instructions",
                "share %",
                100 * result["share"],
                "higher",
                note=note,
                count=result["answers"],
            )
        ],  # fmt: skip
        "details": result,
    }


def _copying_part(run: RecipeRun, models: _Models) -> dict[str, Any]:
    from repolm.eval.copying import in_context_copying

    spans = run.config.eval.copying_spans
    if spans <= 0:
        return {"figures": [], "skipped": "0 spans in the config"}
    result = in_context_copying(models.text("base"), heldout_subset(run), max_spans=spans,
                                batch_size=run.config.eval.batch_size)  # fmt: skip
    note = (f"[start] span span, {result['span_tokens']} tokens a span: a model that copies predicts the second "
            "copy almost free; cross-file context helps only a model that does")  # fmt: skip
    figures = [
        figure("in-context copying", f"{kind} span repeated", "loss per token", row["second_copy_loss"], "lower",
               {"first copy": row["first_copy_loss"]}, note=note, count=row["spans"])
        for kind, row in (("code", result["code"]), ("random", result["random"]))
        if row["spans"]
    ]  # fmt: skip
    return {"figures": figures, "details": result}


def _samples_part(run: RecipeRun, models: _Models) -> dict[str, Any]:
    from repolm.eval.heldout_infilling import sample_generations

    count = run.config.eval.samples
    if count <= 0:
        return {"figures": [], "samples": []}
    result = sample_generations(models.text("base"), run.heldout_samples, count=count,
                                max_seq_len=run.config.eval.max_seq_len)  # fmt: skip
    samples = [
        {"kind": "completion", "repo": item["repo"], "path": item["path"], "language": item["language"],
         "prompt": item["prompt_tail"], "model": item["model"], "real": item["real"]}
        for item in result["completions"]
    ] + [
        {"kind": "infill", "repo": item["repo"], "path": item["path"], "language": item["language"],
         "prompt": item["prefix_tail"], "suffix": item["suffix_head"], "model": item["model"], "real": item["real"]}
        for item in result["infills"]
    ]  # fmt: skip
    return {"figures": [], "samples": samples}


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
    "bits_per_byte": _bits_per_byte_part,
    "fim": _fim_part,
    "infilling": _infilling_part,
    "crossfile": _crossfile_part,
    "copying": _copying_part,
    "samples": _samples_part,
    "instruct_format": _instruct_part,
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
