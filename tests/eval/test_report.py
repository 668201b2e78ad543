"""The evaluation report: report.md's content and table shapes, report.png's panels, atomic writes, odd input."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import pytest

from repolm.errors import RepolmError
from repolm.eval.report import write_report

SUMMARY = {
    "task": "leetcode",
    "mode": "instruct",
    "generator": {
        "kind": "local",
        "model": "/models/deepseek-coder-6.7b-instruct",
        "weights_sha256": "ab" * 32,
        "config": {"hidden_size": 4096, "num_hidden_layers": 32},
        "device": "cuda",
        "dtype": "bfloat16",
    },
    "settings": {
        "temperature": 0.0,
        "seed": 0,
        "samples_per_problem": 1,
        "max_new_tokens": 1024,
        "stop": ["\ndef", "a|b"],
        "timeout_seconds": 10.0,
        "package_versions": {"repolm": "0.1.0", "torch": "2.13.0"},
    },
    "pass_at_k": {"pass@10": 0.5, "pass@1": 0.25},
    "verdicts": {"passed": 2, "failed": 3, "timeout": 1, "skipped": 1, "error": 1},
    "groups": {
        "easy": {"count": 3, "pass@1": 0.5},
        "medium": {"count": 3, "pass@1": 0.2},
        "hard": {"count": 2, "pass@1": 0.0},
    },
    "reference": {"pass@1": 0.192, "source": "DeepSeek-Coder paper, table 5"},
    "network_isolated": True,
    "started": "2025-01-02T03:04:05+00:00",
    "seconds": 42.25,
}


def row(task_id: str, verdict: str, result: str, group: str) -> dict:
    return {"task_id": task_id, "completion": "x", "passed": verdict == "passed", "verdict": verdict, "result": result,
            "group": group}  # fmt: skip


ROWS = [
    row("lc/1", "passed", "passed", "easy"),
    row("lc/2", "failed", "failed: AssertionError | x\nmore", "easy"),
    row("lc/3", "timeout", "timed out after 10.0 s", "hard"),
    row("lc/4", "skipped", "skipped: go toolchain not found", "medium"),
    row("lc/5", "error", "sandbox setup failed", "hard"),
]


def tables(markdown: str) -> list[list[list[str]]]:
    """The Markdown tables of a text: lists of rows, each a list of cells (split at unescaped pipes)."""
    found, current = [], []
    for line in markdown.splitlines() + [""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif current:
            found.append(current)
            current = []
    return found


def test_report_content(tmp_path: Path):
    markdown_path, png_path = write_report(SUMMARY, ROWS, tmp_path / "run")
    assert (markdown_path, png_path) == (tmp_path / "run" / "report.md", tmp_path / "run" / "report.png")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["report.md", "report.png"]  # no leftovers
    text = markdown_path.read_text(encoding="utf-8")
    assert text.startswith("# repolm eval: leetcode (instruct) — deepseek-coder-6.7b-instruct\n")
    assert "NO NETWORK ISOLATION" not in text
    for table in tables(text):  # every row has as many cells as the header
        assert len({len(row) for row in table}) == 1, table
    assert "| duration | 42.2 s |" in text or "| duration | 42.3 s |" in text
    assert "| weights_sha256 | " + "ab" * 32 + " |" in text
    assert '| stop | "\\ndef", "a\\|b" |' in text  # control characters visible, pipes escaped
    assert "| package_versions | repolm 0.1.0, torch 2.13.0 |" in text
    assert "| pass@1 | 25.0% | 19.2% | +5.8 points |" in text
    assert "| pass@10 | 50.0% | — | — |" in text
    assert text.index("| pass@1 |") < text.index("| pass@10 |")
    assert "Reference figures: DeepSeek-Coder paper, table 5." in text
    assert "| failed | 3 | 37.5% |" in text and "| total | 8 |  |" in text
    assert "| hard | 2 | 0.0% |" in text
    assert "WARNING: 1 program(s) could not be run by the harness" in text
    failures = text[text.index("## Failures") : text.index("## Skipped")]
    assert "| lc/2 | failed | easy | failed: AssertionError \\| x more |" in failures
    assert "lc/3" in failures and "lc/5" in failures and "lc/1" not in failures and "lc/4" not in failures
    assert "| lc/4 | skipped | medium | skipped: go toolchain not found |" in text[text.index("## Skipped") :]

    image = matplotlib.image.imread(png_path)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.shape[0] == 380 and image.shape[1] == 1260  # three panels: pass@k, groups, verdicts


def test_report_of_a_harness_summary_with_figures_per_model(tmp_path: Path):
    """The shapes the harness writes: seconds per phase, versions, platform, other metrics, problems without samples,
    and the paper's figures for several model sizes."""
    summary = {
        "task": "humaneval",
        "mode": "base",
        "generator": {"kind": "endpoint", "url": "http://127.0.0.1:8000", "model": "deepseek-coder-1.3b-base"},
        "settings": {"stop": ["\ndef"], "decoding": {"temperature": 0.0, "top_p": 1.0, "seed": 0}},
        "pass_at_k": {"pass@1": 0.3},
        "metrics": {"exact_match": 0.75},
        "verdicts": {"passed": 3, "failed": 7, "timeout": 0, "skipped": 0, "error": 0},
        "reference": {"pass@1": {"DeepSeek-Coder-Base 1.3B": 0.348, "DeepSeek-Coder-Base 6.7B": 0.494}},
        "seconds": {"generation": 10.0, "execution": 2.5},
        "versions": {"python": "3.12.3", "torch": "2.13.0"},
        "platform": {"machine": "x86_64", "cpus": 2},
        "problems": 12,
        "problems_scored": 10,
        "problems_without_samples": ["HumanEval/10", "HumanEval/11"],
        "samples": 10,
        "network_isolated": True,
    }
    markdown_path, png_path = write_report(summary, [], tmp_path)
    text = markdown_path.read_text(encoding="utf-8")
    assert text.startswith("# repolm eval: humaneval (base) — deepseek-coder-1.3b-base\n")
    assert "| duration | 12.5 s (generation 10.0 s, execution 2.5 s) |" in text
    assert "| problems | 12 |" in text and "| problems scored | 10 |" in text and "| samples | 10 |" in text
    assert "**2 problem(s) have no sample and are not scored:** HumanEval/10, HumanEval/11." in text
    assert "| decoding | temperature 0, top_p 1, seed 0 |" in text
    assert "## Environment" in text and "| versions | python 3.12.3, torch 2.13.0 |" in text
    assert "| metric | this run | DeepSeek-Coder-Base 1.3B | DeepSeek-Coder-Base 6.7B |" in text
    assert "| pass@1 | 30.0% | 34.8% | 49.4% |" in text
    assert "## Other metrics" in text and "| exact_match | 75.0% |" in text
    for table in tables(text):
        assert len({len(row) for row in table}) == 1, table
    assert matplotlib.image.imread(png_path).shape[1] == 840


def test_report_warns_loudly_without_network_isolation(tmp_path: Path):
    summary = {**SUMMARY, "network_isolated": False, "groups": {}}
    markdown_path, png_path = write_report(summary, ROWS, tmp_path)
    text = markdown_path.read_text(encoding="utf-8")
    assert "> **WARNING: NO NETWORK ISOLATION.**" in text.split("##")[0]  # before the first section
    assert "| network isolation | **NO** |" in text
    assert matplotlib.image.imread(png_path).shape[1] == 840  # no groups: two panels


def test_report_of_an_empty_summary(tmp_path: Path):
    markdown_path, png_path = write_report({}, [], tmp_path)
    text = markdown_path.read_text(encoding="utf-8")
    assert "# repolm eval: unknown task — unknown model" in text
    assert "(no pass@k computed)" in text and "(none recorded)" in text and "| network isolation | unknown |" in text
    assert "## Failures" not in text and "## Groups" not in text
    assert png_path.stat().st_size > 1000


def test_report_replaces_an_old_report_and_lists_only_the_first_failures(tmp_path: Path):
    write_report({}, [], tmp_path)
    rows = [{"task_id": f"t/{i}", "verdict": "failed", "passed": False, "result": "x" * 500} for i in range(30)]
    markdown_path, _ = write_report({"task": "humaneval"}, rows, tmp_path)
    text = markdown_path.read_text(encoding="utf-8")
    assert "## Failures (first 20 of 30)" in text and "| t/19 |" in text and "| t/20 |" not in text
    assert "x" * 199 + "…" in text and "x" * 201 not in text  # details are cut to one short line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "report.png"]


def test_report_into_a_file_is_an_error(tmp_path: Path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(RepolmError, match="not-a-folder"):
        write_report(SUMMARY, ROWS, blocker)
