"""Cross-file completion: cceval's metrics against hand values (its edge cases included), benchmarks built from
repositories the tests write and from real local trees (stdlib packages, a JDK module), runs with a real tiny model
(in memory, from its folder, behind an OpenAI-compatible server), resuming, and the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.eval.crossfile import (
    VARIANTS,
    CrossfileConfig,
    build_crossfile_benchmark,
    crossfile_prompt,
    defined_names,
    first_line,
    identifiers,
    postprocess_prediction,
    read_benchmark,
    remove_comments,
    repositories_in_folder,
    run_crossfile,
    score_prediction,
    summarize,
)
from repolm.eval.crossfile.run import CrossfileRunSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
JDK_SOURCES = Path("/usr/lib/jvm/temurin-25-jdk-amd64/lib/src.zip")

PYTHON_REPOSITORY = {
    "pkg/__init__.py": "",
    "pkg/util.py": '"""Helpers."""\n\nLIMIT = 10\n\n\ndef helper(value):\n    return value * 2\n\n\n'
    "def count(items):\n    return len(items)\n\n\nclass Cart:\n    def total_price(self):\n        return 0\n",
    "pkg/app.py": "from pkg.util import helper, Cart\nfrom pkg import util\n\n\n"
    'def checkout(items):\n    """Calls helper(items) once."""\n    # helper(items) is not called here\n'
    "    count = len(items)\n    cart = Cart()\n    result = helper(count)\n    return util.LIMIT + result\n",
    "pkg/cli.py": "from pkg.util import (\n    helper,\n    Cart as Basket,\n)\n\n\ndef main():\n"
    '    print("helper(2) and Basket()")\n    return Basket().total_price() + helper(2)\n',
}
JAVA_REPOSITORY = {
    "src/com/acme/Money.java": "package com.acme;\n\npublic class Money {\n    private int secretValue;\n\n"
    "    public static int cents(int euros) {\n        return euros * 100;\n    }\n}\n",
    "src/com/acme/Shop.java": "package com.acme;\n\nimport com.acme.Money;\n\npublic class Shop {\n"
    "    int secretValue = 1;\n\n    int price() {\n        for (int i = 0; i < Money.cents(1); i++) {\n"
    "        }\n        return Money.cents(3);\n    }\n}\n",
}
C_REPOSITORY = {
    "list.h": "#define LIST_MAX 64\nstruct list { int size; };\nint list_push(struct list *l, int value);\n",
    "list.c": '#include "list.h"\n\nint list_push(struct list *l, int value) {\n    if (l->size >= LIST_MAX)\n'
    "        return -1;\n    return l->size++;\n}\n",
    "main.c": '#include "list.h"\n\nint main(void) {\n    struct list l = {0};\n    list_push(&l, 3);\n'
    "    return 0;\n}\n",
}


# -----------------------------------------------------------------------------
# metrics


def test_cceval_metrics_against_hand_values():
    exact = score_prediction("total = compute_total(items)", "total = compute_total(items)", "Python")
    assert exact == {"em": 1.0, "es": 100.0, "id_em": 1.0, "id_precision": 1.0, "id_recall": 1.0, "id_f1": 1.0}
    near = score_prediction("total = compute(items)  # the sum", "total = compute_total(items)", "Python")
    assert near["em"] == 0.0 and near["id_em"] == 0.0
    # ES: 200 x LCS / (len a + len b) over "total = compute(items)" (22) and "total = compute_total(items)" (28)
    assert near["es"] == pytest.approx(200 * 22 / 50)
    # identifiers {total, compute, items} vs {total, compute_total, items}: tp 2, fp 1, fn 1
    assert near["id_f1"] == pytest.approx(4 / 6)
    assert near["id_precision"] == pytest.approx(2 / 3) and near["id_recall"] == pytest.approx(2 / 3)
    # the Levenshtein ratio of fuzz.ratio (Indel: a substitution costs 2): kitten/sitting share "ittn"
    assert score_prediction("kitten", "sitting", "Python")["es"] == pytest.approx(200 * 4 / 13)
    # leading and trailing whitespace never counts; EM compares the non-empty stripped lines
    assert score_prediction("    x = f(y)   ", "x = f(y)", "Python")["em"] == 1.0
    assert score_prediction("", "x = f(y)", "Python")["es"] == 0.0


def test_cceval_edge_cases():
    # both empty: fuzz.ratio is 100, the line lists are equal, no identifiers: id_em 1 but F1 0 (cceval's 0/0 -> 0)
    assert score_prediction("", "", "Python") == {
        "em": 1.0, "es": 100.0, "id_em": 1.0, "id_precision": 0.0, "id_recall": 0.0, "id_f1": 0.0,
    }  # fmt: skip
    # identifier EM keeps order and repeats, F1 works on sets
    swapped = score_prediction("f(b, a)", "f(a, b)", "Python")
    assert swapped["id_em"] == 0.0 and swapped["id_f1"] == 1.0
    assert score_prediction("a + a", "a", "Python")["id_em"] == 0.0
    # comments: "#.*" then "//.*" whatever the language, so a "#" in a Python string cuts it (cceval's quirk) ...
    assert remove_comments('x = "a#b"', "Python") == 'x = "a'
    assert score_prediction('x = "a#b"', 'x = "a#c"', "Python")["em"] == 1.0
    assert score_prediction("return Money.cents(3); // done", "return Money.cents(3);", "Java")["em"] == 1.0
    # ... but not in C, where "#" starts a preprocessor line
    assert remove_comments("#define MAX 10 // the most", "C") == "#define MAX 10 "
    # Java, C#, TypeScript predictions are cut after the first ";", "{" or "}" (not when it is the first character)
    assert postprocess_prediction("foo(); bar();", "Java") == "foo();"
    assert postprocess_prediction("for (int i = 0; i < n; i++) {", "Java") == "for (int i = 0;"
    assert postprocess_prediction("} else {", "Java") == "} else {"
    assert score_prediction("foo(); bar();", "foo();", "Java")["em"] == 1.0
    assert postprocess_prediction("foo(); bar()", "Python") == "foo(); bar()"  # a one-line Python prediction
    # identifiers: strings removed, \w+ tokens starting like an identifier, keywords left out
    assert identifiers('if x in "not ids": return self.y', "Python") == ["x", "self", "y"]
    assert identifiers('String s = "abc"; int x2 = 0x1F + 3; s = null;', "Java") == ["String", "s", "x2", "s", "null"]
    assert identifiers("None or True", "Python") == ["True"]  # cceval keeps True/False, drops None
    assert summarize([score_prediction("a", "a", "Python"), score_prediction("b", "a", "Python")]) == {
        "count": 2, "exact_match": 50.0, "edit_similarity": 50.0, "identifier_exact_match": 50.0,
        "identifier_precision": 50.0, "identifier_recall": 50.0, "identifier_f1": 50.0,
    }  # fmt: skip


def test_first_line_skips_blank_lines():
    assert first_line("\n\n    total = f(x)\n    more") == "    total = f(x)"
    assert first_line("  \n") == "" and first_line("x = 1") == "x = 1"


def test_defined_names_per_language():
    assert defined_names(PYTHON_REPOSITORY["pkg/util.py"], "Python") == {
        "LIMIT", "helper", "count", "Cart", "total_price"
    }  # fmt: skip
    java = defined_names(JAVA_REPOSITORY["src/com/acme/Money.java"], "Java")
    assert {"Money", "cents"} <= java and "secretValue" not in java  # private members are not visible elsewhere
    assert {"LIST_MAX", "list", "list_push"} <= defined_names(C_REPOSITORY["list.h"], "C")
    assert defined_names('"""class Docstring: not a class"""\n# def commented(): pass\n', "Python") == set()


# -----------------------------------------------------------------------------
# building


def _write(root: Path, repositories: dict[str, dict[str, str]]) -> Path:
    for name, files in repositories.items():
        for path, text in files.items():
            (root / name / path).parent.mkdir(parents=True, exist_ok=True)
            (root / name / path).write_text(text)
    return root


@pytest.fixture
def small_repositories(tmp_path: Path) -> Path:
    return _write(tmp_path / "repos", {"shop": PYTHON_REPOSITORY, "acme": JAVA_REPOSITORY, "clist": C_REPOSITORY})


def test_build_finds_cross_file_lines_with_oracle_and_retrieved_contexts(small_repositories: Path, tmp_path: Path):
    meta = build_crossfile_benchmark(small_repositories, tmp_path / "bench", CrossfileConfig(seed=1))
    assert meta["languages"] == {"C": 2, "Java": 1, "Python": 4} and meta["source"] == str(small_repositories)
    examples = read_benchmark(tmp_path / "bench")
    targets = {example["groundtruth"].strip(): example for example in examples}
    # Python: names imported by name, and attributes of an imported module; never bare names it does not import
    assert set(targets) >= {"cart = Cart()", "result = helper(count)", "return util.LIMIT + result"}
    assert "count = len(items)" not in targets  # `count` is defined in util.py but not imported by name
    # the lines of a parenthesized import and names inside strings are no uses; an `as` alias is one
    assert not {"helper,", "Cart as Basket,", 'print("helper(2) and Basket()")'} & set(targets)
    aliased = targets["return Basket().total_price() + helper(2)"]
    assert aliased["cross_file_names"] == ["Basket", "helper", "total_price"]
    assert aliased["definition_lines"] == {"pkg/util.py": 6}  # helper's line (Cart's is 14)
    # Java: the for line would be cut by cceval's post-processing, so a perfect prediction could not score
    assert "return Money.cents(3);" in targets and not any(target.startswith("for") for target in targets)
    assert {"list_push(&l, 3);", "if (l->size >= LIST_MAX)"} <= set(targets)
    for example in examples:
        source = (small_repositories / example["repository"] / example["path"]).read_text()
        assert example["prompt"] + example["groundtruth"] + "\n" + example["right_context"] == source
        assert example["prompt"] == "" or example["prompt"].endswith("\n")  # the cursor at the start of the line
        assert example["task_id"] == f"{example['repository']}/{example['path']}:{example['line']}"
        assert example["oracle"] and {chunk["path"] for chunk in example["oracle"]} == set(example["defining_files"])
        assert all(chunk["path"] != example["path"] for chunk in example["retrieval"])  # never the current file
    python = targets["result = helper(count)"]
    assert python["defining_files"] == ["pkg/util.py"] and python["cross_file_names"] == ["helper"]
    assert python["oracle"][0]["text"].startswith("def helper(value):")  # the definition chunk first
    assert targets["list_push(&l, 3);"]["defining_files"] == ["list.h"]
    assert targets["return Money.cents(3);"]["defining_files"] == ["src/com/acme/Money.java"]
    assert targets["return Money.cents(3);"]["retrieval"][0]["path"] == "src/com/acme/Money.java"


def test_build_is_deterministic_and_capped(small_repositories: Path, tmp_path: Path):
    first = build_crossfile_benchmark(small_repositories, tmp_path / "a", CrossfileConfig(seed=3))
    again = build_crossfile_benchmark(small_repositories, tmp_path / "b", CrossfileConfig(seed=3))
    assert (tmp_path / "a" / "examples.jsonl").read_bytes() == (tmp_path / "b" / "examples.jsonl").read_bytes()
    assert first["settings"]["seed"] == 3 == again["seed"]
    capped = build_crossfile_benchmark(small_repositories, tmp_path / "c", CrossfileConfig(per_repository=1))
    assert capped["languages"] == {"C": 1, "Java": 1, "Python": 1}
    java = build_crossfile_benchmark(small_repositories, tmp_path / "d", CrossfileConfig(languages=("java",)))
    assert java["languages"] == {"Java": 1}
    with pytest.raises(RepolmError, match="no dependency parsing"):
        CrossfileConfig(languages=("cobol",))
    with pytest.raises(RepolmError, match="no cross-file examples"):
        build_crossfile_benchmark([("empty", {"a.py": "x = 1\n"})], tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_one_repository_or_a_folder_of_them(small_repositories: Path):
    assert [name for name, _ in repositories_in_folder(small_repositories)] == ["acme", "clist", "shop"]
    shop = small_repositories / "shop"
    (shop / "pyproject.toml").write_text("[project]\nname = 'shop'\n")
    [(name, files)] = repositories_in_folder(shop)  # a build file at the top: one repository with subfolders
    assert name == "shop" and set(files) == set(PYTHON_REPOSITORY)
    assert len(repositories_in_folder(shop, layout="repositories")) == 1  # its only subfolder, pkg
    with pytest.raises(RepolmError, match="no such folder"):
        repositories_in_folder(small_repositories / "missing")


def test_build_on_real_standard_library_packages(tmp_path: Path):
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    packages = [name for name in ("json", "email") if (stdlib / name).is_dir()]
    if len(packages) < 2:
        pytest.skip(f"the Python standard library packages json and email are not in {stdlib}")
    for name in packages:
        # each package a repository that keeps its folder, as the default corpus reads it (email/errors.py)
        shutil.copytree(stdlib / name, tmp_path / "repos" / name / name, ignore=shutil.ignore_patterns("__pycache__"))
    meta = build_crossfile_benchmark(tmp_path / "repos", tmp_path / "bench", CrossfileConfig(per_repository=30))
    examples = read_benchmark(tmp_path / "bench")
    assert meta["languages"] == {"Python": len(examples)} and len(examples) >= 30
    assert meta["repositories"] == 2 and meta["candidates"]["Python"] > len(examples)
    for example in examples:
        oracle_text = "".join(
            chunk["text"] for chunk in example["oracle"] if chunk["path"] in example["defining_files"]
        )
        assert any(name in example["groundtruth"] for name in example["cross_file_names"])
        assert any(name in example["oracle"][0]["text"] for name in example["cross_file_names"]), example["task_id"]
        assert all(name in oracle_text for name in example["cross_file_names"])


def test_build_on_real_c_headers(tmp_path: Path):
    folders = [name for name in ("nettle", "libxml2") if Path("/usr/include", name).is_dir()]
    if not folders:
        pytest.skip("no /usr/include/nettle or /usr/include/libxml2 on this machine")
    for name in folders:  # the includes name the folder: <nettle/nettle-types.h>
        shutil.copytree(Path("/usr/include", name), tmp_path / "repos" / name / name)
    meta = build_crossfile_benchmark(tmp_path / "repos", tmp_path / "bench", CrossfileConfig(per_repository=10))
    assert set(meta["languages"]) <= {"C", "C++"} and sum(meta["languages"].values()) == 10 * len(folders)
    for example in read_benchmark(tmp_path / "bench"):
        assert not example["groundtruth"].lstrip().startswith("#include")
        assert all(path.endswith(".h") for path in example["defining_files"])


def test_build_on_a_real_jdk_module(tmp_path: Path):
    if not JDK_SOURCES.is_file():
        pytest.skip(f"no JDK sources at {JDK_SOURCES}")
    with zipfile.ZipFile(JDK_SOURCES) as archive:
        members = [name for name in archive.namelist() if name.startswith("java.logging/") and name.endswith(".java")]
        if not members:
            pytest.skip(f"{JDK_SOURCES} has no java.logging module")
        archive.extractall(tmp_path / "repos", members)
    meta = build_crossfile_benchmark(tmp_path / "repos", tmp_path / "bench", CrossfileConfig(per_repository=15))
    assert meta["languages"] == {"Java": 15}
    for example in read_benchmark(tmp_path / "bench"):
        assert example["defining_files"] and example["path"] not in example["defining_files"]
        assert any(name in example["oracle"][0]["text"] for name in example["cross_file_names"])


# -----------------------------------------------------------------------------
# running


@pytest.fixture
def small_bench(small_repositories: Path, tmp_path: Path) -> Path:
    build_crossfile_benchmark(small_repositories, tmp_path / "bench")
    return tmp_path / "bench"


def test_prompts_hold_the_context_of_their_variant(small_bench: Path, tiny_generator):
    from repolm.infer.prompt_builder import PromptBuilder

    builder = PromptBuilder(tiny_generator.tokenizer)
    settings = CrossfileRunSettings(max_seq_len=2048, max_new_tokens=50)
    example = next(example for example in read_benchmark(small_bench) if "helper(count)" in example["groundtruth"])
    prompts = {variant: crossfile_prompt(builder, example, variant, settings) for variant in VARIANTS}
    definition = "# def helper(value):\n#     return value * 2\n"
    assert definition in prompts["oracle"].text and definition not in prompts["none"].text
    assert "Here are some relevant code fragments" not in prompts["none"].text and not prompts["none"].context
    assert {snippet.path for snippet in prompts["oracle"].context} == {"pkg/util.py"}
    assert prompts["retrieval"].context and all(s.path != "pkg/app.py" for s in prompts["retrieval"].context)
    for built in prompts.values():  # the left context ends the prompt, the target is nowhere in it
        assert built.text.endswith(example["prompt"][-40:]) and example["groundtruth"] not in built.text
    # the same snippets as files of a repository-level sample: path comment, code as it is, no comment marks
    as_files = crossfile_prompt(builder, example, "oracle", CrossfileRunSettings(context_format="files"))
    assert "# pkg/util.py\n" in as_files.text and "def helper(value):\n    return value * 2\n" in as_files.text
    assert (
        "Here are some relevant code fragments" not in as_files.text and as_files.context == prompts["oracle"].context
    )
    with pytest.raises(RepolmError, match="context_format must be one of comments, files"):
        CrossfileRunSettings(context_format="json")


def test_run_scores_every_variant_with_a_real_model_and_resumes(small_bench: Path, tmp_path: Path, tiny_generator):
    run = tmp_path / "run"
    partial = run_crossfile(small_bench, tiny_generator, run, max_seq_len=512, max_new_tokens=8, limit=2)
    assert partial["examples"] == 2
    first = {line for line in (run / "results.jsonl").read_text().splitlines()}
    summary = run_crossfile(small_bench, tiny_generator, run, max_seq_len=512, max_new_tokens=8, batch_size=4)
    assert first <= set((run / "results.jsonl").read_text().splitlines())  # resumed: the first results kept
    examples = read_benchmark(small_bench)
    assert summary["examples"] == len(examples) and set(summary["variants"]) == set(VARIANTS)
    for scores in summary["variants"].values():
        assert scores["count"] == len(examples) and 0 <= scores["edit_similarity"] <= 100 and scores["errors"] == 0
        assert set(scores) >= {"exact_match", "identifier_exact_match", "identifier_f1"}
    assert summary["variants"]["none"]["mean_snippets"] == 0 < summary["variants"]["oracle"]["mean_snippets"]
    assert set(summary["languages"]) == {"C", "Java", "Python"}
    assert set(summary["languages"]["Python"]) == set(VARIANTS)
    results = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    assert len(results) == 3 * len(examples) and all("\n" not in result["prediction"] for result in results)
    assert not (run / "results.partial.jsonl").exists()
    # other settings: the earlier results are removed, never mixed with the new ones
    again = run_crossfile(small_bench, tiny_generator, run, max_seq_len=512, max_new_tokens=4, limit=1)
    assert again["examples"] == 1 and len((run / "results.jsonl").read_text().splitlines()) == 3
    assert json.loads((run / "run.json").read_text())["settings"]["max_new_tokens"] == 4


def test_run_through_a_model_folder_and_an_endpoint_gives_the_same_lines(
    small_bench: Path, tmp_path: Path, tiny_model_dir: Path
):
    from openai_server import OpenAIServer, model_responder

    from repolm.eval.generators import EndpointGenerator, LocalGenerator

    local = LocalGenerator(tiny_model_dir, device="cpu", batch_size=8, max_seq_len=512)
    settings = dict(max_seq_len=512, max_new_tokens=6, limit=3, variants=("none", "oracle"))
    by_folder = run_crossfile(small_bench, local, tmp_path / "local", **settings)
    assert by_folder["generator"]["kind"] == "local"
    with OpenAIServer(model_responder(local)) as server:
        endpoint = EndpointGenerator(server.url, "tiny", retries=0)
        with pytest.raises(RepolmError, match="tokenizer"):
            run_crossfile(small_bench, endpoint, tmp_path / "endpoint", **settings)
        by_endpoint = run_crossfile(small_bench, endpoint, tmp_path / "endpoint", tokenizer=tiny_model_dir, **settings)
    assert by_endpoint["generator"]["kind"] == "endpoint"

    def predictions(folder: Path) -> dict[tuple[str, str], str]:
        lines = (folder / "results.jsonl").read_text().splitlines()
        return {(r["task_id"], r["variant"]): r["prediction"] for r in map(json.loads, lines)}

    assert predictions(tmp_path / "local") == predictions(tmp_path / "endpoint")


# -----------------------------------------------------------------------------
# command line


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "repolm", "eval", "crossfile", *arguments],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT / "src")},
    )  # fmt: skip


def test_command_line_builds_and_refuses_bad_input(small_repositories: Path, tmp_path: Path):
    built = _cli("build", "--repos", str(small_repositories), "--output", str(tmp_path / "bench"), "--per-repo", "1")
    assert built.returncode == 0, built.stderr
    assert json.loads((tmp_path / "bench" / "meta.json").read_text())["languages"] == {"C": 1, "Java": 1, "Python": 1}
    for arguments, message in (
        (["build", "--repos", str(tmp_path / "missing"), "--output", str(tmp_path / "b2")], "no such folder"),
        (["build", "--repos", str(small_repositories), "--output", str(tmp_path / "b3"), "--languages", "cobol"],
         "no dependency parsing"),
        (["run", "--bench", str(tmp_path / "missing"), "--model", str(tmp_path)], "examples.jsonl"),
        (["run", "--bench", str(tmp_path / "bench"), "--endpoint", "http://127.0.0.1:9"], "--model-name"),
    ):  # fmt: skip
        result = _cli(*arguments)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
