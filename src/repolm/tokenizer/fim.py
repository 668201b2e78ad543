"""Fill-in-the-middle (FIM) for pretraining: split files at random characters and rearrange them with sentinel ids.

DeepSeek-Coder (paper section 3.1.2) trains with PSM at FIM rate 0.5, applied per file before packing, split at the
character level (maintainer, deepseek-ai/DeepSeek-Coder#107, after gpt-neox / bigcode Megatron `permute`). Each file
is FIM'd with probability `rate`; two cut points are drawn uniformly in [0, len(text)] (inclusive) and sorted, so
prefix, middle or suffix may be empty. Characters are Python code points, so every part is valid Unicode. With
DeepSeek-Coder's sentinels (begin = `<｜fim▁begin｜>`, hole = `<｜fim▁hole｜>`, end = `<｜fim▁end｜>`):

    PSM  begin enc(prefix) hole enc(suffix) end enc(middle)          the paper's training format
    SPM  begin hole enc(suffix) end enc(prefix) enc(middle)          bigcode Megatron's SPM, the "variant 2 from the
                                                                     FIM paper" its code cites
    MSP  begin enc(s0) hole enc(s1) ... hole enc(sk) end hole enc(m1) ... hole enc(mk)    masked span prediction

SPM is Megatron's `<PRE><SUF> suffix <MID> prefix middle` with PRE = begin, SUF = hole, MID = end. We chose it over
the FIM paper's first SPM layout (`<SUF> suffix <PRE> prefix <MID> middle`) because prefix and middle are adjacent and
encoded separately, so an inference prompt `begin hole enc(suffix) end enc(prefix)` is tokenized exactly as training
saw it and the model just continues it.

MSP (T5-style span masking, the CodeGen2.5 objective of the paper's ablation), k = `msp_spans`: 2k cut points drawn
as above and sorted bound k non-overlapping spans m1..mk (between cuts 2i-1 and 2i; they may be empty or touch). The
input keeps the text around them (s0..sk) with a hole where each span was, then end, then each span after a hole, in
order; the file is s0 m1 s1 ... mk sk. This is our choice (the two-cut split generalised to k holes); CodeGen2's own
span-length distribution is not reproduced.

Every FIM'd file starts with begin in all three modes, so the modes can be told apart: MSP has a hole right after
end; SPM has a hole right after begin (so does PSM with an empty prefix, which reads back the same). Each part is
encoded separately and joined with the sentinel ids: no sentinel string ever passes through the BPE and no BPE merge
crosses a cut. (Text that itself contains a special-token string is encoded as the tokenizer makes of it;
`repolm.tokenizer.corpus` turns on `encode_special_tokens` so such text stays plain BPE.)

A repository sample (`fim_document`) is cut at its file offsets; each file is FIM'd on its own (no span crosses two
files), the pieces are concatenated and one end-of-sentence id ends the document. `undo_fim` rebuilds the text.

Not handled here: reading corpora and writing token files (`repolm.tokenizer.corpus`), packing into training windows
(`repolm.train`), inference prompts (`repolm.infer.prompts`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from repolm.errors import RepolmError
from repolm.tokenizer.special_tokens import EOS_TOKEN, FIM_BEGIN_TOKEN, FIM_END_TOKEN, FIM_HOLE_TOKEN
from repolm.tokenizer.tokenizer import CodeTokenizer

logger = logging.getLogger(__name__)

FIM_MODES = ("psm", "spm", "msp")


@dataclass
class FimConfig:
    """How files are rearranged for fill-in-the-middle.

    Attributes:
        rate: probability that a file is FIM'd (0.5 in the paper; 0 = plain next-token prediction, 1 = every file).
        mode: "psm" (the paper), "spm" (every FIM'd file in SPM) or "msp" (masked span prediction).
        spm_rate: with mode "psm", the share of FIM'd files put in SPM instead (Megatron's --fim-spm-rate; 0 here,
            as DeepSeek-Coder trained PSM only). Must be 0 for the other modes.
        msp_spans: number of masked spans per file in mode "msp" (k in the module docstring).
    """

    rate: float = 0.5
    mode: str = "psm"
    spm_rate: float = 0.0
    msp_spans: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not 0.0 <= self.rate <= 1.0:
            raise RepolmError(f"fim.rate must be in [0, 1], got {self.rate!r}")
        if self.mode not in FIM_MODES:
            raise RepolmError(f"fim.mode must be one of {', '.join(FIM_MODES)}, got {self.mode!r}")
        if isinstance(self.spm_rate, bool) or not 0.0 <= self.spm_rate <= 1.0:
            raise RepolmError(f"fim.spm_rate must be in [0, 1], got {self.spm_rate!r}")
        if self.spm_rate > 0 and self.mode != "psm":
            raise RepolmError(f"fim.spm_rate applies to mode 'psm' only (mode is {self.mode!r}); set it to 0")
        if isinstance(self.msp_spans, bool) or not isinstance(self.msp_spans, int) or self.msp_spans < 1:
            raise RepolmError(f"fim.msp_spans must be an integer >= 1, got {self.msp_spans!r}")


@dataclass(frozen=True)
class FimTokenIds:
    """The sentinel ids a tokenizer gives the FIM layouts, plus its end-of-sentence id."""

    begin: int | None
    hole: int | None
    end: int | None
    eos: int

    @classmethod
    def of(cls, tokenizer: CodeTokenizer, need_fim: bool = True) -> FimTokenIds:
        """The ids of `tokenizer`; RepolmError when it lacks eos, or the FIM sentinels and `need_fim`."""
        ids = {
            FIM_BEGIN_TOKEN: tokenizer.fim_begin_id,
            FIM_HOLE_TOKEN: tokenizer.fim_hole_id,
            FIM_END_TOKEN: tokenizer.fim_end_id,
            EOS_TOKEN: tokenizer.eos_id,
        }
        missing = [token for token, token_id in ids.items() if token_id is None and (need_fim or token == EOS_TOKEN)]
        if missing:
            raise RepolmError(f"the tokenizer lacks the special token(s) {', '.join(missing)} (needed for FIM/eos)")
        begin, hole, end, eos = ids.values()
        return cls(begin=begin, hole=hole, end=end, eos=eos)


@dataclass(frozen=True)
class FimPlan:
    """One file's rearrangement before encoding: `mode` None (plain) or a FIM mode, and its text parts.

    parts: plain -> (text,); psm and spm -> (prefix, middle, suffix); msp -> (s0, m1, s1, ..., mk, sk), the text in
    order, kept text at even indices and masked spans at odd ones. "".join(parts) is always the file's text.
    """

    mode: str | None
    parts: tuple[str, ...]


def _sorted_cuts(length: int, count: int, rng: np.random.Generator) -> list[int]:
    # like Megatron's np_rng.randint(low=0, high=len + 1, size=2) then sorted: cuts may coincide or sit at the ends
    return sorted(int(cut) for cut in rng.integers(0, length + 1, size=count))


def fim_split(text: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """(prefix, middle, suffix) of `text` at two uniform character cut points, sorted (parts may be empty)."""
    first, second = _sorted_cuts(len(text), 2, rng)
    return text[:first], text[first:second], text[second:]


def plan_fim(text: str, rng: np.random.Generator, config: FimConfig) -> FimPlan:
    """Decide with `rng` whether and how one file is FIM'd, and cut it.

    Draws, in order: the FIM decision (one uniform), with mode "psm" and spm_rate > 0 the SPM decision (one uniform),
    then the cut points. A plain file draws only the decision, so the stream stays aligned per file.
    """
    if not rng.random() < config.rate:
        return FimPlan(None, (text,))
    mode = config.mode
    if mode == "psm" and config.spm_rate > 0 and rng.random() < config.spm_rate:
        mode = "spm"
    if mode == "msp":
        cuts = [0, *_sorted_cuts(len(text), 2 * config.msp_spans, rng), len(text)]
        return FimPlan("msp", tuple(text[start:stop] for start, stop in zip(cuts, cuts[1:], strict=False)))
    return FimPlan(mode, fim_split(text, rng))


def layout_fim(plan: FimPlan, encoded_parts: Sequence[list[int]], token_ids: FimTokenIds) -> list[int]:
    """The ids of a planned file, given `encoded_parts[i]` = enc(plan.parts[i])."""
    begin, hole, end = token_ids.begin, token_ids.hole, token_ids.end
    if plan.mode is None:
        return list(encoded_parts[0])
    if plan.mode == "psm":
        prefix, middle, suffix = encoded_parts
        return [begin, *prefix, hole, *suffix, end, *middle]
    if plan.mode == "spm":
        prefix, middle, suffix = encoded_parts
        return [begin, hole, *suffix, end, *prefix, *middle]
    kept, spans = encoded_parts[0::2], encoded_parts[1::2]
    ids = [begin, *kept[0]]
    for segment in kept[1:]:
        ids += [hole, *segment]
    ids.append(end)
    for span in spans:
        ids += [hole, *span]
    return ids


def split_files(text: str, offsets: Sequence[int] | None) -> list[str]:
    """A sample's text cut at `offsets` (where each file starts; None or [] = one file), empty pieces left out."""
    if not offsets:
        return [text] if text else []
    bounds = [0, *offsets, len(text)]
    for previous, current in zip(bounds, bounds[1:], strict=False):
        if isinstance(current, bool) or not isinstance(current, int) or current < previous:
            raise RepolmError(f"offsets must be increasing integers within the text (length {len(text)}): {offsets}")
    if bounds[-2] > len(text):
        raise RepolmError(f"offset {bounds[-2]} is past the end of the text (length {len(text)})")
    return [text[start:stop] for start, stop in zip(bounds, bounds[1:], strict=False) if stop > start]


def fim_documents(
    samples: Sequence[tuple[str, Sequence[int] | None]],
    tokenizer: CodeTokenizer,
    rngs: Sequence[np.random.Generator],
    config: FimConfig,
) -> list[list[int]]:
    """`fim_document` for many (text, offsets) samples, one rng each, with one `encode_batch` call for all parts."""
    if len(samples) != len(rngs):
        raise ValueError(f"{len(samples)} samples but {len(rngs)} rngs")
    token_ids = FimTokenIds.of(tokenizer, need_fim=config.rate > 0)
    plans = [
        [plan_fim(piece, rng, config) for piece in split_files(text, offsets)]
        for (text, offsets), rng in zip(samples, rngs, strict=True)
    ]
    parts = [part for document in plans for plan in document for part in plan.parts]
    encoded = iter(tokenizer.encode_batch(parts))
    documents = []
    for document in plans:
        ids: list[int] = []
        for plan in document:
            ids += layout_fim(plan, [next(encoded) for _ in plan.parts], token_ids)
        ids.append(token_ids.eos)
        documents.append(ids)
    return documents


def fim_document(
    sample_text: str,
    offsets: Sequence[int] | None,
    tokenizer: CodeTokenizer,
    rng: np.random.Generator,
    config: FimConfig,
) -> list[int]:
    """The ids of a repository sample: cut at `offsets` (each file's start, in characters; None or [] = one file),
    each non-empty file FIM'd independently with `rng`, concatenated, then one end-of-sentence id."""
    return fim_documents([(sample_text, offsets)], tokenizer, [rng], config)[0]


def apply_fim(text: str, tokenizer: CodeTokenizer, rng: np.random.Generator, config: FimConfig) -> list[int]:
    """The ids of one file: FIM'd with probability `config.rate`, else plain `enc(text)`. No end-of-sentence id."""
    plan = plan_fim(text, rng, config)
    token_ids = FimTokenIds.of(tokenizer, need_fim=config.rate > 0)
    return layout_fim(plan, tokenizer.encode_batch(list(plan.parts)), token_ids)


def undo_fim(ids: Sequence[int], tokenizer: CodeTokenizer) -> str:
    """The text that `apply_fim` or `fim_document` rearranged, rebuilt from its ids (the inverse, for tests).

    End-of-sentence ids are dropped. A FIM'd file runs from its begin id to the next begin id, end-of-sentence id or
    the end of `ids`. That is exact for one file, and for a document whose plain files all come before its FIM'd
    ones (e.g. rate 0 or 1); a plain file right after a FIM'd one reads as part of that file's middle (or last span)
    and comes back in the wrong place, since nothing in the ids marks where it starts.
    """
    token_ids = FimTokenIds.of(tokenizer)
    special = {token_ids.begin, token_ids.hole, token_ids.end}

    def text_of(piece: list[int]) -> str:
        if special.intersection(piece):
            raise ValueError(f"unexpected FIM sentinel in a text part: {piece}")
        return tokenizer.decode(piece)

    blocks: list[list[int]] = [[]]  # blocks[0]: plain ids before the first begin; then one block per begin
    for token_id in ids:
        if token_id == token_ids.eos:
            blocks.append([])
        elif token_id == token_ids.begin:
            blocks.append([token_id])
        else:
            blocks[-1].append(token_id)
    pieces = []
    for block in blocks:
        if not block or block[0] != token_ids.begin:
            pieces.append(text_of(block))
            continue
        body = block[1:]
        if token_ids.end not in body:
            raise ValueError("a FIM'd file without its end sentinel")
        end_at = body.index(token_ids.end)
        before, after = body[:end_at], body[end_at + 1 :]
        if after[:1] == [token_ids.hole]:  # MSP: s0 hole s1 ... hole sk end hole m1 ... hole mk
            kept, spans = _split_at(before, token_ids.hole), _split_at(after, token_ids.hole)[1:]
            if len(kept) != len(spans) + 1:
                raise ValueError(f"MSP file with {len(kept) - 1} holes but {len(spans)} spans")
            for segment, span in zip(kept, spans, strict=False):
                pieces += [text_of(segment), text_of(span)]
            pieces.append(text_of(kept[-1]))
        elif before[:1] == [token_ids.hole]:  # SPM: hole suffix end prefix+middle (also PSM with an empty prefix)
            pieces += [text_of(after), text_of(before[1:])]
        else:  # PSM: prefix hole suffix end middle
            if before.count(token_ids.hole) != 1:
                raise ValueError("a PSM file needs exactly one hole sentinel")
            prefix, suffix = _split_at(before, token_ids.hole)
            pieces += [text_of(prefix), text_of(after), text_of(suffix)]
    return "".join(pieces)


def _split_at(ids: list[int], separator: int) -> list[list[int]]:
    parts: list[list[int]] = [[]]
    for token_id in ids:
        if token_id == separator:
            parts.append([])
        else:
            parts[-1].append(token_id)
    return parts
