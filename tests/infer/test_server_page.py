"""The page at / in headless Chromium (Debian's `chromium` package, driven by Playwright with `executable_path`): it
loads, submits an infill, shows the middle as it streams in, the cross-file context and the exact prompt.

Skipped, saying why, when no Chromium binary is installed (scripts/install_toolchains.sh installs it).
"""

from __future__ import annotations

import shutil

import httpx
import pytest
from server_harness import start_server

from repolm.infer.batching import BatcherConfig

CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium binary on PATH: install Debian's chromium (scripts/install_toolchains.sh does it) to run it",
)

PREFIX = "import os\n\n\ndef list_files(folder):\n    "
SUFFIX = "\n    return names\n"
EXTRA_PATH = "pkg/walker.py"
EXTRA_TEXT = "def walk(folder):\n    return sorted(os.listdir(folder))\n"


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    running = start_server(tiny_model_dir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_the_page_streams_an_infill_and_shows_its_context(server, browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('model-name').textContent === 'model tiny'", timeout=10_000)

    page.fill("#infill-path", "pkg/main.py")
    page.fill("#infill-prefix", PREFIX)
    page.fill("#infill-suffix", SUFFIX)
    page.click("#infill-extra-box summary")
    page.fill("#infill-extra-path", EXTRA_PATH)
    page.fill("#infill-extra-text", EXTRA_TEXT)
    page.fill("#infill-max-tokens", "48")
    page.fill("#infill-temperature", "0")
    # count the distinct texts the middle shows while it streams
    page.evaluate(
        """() => {
            window.middleStates = new Set();
            const output = document.getElementById('infill-output');
            new MutationObserver(() => window.middleStates.add(output.textContent))
                .observe(output, {childList: true, characterData: true, subtree: true});
        }"""
    )
    page.click("#infill-run")
    page.wait_for_function("document.getElementById('infill-status').textContent.startsWith('done')", timeout=30_000)

    expected = httpx.post(
        server.url + "/infill",
        json={
            "input_prefix": PREFIX,
            "input_suffix": SUFFIX,
            "input_extra": [{"filename": EXTRA_PATH, "text": EXTRA_TEXT}],
            "n_predict": 48,
            "temperature": 0,
            "repolm": {"path": "pkg/main.py"},
        },
        timeout=30,
    ).json()
    assert page.text_content("#infill-output") == expected["content"]
    assert page.evaluate("window.middleStates.size") > 2, "the middle did not stream in"
    context = page.inner_text("#infill-context")
    assert f"{EXTRA_PATH}:1 · client" in context
    assert "return sorted(os.listdir(folder))" in context
    assert page.inner_text("#infill-context-count") == "(1 snippet)"
    prompt = page.text_content("#infill-prompt")
    assert prompt == expected["prompt"]
    assert "# pkg/main.py" in prompt and "<｜fim▁hole｜>" in prompt
    assert page.inner_text("#infill-status").startswith("done")
    assert not errors, errors
    page.close()


def test_the_page_shows_errors_in_words(server, browser):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.fill("#infill-max-tokens", "100000")
    page.click("#infill-run")
    page.wait_for_function("document.getElementById('infill-status').classList.contains('error')", timeout=10_000)
    assert "n_predict 100000 is more than this server allows" in page.inner_text("#infill-status")
    page.close()


def test_the_page_streams_a_chat_answer(server, browser):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.click("nav .tab[data-panel=chat]")
    page.fill("#chat-input", "Write a function that reverses a string.")
    page.fill("#chat-max-tokens", "12")
    page.click("#chat-run")
    page.wait_for_function("document.getElementById('chat-status').textContent.startsWith('done')", timeout=30_000)
    messages = page.query_selector_all("#chat-log .message")
    assert [message.get_attribute("class") for message in messages] == ["message user", "message assistant"]
    assert messages[1].inner_text().strip() != "assistant"
    page.close()


def test_the_page_shows_the_retrieved_context(tiny_model_dir, tmp_path, browser):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "walker.py").write_text(EXTRA_TEXT)
    (tmp_path / "pkg" / "main.py").write_text("from pkg.walker import walk\n")
    running = start_server(
        tiny_model_dir, batcher_config=BatcherConfig(max_batch_size=2, max_seq_len=2048), repo=tmp_path
    )
    try:
        page = browser.new_page()
        page.goto(running.url + "/")
        page.fill("#infill-path", "pkg/main.py")
        page.fill("#infill-prefix", "from pkg.walker import walk\n\n\ndef names(folder):\n    return walk(")
        page.fill("#infill-suffix", ")\n")
        page.fill("#infill-max-tokens", "8")
        page.click("#infill-run")
        page.wait_for_function("document.getElementById('infill-status').textContent.startsWith('done')")
        context = page.inner_text("#infill-context")
        assert "pkg/walker.py:1" in context and "return sorted(os.listdir(folder))" in context
        assert "client" not in context
        assert "# pkg/walker.py" in page.text_content("#infill-prompt")
        page.close()
    finally:
        running.stop()
