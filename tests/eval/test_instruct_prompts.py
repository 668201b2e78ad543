"""The evaluation's instruct prompts (HumanEval and its translations, MBPP, LeetCode with and without chain of thought)
are rendered by the template code SFT trains with: the ids the local generator gives the model are, token for token,
the untrained prompt part of the training sample `ChatFormat.conversation` makes of the same messages and an answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from repolm.eval.generators import LocalGenerator
from repolm.eval.tasks import INSTRUCT, TASKS
from repolm.eval.tasks.leetcode import COT_SENTENCE_PAPER
from repolm.tokenizer import ChatFormat, CodeTokenizer


@pytest.fixture(scope="module")
def generator(tiny_model_dir: Path) -> LocalGenerator:
    return LocalGenerator(tiny_model_dir, device="cpu", dtype="float32", max_seq_len=8192)  # prompts only: none is cut


@pytest.mark.parametrize("task_name", ["humaneval", "humaneval-java", "mbpp", "leetcode", "leetcode-cot"])
def test_instruct_prompts_are_the_training_format(
    task_name: str, benchmarks_dir: Path, generator: LocalGenerator, tiny_model_dir: Path
) -> None:
    task = TASKS[task_name]
    problem = task.load(benchmarks_dir)[0]
    request = task.request(problem, INSTRUCT)
    assert request.kind == "chat" and [message["role"] for message in request.messages] == ["user"]
    if task_name == "leetcode-cot":
        assert request.messages[0]["content"] == problem.prompt + "\n" + COT_SENTENCE_PAPER

    prompt = generator.prompt_ids(request)

    chat_format = ChatFormat(CodeTokenizer.load(tiny_model_dir))
    training = chat_format.conversation([*request.messages, {"role": "assistant", "content": "```python\npass\n```"}])
    assert training.ids[: len(prompt)] == prompt
    assert not any(training.loss_mask[: len(prompt)]) and training.loss_mask[len(prompt)]
    assert chat_format.tokenizer.decode(prompt).endswith("\n### Response:\n")
