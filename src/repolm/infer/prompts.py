"""Prompt construction: plain completion, fill-in-the-middle (PSM and SPM) and instruct chat.

FIM layouts with DeepSeek-Coder's tokens (README section 4.2; paper section 3.1.2):
- PSM (what DeepSeek-Coder trained on): `<｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>` -> middle
- SPM (described in the paper, after Bavarian et al.; the layout repolm's pretraining writes, variant 2 of the FIM
  paper as in bigcode Megatron): `<｜fim▁begin｜><｜fim▁hole｜>suffix<｜fim▁end｜>prefix` -> middle
Prefix and suffix are encoded separately and joined with the sentinel ids, so no BPE merge crosses a
sentinel. BOS is prepended when the tokenizer adds BOS (as the released DeepSeek-Coder tokenizers do).
"""

from __future__ import annotations

import re
from typing import Literal

from repolm.errors import RepolmError
from repolm.tokenizer import ChatFormat, CodeTokenizer, user_turn

FimMode = Literal["psm", "spm"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _bos(tokenizer: CodeTokenizer, add_bos: bool | None) -> list[int]:
    if add_bos is None:
        add_bos = tokenizer.add_bos_token
    return [tokenizer.bos_id] if add_bos and tokenizer.bos_id is not None else []


def completion_prompt_ids(tokenizer: CodeTokenizer, text: str, add_bos: bool | None = None) -> list[int]:
    """Ids of a plain left-to-right completion prompt."""
    return _bos(tokenizer, add_bos) + tokenizer.encode(text)


def fim_prompt_ids(
    tokenizer: CodeTokenizer,
    prefix: str,
    suffix: str,
    mode: FimMode = "psm",
    add_bos: bool | None = None,
) -> list[int]:
    """Ids of a fill-in-the-middle prompt; the model continues with the middle."""
    return fim_layout_ids(tokenizer, tokenizer.encode(prefix), tokenizer.encode(suffix), mode, add_bos)


def fim_layout_ids(
    tokenizer: CodeTokenizer,
    prefix_ids: list[int],
    suffix_ids: list[int],
    mode: FimMode = "psm",
    add_bos: bool | None = None,
) -> list[int]:
    """The FIM layout (see the module docstring) of prefix and suffix ids encoded already, each on its own."""
    begin, hole, end = tokenizer.fim_begin_id, tokenizer.fim_hole_id, tokenizer.fim_end_id
    if begin is None or hole is None or end is None:
        raise RepolmError("the tokenizer has no FIM tokens (<｜fim▁begin｜>, <｜fim▁hole｜>, <｜fim▁end｜>)")
    if mode == "psm":
        body = [begin, *prefix_ids, hole, *suffix_ids, end]
    elif mode == "spm":
        body = [begin, hole, *suffix_ids, end, *prefix_ids]  # as repolm.tokenizer.fim trains it
    else:
        raise RepolmError(f"unknown FIM mode {mode!r}; use 'psm' or 'spm'")
    return _bos(tokenizer, add_bos) + body


def split_at_cursor(text: str, line: int, column: int) -> tuple[str, str]:
    """Split a file's text at a 1-based (line, column) cursor into (prefix, suffix), as editors count them.

    Lines end at LF, CRLF or CR (as in editors and the Language Server Protocol; not at the form feeds,
    vertical tabs and Unicode separators that `str.splitlines` also breaks at). A text ending in a line break has
    one more, empty, line. Columns count characters of the line without its line break; the last valid column
    is one past the line's last character.
    """
    starts = [0] + [match.end() for match in _LINE_BREAK.finditer(text)]
    if not 1 <= line <= len(starts):
        raise RepolmError(f"--line {line} is outside the file (it has {len(starts)} lines)")
    start = starts[line - 1]
    line_break = _LINE_BREAK.search(text, start)
    width = (line_break.start() if line_break else len(text)) - start
    if not 1 <= column <= width + 1:
        raise RepolmError(f"--col {column} is outside line {line} (it has {width} characters)")
    offset = start + column - 1
    return text[:offset], text[offset:]


def instruct_prompt(tokenizer: CodeTokenizer, instruction: str, system: str | None = None) -> str:
    """The DeepSeek-Coder-Instruct prompt text for one user turn, through the tokenizer's chat template (DeepSeek-
    Coder's when it has none), rendered by `ChatFormat` as SFT trains."""
    messages = user_turn(instruction)
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return ChatFormat(tokenizer).prompt_text(messages)
