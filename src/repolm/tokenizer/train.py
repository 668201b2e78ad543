"""Train a DeepSeek-Coder-style byte-level BPE tokenizer on source files with the HF `tokenizers` library.

Pipeline (no normalizer, so decoding is exact):
  1. pre-tokenizer: DeepSeek-Coder's split regexes (`special_tokens.PRE_TOKENIZER_SPLIT_PATTERNS`: newlines alone,
     letter runs with one optional leading space, punctuation runs likewise, CJK/Hangul runs), then every digit on
     its own; each split is "isolated", so text between matches (spaces, symbols like `+=`, emoji) stays a piece;
     then ByteLevel (add_prefix_space=False, use_regex=False) maps the pieces' UTF-8 bytes to the byte-level alphabet;
  2. model: BPE over the 243 byte-level symbols that UTF-8 can produce, no unknown token;
  3. decoder: ByteLevel.

Id layout (see `special_tokens`): BPE ids 0..N-1 with N = `vocab_size`, the 13 unreachable byte-level leftovers at
N..N+12 (in the BPE model's vocabulary, so the alphabet covers all 256 bytes), then the 9 special tokens at
N+13..N+21 as added tokens that are never split or merged. For N = 32000 this is DeepSeek-Coder's layout exactly.

If the training text is too small for N BPE tokens, the BPE part is padded up to N with unreachable placeholder
tokens (`<unused_bpe_K>`, no merge produces them) and a warning is logged, so the special ids stay where a model
expects them.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from repolm.errors import RepolmError
from repolm.tokenizer.corpus import DATA_SUFFIXES, find_input_files, read_documents
from repolm.tokenizer.special_tokens import (
    BOS_TOKEN,
    BYTE_LEVEL_LEFTOVERS,
    DEEPSEEK_CODER_BPE_VOCAB_SIZE,
    DEEPSEEK_CODER_CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    PRE_TOKENIZER_SPLIT_PATTERNS,
    REACHABLE_BYTE_LEVEL_ALPHABET,
    SPECIAL_TOKENS,
    leftover_token_ids,
    special_token_ids,
)
from repolm.tokenizer.tokenizer import DEFAULT_MODEL_MAX_LENGTH, CodeTokenizer

logger = logging.getLogger(__name__)

# Folders that hold no source text worth learning from.
SKIPPED_DIR_NAMES = frozenset({".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", ".mypy_cache"})
BINARY_SNIFF_BYTES = 8192  # a NUL byte in the first 8 KiB marks a file as binary (git's heuristic)
UNUSED_BPE_TOKEN = "<unused_bpe_{}>"


def build_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """DeepSeek-Coder's pre-tokenizer: the split regexes, single digits, then ByteLevel without prefix space."""
    splits = [pre_tokenizers.Split(Regex(pattern), behavior="isolated") for pattern in PRE_TOKENIZER_SPLIT_PATTERNS]
    return pre_tokenizers.Sequence(
        [
            *splits,
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )


# -----------------------------------------------------------------------------
# Reading the training text


@dataclass
class _CorpusStats:
    files_used: int = 0
    bytes_used: int = 0
    files_skipped_binary: int = 0
    files_unreadable: int = 0


def _excluded(name: str, exclude: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in exclude)


def _iter_files(inputs: Iterable[Path | str], exclude: Sequence[str] = ()) -> Iterator[Path]:
    for item in inputs:
        path = Path(item)
        if path.is_file():
            yield path
        elif path.is_dir():
            for root, dir_names, file_names in os.walk(path):
                dir_names[:] = sorted(
                    name for name in dir_names if name not in SKIPPED_DIR_NAMES and not _excluded(name, exclude)
                )
                for name in sorted(file_names):
                    if _excluded(name, exclude):
                        continue
                    file_path = Path(root, name)
                    if file_path.is_file():  # skips broken links, sockets, fifos
                        yield file_path
        else:
            raise RepolmError(f"training input not found: {path}")


def is_samples_input(path: Path) -> bool:
    """Whether a training input holds samples rather than source files: a `repolm data build` folder (it has
    `data/` and `stats.json`) or a .jsonl / .jsonl.zst file."""
    if path.is_dir():
        return (path / "data").is_dir() and (path / "stats.json").is_file()
    return path.name.endswith(DATA_SUFFIXES)


def _sample_texts(path: Path) -> Iterator[str]:
    """The `text` of every sample of a build folder (its training samples, data/, never heldout/) or a JSONL file."""
    if path.is_file():
        yield from (document.text for document in read_documents(path, path.name))
        return
    for files in find_input_files(path).values():
        for file in files:
            yield from (document.text for document in read_documents(file, file.name))


def _iter_texts(
    inputs: Iterable[Path | str], stats: _CorpusStats, max_total_bytes: int | None, exclude: Sequence[str] = ()
) -> Iterator[str]:
    for item in inputs:
        if is_samples_input(Path(item)):
            for text in _sample_texts(Path(item)):
                if max_total_bytes is not None and stats.bytes_used >= max_total_bytes:
                    return
                stats.files_used += 1
                stats.bytes_used += len(text.encode("utf-8"))
                yield text
            continue
        for path in _iter_files([item], exclude):
            if max_total_bytes is not None and stats.bytes_used >= max_total_bytes:
                return
            try:
                data = path.read_bytes()
            except OSError as error:
                logger.warning("skipping unreadable training file %s: %s", path, error)
                stats.files_unreadable += 1
                continue
            if b"\x00" in data[:BINARY_SNIFF_BYTES]:
                stats.files_skipped_binary += 1
                continue
            text = data.decode("utf-8", errors="ignore")
            if not text:
                continue
            stats.files_used += 1
            stats.bytes_used += len(data)
            yield text


# -----------------------------------------------------------------------------
# Training


def train_tokenizer(
    files: Iterable[Path | str] | Path | str,
    vocab_size: int = DEEPSEEK_CODER_BPE_VOCAB_SIZE,
    min_frequency: int = 2,
    *,
    max_total_bytes: int | None = None,
    exclude: Sequence[str] = (),
    model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    chat_template: str | None = DEEPSEEK_CODER_CHAT_TEMPLATE,
    show_progress: bool = False,
) -> CodeTokenizer:
    """Train a byte-level BPE tokenizer with DeepSeek-Coder's pre-tokenizer and special-token layout.

    Args:
        files: files and/or folders (searched recursively; binary files and VCS/cache folders are skipped). Files
            are read as UTF-8, undecodable bytes dropped. A `repolm data build` folder or a .jsonl[.zst] file gives
            its samples' texts instead (a build folder: its training samples only, never its held-out ones).
        vocab_size: N, the number of BPE ids (0..N-1); the leftovers and special tokens follow at N..N+21, so the
            tokenizer has N + 22 ids. 32000 gives DeepSeek-Coder's ids.
        min_frequency: a pair must occur this often to be merged.
        max_total_bytes: stop reading input after this many bytes (None: read everything).
        exclude: glob patterns of folder and file names to skip inside the given folders (e.g. "site-packages").
        model_max_length: context length recorded in tokenizer_config.json.
        chat_template: Jinja chat template saved with the tokenizer (DeepSeek-Coder instruct's by default).
        show_progress: show the `tokenizers` progress bars.
    """
    inputs = [files] if isinstance(files, str | Path) else list(files)
    if vocab_size < len(REACHABLE_BYTE_LEVEL_ALPHABET):
        raise RepolmError(
            f"vocab_size={vocab_size} is too small: the byte-level alphabet alone needs "
            f"{len(REACHABLE_BYTE_LEVEL_ALPHABET)} ids"
        )
    if min_frequency < 1:
        raise RepolmError(f"min_frequency must be >= 1, got {min_frequency}")

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = build_pre_tokenizer()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=show_progress,
        initial_alphabet=list(REACHABLE_BYTE_LEVEL_ALPHABET),
        special_tokens=[],
    )
    stats = _CorpusStats()
    tokenizer.train_from_iterator(_iter_texts(inputs, stats, max_total_bytes, exclude), trainer=trainer)
    logger.info(
        "trained tokenizer on %d files, %.1f MB (skipped %d binary, %d unreadable)",
        stats.files_used,
        stats.bytes_used / 1e6,
        stats.files_skipped_binary,
        stats.files_unreadable,
    )
    if stats.files_used == 0:
        raise RepolmError(
            f"no training text found in {', '.join(str(path) for path in inputs) or 'an empty list of files'}"
        )

    tokenizer = _place_leftovers_and_special_tokens(tokenizer, vocab_size)
    return CodeTokenizer(
        tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        chat_template=chat_template,
        add_bos_token=True,
        model_max_length=model_max_length,
    )


def _place_leftovers_and_special_tokens(trained: Tokenizer, bpe_vocab_size: int) -> Tokenizer:
    """Pad the BPE vocabulary to `bpe_vocab_size`, append the 13 leftovers, add the special tokens after them."""
    tokenizer_json = json.loads(trained.to_str())
    vocab: dict[str, int] = tokenizer_json["model"]["vocab"]
    learned = len(vocab)
    if sorted(vocab.values()) != list(range(learned)) or learned > bpe_vocab_size:
        raise AssertionError(f"BPE trainer returned ids other than 0..{bpe_vocab_size - 1}")
    if learned < bpe_vocab_size:
        logger.warning(
            "training text too small for vocab_size=%d: learned %d BPE tokens; ids %d..%d are unused placeholders",
            bpe_vocab_size,
            learned,
            learned,
            bpe_vocab_size - 1,
        )
        for token_id in range(learned, bpe_vocab_size):
            placeholder = UNUSED_BPE_TOKEN.format(token_id)
            if placeholder in vocab:
                raise AssertionError(f"placeholder {placeholder} collides with a learned token")
            vocab[placeholder] = token_id
    for token, token_id in leftover_token_ids(bpe_vocab_size).items():
        if token in vocab:
            raise AssertionError(f"byte-level leftover {token!r} was learned by BPE; it cannot occur in UTF-8 text")
        vocab[token] = token_id

    tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
    tokenizer.add_special_tokens(
        [AddedToken(token, single_word=False, lstrip=False, rstrip=False, normalized=False) for token in SPECIAL_TOKENS]
    )
    expected_ids = special_token_ids(bpe_vocab_size)
    actual_ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    if actual_ids != expected_ids:
        raise AssertionError(f"special token ids {actual_ids} differ from the layout {expected_ids}")
    # Like DeepSeek-Coder's folders: transformers' `tokenizer(text)` prepends BOS. (CodeTokenizer.encode adds BOS
    # only when asked.)
    bos_id = expected_ids[BOS_TOKEN]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN}:0 $A:0",
        pair=f"{BOS_TOKEN}:0 $A:0 {BOS_TOKEN}:1 $B:1",
        special_tokens=[(BOS_TOKEN, bos_id)],
    )
    logger.info(
        "tokenizer layout: BPE 0..%d, byte-level leftovers %d..%d (%s), special tokens %d..%d",
        bpe_vocab_size - 1,
        bpe_vocab_size,
        bpe_vocab_size + len(BYTE_LEVEL_LEFTOVERS) - 1,
        " ".join(BYTE_LEVEL_LEFTOVERS),
        min(expected_ids.values()),
        max(expected_ids.values()),
    )
    return tokenizer
