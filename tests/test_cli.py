"""The `repolm` command line, run as a user runs it: `python -m repolm ...` in a subprocess.

Successful commands print their result and nothing else on stdout (generate/infill: exactly the completion that
`TextGenerator` gives for the same settings). Bad input ends with exit code 2 and one line `error: ...` on stderr that
names the problem, never with a traceback. Independent runs go in parallel threads: most of a run is importing torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from repolm.hf_folder import load_pretrained
from repolm.infer.sampling import SamplingParams
from repolm.infer.text import TextGenerator
from repolm.model import preset_config
from repolm.tokenizer import CodeTokenizer

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_cli(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m repolm ARGS`; stdout and stderr stay bytes (text mode would turn "\\r\\n" into "\\n")."""
    command = [sys.executable, "-m", "repolm", *map(str, args)]
    return subprocess.run(command, capture_output=True, env=ENV, timeout=timeout, check=False)


def run_many(*commands: list[object]) -> list[subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: run_cli(*args), commands))


def stdout_of(result: subprocess.CompletedProcess) -> str:
    """The stdout of a run that must have succeeded quietly (no traceback, no warnings)."""
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert result.returncode == 0, stderr
    assert stderr.strip() == ""
    return result.stdout.decode("utf-8")


def test_help_lists_the_stages() -> None:
    result = run_cli("--help")
    out = stdout_of(result)
    for stage in ("tokenizer train", "model init", "model info", "generate", "infill"):
        assert f"  {stage}" in out
    for command in ("tokenizer", "model", "generate", "infill"):
        assert command in out.split("stages of the recipe")[0]  # also in the list of subcommands
    result = run_cli()  # no stage: argparse's usage error
    assert result.returncode == 2 and b"usage: repolm" in result.stderr and b"Traceback" not in result.stderr


def test_generate_prints_only_the_completion(
    tiny_model_dir: Path, tiny_generator: TextGenerator, tmp_path: Path
) -> None:
    prompt = "def fibonacci(n):"
    file_prompt = '# coding: utf-8\r\nclass Stack:\r\n    """后进先出 😀"""\r\n    def push(self, item):\r\n'
    prompt_file = tmp_path / "prompt.py"
    prompt_file.write_bytes(file_prompt.encode("utf-8"))  # CRLF line ends: part of the prompt, kept as they are
    sampled = SamplingParams(max_new_tokens=40, temperature=0.9, top_k=200, top_p=0.95, seed=7)
    free = tiny_generator.generate([file_prompt], sampled)[0]
    start = next(i for i in range(len(free) // 2, len(free)) if "\ufffd" not in free[i : i + 2])
    stop = free[start : start + 2]  # taken from the unconstrained output, so that it occurs

    sampling = ["--max-new-tokens", 40, "--temperature", 0.9, "--top-k", 200, "--top-p", 0.95, "--seed", 7]
    greedy_run, file_run, stop_run = run_many(
        ["generate", "--model", tiny_model_dir, "--prompt", prompt, "--max-new-tokens", 32],
        ["generate", "--model", tiny_model_dir, "--prompt-file", prompt_file, *sampling],
        ["generate", "--model", tiny_model_dir, "--prompt-file", prompt_file, *sampling, "--stop", stop],
    )
    greedy = tiny_generator.generate([prompt], SamplingParams(max_new_tokens=32))[0]
    assert len(greedy) > 20
    assert stdout_of(greedy_run) == greedy
    assert stdout_of(file_run) == free
    assert stdout_of(stop_run) == tiny_generator.generate([file_prompt], sampled, [stop])[0] == free[: free.index(stop)]


def test_infill_prints_only_the_middle(tiny_model_dir: Path, tiny_generator: TextGenerator, tmp_path: Path) -> None:
    prefix, suffix = "def add(a, b):\r\n    ", "\r\n    return result\r\n"
    source = tmp_path / "add.py"
    source.write_bytes((prefix + suffix).encode("utf-8"))  # a file with CRLF line ends
    options = ["--model", tiny_model_dir, "--max-new-tokens", 24]
    by_text, by_cursor = run_many(
        ["infill", "--prefix", prefix, "--suffix", suffix, *options],
        ["infill", "--file", source, "--line", 2, "--col", 5, *options],
    )
    expected = "".join(tiny_generator.infill(prefix, suffix, SamplingParams(max_new_tokens=24)))
    assert expected
    assert stdout_of(by_text) == expected
    assert stdout_of(by_cursor) == expected


def test_tokenizer_train_writes_a_loadable_folder(stdlib_files: list[Path], tmp_path: Path) -> None:
    output = tmp_path / "tokenizer"
    inputs = [path for path in stdlib_files if path.name in ("abc.py", "ast.py")]
    assert len(inputs) == 2
    out = stdout_of(run_cli("tokenizer", "train", "--input", *inputs, "--vocab-size", 400, "--output", output))
    assert out == f"saved a tokenizer with 422 ids to {output}\n"
    tokenizer = CodeTokenizer.load(output)
    assert len(tokenizer) == 422 and tokenizer.fim_begin_id is not None and tokenizer.add_bos_token
    text = "def visit(self, node):\n    return 中文 😀\n"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_model_init_then_info(saved_small_tokenizer: Path, tmp_path: Path) -> None:
    output = tmp_path / "tiny"
    tokenizer = CodeTokenizer.load(saved_small_tokenizer)
    init = run_cli("model", "init", "--preset", "tiny", "--tokenizer", saved_small_tokenizer, "--output", output)
    expected = preset_config("tiny", vocab_size=1024, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id)
    assert stdout_of(init) == f"saved tiny ({expected.num_parameters:,} parameters) to {output}\n"
    info = json.loads(stdout_of(run_cli("model", "info", output)))
    assert info == {"parameters": expected.num_parameters, **expected.to_dict()}
    model = load_pretrained(output)
    assert model.config == expected
    assert CodeTokenizer.load(output).encode("import os") == tokenizer.encode("import os")


# -----------------------------------------------------------------------------
# bad input: exit code 2, one line "error: ..." naming the problem, no traceback


@pytest.fixture(scope="module")
def broken_models(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken")
    folders = {}
    for name in ("gpt2", "shapes", "truncated"):
        folders[name] = Path(shutil.copytree(tiny_model_dir, root / name))
    config_path = folders["gpt2"] / "config.json"
    config = json.loads(config_path.read_text())
    config.update(model_type="gpt2", architectures=["GPT2LMHeadModel"])
    config_path.write_text(json.dumps(config))
    config_path = folders["shapes"] / "config.json"
    config = json.loads(config_path.read_text())
    config.update(hidden_size=2 * config["hidden_size"])
    config_path.write_text(json.dumps(config))
    weights = folders["truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    folders["missing"] = root / "no-such-model"
    folders["tmp"] = root
    (root / "three_lines.py").write_text("a = 1\nb = 2\nc = 3\n")
    return folders


# case id -> (arguments, split at spaces, with {model}, {gpt2}, ... placeholders; strings the error line must name)
BAD_INPUT = {
    "missing-model": ("generate --model {missing} --prompt x", ["{missing}", "not found"]),
    "gpt2-config": ("generate --model {gpt2} --prompt x", ["{gpt2}/config.json", "GPT2LMHeadModel"]),
    "gpt2-info": ("model info {gpt2}", ["{gpt2}/config.json", "GPT2LMHeadModel"]),
    "mismatched-shapes": (
        "generate --model {shapes} --prompt x",
        ["{shapes}/model.safetensors", "model.embed_tokens.weight", "shape"],
    ),
    "truncated-weights": (
        "infill --model {truncated} --prefix a --suffix b",
        ["{truncated}/model.safetensors", "truncated"],
    ),
    "unknown-preset": ("model init --preset nope --output {tmp}/nope", ["'nope'", "tiny"]),
    "missing-prompt-file": (
        "generate --model {model} --prompt-file {tmp}/absent.txt",
        ["--prompt-file {tmp}/absent.txt", "no such file"],
    ),
    "prompt-and-prompt-file": (
        "generate --model {model} --prompt x --prompt-file {tmp}/three_lines.py",
        ["--prompt", "--prompt-file"],
    ),
    "no-prompt": ("generate --model {model}", ["--prompt"]),
    "negative-temperature": ("generate --model {model} --prompt x --temperature -1", ["--temperature", ">= 0"]),
    "top-p-zero": ("generate --model {model} --prompt x --top-p 0", ["--top-p", "(0, 1]"]),
    "missing-tokenizer-input": (
        "tokenizer train --input {tmp}/absent-corpus --vocab-size 400 --output {tmp}/tok",
        ["--input {tmp}/absent-corpus", "no such file"],
    ),
    "tokenizer-output-is-a-file": (
        "tokenizer train --input {tmp}/three_lines.py --vocab-size 400 --output {tmp}/three_lines.py",
        ["--output {tmp}/three_lines.py", "not a folder"],
    ),
    "infill-line-out-of-range": (
        "infill --model {model} --file {tmp}/three_lines.py --line 9 --col 1",
        ["--line 9", "4 lines"],
    ),
    "infill-col-out-of-range": (
        "infill --model {model} --file {tmp}/three_lines.py --line 2 --col 7",
        ["--col 7", "line 2"],
    ),
    "serve-missing-repo": ("serve --model {model} --repo {tmp}/absent-repo", ["--repo {tmp}/absent-repo", "no such"]),
    "serve-missing-model": ("serve --model {missing} --port 0", ["--model {missing}", "no such folder"]),
    "serve-gpt2-config": ("serve --model {gpt2} --port 0", ["{gpt2}/config.json", "GPT2LMHeadModel"]),
    "serve-bad-port": ("serve --model {model} --port 70000", ["--port 70000"]),
    "serve-zero-batch": ("serve --model {model} --port 0 --max-batch-size 0", ["--max-batch-size", ">= 1"]),
    "serve-zero-n": ("serve --model {model} --port 0 --max-n 0", ["--max-n", ">= 1"]),
}


@pytest.fixture(scope="module")
def bad_input_runs(broken_models: dict[str, Path], tiny_model_dir: Path) -> dict[str, tuple]:
    """Every bad-input case, run in parallel once; case id -> (result, expected strings)."""
    places = {name: str(path) for name, path in broken_models.items()} | {"model": str(tiny_model_dir)}
    commands = [[arg.format(**places) for arg in args.split()] for args, _ in BAD_INPUT.values()]
    results = run_many(*commands)
    return {
        case: (result, [text.format(**places) for text in expected])
        for (case, (_, expected)), result in zip(BAD_INPUT.items(), results, strict=True)
    }


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line_and_exit_code_2(case: str, bad_input_runs, broken_models) -> None:
    result, expected = bad_input_runs[case]
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in stderr and b"Traceback" not in result.stdout
    assert result.returncode == 2, stderr
    assert result.stdout == b""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]
    # nothing was written on the way to the error
    assert not (broken_models["tmp"] / "nope").exists() and not (broken_models["tmp"] / "tok").exists()


def test_usage_errors_exit_2_without_traceback(tiny_model_dir: Path) -> None:
    for result in run_many(
        ["generate", "--prompt", "x"],  # --model is required
        ["infill", "--model", tiny_model_dir, "--prefix", "a", "--mode", "middle"],
        ["generate", "--model", tiny_model_dir, "--prompt", "x", "--max-new-tokens", "many"],
        ["train"],
    ):
        assert result.returncode == 2
        assert result.stdout == b""
        assert b"usage: repolm" in result.stderr and b"Traceback" not in result.stderr


def test_serve_on_a_busy_port_is_one_error_line(tiny_model_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--model", tiny_model_dir, "--port", port)
    stderr = result.stderr.decode("utf-8", errors="replace")
    assert result.returncode == 2, stderr
    assert stderr.strip() == f"error: cannot listen on 127.0.0.1:{port} (Address already in use)"
    assert result.stdout == b""


def test_complete_retrieves_cross_file_context_and_shows_the_prompt(
    tiny_model_dir: Path, tiny_generator: TextGenerator, tmp_path: Path
) -> None:
    """`repolm complete` at a cursor in a real repository folder: the helper that the file imports is in the prompt
    (shown with --show-prompt), the file is headed by its path, and the completion is that prompt's completion."""
    from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
    from repolm.infer.retrieval import RepositoryRetriever

    repo = tmp_path / "repo"
    (repo / "shapes").mkdir(parents=True)
    (repo / "shapes" / "__init__.py").write_text("")
    (repo / "shapes" / "geometry.py").write_text(
        "def rectangle_area(width, height):\n    return width * height\n\n\n"
        "def circle_area(radius):\n    return 3.14159 * radius * radius\n"
    )
    (repo / "shapes" / "noise.py").write_text("def unrelated():\n    return 'nothing about shapes'\n")
    main = repo / "shapes" / "report.py"
    main.write_text("from shapes.geometry import rectangle_area\n\n\ndef floor_size(room):\n    return \n")
    options = ["--repo", repo, "--line", 5, "--col", 12, "--max-new-tokens", 16, "--model", tiny_model_dir]
    shown, relative = run_many(
        ["complete", "--file", main, "--show-prompt", *options],
        ["complete", "--file", "shapes/report.py", *options],
    )
    assert shown.returncode == 0, shown.stderr.decode()
    prompt_text = shown.stderr.decode("utf-8")
    assert "context: shapes/geometry.py:1 (import)" in prompt_text
    assert "# def rectangle_area(width, height):" in prompt_text and "# shapes/report.py\n" in prompt_text

    tokenizer = tiny_generator.tokenizer
    text = main.read_text()
    prefix, suffix = text[: text.index("return ") + 7], text[text.index("return ") + 7 :]
    snippets = RepositoryRetriever(repo).retrieve("shapes/report.py", prefix, suffix)
    builder = PromptBuilder(tokenizer, literal_special_tokens=True)
    prompt = builder.completion(
        prefix, suffix, budget=PromptBudget(2048 - 16), context=snippets, path="shapes/report.py"
    )
    expected = tiny_generator.generate_ids([prompt.ids], SamplingParams(max_new_tokens=16))[0]
    assert shown.stdout.decode() == expected == stdout_of(relative)

    outside, bad_line = run_many(
        ["complete", "--file", tmp_path / "elsewhere.py", *options],
        ["complete", "--file", main, *options[:2], "--line", 99, "--col", 1, "--model", tiny_model_dir],
    )
    assert outside.returncode == 2 and b"is not inside --repo" in outside.stderr
    assert bad_line.returncode == 2 and b"--line 99 is outside the file" in bad_line.stderr
