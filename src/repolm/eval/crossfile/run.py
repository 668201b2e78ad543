"""Running a cross-file completion benchmark: every example with three contexts, scored as cceval scores them.

**Prompts.** Each example is asked three times (`VARIANTS`): "none" (the left context alone), "retrieval" (the
retrieved chunks of the other files, fixed at build time) and "oracle" (the chunks of the files that define the
names the line uses). All three are built by the one prompt builder (`repolm.infer.prompt_builder.PromptBuilder`,
the builder the server and the other evaluations use): `[BOS] context header prefix`, the context rendered as
CrossCodeEval's comments (`# Here are some relevant code fragments from other files of the repo:` ...) or, with
`context_format="files"`, as files of a repository-level sample (path comment, code: what the model trained on), whole
snippets in order while they fit `context_share` of the prompt budget (the paper: 512 of 2048 tokens), the prefix
headed by the file's path comment and cut from its start to fit `max_seq_len - max_new_tokens`.

**Generation.** Greedy, at most `max_new_tokens` (the paper: 50). A local model stops at the first line break that
follows text (a row whose first line is written stops; a leading blank line does not end it, as cceval's
post-processing skips blank lines); an endpoint generates its tokens and the line is cut here. The prediction is
the first line with text (its indentation kept; "" when there is none).

**Generators.** A `repolm.infer.text.TextGenerator` (what the recipe holds), a `repolm.eval.generators.
LocalGenerator` (a model folder: its text generator and prompt builder) or an `EndpointGenerator` (an
OpenAI-compatible server: the prompt is built with `tokenizer`, the served model's tokenizer, decoded to text
without BOS, and sent to `/v1/completions`; the server adds its BOS).

**Scores** (`repolm.eval.crossfile.metrics`): cceval's exact match, edit similarity, identifier exact match and
identifier precision/recall/F1 per example; `summary.json` has them per variant and per language and variant.

**Run folder.** `run.json` (what the results depend on: the benchmark's hash, the generator's identity, the prompt
and decoding settings), `results.jsonl` (one line per example and variant, in benchmark order, each variant in
turn) and `summary.json`, each written atomically. Resumable: results are appended to `results.partial.jsonl` as
batches finish; a run started again with the same `run.json` only generates what is missing (a larger `limit`
adds examples); in a folder whose `run.json` differs (another model, benchmark or setting) the earlier results are
removed, with a warning, and the run starts over: results of two runs are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError, one_line
from repolm.eval.crossfile.build import EXAMPLES_FILE, META_FILE, read_benchmark
from repolm.eval.crossfile.metrics import score_prediction, summarize
from repolm.folder_writer import write_file_atomically

logger = logging.getLogger(__name__)

VARIANTS = ("none", "retrieval", "oracle")
RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
PARTIAL_FILE = "results.partial.jsonl"
SUMMARY_FILE = "summary.json"
CHUNK_BATCHES = 4  # batches generated between two appends to the partial results

_Answer = tuple[str, str | None]  # (generated text, one-line error or None)


@dataclass(frozen=True)
class CrossfileRunSettings:
    """How the prompts are built and decoded.

    Attributes:
        max_seq_len: prompt plus generated tokens (the paper: 2048).
        max_new_tokens: tokens generated at most (the paper: 50).
        context_share: the share of the prompt budget the cross-file context may take (the paper: 512 of 2048
            tokens, 0.25).
        context_format: how the snippets are written: "comments" (CrossCodeEval's commented fragments) or "files"
            (each as a file of a repository-level sample, path comment then code; `repolm.infer.prompt_builder`).
    """

    max_seq_len: int = 2048
    max_new_tokens: int = 50
    context_share: float = 0.25
    context_format: str = "comments"

    def __post_init__(self) -> None:
        for name in ("max_seq_len", "max_new_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RepolmError(f"{name} must be an integer >= 1, got {value!r}")
        if self.max_new_tokens >= self.max_seq_len:
            raise RepolmError(f"max_new_tokens {self.max_new_tokens} leaves no room in max_seq_len {self.max_seq_len}")
        if not 0.0 <= self.context_share <= 1.0:
            raise RepolmError(f"context_share must be in [0, 1], got {self.context_share!r}")
        from repolm.infer.prompt_builder import CONTEXT_FORMATS

        if self.context_format not in CONTEXT_FORMATS:
            raise RepolmError(
                f"context_format must be one of {', '.join(CONTEXT_FORMATS)}, got {self.context_format!r}"
            )


def first_line(text: str) -> str:
    """The first line of a generation that holds more than whitespace, without its line break ("" when none)."""
    return next((line.rstrip("\r") for line in text.split("\n") if line.strip()), "")


def crossfile_prompt(builder, example: dict[str, Any], variant: str, settings: CrossfileRunSettings):
    """The `BuiltPrompt` of one example in one variant (see the module docstring)."""
    from repolm.infer.prompt_builder import PromptBudget
    from repolm.infer.retrieval import ContextSnippet

    if variant not in VARIANTS:
        raise RepolmError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
    fields = ("path", "text", "start_line", "score", "source")
    snippets = [] if variant == "none" else example.get(variant) or []
    context = [ContextSnippet(**{key: snippet[key] for key in fields if key in snippet}) for snippet in snippets]
    budget = PromptBudget(
        settings.max_seq_len - settings.max_new_tokens, context_share=settings.context_share, overflow="cut"
    )
    return builder.completion(
        example["prompt"], budget=budget, context=context, path=example["path"], context_format=settings.context_format
    )


# -----------------------------------------------------------------------------
# generators


class _Backend:
    """Builds the prompts and generates with one kind of generator."""

    def __init__(self, generator, tokenizer, batch_size: int) -> None:
        from repolm.eval.generators import EndpointGenerator, LocalGenerator
        from repolm.infer.prompt_builder import PromptBuilder
        from repolm.infer.text import TextGenerator

        self.generator, self.batch_size, self.endpoint = generator, batch_size, None
        if isinstance(generator, LocalGenerator):
            self.text_generator, self.builder = generator.text_generator, generator.prompt_builder
        elif isinstance(generator, TextGenerator):
            self.text_generator, self.builder = generator, PromptBuilder(generator.tokenizer)
        elif isinstance(generator, EndpointGenerator):
            if tokenizer is None:
                raise RepolmError("an endpoint needs the served model's tokenizer (--tokenizer DIR) to fit prompts")
            if isinstance(tokenizer, str | os.PathLike):
                from repolm.tokenizer import CodeTokenizer

                tokenizer = CodeTokenizer.load(tokenizer)
            self.endpoint, self.text_generator, self.builder = generator, None, PromptBuilder(tokenizer)
        else:
            raise RepolmError(
                "generator must be a TextGenerator, LocalGenerator or EndpointGenerator, got "
                + type(generator).__name__
            )

    def identity(self) -> dict[str, Any]:
        """What the results depend on: the weights (or the served model) and the tokenizer."""
        if self.endpoint is not None:
            description = self.endpoint.describe()
            return {"kind": "endpoint", "url": description["url"], "model": description["model"]}
        if hasattr(self.generator, "describe"):
            description = self.generator.describe()
            return {key: description[key] for key in ("kind", "model", "weights_sha256", "tokenizer_sha256")}
        model = self.text_generator.engine.model
        rows = model.embed_tokens.weight[:64].detach().float().cpu().numpy().tobytes()
        return {
            "kind": "text_generator",
            "config": model.config.to_dict(),
            "embedding_sha256": hashlib.sha256(rows).hexdigest(),
            "vocabulary": len(self.builder.tokenizer),
        }

    def describe(self) -> dict[str, Any]:
        if hasattr(self.generator, "describe"):
            return self.generator.describe()
        weight = self.text_generator.engine.model.embed_tokens.weight
        return {**self.identity(), "device": str(weight.device), "dtype": str(weight.dtype).removeprefix("torch.")}

    def generate(self, prompts: Sequence[Any], settings: CrossfileRunSettings) -> list[_Answer]:
        """(generated text, error) per `BuiltPrompt`."""
        if self.endpoint is not None:
            return self._generate_endpoint(prompts, settings)
        return self._generate_local([prompt.ids for prompt in prompts], settings)

    def _generate_endpoint(
        self, prompts: Sequence[Any], settings: CrossfileRunSettings
    ) -> list[tuple[str, str | None]]:
        from repolm.eval.records import DecodingSettings, GenerationRequest

        tokenizer = self.builder.tokenizer
        requests = []
        for prompt in prompts:
            ids = prompt.ids[1:] if prompt.ids[:1] == [tokenizer.bos_id] else prompt.ids
            requests.append(
                GenerationRequest(
                    kind="completion", prompt=tokenizer.decode(ids), max_new_tokens=settings.max_new_tokens
                )
            )
        answers = self.endpoint.generate(requests, DecodingSettings(temperature=0.0))
        return [(answer.text, answer.error) for answer in answers]

    def _generate_local(self, prompts: list[list[int]], settings: CrossfileRunSettings) -> list[_Answer]:
        """Greedy generation of each prompt until its first line with text is complete, in batches of similar
        length; a failing batch is run again one prompt at a time, and a failing prompt gets an error."""
        from repolm.infer.sampling import SamplingParams

        text_generator = self.text_generator
        tokenizer = text_generator.tokenizer
        stop_ids = frozenset(text_generator.default_stop_ids())
        params = SamplingParams(
            max_new_tokens=settings.max_new_tokens, temperature=0.0, stop_token_ids=tuple(sorted(stop_ids))
        )

        def decode(ids: list[int]) -> str:
            return tokenizer.decode([token for token in ids if token not in stop_ids])

        def line_written(_row: int, ids: list[int]) -> bool:
            return "\n" in decode(ids).lstrip()

        def run(rows: list[int]) -> dict[int, _Answer]:
            generated: dict[int, list[int]] = {row: [] for row in rows}
            try:
                for step in text_generator.engine.stream([prompts[row] for row in rows], params, line_written):
                    for local, token in step.tokens.items():
                        generated[rows[local]].append(token)
            except Exception as error:  # e.g. out of memory: one batch must not end the run
                if len(rows) > 1:
                    logger.warning("a batch of %d failed (%s); running it one by one", len(rows), one_line(error))
                    return {row: answer for single in rows for row, answer in run([single]).items()}
                return {rows[0]: ("", f"generation failed: {one_line(error)}")}
            return {row: (decode(ids), None) for row, ids in generated.items()}

        answers: dict[int, _Answer] = {}
        order = sorted(range(len(prompts)), key=lambda row: (-len(prompts[row]), row))
        for start in range(0, len(order), self.batch_size):
            answers.update(run(order[start : start + self.batch_size]))
        return [answers[row] for row in range(len(prompts))]


# -----------------------------------------------------------------------------
# the run


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_results(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(task_id, variant) -> result of a results file; a torn last line (a killed run) is ignored."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            continue
        found[(result["task_id"], result["variant"])] = result
    return found


def _summary(results: list[dict[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {"variants": {}, "languages": {}}
    for variant in variants:
        chosen = [result for result in results if result["variant"] == variant]
        summary["variants"][variant] = {
            **summarize(chosen),
            "errors": sum(1 for result in chosen if result.get("error")),
            "mean_snippets": round(sum(len(result["context"]) for result in chosen) / max(len(chosen), 1), 2),
        }
        for language in sorted({result["language"] for result in chosen}):
            in_language = [result for result in chosen if result["language"] == language]
            summary["languages"].setdefault(language, {})[variant] = summarize(in_language)
    return summary


def run_crossfile(
    bench: str | os.PathLike,
    generator,
    output: str | os.PathLike,
    *,
    max_seq_len: int = 2048,
    max_new_tokens: int = 50,
    context_share: float = 0.25,
    context_format: str = "comments",
    batch_size: int = 8,
    limit: int | None = None,
    variants: Sequence[str] = VARIANTS,
    tokenizer=None,
) -> dict[str, Any]:
    """Scores `generator` on a benchmark folder in each variant (see the module docstring); writes the run folder
    `output` and returns the summary. `limit`: only the first examples; `tokenizer`: a `CodeTokenizer` or tokenizer
    folder, needed with an `EndpointGenerator` only."""
    settings = CrossfileRunSettings(max_seq_len, max_new_tokens, context_share, context_format)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise RepolmError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise RepolmError(f"limit must be an integer >= 1, got {limit!r}")
    unknown = [variant for variant in variants if variant not in VARIANTS]
    if unknown or not variants:
        raise RepolmError(f"variants must be some of {', '.join(VARIANTS)}, got {list(variants)!r}")
    started = time.perf_counter()
    bench = Path(bench)
    examples = read_benchmark(bench)[:limit]
    backend = _Backend(generator, tokenizer, batch_size)
    output = Path(output)
    run_info = {
        "benchmark": str(bench.resolve()),
        "benchmark_sha256": _file_sha256(bench / EXAMPLES_FILE),
        "generator": backend.identity(),
        "settings": asdict(settings),
    }
    output.mkdir(parents=True, exist_ok=True)
    if (output / RUN_FILE).is_file():
        try:
            earlier = json.loads((output / RUN_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            earlier = {}
        differing = sorted(key for key in run_info if key != "benchmark" and earlier.get(key) != run_info[key])
        if differing:
            logger.warning("%s holds a run with another %s: its results are removed", output, ", ".join(differing))
            for name in (RESULTS_FILE, PARTIAL_FILE, SUMMARY_FILE, RUN_FILE):
                (output / name).unlink(missing_ok=True)
    if not (output / RUN_FILE).is_file():
        write_file_atomically(output / RUN_FILE, json.dumps(run_info, indent=1) + "\n")
    done = _read_results(output / RESULTS_FILE) | _read_results(output / PARTIAL_FILE)
    pending = [(example, variant) for variant in variants for example in examples
               if (example["task_id"], variant) not in done]  # fmt: skip
    if done:
        logger.info("cross-file run %s: %d results already there, %d to generate", output, len(done), len(pending))
    prompts = [crossfile_prompt(backend.builder, example, variant, settings) for example, variant in pending]
    order = sorted(range(len(pending)), key=lambda index: -len(prompts[index].ids))
    chunk = batch_size * CHUNK_BATCHES
    with (output / PARTIAL_FILE).open("a", encoding="utf-8") as partial:
        for first in range(0, len(order), chunk):
            indices = order[first : first + chunk]
            answers = backend.generate([prompts[index] for index in indices], settings)
            for index, (text, error) in zip(indices, answers, strict=True):
                (example, variant), prompt = pending[index], prompts[index]
                prediction = first_line(text)
                result = {
                    "task_id": example["task_id"], "language": example["language"], "variant": variant,
                    "prediction": prediction, "target": example["groundtruth"],
                    **score_prediction(prediction, example["groundtruth"], example["language"]),
                    "prompt_tokens": len(prompt.ids), "prefix_tokens_cut": prompt.cut["prefix"],
                    "context": [f"{snippet.path}:{snippet.start_line}" for snippet in prompt.context],
                    "generation": text, **({"error": error} if error else {}),
                }  # fmt: skip
                done[(example["task_id"], variant)] = result
                partial.write(json.dumps(result, ensure_ascii=False) + "\n")
            partial.flush()
            logger.info("cross-file run: %d of %d generated", min(first + chunk, len(order)), len(order))
    results = [done[(example["task_id"], variant)] for variant in variants for example in examples]
    summary = {
        "examples": len(examples),
        **_summary(results, variants),
        "generator": backend.describe(),
        "settings": {**asdict(settings), "batch_size": batch_size, "limit": limit, "variants": list(variants)},
        "benchmark": {"folder": str(bench.resolve()), "examples_sha256": run_info["benchmark_sha256"]},
        "seconds": round(time.perf_counter() - started, 2),
    }
    if (bench / META_FILE).is_file():
        meta = json.loads((bench / META_FILE).read_text(encoding="utf-8"))
        summary["benchmark"].update(seed=meta.get("seed"), source=meta.get("source"))
    write_file_atomically(output / RESULTS_FILE, "".join(json.dumps(result, ensure_ascii=False) + "\n"
                                                         for result in results))  # fmt: skip
    write_file_atomically(output / SUMMARY_FILE, json.dumps(summary, indent=1) + "\n")
    (output / PARTIAL_FILE).unlink(missing_ok=True)
    return summary
