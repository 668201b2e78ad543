"""The inference commands of `repolm`: generate, complete, infill and serve, and the helpers that the commands
which load a model share (loading it, sampling options, reading a prompt file, streaming the output)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from repolm.errors import RepolmError


def load_generator(args: argparse.Namespace):
    """The model folder's model and tokenizer (or --tokenizer's), as a `TextGenerator`."""
    from repolm.infer.engine import Engine
    from repolm.infer.text import TextGenerator, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(
        args.model, args.device, args.dtype, args.tokenizer, options=("--device", "--dtype")
    )
    return TextGenerator(Engine(model, compile=args.compile), tokenizer)


def sampling_params(args: argparse.Namespace):
    from repolm.infer.sampling import SamplingParams

    try:
        return SamplingParams(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            stop_token_ids=tuple(args.stop_id or ()),
            seed=args.seed,
        )
    except ValueError as error:
        # "top_p must be in (0, 1], got 0.0" -> "--top-p must be ...": name the option the user typed
        message = str(error)
        field = message.split(" ", 1)[0]
        if field in vars(args):
            message = "--" + field.replace("_", "-") + message[len(field) :]
        raise RepolmError(message) from None


def read_text(path: str, option: str) -> str:
    try:
        # newline="": the text as it is in the file; CRLF line ends are part of a prompt and of a file to infill
        with open(path, encoding="utf-8", newline="") as file:
            return file.read()
    except FileNotFoundError:
        raise RepolmError(f"{option} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise RepolmError(f"{option} {path}: cannot read it as UTF-8 text ({error})") from None


def write_stream(pieces) -> None:
    wrote_newline = True
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
        wrote_newline = piece.endswith("\n")
    if not wrote_newline and sys.stdout.isatty():
        sys.stdout.write("\n")


def add_generation_options(parser: argparse.ArgumentParser, max_new_tokens: int = 256) -> None:
    parser.add_argument("--model", required=True, help="model folder (Hugging Face layout: config.json + weights)")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: the model folder)")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=max_new_tokens,
        help=f"most tokens to generate (default {max_new_tokens})",
    )
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help=">1 discourages repeats (1.0 = off)")
    parser.add_argument("--stop", action="append", help="stop string (repeatable); the output ends before it")
    parser.add_argument(
        "--stop-id", action="append", type=int, help="stop token id (repeatable; default: end of sentence and <|EOT|>)"
    )
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    parser.add_argument(
        "--compile",
        action="store_true",
        help=(
            "decode through torch.compile: on CPUs frozen weights in C++ GEMM kernels (~20 s to compile, a weight "
            "copy per batch size), on GPUs CUDA graphs; pays off for long outputs"
        ),
    )
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, ...")


def cmd_generate(args: argparse.Namespace) -> None:
    if (args.prompt is None) == (args.prompt_file is None):
        raise RepolmError("give exactly one of --prompt TEXT or --prompt-file F")
    prompt = args.prompt if args.prompt is not None else read_text(args.prompt_file, "--prompt-file")

    from repolm.infer.prompts import instruct_prompt  # imports torch (~1 s): after the checks that need no model

    params = sampling_params(args)
    generator = load_generator(args)
    if args.instruct:
        tokenizer = generator.tokenizer
        ids = tokenizer.encode(instruct_prompt(tokenizer, prompt))  # the template writes BOS itself
        pieces = (delta.text for delta in generator.stream_ids([ids], params, args.stop or ()))
    else:
        pieces = generator.stream(prompt, params, args.stop or ())
    write_stream(pieces)


def cmd_complete(args: argparse.Namespace) -> None:
    """The completion at a cursor in a repository's file, with cross-file context retrieved from the repository."""
    from repolm.infer.prompts import split_at_cursor

    repo = Path(args.repo)
    if not repo.is_dir():
        raise RepolmError(f"--repo {args.repo}: no such folder")
    file = Path(args.file)
    if not file.is_absolute() and not file.exists() and (repo / file).exists():
        file = repo / file  # --file given relative to the repository
    try:
        path = file.resolve().relative_to(repo.resolve()).as_posix()
    except ValueError:
        raise RepolmError(f"--file {args.file} is not inside --repo {args.repo}") from None
    prefix, suffix = split_at_cursor(read_text(str(file), "--file"), args.line, args.col)
    if args.max_seq_len <= args.max_new_tokens:
        raise RepolmError(f"--max-seq-len {args.max_seq_len} leaves no room for a prompt of --max-new-tokens")
    params = sampling_params(args)

    from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
    from repolm.infer.retrieval import RepositoryRetriever, RetrievalConfig

    snippets = []
    if args.top_k_snippets > 0:
        retriever = RepositoryRetriever(repo, RetrievalConfig(top_k=args.top_k_snippets))
        snippets = retriever.retrieve(path, prefix, suffix)
    generator = load_generator(args)
    builder = PromptBuilder(generator.tokenizer, fim_mode=args.mode, literal_special_tokens=True)
    budget = PromptBudget(args.max_seq_len - args.max_new_tokens, context_share=args.context_share)
    prompt = builder.completion(prefix, suffix, budget=budget, context=snippets, path=path)
    if args.show_prompt:
        rule = "-" * 20
        print(f"{rule} prompt: {len(prompt.ids)} tokens ({prompt.kind}), cut {prompt.cut}", file=sys.stderr)
        for snippet in prompt.context:
            print(f"{rule} context: {snippet.path}:{snippet.start_line} ({snippet.source})", file=sys.stderr)
        print(prompt.text, file=sys.stderr)
        print(f"{rule} completion", file=sys.stderr, flush=True)
    write_stream(delta.text for delta in generator.stream_ids([prompt.ids], params, args.stop or ()))


def cmd_infill(args: argparse.Namespace) -> None:
    from repolm.infer.prompts import split_at_cursor

    if args.file is not None:
        if args.prefix is not None or args.suffix is not None:
            raise RepolmError("give either --prefix/--suffix or --file/--line/--col, not both")
        if args.line is None or args.col is None:
            raise RepolmError("--file needs --line and --col (1-based)")
        prefix, suffix = split_at_cursor(read_text(args.file, "--file"), args.line, args.col)
    else:
        if args.prefix is None:
            raise RepolmError("give --prefix TEXT (and --suffix TEXT), or --file F --line L --col C")
        prefix, suffix = args.prefix, args.suffix or ""
    params = sampling_params(args)
    generator = load_generator(args)
    write_stream(generator.infill(prefix, suffix, params, mode=args.mode, stop_strings=args.stop or ()))


def cmd_serve(args: argparse.Namespace) -> None:
    import os

    from repolm.infer.batching import BatcherConfig
    from repolm.infer.server import ServerConfig, listening_socket, load_state, run_server

    if not 0 <= args.port <= 65535:
        raise RepolmError(f"--port {args.port} is not a port number (0-65535; 0 picks a free one)")
    if args.repo is not None and not Path(args.repo).is_dir():
        raise RepolmError(f"--repo {args.repo}: no such folder")
    if not Path(args.model).is_dir():
        raise RepolmError(f"--model {args.model}: no such folder")
    api_key = args.api_key if args.api_key is not None else os.environ.get("REPOLM_API_KEY") or None
    if args.api_key is not None and not args.api_key:
        raise RepolmError("--api-key must not be empty")
    model_name = args.model_name or Path(args.model).resolve().name
    try:
        config = ServerConfig(model_name=model_name, api_key=api_key, max_n=args.max_n)
        batcher_config = BatcherConfig(
            max_batch_size=args.max_batch_size,
            max_waiting=args.max_waiting,
            max_seq_len=args.max_seq_len,
            compile=args.compile,
            admission=args.batching,
        )
    except RepolmError as error:  # "max_batch_size must be >= 1" -> "--max-batch-size must be ..."
        message = str(error)
        field = message.split(" ", 1)[0]
        raise RepolmError("--" + field.replace("_", "-") + message[len(field) :]) from None
    sock = listening_socket(args.host, args.port)  # before loading the model: a busy port fails at once
    try:
        state = load_state(
            args.model,
            config=config,
            batcher_config=batcher_config,
            repo=args.repo,
            tokenizer_dir=args.tokenizer,
            device=args.device,
            dtype=args.dtype,
            options=("--device", "--dtype"),
        )
        host, port = sock.getsockname()[:2]
        shown_host = f"[{host}]" if ":" in host else host
        print(
            f"repolm serve: http://{shown_host}:{port}/ (model {model_name!r}, context window {state.max_seq_len} "
            f"tokens, batch {batcher_config.max_batch_size}{', API key required' if api_key else ''}"
            f"{', repository ' + str(args.repo) if args.repo else ''})",
            flush=True,
        )
        run_server(state, sock, log_level="info" if args.verbose else "warning", access_log=args.verbose)
    finally:
        sock.close()


def add_inference_parsers(commands, common: argparse.ArgumentParser) -> None:
    """The parsers of generate, complete, infill and serve."""
    generate = commands.add_parser("generate", help="complete a prompt; prints only the completion", parents=[common])
    generate.add_argument("--prompt", help="prompt text")
    generate.add_argument("--prompt-file", help="file holding the prompt")
    generate.add_argument("--instruct", action="store_true", help="wrap the prompt in the model's chat template")
    add_generation_options(generate)
    generate.set_defaults(handler=cmd_generate)

    complete = commands.add_parser(
        "complete",
        help="complete at a cursor in a repository's file, with cross-file context from the repository (FIM)",
        parents=[common],
    )
    complete.add_argument("--repo", required=True, help="the repository folder (indexed for cross-file context)")
    complete.add_argument("--file", required=True, help="the file, inside --repo (or relative to it)")
    complete.add_argument("--line", type=int, required=True, help="1-based line of the cursor")
    complete.add_argument("--col", type=int, required=True, help="1-based column of the cursor")
    complete.add_argument("--show-prompt", action="store_true", help="print the exact prompt (and its context) first")
    complete.add_argument(
        "--top-k-snippets", type=int, default=5, help="cross-file snippets retrieved (default 5; 0 = none)"
    )
    complete.add_argument(
        "--context-share", type=float, default=0.25, help="most of the prompt budget for context (default 0.25)"
    )
    complete.add_argument("--max-seq-len", type=int, default=2048, help="prompt + new tokens, at most (default 2048)")
    complete.add_argument("--mode", choices=["psm", "spm"], default="psm", help="FIM layout (default psm)")
    add_generation_options(complete)
    complete.set_defaults(handler=cmd_complete)

    infill = commands.add_parser("infill", help="fill in the middle; prints only the middle", parents=[common])
    infill.add_argument("--prefix", help="text before the hole")
    infill.add_argument("--suffix", help="text after the hole")
    infill.add_argument("--file", help="a file to fill at --line/--col instead of --prefix/--suffix")
    infill.add_argument("--line", type=int, help="1-based line of the cursor in --file")
    infill.add_argument("--col", type=int, help="1-based column of the cursor in --file")
    infill.add_argument("--mode", choices=["psm", "spm"], default="psm", help="FIM layout (default psm)")
    add_generation_options(infill)
    infill.set_defaults(handler=cmd_infill)

    serve = commands.add_parser(
        "serve",
        help="serve a model over HTTP: OpenAI /v1/completions (suffix = FIM) and /v1/chat/completions, llama.cpp "
        "/infill, /metrics, a page at /",
        parents=[common],
    )
    serve.add_argument("--model", required=True, help="model folder (Hugging Face layout: config.json + weights)")
    serve.add_argument("--tokenizer", help="tokenizer folder (default: the model folder)")
    serve.add_argument("--repo", help="repository folder: completions of its files get cross-file context from it")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument(
        "--api-key",
        help="require `Authorization: Bearer KEY` on the API (default: $REPOLM_API_KEY; unset: no key)",
    )
    serve.add_argument("--model-name", help="the model's id in /v1/models (default: the folder's name)")
    serve.add_argument("--max-batch-size", type=int, default=16, help="requests decoded together (default 16)")
    serve.add_argument(
        "--max-waiting", type=int, default=64, help="requests queued beyond the batch; more get 503 (default 64)"
    )
    serve.add_argument(
        "--max-seq-len",
        type=int,
        help="prompt + generated tokens per request, the KV cache's row length (default: the model's window)",
    )
    serve.add_argument(
        "--batching",
        choices=["continuous", "static"],
        default="continuous",
        help="continuous (default): requests join the running batch between decode steps; static: a batch starts "
        "when the last one has ended (a baseline for benchmarks/bench_serve.py)",
    )
    serve.add_argument("--max-n", type=int, default=8, help="most choices per OpenAI request (default 8)")
    serve.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:N")
    serve.add_argument("--dtype", default="auto", help="auto (bfloat16 on cuda, float32 on cpu), float32, ...")
    serve.add_argument("--compile", action="store_true", help="decode steps through torch.compile (see generate)")
    serve.set_defaults(handler=cmd_serve)
