"""The prompt builder on the real small tokenizer of the tests: exact FIM layouts, cross-file context in each
language's comments, prefix-heavy budgets that hold for any lengths, cuts that never split a character, chat with
and without a folder template, refusals, and the evaluation's fitting rule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models

from repolm.errors import RepolmError
from repolm.infer.prompt_builder import (
    BuiltPrompt,
    PromptBudget,
    PromptBuilder,
    comment_line,
    render_context,
)
from repolm.infer.prompts import fim_prompt_ids
from repolm.infer.retrieval import ContextSnippet
from repolm.tokenizer import DEEPSEEK_CODER_CHAT_TEMPLATE, CodeTokenizer

# spelled out here (not imported) so that a wrong constant in the tokenizer package shows up as a failure
BOS = "<｜begin▁of▁sentence｜>"
FIM_BEGIN = "<｜fim▁begin｜>"
FIM_HOLE = "<｜fim▁hole｜>"
FIM_END = "<｜fim▁end｜>"

PREFIX = "import os\n\ndef main():\n    "
SUFFIX = "\n    return 0\n"
HELPER = ContextSnippet("pkg/util.py", "def helper():\n    return 42\n\nclass Foo:\n    pass\n", start_line=3)
CONSTANT = ContextSnippet("pkg/const.py", "LIMIT = 10", source="import")

# CrossCodeEval's layout, written out by hand for a Python file
PYTHON_CONTEXT = (
    "# Here are some relevant code fragments from other files of the repo:\n"
    "\n"
    "# the below code fragment can be found in:\n"
    "# pkg/util.py\n"
    "# def helper():\n"
    "#     return 42\n"
    "#\n"
    "# class Foo:\n"
    "#     pass\n"
    "\n"
    "# the below code fragment can be found in:\n"
    "# pkg/const.py\n"
    "# LIMIT = 10\n"
    "\n"
)
ROOMY = PromptBudget(4096, context_share=0.5)


def _ids(tokenizer: CodeTokenizer, *tokens: str) -> list[int]:
    ids = [tokenizer.token_to_id(token) for token in tokens]
    assert None not in ids
    return ids


@pytest.fixture(scope="module")
def builder(small_tokenizer: CodeTokenizer) -> PromptBuilder:
    return PromptBuilder(small_tokenizer)


# -----------------------------------------------------------------------------
# Layouts


@pytest.mark.parametrize("prefix,suffix", [(PREFIX, SUFFIX), ("", "x = 1\n"), ("import os\n", ""), ("", "")])
def test_psm_and_spm_exact_ids(small_tokenizer: CodeTokenizer, prefix: str, suffix: str) -> None:
    bos, begin, hole, end = _ids(small_tokenizer, BOS, FIM_BEGIN, FIM_HOLE, FIM_END)
    prefix_ids, suffix_ids = small_tokenizer.encode(prefix), small_tokenizer.encode(suffix)
    psm = PromptBuilder(small_tokenizer, "psm").completion(prefix, suffix, budget=ROOMY)
    assert psm.ids == [bos, begin, *prefix_ids, hole, *suffix_ids, end]
    assert psm.ids == fim_prompt_ids(small_tokenizer, prefix, suffix, "psm")
    assert psm.text == f"{BOS}{FIM_BEGIN}{prefix}{FIM_HOLE}{suffix}{FIM_END}"
    assert (psm.kind, psm.context, psm.cut) == ("fim-psm", [], {"prefix": 0, "suffix": 0, "context": 0, "prompt": 0})

    spm = PromptBuilder(small_tokenizer, "spm").completion(prefix, suffix, budget=ROOMY)
    assert spm.ids == [bos, begin, hole, *suffix_ids, end, *prefix_ids]
    assert spm.ids == fim_prompt_ids(small_tokenizer, prefix, suffix, "spm")
    assert spm.text == f"{BOS}{FIM_BEGIN}{FIM_HOLE}{suffix}{FIM_END}{prefix}"
    assert spm.kind == "fim-spm"


def test_completion_without_suffix_is_plain(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    (bos,) = _ids(small_tokenizer, BOS)
    built = builder.completion(PREFIX, budget=ROOMY)
    assert (built.kind, built.ids, built.text) == ("completion", [bos, *small_tokenizer.encode(PREFIX)], BOS + PREFIX)
    assert builder.completion("", budget=ROOMY).ids == [bos]
    assert builder.completion(PREFIX, "", budget=ROOMY).kind == "fim-psm"  # an empty suffix is still infilling


def test_context_and_path_comment_in_the_prefix_region(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    bos, begin, hole, end = _ids(small_tokenizer, BOS, FIM_BEGIN, FIM_HOLE, FIM_END)
    built = builder.completion(PREFIX, SUFFIX, budget=ROOMY, context=[HELPER, CONSTANT], path="pkg/main.py")
    region = PYTHON_CONTEXT + "# pkg/main.py\n" + PREFIX
    assert built.text == f"{BOS}{FIM_BEGIN}{region}{FIM_HOLE}{SUFFIX}{FIM_END}"
    encode = small_tokenizer.encode
    assert built.ids == [
        bos,
        begin,
        *encode(PYTHON_CONTEXT),
        *encode("# pkg/main.py\n"),
        *encode(PREFIX),
        hole,
        *encode(SUFFIX),
        end,
    ]
    assert built.context == [HELPER, CONSTANT]
    # the parts join at line breaks: the whole text encodes to the same ids (text round-trips both ways)
    assert encode(built.text) == built.ids and small_tokenizer.decode(built.ids) == built.text

    spm = PromptBuilder(small_tokenizer, "spm").completion(PREFIX, SUFFIX, budget=ROOMY, context=[HELPER, CONSTANT])
    assert spm.text == f"{BOS}{FIM_BEGIN}{FIM_HOLE}{SUFFIX}{FIM_END}{PYTHON_CONTEXT}{PREFIX}"  # no path: no header
    plain = builder.completion(PREFIX, budget=ROOMY, context=[HELPER, CONSTANT], path="pkg/main.py")
    assert plain.text == BOS + region and plain.kind == "completion"
    without_header = PromptBuilder(small_tokenizer, path_comment=False)
    assert without_header.completion(PREFIX, budget=ROOMY, path="pkg/main.py").text == BOS + PREFIX


@pytest.mark.parametrize(
    "path,mark,header",
    [
        ("app/main.py", "#", "# app/main.py\n"),
        ("src/Main.java", "//", "// src/Main.java\n"),
        ("web/app.js", "//", "// web/app.js\n"),
        ("db/schema.sql", "--", "-- db/schema.sql\n"),
        ("lisp/core.clj", ";", "; lisp/core.clj\n"),
        ("notes.unknownext", "#", ""),  # unknown language: "#" for the context, no path comment
        ("data/config.json", "#", ""),  # no comment syntax: "#" for the context, no path comment
    ],
)
def test_context_in_the_current_files_comment_syntax(builder: PromptBuilder, path: str, mark: str, header: str) -> None:
    built = builder.completion("x", budget=ROOMY, context=[CONSTANT], path=path)
    expected_context = (
        f"{mark} Here are some relevant code fragments from other files of the repo:\n\n"
        f"{mark} the below code fragment can be found in:\n{mark} pkg/const.py\n{mark} LIMIT = 10\n\n"
    )
    assert built.text == BOS + expected_context + header + "x"


def test_block_comment_languages_and_hostile_paths() -> None:
    assert comment_line("a { color: red } /* x */", "CSS") == "/* a { color: red } / * x * / */\n"
    assert comment_line("", "Python") == "#\n" and comment_line("", None) == "#\n"
    assert comment_line("x", "Java") == "// x\n"
    # a path or code with line breaks cannot leave its comment
    hostile = ContextSnippet("evil\npath.py", "a = 1\rimport os\u2028b = 2")
    rendered = render_context([hostile], "Python")
    assert all(line == "" or line.startswith("#") for line in rendered.split("\n"))
    assert "# evil path.py\n" in rendered and "# import os\n" in rendered
    assert render_context([], "Python") == ""


# -----------------------------------------------------------------------------
# Budgets


def test_context_is_dropped_when_it_does_not_fit(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    big = ContextSnippet(
        "pkg/big.py", "".join(f"def function_{i}(value):\n    return value * {i}\n" for i in range(30))
    )
    small = ContextSnippet("pkg/a.py", "A = 1")
    medium = ContextSnippet("pkg/b.py", "def b(x):\n    return x + 1\n")
    header = len(small_tokenizer.encode(render_context([small], "Python"))) - len(
        small_tokenizer.encode(render_context([small], "Python").split("\n\n", 1)[1])
    )
    sizes = {s.path: len(small_tokenizer.encode(render_context([s], "Python"))) - header for s in (big, small, medium)}
    assert sizes["pkg/big.py"] > 300 > sizes["pkg/a.py"] + sizes["pkg/b.py"]
    limit = header + sizes["pkg/a.py"] + sizes["pkg/b.py"]
    budget = PromptBudget(400, context_share=limit / 400)
    built = builder.completion(PREFIX, SUFFIX, budget=budget, context=[big, small, medium], path="m.py")
    assert built.context == [small, medium]  # the big one is dropped, the smaller ones after it still fit
    assert built.cut == {"prefix": 0, "suffix": 0, "context": sizes["pkg/big.py"], "prompt": 0}
    assert render_context([small, medium], "Python") in built.text and "pkg/big.py" not in built.text

    one_less = PromptBudget(400, context_share=(limit - 1) / 400)
    built = builder.completion(PREFIX, SUFFIX, budget=one_less, context=[big, small, medium], path="m.py")
    assert built.context == [small] and built.cut["context"] == sizes["pkg/big.py"] + sizes["pkg/b.py"]

    none_fit = builder.completion(PREFIX, SUFFIX, budget=PromptBudget(400, context_share=0.0), context=[small])
    assert none_fit.context == [] and "Here are some" not in none_fit.text and none_fit.cut["context"] > 0


def test_context_displaces_the_oldest_prefix_tokens(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    long_prefix = "".join(f"value_{i} = compute({i})\n" for i in range(200))
    budget = PromptBudget(600, context_share=0.25, suffix_share=0.25)
    built = builder.completion(long_prefix, SUFFIX, budget=budget, context=[HELPER], path="m.py")
    context_tokens = len(small_tokenizer.encode(render_context([HELPER], "Python")))
    assert built.context == [HELPER] and context_tokens <= 150
    assert len(built.ids) == 600  # ASCII: no character to keep whole, the budget is used exactly
    kept = len(small_tokenizer.encode(long_prefix)) - built.cut["prefix"]
    assert kept == 600 - 4 - len(small_tokenizer.encode("# m.py\n")) - context_tokens - len(
        small_tokenizer.encode(SUFFIX)
    )


def test_prefix_heavy_split(small_tokenizer: CodeTokenizer) -> None:
    builder = PromptBuilder(small_tokenizer)
    prefix = "".join(f"left_{i} = {i}\n" for i in range(100))
    suffix = "".join(f"right_{i} = {i}\n" for i in range(100))
    prefix_ids, suffix_ids = small_tokenizer.encode(prefix), small_tokenizer.encode(suffix)
    hole = small_tokenizer.fim_hole_id

    def split(built: BuiltPrompt) -> tuple[list[int], list[int]]:
        at = built.ids.index(hole)
        return built.ids[2:at], built.ids[at + 1 : -1]

    window = 200 - 4  # BOS and three sentinels
    built = builder.completion(prefix, suffix, budget=PromptBudget(200, suffix_share=0.25))
    kept_prefix, kept_suffix = split(built)
    assert len(kept_suffix) == math.floor(window * 0.25) == 49 and len(kept_prefix) == window - 49
    assert kept_prefix == prefix_ids[-len(kept_prefix) :] and kept_suffix == suffix_ids[: len(kept_suffix)]
    assert built.cut == {
        "prefix": len(prefix_ids) - len(kept_prefix),
        "suffix": len(suffix_ids) - len(kept_suffix),
        "context": 0,
        "prompt": 0,
    }
    # a short prefix leaves its room to the suffix; a short suffix to the prefix
    short_prefix = builder.completion("a = 1\n", suffix, budget=PromptBudget(200, suffix_share=0.25))
    assert split(short_prefix)[0] == small_tokenizer.encode("a = 1\n") and len(short_prefix.ids) == 200
    short_suffix = builder.completion(prefix, "\n", budget=PromptBudget(200, suffix_share=0.25))
    assert split(short_suffix)[1] == small_tokenizer.encode("\n") and len(short_suffix.ids) == 200
    # the evaluation's rule: the suffix whole, the prefix cut first
    eval_rule = builder.completion(prefix, suffix, budget=PromptBudget(200, suffix_share=1.0))
    assert split(eval_rule)[1] == suffix_ids[:window] and split(eval_rule)[0] == []
    half = builder.completion(prefix, "b = 2\n", budget=PromptBudget(200, suffix_share=1.0))
    assert split(half)[1] == small_tokenizer.encode("b = 2\n") and len(half.ids) == 200


def test_cuts_never_split_a_character(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    prefix = "s = '😀中é'\n" * 30
    suffix = "t = 'é中😀'\n" * 30
    prefix_ids, suffix_ids = small_tokenizer.encode(prefix), small_tokenizer.encode(suffix)
    # this tokenizer spells these characters in byte tokens: a plain tail or head of ids may split one
    naive_tails = [small_tokenizer.decode(prefix_ids[-keep:]) for keep in range(1, 40)]
    naive_heads = [small_tokenizer.decode(suffix_ids[:keep]) for keep in range(1, 40)]
    assert any(text.startswith("\ufffd") for text in naive_tails)
    assert any(text.endswith("\ufffd") for text in naive_heads)
    for limit in range(8, 60):
        for suffix_share in (0.25, 0.5, 1.0):
            built = builder.completion(prefix, suffix, budget=PromptBudget(limit, suffix_share=suffix_share))
            assert len(built.ids) <= limit and "\ufffd" not in built.text
            kept_prefix = len(prefix_ids) - built.cut["prefix"]
            kept_suffix = len(suffix_ids) - built.cut["suffix"]
            assert prefix.endswith(small_tokenizer.decode(prefix_ids[len(prefix_ids) - kept_prefix :]))
            assert suffix.startswith(small_tokenizer.decode(suffix_ids[:kept_suffix]))
            assert limit - len(built.ids) <= 6  # at most 3 tokens of a 4-byte character on each side
        plain = builder.completion(prefix, budget=PromptBudget(limit))
        assert "\ufffd" not in plain.text and prefix.endswith(plain.text.removeprefix(BOS))


PIECES = ["a", "b_1", " ", "    ", "\n", "\t", "(", ")", ":", "=", "é", "中", "😀", "def ", "return ", "'", "#"]
TEXTS = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
SNIPPETS = st.lists(
    st.builds(ContextSnippet, path=st.sampled_from(["a.py", "pkg/b.py", "中.py"]), text=TEXTS), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(
    prefix=TEXTS,
    suffix=st.one_of(st.none(), TEXTS),
    limit=st.integers(1, 160),
    context_share=st.floats(0.0, 1.0),
    suffix_share=st.floats(0.0, 1.0),
    snippets=SNIPPETS,
    path=st.sampled_from([None, "m.py", "src/M.java"]),
    mode=st.sampled_from(["psm", "spm"]),
)
def test_budgets_hold_for_any_lengths(
    small_tokenizer: CodeTokenizer,
    prefix: str,
    suffix: str | None,
    limit: int,
    context_share: float,
    suffix_share: float,
    snippets: list[ContextSnippet],
    path: str | None,
    mode: str,
) -> None:
    builder = PromptBuilder(small_tokenizer, mode)  # type: ignore[arg-type]
    budget = PromptBudget(limit, context_share=context_share, suffix_share=suffix_share)
    header_tokens = len(small_tokenizer.encode(f"{'#' if path == 'm.py' else '//'} {path}\n")) if path else 0
    fixed = 1 + (3 if suffix is not None else 0) + header_tokens
    try:
        built = builder.completion(prefix, suffix, budget=budget, context=snippets, path=path)
    except RepolmError as error:
        assert limit < fixed or (limit == fixed and suffix is None and prefix), error
        return
    assert len(built.ids) <= limit
    assert small_tokenizer.decode(built.ids) == built.text and "\ufffd" not in built.text
    prefix_ids = small_tokenizer.encode(prefix)
    kept_prefix = prefix_ids[built.cut["prefix"] :]
    context_ids = small_tokenizer.encode(render_context(built.context, "Java" if path == "src/M.java" else "Python"))
    assert len(context_ids) <= math.floor(context_share * limit)
    remaining = iter(snippets)
    assert all(any(s is given for given in remaining) for s in built.context)  # in the order given
    if suffix is None:
        assert built.ids == [small_tokenizer.bos_id, *context_ids, *built.ids[1 + len(context_ids) :]]
        assert built.ids[len(built.ids) - len(kept_prefix) :] == kept_prefix
        return
    suffix_ids = small_tokenizer.encode(suffix)
    kept_suffix = suffix_ids[: len(suffix_ids) - built.cut["suffix"]]
    begin, hole, end = small_tokenizer.fim_begin_id, small_tokenizer.fim_hole_id, small_tokenizer.fim_end_id
    region_length = len(built.ids) - fixed - len(kept_suffix) + header_tokens
    if mode == "psm":
        assert built.ids[:2] == [small_tokenizer.bos_id, begin] and built.ids[-1] == end
        assert built.ids[2 + region_length :] == [hole, *kept_suffix, end]
        region = built.ids[2 : 2 + region_length]
    else:
        assert built.ids[: 3 + len(kept_suffix) + 1] == [small_tokenizer.bos_id, begin, hole, *kept_suffix, end]
        region = built.ids[4 + len(kept_suffix) :]
    assert region[: len(context_ids)] == context_ids
    assert region[len(region) - len(kept_prefix) :] == kept_prefix
    if built.cut["prefix"] and built.cut["suffix"]:  # both cut: the suffix keeps at most its share of the window
        window = limit - fixed - len(context_ids)
        assert len(kept_suffix) <= max(math.floor(window * suffix_share), window - len(prefix_ids))
        assert len(kept_prefix) + len(kept_suffix) >= window - 6


@settings(max_examples=200, deadline=None)
@given(prompt=TEXTS, prefix=TEXTS, suffix=TEXTS, budget=st.integers(1, 80))
def test_the_evaluations_rule_is_kept(
    small_tokenizer: CodeTokenizer, prompt: str, prefix: str, suffix: str, budget: int
) -> None:
    """`PromptBudget(n, context_share=0, suffix_share=1)` cuts as `LocalGenerator` did before the builder: BOS and the
    last tokens of a completion; an infilling prompt's prefix from the left first, then its suffix from the right.
    The texts here hold multi-byte characters, so a cut may drop up to 3 tokens more to keep characters whole."""
    builder = PromptBuilder(small_tokenizer)
    rule = PromptBudget(budget, context_share=0.0, suffix_share=1.0)
    bos = small_tokenizer.bos_id
    ids = [bos, *small_tokenizer.encode(prompt)]
    if len(ids) <= budget:
        assert builder.completion(prompt, budget=rule).ids == ids
    elif budget <= 1:
        with pytest.raises(RepolmError, match="no room for the prompt's text"):
            builder.completion(prompt, budget=rule)
    else:
        built = builder.completion(prompt, budget=rule).ids
        assert built[0] == bos and 0 <= (budget - 1) - (len(built) - 1) <= 3
        assert built[1:] == ids[len(ids) - (len(built) - 1) :]

    prefix_ids, suffix_ids = small_tokenizer.encode(prefix), small_tokenizer.encode(suffix)
    full = [bos, small_tokenizer.fim_begin_id, *prefix_ids, small_tokenizer.fim_hole_id, *suffix_ids]
    full.append(small_tokenizer.fim_end_id)
    if budget < 4:
        with pytest.raises(RepolmError, match="no room"):
            builder.completion(prefix, suffix, budget=rule)
        return
    built = builder.completion(prefix, suffix, budget=rule)
    if len(full) <= budget:
        assert built.ids == full
        return
    overflow = len(full) - budget
    drop_prefix = min(overflow, len(prefix_ids))  # the old _cut_infill
    drop_suffix = overflow - drop_prefix
    assert built.cut["prefix"] - drop_prefix in range(0, 4)
    assert built.cut["suffix"] - drop_suffix in range(0, 4)
    if drop_suffix:
        assert built.cut["prefix"] == len(prefix_ids)


def test_refusal_names_the_token_counts(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    prefix_tokens, suffix_tokens = len(small_tokenizer.encode(PREFIX)), len(small_tokenizer.encode(SUFFIX))
    total = 4 + prefix_tokens + suffix_tokens
    refuse = PromptBudget(total - 1, overflow="refuse")
    with pytest.raises(RepolmError, match=f"the prompt has {total} tokens .*more than max_prompt_tokens {total - 1}"):
        builder.completion(PREFIX, SUFFIX, budget=refuse)
    # what fits is not refused, and context never causes a refusal: it takes what is left, up to its share
    fits = PromptBudget(total + 5, context_share=1.0, overflow="refuse")
    built = builder.completion(PREFIX, SUFFIX, budget=fits, context=[HELPER, CONSTANT])
    assert built.ids == fim_prompt_ids(small_tokenizer, PREFIX, SUFFIX) and built.context == []
    roomy = builder.completion(PREFIX, SUFFIX, budget=PromptBudget(4096, overflow="refuse"), context=[HELPER])
    assert roomy.context == [HELPER]


# -----------------------------------------------------------------------------
# Chat

MESSAGES = [{"role": "user", "content": "Write a function that reverses a string."}]


def test_chat_with_the_folders_template(saved_small_tokenizer: Path) -> None:
    tokenizer = CodeTokenizer.load(saved_small_tokenizer)
    tokenizer.chat_template = (
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    built = PromptBuilder(tokenizer).chat(MESSAGES, budget=ROOMY)
    expected = f"{BOS}<user>Write a function that reverses a string.\n<assistant>"
    assert (built.kind, built.text) == ("chat", expected)
    assert built.ids == tokenizer.encode(expected) and built.ids.count(tokenizer.bos_id) == 1
    # an explicit template wins over the folder's
    explicit = PromptBuilder(tokenizer, chat_template="{{ messages[0]['content'] }}!").chat(MESSAGES, budget=ROOMY)
    assert explicit.text == MESSAGES[0]["content"] + "!"


def test_chat_without_a_folder_template_uses_deepseek_coders(saved_small_tokenizer: Path) -> None:
    tokenizer = CodeTokenizer.load(saved_small_tokenizer)
    tokenizer.chat_template = None
    with pytest.raises(RepolmError, match="no chat template"):
        tokenizer.apply_chat_template(MESSAGES)
    built = PromptBuilder(tokenizer).chat(MESSAGES, budget=ROOMY)
    assert built.text.startswith(BOS + "You are an AI programming assistant, utilizing the Deepseek Coder model")
    assert built.text.endswith("### Instruction:\nWrite a function that reverses a string.\n### Response:\n")
    assert built.text == tokenizer.apply_chat_template(MESSAGES, template=DEEPSEEK_CODER_CHAT_TEMPLATE)
    assert built.ids == tokenizer.encode(built.text)


def test_chat_too_long_is_cut_or_refused(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief. " * 40}, {"role": "user", "content": "Sort 中文😀 lists."}]
    full = builder.chat(messages, budget=ROOMY)
    assert full.cut["prompt"] == 0 and full.ids[0] == small_tokenizer.bos_id
    for limit in range(2, 40):
        cut = builder.chat(messages, budget=PromptBudget(limit))
        assert cut.ids[0] == small_tokenizer.bos_id and len(cut.ids) <= limit and "\ufffd" not in cut.text
        assert cut.ids[1:] == full.ids[len(full.ids) - (len(cut.ids) - 1) :]
        assert cut.cut == {"prefix": 0, "suffix": 0, "context": 0, "prompt": len(full.ids) - len(cut.ids)}
        assert full.text.endswith(cut.text.removeprefix(BOS))
    with pytest.raises(
        RepolmError, match=f"the chat prompt has {len(full.ids)} tokens, more than max_prompt_tokens 30"
    ):
        builder.chat(messages, budget=PromptBudget(30, overflow="refuse"))
    with pytest.raises(RepolmError, match="no room for the prompt's text"):
        builder.chat(messages, budget=PromptBudget(1))


# -----------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"max_prompt_tokens": 0}, "max_prompt_tokens must be >= 1"),
        ({"max_prompt_tokens": 10.5}, "max_prompt_tokens must be an integer"),
        ({"max_prompt_tokens": True}, "max_prompt_tokens must be an integer"),
        ({"max_prompt_tokens": 10, "context_share": 1.5}, "context_share must be a number in"),
        ({"max_prompt_tokens": 10, "suffix_share": -0.1}, "suffix_share must be a number in"),
        ({"max_prompt_tokens": 10, "suffix_share": "half"}, "suffix_share must be a number in"),
        ({"max_prompt_tokens": 10, "overflow": "truncate"}, "overflow must be 'cut' or 'refuse'"),
    ],
)
def test_bad_budgets_name_the_field(fields: dict, match: str) -> None:
    with pytest.raises(RepolmError, match=match):
        PromptBudget(**fields)


def test_bad_arguments_name_the_field(builder: PromptBuilder, small_tokenizer: CodeTokenizer) -> None:
    cases = [
        (lambda: PromptBuilder(small_tokenizer, "pms"), "unknown FIM mode 'pms'"),  # type: ignore[arg-type]
        (lambda: builder.completion(None, budget=ROOMY), "prefix must be a string"),  # type: ignore[arg-type]
        (lambda: builder.completion("a", 3, budget=ROOMY), "suffix must be a string"),  # type: ignore[arg-type]
        (lambda: builder.completion("a", budget=100), "budget must be a PromptBudget"),  # type: ignore[arg-type]
        (lambda: builder.completion("a", budget=ROOMY, context=["x"]), r"context\[0\] must be a ContextSnippet"),
        (lambda: builder.completion("a", budget=ROOMY, context=[ContextSnippet("p", None)]), r"context\[0\].text"),  # type: ignore[arg-type]
        (lambda: builder.completion("a", "b", budget=PromptBudget(3)), "max_prompt_tokens 3 leaves no room"),
        (lambda: builder.chat([], budget=ROOMY), "at least one message"),
        (lambda: builder.chat("hi", budget=ROOMY), "messages must be a list"),  # type: ignore[arg-type]
        (lambda: builder.chat([{"role": "user"}], budget=ROOMY), r"messages\[0\].content must be a string"),
        (lambda: builder.chat([{"role": "", "content": "x"}], budget=ROOMY), r"messages\[0\].role must not be"),
        (lambda: builder.chat(["hi"], budget=ROOMY), r"messages\[0\] must be an object"),
    ]
    for call, match in cases:
        with pytest.raises(RepolmError, match=match):
            call()
    without_fim_tokens = PromptBuilder(CodeTokenizer(Tokenizer(models.BPE())))
    with pytest.raises(RepolmError, match="no FIM tokens"):
        without_fim_tokens.completion("a", "b", budget=ROOMY)
    with pytest.raises(RepolmError, match="empty prompt"):
        without_fim_tokens.completion("", budget=ROOMY)


def test_literal_special_tokens_keep_client_text_from_injecting_sentinels(small_tokenizer):
    """A prefix that contains a sentinel's string: one sentinel id by default (as Hugging Face encodes), plain text
    with `literal_special_tokens` (what the server uses), and the layout keeps exactly one hole either way."""
    hole = small_tokenizer.fim_hole_id
    prefix = "x = '" + small_tokenizer.decode([hole]) + "'\n"
    budget = PromptBudget(max_prompt_tokens=200)
    trusting = PromptBuilder(small_tokenizer).completion(prefix, "", budget=budget)
    literal = PromptBuilder(small_tokenizer, literal_special_tokens=True).completion(prefix, "", budget=budget)
    assert trusting.ids.count(hole) == 2
    assert literal.ids.count(hole) == 1
    assert small_tokenizer.decode(literal.ids) == small_tokenizer.decode(trusting.ids)
    assert small_tokenizer.encode(prefix, literal_special_tokens=True) != small_tokenizer.encode(prefix)


def test_context_as_files_is_written_like_a_repository_sample(
    builder: PromptBuilder, small_tokenizer: CodeTokenizer
) -> None:
    """context_format="files": each snippet as a file of a repository-level sample (its path comment in its own
    language, its code, a blank line), no CrossCodeEval header; the budget counts the same way."""
    java = ContextSnippet("src/Util.java", "class Util {}")
    built = builder.completion(PREFIX, budget=ROOMY, context=[HELPER, java], path="pkg/main.py", context_format="files")
    files = "# pkg/util.py\n" + HELPER.text + "\n" + "// src/Util.java\nclass Util {}\n\n"
    assert built.text == f"{BOS}{files}# pkg/main.py\n{PREFIX}"
    assert render_context([HELPER, java], "Python", "files") == files
    assert built.context == [HELPER, java]
    tight = PromptBudget(400, context_share=len(small_tokenizer.encode("# pkg/util.py\n" + HELPER.text + "\n")) / 400)
    fitted = builder.completion(
        PREFIX, budget=tight, context=[HELPER, java], path="pkg/main.py", context_format="files"
    )
    assert fitted.context == [HELPER] and fitted.cut["context"] > 0
    with pytest.raises(RepolmError, match="context_format must be one of comments, files"):
        builder.completion(PREFIX, budget=ROOMY, context=[HELPER], path="pkg/main.py", context_format="xml")
