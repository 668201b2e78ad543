"""Does a model follow the instruct format? The share of its greedy answers that end their turn with `<|EOT|>`.

`end_of_turn_share(model, samples, max_new_tokens)` (a model folder, or a `TextGenerator` loaded already) gives each
sample's prompt (the conversation without its last answer, rendered by `repolm.tokenizer.ChatFormat` with the
generation prompt, as training and `repolm chat` render it) to the model, decodes greedily (batched; a padded row gets
the logits it would have alone) for at most `max_new_tokens` tokens, and counts the answers whose last token is
`<|EOT|>`. Answers that stop at `<｜end▁of▁sentence｜>` (a base model's end of document) or run out of tokens count as
not following the format.
A base model is measured the same way, through the chat template its tokenizer carries (DeepSeek-Coder's when none).

Used by `benchmarks/bench_sft.py` (the README's figures), the slow SFT test and
`repolm.eval.heldout_tasks.instruct_format_share`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from repolm.data.instruction_records import InstructionSample
from repolm.errors import RepolmError
from repolm.infer.text import TextGenerator

logger = logging.getLogger(__name__)


@dataclass
class FormatResult:
    """The outcome of `end_of_turn_share`.

    Attributes:
        answers: answers generated; ended_with_eot / ended_with_eos / hit_limit: how they ended.
        share: ended_with_eot / answers.
        mean_answer_tokens: mean generated tokens per answer (the stop token included).
        examples: the first few (prompt's last message, answer text) pairs, for people to read.
    """

    answers: int
    ended_with_eot: int
    ended_with_eos: int
    hit_limit: int
    mean_answer_tokens: float
    examples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.ended_with_eot / self.answers if self.answers else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The counts, the share and the examples as JSON-serialisable values (examples as {"instruction",
        "answer"})."""
        return {
            "answers": self.answers,
            "ended_with_eot": self.ended_with_eot,
            "ended_with_eos": self.ended_with_eos,
            "hit_limit": self.hit_limit,
            "share": self.share,
            "mean_answer_tokens": self.mean_answer_tokens,
            "examples": [{"instruction": prompt, "answer": answer} for prompt, answer in self.examples],
        }


def end_of_turn_share(
    model_dir: str | Path | TextGenerator,
    samples: list[InstructionSample],
    max_new_tokens: int = 512,
    batch_size: int = 16,
    device: str = "cpu",
    examples: int = 3,
    progress: bool = False,
) -> FormatResult:
    """Greedy answers of the model to each sample's prompt and how they end (see the module docstring). A model
    folder is loaded on `device` in float32; a `TextGenerator` is used as it is."""
    from repolm.infer.engine import Engine
    from repolm.infer.sampling import SamplingParams
    from repolm.infer.text import load_model_and_tokenizer
    from repolm.tokenizer import ChatFormat

    if not samples:
        raise RepolmError("no samples to measure the instruct format on")
    if isinstance(model_dir, TextGenerator):
        engine, tokenizer = model_dir.engine, model_dir.tokenizer
    else:
        model, tokenizer = load_model_and_tokenizer(model_dir, device=device, dtype="float32")
        engine = Engine(model)
    eot, eos = tokenizer.eot_id, tokenizer.eos_id
    if eot is None:
        raise RepolmError(f"{model_dir}: the tokenizer has no <|EOT|> token")
    chat_format = ChatFormat(tokenizer)
    prompts = [chat_format.prompt_ids(sample.messages[:-1]) for sample in samples]
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))  # similar lengths batch together
    params = SamplingParams(max_new_tokens=max_new_tokens, stop_token_ids=tuple(i for i in (eot, eos) if i is not None))
    answers: list[list[int]] = [[] for _ in prompts]
    with tqdm(total=len(order), desc="instruct format", unit="answer", disable=not progress) as bar:
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            for row, generated in zip(rows, engine.generate([prompts[row] for row in rows], params), strict=True):
                answers[row] = generated
            logger.info("instruct format: %d of %d answers", min(first + batch_size, len(order)), len(order))
            bar.update(len(rows))
    ended_eot = sum(1 for answer in answers if answer and answer[-1] == eot)
    ended_eos = sum(1 for answer in answers if answer and answer[-1] == eos and eos != eot)
    shown = [
        (samples[index].messages[-2]["content"], tokenizer.decode(answers[index]))
        for index in range(min(examples, len(samples)))
    ]
    return FormatResult(
        answers=len(answers),
        ended_with_eot=ended_eot,
        ended_with_eos=ended_eos,
        hit_limit=len(answers) - ended_eot - ended_eos,
        mean_answer_tokens=sum(len(answer) for answer in answers) / len(answers),
        examples=shown,
    )
