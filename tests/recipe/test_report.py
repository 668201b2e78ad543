"""The recipe's report (`repolm.recipe.report`) on a small output folder in the real formats: a real data build, real
token folders, metrics.jsonl written by `MetricsLog` with the training loop's records, and an eval/results.json.

Checked: the figures of the fixture appear in the HTML and Markdown tables, samples are escaped, stages that did not
run say so, a broken input leaves no report file behind, and the page in headless Chromium (Debian's `chromium`
through Playwright's executable_path; skipped without it) shows every chart and table without a network request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.recipe.report import STAGES, beats_baselines, format_value, write_report
from repolm.tokenizer.corpus import tokenize_corpus
from repolm.tokenizer.fim import FimConfig
from repolm.train.metrics import MetricsLog

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)

EVIL = "x = 1\n</pre><script>window.hacked = 1</script>\n"

FIGURES = [
    {
        "group": "held-out bits per byte",
        "name": "python",
        "metric": "bits per byte",
        "value": 1.234,
        "better": "lower",
        "baselines": {"xz -9e": 1.876, "zstd -19": 1.9321},
        "paper": None,
        "count": 52113,
    },
    {
        "group": "held-out bits per byte",
        "name": "c",
        "metric": "bits per byte",
        "value": 2.117,
        "better": "lower",
        "baselines": {"xz -9e": 1.65, "zstd -19": 1.71},
        "paper": None,
        "count": 20480,
    },
    {
        "group": "cross-file completion",
        "name": "retrieval",
        "metric": "edit similarity",
        "value": 41.37,
        "better": "higher",
        "baselines": {"none": 38.02},
        "paper": {"value": 66.51, "model": "DeepSeek-Coder-Base 6.7B", "note": "2T tokens, Python ES"},
    },
    {
        "group": "cross-file completion",
        "name": "oracle",
        "metric": "edit similarity",
        "value": float("nan"),
        "better": "higher",
        "baselines": {},
        "paper": None,
    },
    {
        "group": "single-line infilling",
        "name": "python",
        "metric": "exact match",
        "value": 12.5,
        "better": "higher",
        "baselines": {"BM25": 9.75},
        "paper": {"value": 57.4, "model": "DeepSeek-Coder-Base 1.3B", "note": "2T tokens"},
    },
    {
        "group": "HumanEval",
        "name": "pass@1",
        "metric": "pass@1 (%)",
        "value": 1.83,
        "better": "higher",
        "baselines": {},
        "paper": {"value": 34.8, "model": "DeepSeek-Coder-Base 1.3B", "note": "2T tokens"},
    },
    {
        "group": "MBPP",
        "name": "pass@1",
        "metric": "pass@1 (%)",
        "value": None,
        "better": "higher",
        "baselines": {},
        "paper": {"value": 46.2, "model": "DeepSeek-Coder-Base 1.3B", "note": "2T tokens"},
    },
    {
        "group": "tokenizer",
        "name": "python",
        "metric": "bytes per token",
        "value": 3.917,
        "better": "higher",
        "baselines": {"gpt2": 2.874},
        "paper": None,
    },
]

SAMPLES = [
    {
        "kind": "completion",
        "repo": "pyapp",
        "path": "pyapp/core.py",
        "language": "Python",
        "prompt": "def run(argument):\n    ",
        "model": EVIL,
        "real": "return helper(argument)\n",
    },
    {
        "kind": "infill",
        "repo": "clib",
        "path": "src/list.c",
        "language": "C",
        "prompt": "int length = 0;\n",
        "suffix": "\n    return length;",
        "model": "length++;",
        "real": "for (; head; head = head->next)",
    },
]


def write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=1), encoding="utf-8")


def write_done(output: Path, stage: str, seconds: float, summary: dict, command: str = "") -> None:
    write_json(
        output / stage / "DONE.json",
        {
            "stage": stage,
            "seconds": seconds,
            "started": f"2026-12-05T10:{len(stage):02d}:00+00:00",
            "finished": f"2026-12-05T11:{len(stage):02d}:00+00:00",
            "command": command or f"repolm {stage} ...",
            "summary": summary,
        },
    )


def write_metrics(run_dir: Path, steps: int, first_loss: float) -> None:
    """The lines `repolm.train.loop` writes: a start event, a training line per logged step, validation lines."""
    log = MetricsLog(run_dir)
    log.write(
        {
            "event": "start",
            "step": 0,
            "peak_flops": 1.2e11,
            "device": "cpu",
            "world_size": 1,
            "parameters": 1_234_567,
            "tokens_per_step": 2048,
            "flops_per_token": 7.4e6,
            "max_steps": steps,
        }
    )
    for step in [1, *range(5, steps + 1, 5)]:
        loss = first_loss / (1 + 0.1 * step)
        log.write(
            {
                "step": step,
                "loss": loss,
                "lr": 1e-3,
                "grad_norm": 0.8,
                "tokens": 2048 * step,
                "tokens_per_second": 1500.0 + step,
                "mfu": 0.0123,
                "elapsed_seconds": 1.3 * step,
            }
        )
        if step % 10 == 0:
            log.write({"step": step, "val_loss": loss + 0.05, "tokens": 2048 * step})
    log.close()


def write_corpus(folder: Path) -> None:
    files = {
        "pyapp/pyapp/__init__.py": "from .core import run\n",
        "pyapp/pyapp/core.py": "from .util import helper\n\n\ndef run(argument):\n    return helper(argument)\n",
        "pyapp/pyapp/util.py": "import os\n\n\ndef helper(value):\n    return os.path.normpath(str(value))\n",
        "clib/src/list.c": "int list_length(const int *head)\n{\n    int length = 0;\n    return length;\n}\n",
        "clib/src/empty.c": "",
    }
    for number in range(4):  # more small repositories: some land in the held-out split, some in training
        files[f"tool{number}/tool{number}.py"] = f"def tool_{number}(value):\n    return value * {number + 2}\n"
    for repository in {name.split("/")[0] for name in files}:
        files[f"{repository}/README.md"] = f"# {repository}\n\nA small repository of the report's test corpus.\n"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def recipe_output(tmp_path_factory, saved_small_tokenizer) -> Path:
    """A recipe output folder with every stage done (the report's own stage excepted)."""
    root = tmp_path_factory.mktemp("recipe")
    corpus, output = root / "repos", root / "out"
    write_corpus(corpus)
    command = [
        sys.executable,
        "-m",
        "repolm",
        "data",
        "build",
        "--input",
        str(corpus),
        "--output",
        str(output / "data"),
        "--tasks",
        "1",
        "--workers",
        "1",
        "--no-decontamination",
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    built = subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment, cwd=REPO_ROOT)
    assert built.returncode == 0, built.stderr[-3000:]

    write_json(
        output / "recipe.json",
        {
            "name": "tiny-cpu",
            "seed": 0,
            "data": {"input": [str(corpus)], "held_out_repositories": 1},
            "tokenizer": {"vocab_size": 1000},
            "pretrain": {"preset": "tiny", "max_steps": 40, "optimizer": {"lr": 0.001, "betas": [0.9, 0.95]}},
            "long_context": {"enabled": True, "max_steps": 20, "rope_theta": 100000},
            "sft": {"enabled": True, "max_steps": 20},
            "eval": {"tasks": ["humaneval", "mbpp"]},
        },
    )
    write_done(output, "data", 3.5, {"repositories": {"train": 1, "held_out": 1}, "held_out_files": 2})
    write_done(output, "tokenizer", 1.25, {"vocab_size": 1022, "files": 3})
    summary = tokenize_corpus(
        output / "data",
        saved_small_tokenizer,
        output / "tokenize",
        FimConfig(),
        seed=0,
        validation_fraction=0.4,
        progress=False,
    )
    assert summary["folders"]["code"]["tokens"] > 0 and summary["folders"]["validation"]["tokens"] > 0
    write_done(output, "tokenize", summary["seconds"], summary)
    for stage, steps, seconds in (("pretrain", 40, 812.4), ("long_context", 20, 95.0), ("sft", 20, 61.0)):
        write_metrics(output / stage / "run", steps, first_loss=7.0)
        write_done(output, stage, seconds, {"steps": steps, "loss": 1.5, "val_loss": float("nan")})
    write_json(
        output / "eval" / "results.json",
        {"figures": FIGURES, "samples": SAMPLES, "meta": {"model": "model/", "when": "2026-12-05"}},
    )
    write_done(output, "eval", 44.0, {"figures": len(FIGURES)})
    return output


@pytest.fixture(scope="module")
def report(recipe_output) -> tuple[str, str]:
    html_path, markdown_path = write_report(recipe_output)
    assert (html_path, markdown_path) == (recipe_output / "report.html", recipe_output / "report.md")
    return html_path.read_text(encoding="utf-8"), markdown_path.read_text(encoding="utf-8")


def copy_output(recipe_output: Path, tmp_path: Path) -> Path:
    copied = tmp_path / "out"
    ignore = shutil.ignore_patterns("report.*", "report_files")
    shutil.copytree(recipe_output, copied, ignore=ignore)
    return copied


def test_tables_hold_the_figures_of_the_run(report, recipe_output):
    page, markdown = report
    stats = json.loads((recipe_output / "data" / "stats.json").read_text())
    tokenize = json.loads((recipe_output / "tokenize" / "DONE.json").read_text())["summary"]
    python_files = format_value(stats["kept_after_screening"]["files"]["Python"])
    for text in (page, markdown):
        for figure in ("1.234", "1.876", "1.932", "41.37", "38.02", "9.75", "3.917", "2.874", "52,113"):
            assert figure in text
        assert "34.8 (DeepSeek-Coder-Base 1.3B, 2T tokens)" in text  # the paper's figure at full scale
        assert "812 s (13.5 min)" in text and "95.0 s" in text  # the time per stage
        assert "1,022" in text  # vocabulary size
        assert f"{tokenize['folders']['validation']['tokens']:,}" in text  # held-out tokens
        assert "1,234,567" in text  # parameters from the start event
        assert "1.23%" in text  # MFU
        assert "held_out_repositories" in text and "100000" in text  # the settings, nested ones included
        assert "Python" in text and python_files in text
    assert "| python | bits per byte | 1.234 | 1.876 | 1.932 | lower | yes |" in markdown
    assert "| c | bits per byte | 2.117 | 1.65 | 1.71 | lower | no |" in markdown
    assert "| oracle | edit similarity | – |" in markdown  # NaN
    assert "| MBPP | pass@1 | pass@1 (%) | – |" in markdown  # None
    assert "| val_loss | – |" in markdown  # NaN in a stage summary


def test_beats_baselines_follows_the_direction():
    assert beats_baselines({"value": 1.0, "better": "lower", "baselines": {"a": 2.0, "b": 1.5}}) == "yes"
    assert beats_baselines({"value": 1.0, "better": "higher", "baselines": {"a": 2.0}}) == "no"
    assert beats_baselines({"value": 1.8, "better": "lower", "baselines": {"a": 2.0, "b": 1.5}}) == "no (beats a)"
    assert beats_baselines({"value": None, "baselines": {"a": 2.0}}) == "–"
    assert beats_baselines({"value": 3.0, "baselines": {}}) == "–"


def test_sample_text_is_escaped(report):
    page, markdown = report
    assert "<script>" not in page
    assert "&lt;/pre&gt;&lt;script&gt;window.hacked = 1&lt;/script&gt;" in page
    assert "</pre><script>window.hacked = 1</script>" in markdown  # inside a code fence: shown as text
    fenced = markdown.split("</pre><script>")[0].rsplit("```", 1)[1]
    assert "\n" in fenced and "`" not in fenced


def test_markdown_charts_are_files_beside_it(report, recipe_output):
    _, markdown = report
    charts = sorted(path.name for path in (recipe_output / "report_files").iterdir())
    assert {"training-pretrain.png", "training-long-context.png", "training-sft.png"} <= set(charts)
    for name in charts:
        assert f"](report_files/{name})" in markdown
        assert (recipe_output / "report_files" / name).read_bytes().startswith(b"\x89PNG")


def test_missing_stages_are_shown_as_not_run(recipe_output, tmp_path):
    output = copy_output(recipe_output, tmp_path)
    shutil.rmtree(output / "long_context")
    shutil.rmtree(output / "eval")
    (output / "sft" / "DONE.json").unlink()
    shutil.rmtree(output / "sft" / "run")
    recipe = json.loads((output / "recipe.json").read_text())
    recipe["sft"]["enabled"] = False
    write_json(output / "recipe.json", recipe)
    html_path, markdown_path = write_report(output)
    for text in (html_path.read_text(), markdown_path.read_text()):
        assert "long_context: not run (no long_context/metrics.jsonl)" in text
        assert "sft: disabled in recipe.json" in text
        assert "eval: not run (no eval/results.json)" in text
        assert "| long_context | not run | – |" in text or "<td>long_context</td><td>not run</td>" in text
    assert not (output / "report_files" / "training-long-context.png").exists()


def test_a_torn_last_metrics_line_is_left_out(recipe_output, tmp_path):
    output = copy_output(recipe_output, tmp_path)
    with (output / "pretrain" / "run" / "metrics.jsonl").open("a") as file:
        file.write('{"step": 41, "loss": 1.3')  # a run killed while writing
    _, markdown_path = write_report(output)
    assert "| steps | 40 of 40 |" in markdown_path.read_text()

    with (output / "pretrain" / "run" / "metrics.jsonl").open("a") as file:
        file.write('\n{"step": 42, "loss": 1.2}\n')
    with pytest.raises(RepolmError, match=r"pretrain/run/metrics\.jsonl: line 15 is not JSON"):
        write_report(output)


def test_an_empty_folder_gives_a_report_of_stages_not_run(tmp_path):
    html_path, markdown_path = write_report(tmp_path)
    markdown = markdown_path.read_text()
    for stage in STAGES[:-1]:
        assert f"| {stage} | not run |" in markdown
    assert "| report | this report |" in markdown
    assert "data: not run (no data/stats.json)" in markdown and "no recipe.json" in markdown
    assert html_path.read_text().startswith("<!DOCTYPE html>")


def test_a_broken_input_names_the_file_and_leaves_no_report(recipe_output, tmp_path):
    output = copy_output(recipe_output, tmp_path)
    (output / "eval" / "results.json").write_text('{"figures": [', encoding="utf-8")
    with pytest.raises(RepolmError, match=r"eval/results\.json: not readable as JSON"):
        write_report(output)
    left = [path.name for path in output.iterdir() if path.name.startswith("report")]
    assert left == [] and not list(output.glob("*.partial"))

    write_json(output / "eval" / "results.json", {"figures": FIGURES, "samples": ["not an object"]})
    with pytest.raises(RepolmError, match=r"results\.json: samples\[0\] must be an object"):
        write_report(output)
    write_json(output / "pretrain" / "DONE.json", [1, 2])
    with pytest.raises(RepolmError, match=r"pretrain/DONE\.json: expected a JSON object"):
        write_report(output)
    assert not (output / "report.html").exists() and not (output / "report_files").exists()


def test_a_failure_while_drawing_keeps_the_earlier_report(recipe_output, tmp_path, monkeypatch):
    output = copy_output(recipe_output, tmp_path)
    html_path, markdown_path = write_report(output)
    before = html_path.read_text(), markdown_path.read_text(), sorted((output / "report_files").iterdir())

    def broken_chart(group, figures):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr("repolm.recipe.report.figures_chart", broken_chart)
    with pytest.raises(RuntimeError, match="drawing failed"):
        write_report(output)
    assert (html_path.read_text(), markdown_path.read_text(), sorted((output / "report_files").iterdir())) == before
    assert not list(output.rglob("*.partial"))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH: install Debian's chromium to run it")
def test_the_page_shows_every_chart_offline(report, recipe_output):
    sync_api = pytest.importorskip("playwright.sync_api")
    url = (recipe_output / "report.html").resolve().as_uri()
    requested: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url, wait_until="load")
            images = page.evaluate(
                """() => Array.from(document.images).map(image => ({
                    chart: image.closest('figure').dataset.chart,
                    loaded: image.complete && image.naturalWidth > 0}))"""
            )
            assert images and all(image["loaded"] for image in images), images
            charts = {image["chart"] for image in images}
            assert {"training-pretrain", "training-long-context", "training-sft"} <= charts
            assert any(chart.startswith("eval-") for chart in charts)
            tables = page.locator("table.figures")
            assert tables.count() >= 5
            for index in range(tables.count()):
                assert tables.nth(index).is_visible()
            assert page.locator("table.headline").is_visible()
            assert page.evaluate("window.hacked") is None and errors == []
        finally:
            browser.close()
    outside = [address for address in requested if address != url and not address.startswith("data:")]
    assert outside == [] and url in requested
