"""CodeTokenizer.save / load: HF folders that transformers reads with the same ids, and clear errors for bad ones."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.tokenizer import DEEPSEEK_CODER_CHAT_TEMPLATE, CodeTokenizer
from repolm.tokenizer.tokenizer import HF_TOKENIZER_CLASS

SAMPLE_TEXTS = [
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "  leading spaces and trailing  ",
    "x = 12345; y = 3.14e-10\r\n",
    "中文注释 // 한국어 😀 émigré õ ü",
    "<｜fim▁begin｜>def f():\n<｜fim▁hole｜>\n    return 1<｜fim▁end｜>",
    "<｜begin▁of▁sentence｜>a<｜end▁of▁sentence｜><pad><|User|><|Assistant|>b<|EOT|>",
    "",
]

CONVERSATIONS = [
    [{"role": "user", "content": "Write quicksort in Python."}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "more\nlines"},
    ],
]


def test_save_writes_hf_folder(small_tokenizer: CodeTokenizer, saved_small_tokenizer: Path) -> None:
    names = {path.name for path in saved_small_tokenizer.iterdir()}
    assert names == {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"}
    config = json.loads((saved_small_tokenizer / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == HF_TOKENIZER_CLASS
    assert config["bos_token"] == "<｜begin▁of▁sentence｜>"
    assert config["eos_token"] == "<｜end▁of▁sentence｜>"
    assert config["pad_token"] == "<pad>"
    assert config["add_bos_token"] is True
    assert config["model_max_length"] == 16384
    assert config["chat_template"] == DEEPSEEK_CODER_CHAT_TEMPLATE
    assert not [p for p in saved_small_tokenizer.parent.iterdir() if p.name.startswith(".")]  # no temp dir left


def test_load_roundtrip(small_tokenizer: CodeTokenizer, saved_small_tokenizer: Path) -> None:
    loaded = CodeTokenizer.load(saved_small_tokenizer)
    assert len(loaded) == len(small_tokenizer)
    for text in SAMPLE_TEXTS:
        assert loaded.encode(text, add_bos=True) == small_tokenizer.encode(text, add_bos=True)
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id, loaded.eot_id) == (
        small_tokenizer.bos_id,
        small_tokenizer.eos_id,
        small_tokenizer.pad_id,
        small_tokenizer.eot_id,
    )
    assert loaded.chat_template == small_tokenizer.chat_template
    assert loaded.add_bos_token is True and loaded.model_max_length == 16384


def test_chat_template_matches_deepseek_coder_rendering(small_tokenizer: CodeTokenizer) -> None:
    # Expected text from the deepseek-coder-33b-instruct case of text-generation-inference's chat template tests.
    messages = [
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
        {"role": "user", "content": "I'd like to show off how chat templating works!"},
    ]
    expected = (
        "<｜begin▁of▁sentence｜>You are an AI programming assistant, utilizing the Deepseek Coder model, developed by "
        "Deepseek Company, and you only answer questions related to computer science. For politically sensitive "
        "questions, security and privacy issues, and other non-computer science questions, you will refuse to answer\n"
        "### Instruction:\nHello, how are you?\n### Response:\nI'm doing great. How can I help you today?\n<|EOT|>\n"
        "### Instruction:\nI'd like to show off how chat templating works!\n"
    )
    assert small_tokenizer.apply_chat_template(messages, add_generation_prompt=False) == expected
    assert small_tokenizer.apply_chat_template(messages) == expected + "### Response:\n"
    # A system message replaces the default prompt and, as in the released template, gets no newline after it.
    with_system = [{"role": "system", "content": "Be brief."}, *messages[:1]]
    assert small_tokenizer.apply_chat_template(with_system).startswith(
        "<｜begin▁of▁sentence｜>Be brief.### Instruction:"
    )


def test_chat_template_errors_are_repolm_errors(small_tokenizer: CodeTokenizer, tmp_path: Path) -> None:
    with pytest.raises(RepolmError, match="empty"):
        small_tokenizer.apply_chat_template([])
    strict = CodeTokenizer(small_tokenizer.backend, chat_template="{{ raise_exception('only users here') }}")
    with pytest.raises(RepolmError, match="only users here"):
        strict.apply_chat_template([{"role": "user", "content": "x"}])
    without = CodeTokenizer(small_tokenizer.backend)
    with pytest.raises(RepolmError, match="no chat template"):
        without.apply_chat_template([{"role": "user", "content": "x"}])
    broken = CodeTokenizer(small_tokenizer.backend, chat_template="{% for m in messages %}")
    with pytest.raises(RepolmError, match="not valid Jinja"):
        broken.apply_chat_template([{"role": "user", "content": "x"}])


def test_chat_template_supports_transformers_generation_tag(small_tokenizer: CodeTokenizer) -> None:
    template = "{% for m in messages %}{% generation %}[{{ m['content'] | tojson }}]{% endgeneration %}{% endfor %}"
    tokenizer = CodeTokenizer(small_tokenizer.backend, chat_template=template)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "é<b>"}]) == '["é<b>"]'


def test_load_deepseek_coder_instruct_style_config(saved_small_tokenizer: Path, tmp_path: Path) -> None:
    """DeepSeek's instruct folders store tokens as AddedToken dicts, eos = <|EOT|> and pad = end of sentence."""
    folder = tmp_path / "instruct"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((saved_small_tokenizer / "tokenizer.json").read_bytes())
    config = {
        "tokenizer_class": "LlamaTokenizerFast",
        "add_bos_token": True,
        "bos_token": {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>", "special": True},
        "eos_token": {"__type": "AddedToken", "content": "<|EOT|>", "special": True},
        "pad_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>", "special": True},
        "model_max_length": 16384,
        "chat_template": [{"name": "default", "template": DEEPSEEK_CODER_CHAT_TEMPLATE}],
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    instruct = CodeTokenizer.load(folder)
    end_of_sentence = instruct.token_to_id("<｜end▁of▁sentence｜>")
    assert instruct.eos_token == "<|EOT|>" and instruct.eot_id == instruct.token_to_id("<|EOT|>")
    assert instruct.eos_id == end_of_sentence  # eos_id always names the end of a document
    assert instruct.pad_id == end_of_sentence
    assert instruct.chat_template == DEEPSEEK_CODER_CHAT_TEMPLATE


# -----------------------------------------------------------------------------
# transformers parity


@pytest.fixture(scope="module")
def hf_tokenizer(saved_small_tokenizer: Path):
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(saved_small_tokenizer))


def test_transformers_loads_saved_folder_with_same_ids(small_tokenizer: CodeTokenizer, hf_tokenizer) -> None:
    assert len(hf_tokenizer) == len(small_tokenizer)
    assert hf_tokenizer.bos_token_id == small_tokenizer.bos_id
    assert hf_tokenizer.eos_token_id == small_tokenizer.eos_id
    assert hf_tokenizer.pad_token_id == small_tokenizer.pad_id
    for text in SAMPLE_TEXTS:
        assert hf_tokenizer(text)["input_ids"] == small_tokenizer.encode(text, add_bos=True), text
        assert hf_tokenizer.encode(text, add_special_tokens=False) == small_tokenizer.encode(text), text
        assert hf_tokenizer.decode(small_tokenizer.encode(text)) == text
    assert hf_tokenizer.batch_decode([small_tokenizer.encode(t) for t in SAMPLE_TEXTS]) == SAMPLE_TEXTS


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_transformers_renders_same_chat(small_tokenizer: CodeTokenizer, hf_tokenizer, messages) -> None:
    for add_generation_prompt in (True, False):
        ours = small_tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
        theirs = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        assert ours == theirs


def test_load_folder_saved_by_transformers(small_tokenizer: CodeTokenizer, hf_tokenizer, tmp_path: Path) -> None:
    hf_tokenizer.save_pretrained(str(tmp_path / "hf"))
    loaded = CodeTokenizer.load(tmp_path / "hf")
    assert len(loaded) == len(small_tokenizer)
    for text in SAMPLE_TEXTS:
        assert loaded.encode(text, add_bos=True) == small_tokenizer.encode(text, add_bos=True)
    assert (loaded.bos_id, loaded.eos_id, loaded.pad_id) == (
        small_tokenizer.bos_id,
        small_tokenizer.eos_id,
        small_tokenizer.pad_id,
    )
    assert loaded.add_bos_token is True
    for messages in CONVERSATIONS:
        assert loaded.apply_chat_template(messages) == small_tokenizer.apply_chat_template(messages)


# -----------------------------------------------------------------------------
# Atomic saving


def test_save_into_existing_folder_keeps_other_files(small_tokenizer: CodeTokenizer, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    (model_dir / "tokenizer.json").write_text("old")
    small_tokenizer.save(model_dir)
    assert (model_dir / "config.json").read_text() == "{}"
    assert len(CodeTokenizer.load(model_dir)) == len(small_tokenizer)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_failed_save_leaves_no_folder(small_tokenizer: CodeTokenizer, tmp_path: Path, monkeypatch) -> None:
    def write_half_then_fail(directory: Path) -> None:
        (directory / "tokenizer.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(small_tokenizer, "_write_files", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        small_tokenizer.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# -----------------------------------------------------------------------------
# Bad folders


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(RepolmError, match=f"tokenizer folder not found: {tmp_path / 'nope'}"):
        CodeTokenizer.load(tmp_path / "nope")


def test_folder_without_tokenizer_json(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(RepolmError, match=f"{tmp_path / 'tokenizer.json'} not found"):
        CodeTokenizer.load(tmp_path)


def test_file_instead_of_folder(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(RepolmError, match="not a tokenizer folder"):
        CodeTokenizer.load(tmp_path / "tokenizer.json")


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"model": {"type": "BPE", "vocab": {', "not valid JSON"),
        ("\xff\xfe garbage", "not UTF-8 text"),
        ("[1, 2, 3]", "no 'model' field"),
        ('{"model": {"type": "NoSuchModel"}}', "cannot be loaded by tokenizers"),
    ],
)
def test_corrupt_tokenizer_json(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "tokenizer.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(RepolmError, match=problem) as error:
        CodeTokenizer.load(tmp_path)
    message = str(error.value)
    assert str(tmp_path / "tokenizer.json") in message and "\n" not in message


def test_corrupt_tokenizer_config(saved_small_tokenizer: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tok"
    folder.mkdir()
    (folder / "tokenizer.json").write_bytes((saved_small_tokenizer / "tokenizer.json").read_bytes())
    (folder / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(RepolmError, match=f"{folder / 'tokenizer_config.json'}: not valid JSON"):
        CodeTokenizer.load(folder)


def test_load_minimal_folder_has_no_config_values(saved_small_tokenizer: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bare"
    folder.mkdir()
    os.link(saved_small_tokenizer / "tokenizer.json", folder / "tokenizer.json")
    bare = CodeTokenizer.load(folder)
    assert bare.chat_template is None and bare.bos_token is None
    # The ids of the DeepSeek-Coder special tokens are still found by their strings.
    assert bare.bos_id is not None and bare.eos_id is not None and bare.pad_id is not None
    assert bare.add_bos_token is False
