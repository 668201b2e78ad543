"""In-context copying: does the model predict a span better the second time it sees it?

Cross-file completion gains from retrieved or oracle context only if the model copies what its context holds (an
identifier defined in a retrieved file), and a compressor such as `xz` wins on repetitive code by referring back
to earlier bytes; both need the ability that induction heads give a transformer (Olsson et al. 2022, "In-context
learning and induction heads"), which forms only after some training. This module measures it the way that paper
does: a span scored twice in a row, `[start] span span`, and the loss per token of the second copy compared with
the first. A model that copies predicts the repeat almost for free (a few tenths of a nat); a model that does not
scores both copies alike.

Two kinds of spans: code (consecutive tokens of held-out files, one span per file, repositories in turn) and random
tokens (ids drawn uniformly from the tokenizer's ordinary ids, so nothing but the first copy can predict the
second). Scoring is `repolm.eval.heldout_loss.token_nats`'s, the held-out evaluations' own.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from repolm.errors import RepolmError
from repolm.eval.heldout_loss import start_token, token_nats
from repolm.eval.heldout_tasks import (
    ModelLike,
    check_positive,
    describe_model,
    first_samples,
    resolve_generator,
    spread_files,
)

logger = logging.getLogger(__name__)


def _copy_row(nats: list[np.ndarray], span_tokens: int) -> dict[str, Any]:
    """Loss per token of the first and the second copy over the scored sequences (each `[start] span span`: element
    i of a sequence's NLL is token i + 1's, so the first copy is 0..span-1 and the second span..2*span-1)."""
    if not nats:
        return {"spans": 0, "first_copy_loss": None, "second_copy_loss": None, "copy_gain": None}
    first = float(np.mean([values[:span_tokens].mean() for values in nats]))
    second = float(np.mean([values[span_tokens:].mean() for values in nats]))
    return {"spans": len(nats), "first_copy_loss": first, "second_copy_loss": second, "copy_gain": first - second}


def in_context_copying(
    model: ModelLike,
    data: str | os.PathLike,
    span_tokens: int = 64,
    max_spans: int = 48,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "auto",
    dtype: str = "auto",
) -> dict[str, Any]:
    """Loss per token (nats) on the first and the second copy of spans repeated once, for code and random tokens.

    `data`: held-out samples (a folder `repolm.eval.heldout_tasks.read_heldout_samples` reads). Code spans: the
    first `span_tokens` tokens of each code file (path comment excluded) that has that many, files taken one
    repository after another (`spread_files` with `seed`), at most `max_spans`. Random spans: `max_spans` spans of
    ids drawn with `seed` from the ids that are not special tokens.

    Returns {"code": row, "random": row, "span_tokens", "model", "device", "dtype", "data", "seconds"}; a row is
    {"spans", "first_copy_loss", "second_copy_loss", "copy_gain" (first - second)}, the losses None with no span.
    """
    check_positive(span_tokens=span_tokens, max_spans=max_spans, batch_size=batch_size)
    started = time.perf_counter()
    generator = resolve_generator(model, device, dtype)
    tokenizer = generator.tokenizer
    _, start_id = start_token(tokenizer, "auto", data)
    backend = tokenizer.encoding_backend(literal_special_tokens=True)

    code_spans: list[list[int]] = []
    for file in spread_files(list(first_samples(data, None)), seed):
        if len(code_spans) >= max_spans:
            break
        ids = backend.encode(file.block[file.header_length :], add_special_tokens=False).ids
        if len(ids) >= span_tokens:
            code_spans.append(ids[:span_tokens])
    special = set(backend.get_added_tokens_decoder())
    ordinary = np.array([index for index in range(tokenizer.vocab_size) if index not in special], dtype=np.int64)
    if not len(ordinary):
        raise RepolmError(f"{data}: the tokenizer has no ordinary ids to draw random spans from")
    rng = np.random.default_rng(seed)
    random_spans = [rng.choice(ordinary, size=span_tokens).tolist() for _ in range(max_spans)]

    model_of = generator.engine.model
    rows = {}
    for kind, spans in (("code", code_spans), ("random", random_spans)):
        sequences = [[start_id, *span, *span] for span in spans]
        nats = list(token_nats(model_of, sequences, 2 * span_tokens + 1, batch_size=batch_size))
        rows[kind] = _copy_row(nats, span_tokens)
    code, random = rows["code"], rows["random"]
    if code["spans"]:
        logger.info(
            "in-context copying: code %.3f -> %.3f nats/token, random %.3f -> %.3f (%d and %d spans of %d tokens)",
            code["first_copy_loss"], code["second_copy_loss"], random["first_copy_loss"],
            random["second_copy_loss"], code["spans"], random["spans"], span_tokens,
        )  # fmt: skip
    return {
        **rows,
        "span_tokens": span_tokens,
        **describe_model(model, generator),
        "data": str(data),
        "seconds": time.perf_counter() - started,
    }
