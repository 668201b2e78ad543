"""Cross-file completion: examples built from repositories (lines that use a name another file defines), cceval's
metrics against hand values, a run with a real tiny model, and the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from repolm.eval.crossfile import (
    CrossfileConfig,
    build_crossfile_benchmark,
    defined_names,
    identifiers,
    read_benchmark,
    repositories_in_folder,
    run_crossfile,
    score_prediction,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

PYTHON_REPOSITORY = {
    "shop/util.py": "def compute_total(items):\n    return sum(item.price for item in items)\n\n\n"
    "class Cart:\n    pass\n",
    "shop/app.py": "from shop.util import compute_total, Cart\n\n\ndef checkout(items):\n"
    "    cart = Cart()\n    total = compute_total(items)\n    return total\n",
}
JAVA_REPOSITORY = {
    "src/com/acme/Money.java": "package com.acme;\n\npublic class Money {\n    public static int cents(int euros) {\n"
    "        return euros * 100;\n    }\n}\n",
    "src/com/acme/Shop.java": "package com.acme;\n\nimport com.acme.Money;\n\npublic class Shop {\n"
    "    int price() {\n        return Money.cents(3);\n    }\n}\n",
}
C_REPOSITORY = {
    "list.h": "#define LIST_MAX 64\nstruct list { int size; };\nint list_push(struct list *l, int value);\n",
    "list.c": '#include "list.h"\n\nint list_push(struct list *l, int value) {\n    if (l->size >= LIST_MAX)\n'
    "        return -1;\n    return l->size++;\n}\n",
    "main.c": '#include "list.h"\n\nint main(void) {\n    struct list l = {0};\n    list_push(&l, 3);\n'
    "    return 0;\n}\n",
}


def test_cceval_metrics_against_hand_values():
    exact = score_prediction("total = compute_total(items)", "total = compute_total(items)", "Python")
    assert exact == {"em": 1.0, "es": 100.0, "id_em": 1.0, "id_f1": 1.0}
    near = score_prediction("total = compute(items)  # the sum", "total = compute_total(items)", "Python")
    assert near["em"] == 0.0 and near["id_em"] == 0.0
    # ES: 2 x LCS / (len a + len b) x 100 over "total = compute(items)" (22) and "total = compute_total(items)" (28)
    assert near["es"] == pytest.approx(200 * 22 / 50)
    # identifiers {total, compute, items} vs {total, compute_total, items}: tp 2, fp 1, fn 1 -> F1 4/6
    assert near["id_f1"] == pytest.approx(4 / 6)
    assert identifiers('if x in "not ids": return self.y', "Python") == ["x", "self", "y"]
    assert score_prediction("return Money.cents(3); // done", "return Money.cents(3);", "Java")["em"] == 1.0


def test_defined_names_per_language():
    assert defined_names(PYTHON_REPOSITORY["shop/util.py"], "Python") == {"compute_total", "Cart"}
    assert {"Money", "cents"} <= defined_names(JAVA_REPOSITORY["src/com/acme/Money.java"], "Java")
    assert {"LIST_MAX", "list", "list_push"} <= defined_names(C_REPOSITORY["list.h"], "C")


def _write(root: Path, repositories: dict[str, dict[str, str]]) -> Path:
    for name, files in repositories.items():
        for path, text in files.items():
            (root / name / path).parent.mkdir(parents=True, exist_ok=True)
            (root / name / path).write_text(text)
    return root


def test_build_finds_cross_file_lines_with_oracle_and_retrieved_contexts(tmp_path):
    repos = _write(tmp_path / "repos", {"shop": PYTHON_REPOSITORY, "acme": JAVA_REPOSITORY, "clist": C_REPOSITORY})
    meta = build_crossfile_benchmark(repositories_in_folder(repos), tmp_path / "bench", CrossfileConfig(seed=1))
    assert set(meta["languages"]) == {"Python", "Java", "C"}
    examples = read_benchmark(tmp_path / "bench")
    targets = {example["groundtruth"] for example in examples}
    assert {"cart = Cart()", "total = compute_total(items)", "return Money.cents(3);", "list_push(&l, 3);"} <= targets
    assert "from shop.util import compute_total, Cart" not in targets  # import lines are not targets
    for example in examples:
        source = (repos / example["repository"] / example["path"]).read_text()
        assert source.startswith(example["prompt"]) and example["prompt"].endswith((" ", "\n"))
        assert example["prompt"] + example["groundtruth"] in source
        assert example["oracle"] and all(chunk["path"] in example["defining_files"] for chunk in example["oracle"])
        assert all(chunk["path"] != example["path"] for chunk in example["retrieval"])  # never the current file
    python = next(example for example in examples if example["groundtruth"] == "total = compute_total(items)")
    assert python["defining_files"] == ["shop/util.py"] and "def compute_total" in python["oracle"][0]["text"]


def test_build_on_real_standard_library_packages(tmp_path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    packages = [name for name in ("json", "email", "http", "logging") if (stdlib / name).is_dir()]
    if len(packages) < 2:
        pytest.skip("the Python standard library packages json/email/http/logging are not on this machine")
    for name in packages:
        # each package a repository that keeps its folder, as the default corpus reads it (email/errors.py)
        shutil.copytree(stdlib / name, tmp_path / "repos" / name / name, ignore=shutil.ignore_patterns("__pycache__"))
    meta = build_crossfile_benchmark(
        repositories_in_folder(tmp_path / "repos"), tmp_path / "bench", CrossfileConfig(max_examples=60)
    )
    examples = read_benchmark(tmp_path / "bench")
    assert meta["languages"] == {"Python": len(examples)} and len(examples) >= 30
    # the oracle holds the definition of a name the target uses, at the top of its first chunk
    with_definition = sum(
        any(name in example["oracle"][0]["text"] for name in example["cross_file_names"]) for example in examples
    )
    assert with_definition / len(examples) >= 0.9


def test_run_scores_every_variant_with_a_real_model(tmp_path, tiny_generator):
    repos = _write(tmp_path / "repos", {"shop": PYTHON_REPOSITORY, "acme": JAVA_REPOSITORY, "clist": C_REPOSITORY})
    build_crossfile_benchmark(repositories_in_folder(repos), tmp_path / "bench")
    summary = run_crossfile(tmp_path / "bench", tiny_generator, tmp_path / "run", max_seq_len=512, max_new_tokens=8)
    assert set(summary["variants"]) == {"none", "retrieval", "oracle"}
    for scores in summary["variants"].values():
        assert scores["count"] == summary["examples"] and 0 <= scores["edit_similarity"] <= 100
    results = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(results) == 3 * summary["examples"] and all("\n" not in result["prediction"] for result in results)


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "repolm", "eval", "crossfile", *arguments],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT / "src")},
    )  # fmt: skip


def test_command_line_builds_and_refuses_bad_input(tmp_path):
    repos = _write(tmp_path / "repos", {"shop": PYTHON_REPOSITORY})
    built = _cli("build", "--repos", str(repos), "--output", str(tmp_path / "bench"))
    assert built.returncode == 0, built.stderr
    assert json.loads((tmp_path / "bench" / "meta.json").read_text())["languages"] == {"Python": 2}
    for arguments, message in (
        (["build", "--repos", str(tmp_path / "missing"), "--output", str(tmp_path / "b2")], "no such folder"),
        (["run", "--bench", str(tmp_path / "missing"), "--model", str(tmp_path)], "examples.jsonl"),
    ):
        result = _cli(*arguments)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
