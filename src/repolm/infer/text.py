"""Text in, text out: the tokenizer and prompt layers on top of the id-level `Engine`.

`TextGenerator` turns prompts into ids, runs the engine, and turns ids back into text incrementally, so
callers can stream. Stop strings are checked on the decoded text of each row (not on the prompt); the text
is cut before the first stop string. Text is released only when it is final: never half of a multi-byte
character, never the start of what may become a stop string.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from repolm.errors import RepolmError
from repolm.infer.engine import Engine
from repolm.infer.prompts import FimMode, completion_prompt_ids, fim_prompt_ids
from repolm.infer.sampling import SamplingParams
from repolm.model import Transformer
from repolm.tokenizer import CodeTokenizer


def end_of_generation_ids(tokenizer: CodeTokenizer) -> tuple[int, ...]:
    """The ids that end generation by default: end of sentence (base models) and end of turn (instruct models)."""
    return tuple(sorted({i for i in (tokenizer.eos_id, tokenizer.eot_id) if i is not None}))


@dataclass
class TextDelta:
    """New text of one row; `finished` is set on the row's last delta."""

    row: int
    text: str
    finished: bool = False


class IncrementalDecoder:
    """Incremental detokenizer of one row, with stop-string truncation."""

    def __init__(self, tokenizer: CodeTokenizer, stop_ids: set[int], stop_strings: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids
        self.stop_strings = [s for s in stop_strings if s]
        self.ids: list[int] = []
        self.emitted = 0  # characters of the decoded text already released
        self.stopped = False
        # ids[:settled_ids] decode to settled_text, which ends on a whole character: later ids cannot change it,
        # so each token decodes only the ids after it instead of the whole row
        self.settled_ids = 0
        self.settled_text = ""

    def _text(self) -> str:
        """The decoded text of all ids so far."""
        text = self.settled_text + self.tokenizer.decode(self.ids[self.settled_ids :])
        if not text.endswith("\ufffd"):  # no incomplete multi-byte character at the end
            self.settled_ids, self.settled_text = len(self.ids), text
        return text

    def add(self, token: int) -> str:
        """Add a token; return the newly final text. Sets `stopped` when a stop string appears."""
        if token not in self.stop_ids:
            self.ids.append(token)
        text = self._text()
        cut = min((i for i in (text.find(s) for s in self.stop_strings) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            delta = text[self.emitted : cut] if cut > self.emitted else ""
            self.emitted = max(self.emitted, cut)
            return delta
        final = len(text)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for its other bytes
            final = len(text.rstrip("\ufffd"))
        for stop in self.stop_strings:  # hold back a tail that may grow into a stop string
            for length in range(min(len(stop) - 1, final - self.emitted), 0, -1):
                if text[final - length : final] == stop[:length]:
                    final -= length
                    break
        delta = text[self.emitted : final] if final > self.emitted else ""
        self.emitted = max(self.emitted, final)
        return delta

    def flush(self) -> str:
        """The rest of the text at the end of generation (a held-back partial stop string is real text)."""
        if self.stopped:
            return ""
        text = self._text()
        delta = text[self.emitted :]
        self.emitted = len(text)
        return delta


class TextGenerator:
    """Completion and infilling on text, batched and streamed."""

    def __init__(self, engine: Engine, tokenizer: CodeTokenizer) -> None:
        self.engine = engine
        self.tokenizer = tokenizer

    def default_stop_ids(self) -> tuple[int, ...]:
        """End of sentence (base models) and end of turn (instruct models)."""
        return end_of_generation_ids(self.tokenizer)

    def stream_ids(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        stop_strings: Sequence[str] = (),
        seeds: Sequence[int] | None = None,
    ) -> Iterator[TextDelta]:
        """Generate from id prompts; yield text deltas per row as they become final (`seeds`: one sampling seed
        per prompt, see `Engine.stream`)."""
        if not params.stop_token_ids:
            params = replace(params, stop_token_ids=self.default_stop_ids())
        decoders = [IncrementalDecoder(self.tokenizer, set(params.stop_token_ids), stop_strings) for _ in prompts]

        def stop(row: int, _generated: list[int]) -> bool:
            return decoders[row].stopped

        for step in self.engine.stream(prompts, params, stop, seeds):
            for row, token in step.tokens.items():
                decoder = decoders[row]
                text = decoder.add(token)
                finished = row in step.finished or decoder.stopped
                if finished:
                    text += decoder.flush()
                if text or finished:
                    yield TextDelta(row, text, finished)

    def generate_ids(
        self,
        prompts: Sequence[Sequence[int]],
        params: SamplingParams,
        stop_strings: Sequence[str] = (),
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        """The completion text of every id prompt (`seeds` as in `stream_ids`)."""
        outputs = ["" for _ in prompts]
        for delta in self.stream_ids(prompts, params, stop_strings, seeds):
            outputs[delta.row] += delta.text
        return outputs

    def generate(self, prompts: Sequence[str], params: SamplingParams, stop_strings: Sequence[str] = ()) -> list[str]:
        """The completion text of every text prompt."""
        ids = [completion_prompt_ids(self.tokenizer, prompt) for prompt in prompts]
        return self.generate_ids(ids, params, stop_strings)

    def stream(self, prompt: str, params: SamplingParams, stop_strings: Sequence[str] = ()) -> Iterator[str]:
        """Stream the completion of one text prompt."""
        ids = completion_prompt_ids(self.tokenizer, prompt)
        for delta in self.stream_ids([ids], params, stop_strings):
            if delta.text:
                yield delta.text

    def infill(
        self,
        prefix: str,
        suffix: str,
        params: SamplingParams,
        mode: FimMode = "psm",
        stop_strings: Sequence[str] = (),
    ) -> Iterator[str]:
        """Stream the middle between `prefix` and `suffix`."""
        ids = fim_prompt_ids(self.tokenizer, prefix, suffix, mode)
        for delta in self.stream_ids([ids], params, stop_strings):
            if delta.text:
                yield delta.text


def load_model_and_tokenizer(
    model_dir: str | os.PathLike,
    device: str = "auto",
    dtype: str = "auto",
    tokenizer_dir: str | os.PathLike | None = None,
    options: tuple[str, str] = ("device", "dtype"),
) -> tuple[Transformer, CodeTokenizer]:
    """A model folder's model on `device` in `dtype` (names as `repolm.infer.devices` reads them, errors naming
    `options`) and its tokenizer (or `tokenizer_dir`'s); RepolmError when the tokenizer has more ids than the model."""
    from repolm.hf_folder import load_pretrained
    from repolm.infer.devices import resolve_device, resolve_dtype

    resolved_device = resolve_device(device, options[0])
    model = load_pretrained(model_dir, device=resolved_device, dtype=resolve_dtype(dtype, resolved_device, options[1]))
    tokenizer_dir = tokenizer_dir or model_dir
    tokenizer = CodeTokenizer.load(tokenizer_dir)
    if len(tokenizer) > model.config.vocab_size:
        raise RepolmError(
            f"{tokenizer_dir}: the tokenizer has {len(tokenizer)} ids but the model's vocab_size is "
            f"{model.config.vocab_size}"
        )
    return model, tokenizer
