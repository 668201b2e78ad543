"""The instruct format, token for token: `ChatFormat` against the layout of deepseek-coder-facts.md section 5, and an
instruct folder saved by repolm against `transformers`' `apply_chat_template`.

The expected ids are built here from the format's parts, written out literally (not from the template), each part
encoded on its own: `[BOS]`, the system text, `### Instruction:\\n{user}\\n### Response:\\n` (prompt, not trained),
`{answer}\\n<|EOT|>` (trained) and the `\\n` after `<|EOT|>` (not trained).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.tokenizer import (
    BOS_TOKEN,
    CHAT_TEMPLATE_SYSTEM_PROMPT,
    EOS_TOKEN,
    EOT_TOKEN,
    FINETUNE_SYSTEM_PROMPT,
    ChatFormat,
    CodeTokenizer,
    instruct_tokenizer,
    user_turn,
)

USER_1 = "Write a function that reverses a string."
ANSWER_1 = "```python\ndef reverse(text):\n    return text[::-1]\n```"
USER_2 = "Now make it reverse the words."
ANSWER_2 = "```python\ndef reverse_words(text):\n    return ' '.join(text.split()[::-1])\n```"
SYSTEM = FINETUNE_SYSTEM_PROMPT + "\n"  # DeepSeek's finetune script puts a line break after its system text


def expected(tokenizer: CodeTokenizer, parts: list[tuple[str, bool]]) -> tuple[str, list[int], list[bool]]:
    """(text, ids, mask) of the parts, each encoded on its own: (text, trained)."""
    ids: list[int] = []
    mask: list[bool] = []
    for text, trained in parts:
        part_ids = tokenizer.encode(text)
        ids += part_ids
        mask += [trained] * len(part_ids)
    return "".join(text for text, _ in parts), ids, mask


def turn(user: str, answer: str) -> list[tuple[str, bool]]:
    return [(f"### Instruction:\n{user}\n### Response:\n", False), (f"{answer}\n{EOT_TOKEN}", True), ("\n", False)]


def conversation(system: str | None, *exchanges: tuple[str, str]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system is not None else []
    for user, answer in exchanges:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return messages


CASES = {
    "single turn": (None, [(USER_1, ANSWER_1)]),
    "single turn, system": (SYSTEM, [(USER_1, ANSWER_1)]),
    "two turns": (None, [(USER_1, ANSWER_1), (USER_2, ANSWER_2)]),
    "two turns, system": (SYSTEM, [(USER_1, ANSWER_1), (USER_2, ANSWER_2)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_text_ids_and_loss_mask_equal_the_instruct_format(small_tokenizer: CodeTokenizer, case: str) -> None:
    system, exchanges = CASES[case]
    parts = [(BOS_TOKEN, False), (system if system is not None else CHAT_TEMPLATE_SYSTEM_PROMPT, False)]
    for user, answer in exchanges:
        parts += turn(user, answer)
    text, ids, mask = expected(small_tokenizer, parts)

    rendered = ChatFormat(small_tokenizer).conversation(conversation(system, *exchanges))

    assert rendered.text == text
    assert rendered.ids == ids
    assert rendered.loss_mask == mask
    assert rendered.ids[0] == small_tokenizer.bos_id
    trained = [token for token, keep in zip(rendered.ids, rendered.loss_mask, strict=True) if keep]
    assert small_tokenizer.decode(trained) == "".join(f"{answer}\n{EOT_TOKEN}" for _, answer in exchanges)
    assert trained.count(small_tokenizer.eot_id) == len(exchanges)  # every answer ends with <|EOT|>, one id


def test_the_finetune_scripts_sample_is_the_single_turn_with_its_system_prompt(small_tokenizer: CodeTokenizer) -> None:
    """DeepSeek's finetune script: `{system}\\n### Instruction:\\n{instruction}\\n### Response:\\n` (masked), then
    `{output}\\n<|EOT|>`; the tokenizer adds BOS in front."""
    prompt = f"{FINETUNE_SYSTEM_PROMPT}\n### Instruction:\n{USER_1}\n### Response:\n"
    target = f"{ANSWER_1}\n{EOT_TOKEN}"
    rendered = ChatFormat(small_tokenizer).conversation(conversation(SYSTEM, (USER_1, ANSWER_1)))
    prompt_ids = small_tokenizer.encode(prompt, add_bos=True)
    target_ids = small_tokenizer.encode(target)
    assert rendered.ids[: len(prompt_ids) + len(target_ids)] == prompt_ids + target_ids
    assert rendered.loss_mask[: len(prompt_ids) + len(target_ids)] == [False] * len(prompt_ids) + [True] * len(
        target_ids
    )


@pytest.mark.parametrize("case", list(CASES))
def test_the_generation_prompt_is_the_conversation_up_to_the_last_answer(
    small_tokenizer: CodeTokenizer, case: str
) -> None:
    system, exchanges = CASES[case]
    messages = conversation(system, *exchanges)
    chat_format = ChatFormat(small_tokenizer)
    rendered = chat_format.conversation(messages)
    prompt = chat_format.prompt_text(messages[:-1])
    assert prompt.endswith("### Response:\n")
    assert rendered.text.startswith(prompt)
    assert rendered.answer_spans[-1][0] == len(prompt)
    prompt_ids = chat_format.prompt_ids(messages[:-1])
    assert rendered.ids[: len(prompt_ids)] == prompt_ids  # what inference gives the model is what training saw
    assert rendered.loss_mask[len(prompt_ids)]  # the first id after the prompt is trained


def test_answer_content_inverts_the_answer_layout(small_tokenizer: CodeTokenizer) -> None:
    chat_format = ChatFormat(small_tokenizer)
    assert chat_format.answer_content(ANSWER_1 + "\n") == ANSWER_1  # what the model writes before <|EOT|>
    assert chat_format.answer_content(ANSWER_1) == ANSWER_1


def test_bad_conversations_are_refused(small_tokenizer: CodeTokenizer) -> None:
    chat_format = ChatFormat(small_tokenizer)
    with pytest.raises(RepolmError, match="last message must be the assistant"):
        chat_format.conversation(user_turn(USER_1))
    with pytest.raises(RepolmError, match=r"messages\[0\]\.role: expected user"):
        chat_format.conversation([{"role": "assistant", "content": ANSWER_1}])
    with pytest.raises(RepolmError, match="not one of"):
        chat_format.conversation([{"role": "tool", "content": "x"}])


def test_a_template_without_end_of_turn_is_refused(small_tokenizer: CodeTokenizer) -> None:
    template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(RepolmError, match="does not end an assistant turn"):
        ChatFormat(small_tokenizer, template).conversation(conversation(None, (USER_1, ANSWER_1)))


def test_instruct_tokenizer_ends_turns_with_eot(small_tokenizer: CodeTokenizer) -> None:
    instruct = instruct_tokenizer(small_tokenizer)
    assert instruct.eos_token == EOT_TOKEN and instruct.pad_token == EOS_TOKEN
    assert instruct.chat_template == small_tokenizer.chat_template
    assert instruct.encode("def f(): pass") == small_tokenizer.encode("def f(): pass")


@pytest.mark.parametrize("case", list(CASES))
def test_a_saved_instruct_folder_renders_the_same_in_transformers(
    small_tokenizer: CodeTokenizer, tmp_path: Path, case: str
) -> None:
    transformers = pytest.importorskip("transformers")
    folder = instruct_tokenizer(small_tokenizer).save(tmp_path / "instruct")
    theirs = transformers.AutoTokenizer.from_pretrained(folder)
    ours = ChatFormat(CodeTokenizer.load(folder))
    system, exchanges = CASES[case]
    messages = conversation(system, *exchanges)

    assert theirs.eos_token == EOT_TOKEN
    assert theirs.apply_chat_template(messages, tokenize=False) == ours.conversation(messages).text
    assert theirs.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True) == ours.prompt_text(
        messages[:-1]
    )
    their_ids = theirs.apply_chat_template(messages[:-1], tokenize=True, add_generation_prompt=True)
    if isinstance(their_ids, dict) or hasattr(their_ids, "input_ids"):  # transformers 5 returns a BatchEncoding
        their_ids = their_ids["input_ids"]
    assert list(their_ids) == ours.prompt_ids(messages[:-1])
    assert theirs(ours.conversation(messages).text, add_special_tokens=False)["input_ids"] == (
        ours.conversation(messages).ids
    )
