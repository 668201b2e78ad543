"""Cross-file context from the server's repository (`repolm serve --repo`): retrieved for a request that names its
file (`"repolm": {"path": ...}`), placed after the editor's own `input_extra`, re-indexed when files change, and
shown in the exact prompt."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest
from server_harness import start_server

from repolm.infer.batching import BatcherConfig
from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
from repolm.infer.sampling import SamplingParams
from repolm.infer.server import ServerConfig

GEOMETRY = '''"""Shapes."""


def polygon_area(points):
    """The area of a simple polygon (shoelace formula)."""
    total = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:] + points[:1]):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2
'''
UNRELATED = "def greet(name):\n    return 'hello ' + name\n"
MAIN_PREFIX = "from pkg.geometry import polygon_area\n\n\ndef report(points):\n    area = polygon_area("
MAIN_SUFFIX = ")\n    return area\n"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "geometry.py").write_text(GEOMETRY)
    (root / "pkg" / "greeting.py").write_text(UNRELATED)
    (root / "pkg" / "main.py").write_text(MAIN_PREFIX + "points" + MAIN_SUFFIX)
    return root


@pytest.fixture(scope="module")
def server(tiny_model_dir, repository):
    config = ServerConfig(model_name="tiny", refresh_interval_seconds=0.0)
    running = start_server(tiny_model_dir, config, BatcherConfig(max_batch_size=4, max_seq_len=2048), repository)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server):
    with server.client() as client:
        yield client


def _infill(**extra):
    return {
        "input_prefix": MAIN_PREFIX,
        "input_suffix": MAIN_SUFFIX,
        "n_predict": 12,
        "temperature": 0,
        "repolm": {"path": "pkg/main.py", "return_prompt": True},
        **extra,
    }


def test_infill_gets_the_defining_chunk_of_another_file(http, server, tiny_generator):
    answer = http.post("/infill", json=_infill()).json()
    context = answer["repolm"]["context"]
    assert context and context[0]["path"] == "pkg/geometry.py"
    assert context[0]["source"] in ("import", "bm25") and context[0]["score"] > 0
    assert all(snippet["path"] != "pkg/main.py" for snippet in context)
    assert "#         total += x0 * y1 - x1 * y0" in answer["prompt"]
    assert "# pkg/main.py\n" in answer["prompt"]
    # the same prompt and middle as the retriever, the builder and the engine give on their own
    snippets = server.state.retriever.retrieve("pkg/main.py", MAIN_PREFIX, MAIN_SUFFIX)
    budget = PromptBudget(2048 - 12, context_share=0.25, suffix_share=0.25)
    built = PromptBuilder(tiny_generator.tokenizer, literal_special_tokens=True).completion(
        MAIN_PREFIX, MAIN_SUFFIX, budget=budget, context=snippets, path="pkg/main.py"
    )
    assert answer["prompt"] == built.text
    assert answer["content"] == tiny_generator.generate_ids([built.ids], SamplingParams(max_new_tokens=12))[0]


def test_the_editors_context_comes_first(http):
    extra = [{"filename": "notes/todo.py", "text": "# compute the area of every polygon\n"}]
    context = http.post("/infill", json=_infill(input_extra=extra)).json()["repolm"]["context"]
    assert (context[0]["path"], context[0]["source"]) == ("notes/todo.py", "client")
    assert context[1]["path"] == "pkg/geometry.py" and context[1]["source"] != "client"


def test_retrieval_can_be_turned_off(http):
    answer = http.post("/infill", json=_infill(repolm={"path": "pkg/main.py", "retrieve": False})).json()
    assert "polygon_area(points):" not in answer["prompt"]
    no_path = http.post("/repolm/prompt", json={"input_prefix": MAIN_PREFIX, "input_suffix": MAIN_SUFFIX}).json()
    assert no_path["context"] == []


def test_openai_completions_retrieve_through_the_repolm_field(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    answer = client.completions.create(
        model="tiny",
        prompt=MAIN_PREFIX,
        suffix=MAIN_SUFFIX,
        max_tokens=8,
        temperature=0,
        extra_body={"repolm": {"path": "pkg/main.py", "return_prompt": True}},
    )
    report = answer.model_extra["repolm"]
    assert report["context"][0]["path"] == "pkg/geometry.py"
    assert report["prompt_tokens"] == answer.usage.prompt_tokens


def test_changed_files_are_reindexed(http, repository):
    prefix = "from pkg.circles import circle_area\n\n\ndef report(radius):\n    area = circle_area("
    body = {"input_prefix": prefix, "input_suffix": ")\n", "n_predict": 4, "repolm": {"path": "pkg/main.py"}}
    before = http.post("/repolm/prompt", json=body).json()
    assert all(snippet["path"] != "pkg/circles.py" for snippet in before["context"])
    (repository / "pkg" / "circles.py").write_text(
        "import math\n\n\ndef circle_area(radius):\n    return math.pi * radius * radius\n"
    )
    after = http.post("/repolm/prompt", json=body).json()
    assert after["context"][0]["path"] == "pkg/circles.py"
    assert "math.pi * radius * radius" in after["context"][0]["text"]


def test_paths_outside_the_repository_are_refused(http):
    for path in ("/etc/passwd", "../outside.py"):
        answer = http.post("/infill", json=_infill(repolm={"path": path}))
        assert answer.status_code == 400 and answer.json()["error"]["param"] == "repolm.path"
