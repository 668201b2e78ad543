"""Prompt construction: FIM id layouts (PSM, SPM), completion prompts, cursor splitting and the instruct template."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer, models

from repolm.errors import RepolmError
from repolm.infer.prompts import completion_prompt_ids, fim_prompt_ids, instruct_prompt, split_at_cursor
from repolm.tokenizer import CodeTokenizer

# spelled out here (not imported) so that a wrong constant in the tokenizer package shows up as a failure
BOS = "<｜begin▁of▁sentence｜>"
FIM_BEGIN = "<｜fim▁begin｜>"
FIM_HOLE = "<｜fim▁hole｜>"
FIM_END = "<｜fim▁end｜>"

PREFIX = "def add(a, b):\n    "
SUFFIX = "\n    return result\n"


def _ids(tokenizer: CodeTokenizer, *tokens: str) -> list[int]:
    ids = [tokenizer.token_to_id(token) for token in tokens]
    assert None not in ids
    return ids


@pytest.mark.parametrize(
    "prefix,suffix",
    [(PREFIX, SUFFIX), ("", "x = 1\n"), ("import os\n", ""), ("", ""), ("s = '中文 😀", "'\n"), ("def f", "oo():")],
)
def test_fim_psm_and_spm_id_layout(small_tokenizer: CodeTokenizer, prefix: str, suffix: str) -> None:
    bos, begin, hole, end = _ids(small_tokenizer, BOS, FIM_BEGIN, FIM_HOLE, FIM_END)
    assert small_tokenizer.add_bos_token
    assert (small_tokenizer.bos_id, small_tokenizer.fim_begin_id) == (bos, begin)
    # prefix and suffix are encoded on their own: no BPE merge crosses a sentinel
    prefix_ids, suffix_ids = small_tokenizer.encode(prefix), small_tokenizer.encode(suffix)

    psm = fim_prompt_ids(small_tokenizer, prefix, suffix, "psm")
    assert psm == [bos, begin, *prefix_ids, hole, *suffix_ids, end]
    assert small_tokenizer.decode(psm) == f"{BOS}{FIM_BEGIN}{prefix}{FIM_HOLE}{suffix}{FIM_END}"
    assert fim_prompt_ids(small_tokenizer, prefix, suffix) == psm  # PSM is the default

    spm = fim_prompt_ids(small_tokenizer, prefix, suffix, "spm")
    assert spm == [bos, begin, hole, *suffix_ids, end, *prefix_ids]
    assert small_tokenizer.decode(spm) == f"{BOS}{FIM_BEGIN}{FIM_HOLE}{suffix}{FIM_END}{prefix}"

    assert fim_prompt_ids(small_tokenizer, prefix, suffix, "psm", add_bos=False) == psm[1:]
    assert fim_prompt_ids(small_tokenizer, prefix, suffix, "spm", add_bos=False) == spm[1:]


def test_no_bos_when_the_tokenizer_does_not_add_it(saved_small_tokenizer: Path) -> None:
    tokenizer = CodeTokenizer.load(saved_small_tokenizer)  # a fresh instance: the session tokenizer stays as it is
    tokenizer.add_bos_token = False
    begin, hole, end = _ids(tokenizer, FIM_BEGIN, FIM_HOLE, FIM_END)
    prefix_ids, suffix_ids = tokenizer.encode(PREFIX), tokenizer.encode(SUFFIX)
    assert fim_prompt_ids(tokenizer, PREFIX, SUFFIX) == [begin, *prefix_ids, hole, *suffix_ids, end]
    assert fim_prompt_ids(tokenizer, PREFIX, SUFFIX, add_bos=True)[0] == tokenizer.bos_id
    assert completion_prompt_ids(tokenizer, "import os") == tokenizer.encode("import os")


def test_completion_prompt_ids(small_tokenizer: CodeTokenizer) -> None:
    (bos,) = _ids(small_tokenizer, BOS)
    assert completion_prompt_ids(small_tokenizer, "def f():") == [bos, *small_tokenizer.encode("def f():")]
    assert completion_prompt_ids(small_tokenizer, "") == [bos]
    assert completion_prompt_ids(small_tokenizer, "x", add_bos=False) == small_tokenizer.encode("x")


def test_fim_errors(small_tokenizer: CodeTokenizer) -> None:
    with pytest.raises(RepolmError, match="unknown FIM mode 'pms'"):
        fim_prompt_ids(small_tokenizer, "a", "b", "pms")  # type: ignore[arg-type]
    without_fim_tokens = CodeTokenizer(Tokenizer(models.BPE()))
    with pytest.raises(RepolmError, match="no FIM tokens"):
        fim_prompt_ids(without_fim_tokens, "a", "b")


FILE = "def f(x):\n    return x\n"


@pytest.mark.parametrize(
    "line,col,prefix",
    [
        (1, 1, ""),  # start of file
        (1, 5, "def "),
        (1, 10, "def f(x):"),  # end of line 1 (one past its last character)
        (2, 1, "def f(x):\n"),
        (2, 5, "def f(x):\n    "),
        (2, 13, "def f(x):\n    return x"),  # end of line 2
        (3, 1, FILE),  # end of file: the empty line after the final newline
    ],
)
def test_split_at_cursor(line: int, col: int, prefix: str) -> None:
    assert split_at_cursor(FILE, line, col) == (prefix, FILE[len(prefix) :])


@pytest.mark.parametrize(
    "line,col,problem",
    [
        (0, 1, "--line 0 is outside the file"),
        (4, 1, "--line 4 is outside the file"),
        (-1, 1, "--line -1"),
        (1, 0, "--col 0 is outside line 1"),
        (1, 11, "--col 11 is outside line 1"),
        (2, 14, "--col 14 is outside line 2"),
        (3, 2, "--col 2 is outside line 3"),
    ],
)
def test_split_at_cursor_out_of_range(line: int, col: int, problem: str) -> None:
    with pytest.raises(RepolmError, match=problem):
        split_at_cursor(FILE, line, col)


def test_split_at_cursor_without_final_newline_and_empty_file() -> None:
    assert split_at_cursor("a\nbc", 2, 3) == ("a\nbc", "")
    with pytest.raises(RepolmError, match="--line 3"):
        split_at_cursor("a\nbc", 3, 1)
    assert split_at_cursor("", 1, 1) == ("", "")
    with pytest.raises(RepolmError, match="--col 2"):
        split_at_cursor("", 1, 2)
    with pytest.raises(RepolmError, match="--line 2"):
        split_at_cursor("", 2, 1)


def test_split_at_cursor_crlf_and_cr() -> None:
    text = "ab\r\ncd\r\n"
    assert split_at_cursor(text, 1, 3) == ("ab", "\r\ncd\r\n")  # end of line 1: before the CRLF
    assert split_at_cursor(text, 2, 1) == ("ab\r\n", "cd\r\n")
    assert split_at_cursor(text, 2, 3) == ("ab\r\ncd", "\r\n")
    assert split_at_cursor(text, 3, 1) == (text, "")
    with pytest.raises(RepolmError, match="--col 4 is outside line 1"):  # the CR is not a column
        split_at_cursor(text, 1, 4)
    with pytest.raises(RepolmError, match="--line 4"):
        split_at_cursor(text, 4, 1)
    assert split_at_cursor("a\rb", 2, 1) == ("a\r", "b")  # old Mac line ends


def test_split_at_cursor_counts_lines_like_editors() -> None:
    # a form feed (common in Python and Emacs Lisp sources), a vertical tab and U+2028 are not line breaks in
    # editors, though str.splitlines splits at them
    text = "x = 1\n\x0c\ndef g():\n    s = 'a\u2028b\x0bc'\n"
    assert split_at_cursor(text, 3, 1) == ("x = 1\n\x0c\n", "def g():\n    s = 'a\u2028b\x0bc'\n")
    prefix, suffix = split_at_cursor(text, 4, 13)
    assert (prefix[-8:], suffix) == ("s = 'a\u2028b", "\x0bc'\n")
    assert split_at_cursor(text, 5, 1) == (text, "")
    # columns count characters, not bytes
    assert split_at_cursor("héllo 😀x\n", 1, 8) == ("héllo 😀", "x\n")


def test_instruct_prompt_renders_the_chat_template(small_tokenizer: CodeTokenizer) -> None:
    instruction = "Write a quicksort in Python."
    rendered = instruct_prompt(small_tokenizer, instruction)
    assert rendered.startswith(BOS + "You are an AI programming assistant")
    assert f"### Instruction:\n{instruction}\n" in rendered
    assert rendered.endswith("### Response:\n")  # the generation prompt, as transformers renders the template
    assert rendered == small_tokenizer.apply_chat_template([{"role": "user", "content": instruction}])
    ids = small_tokenizer.encode(rendered)
    assert ids[0] == small_tokenizer.bos_id and ids.count(small_tokenizer.bos_id) == 1

    with_system = instruct_prompt(small_tokenizer, instruction, system="Answer in one line.")
    assert with_system == f"{BOS}Answer in one line.### Instruction:\n{instruction}\n### Response:\n"
