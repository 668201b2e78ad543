"""MinHash near-duplicate detection, the in-memory core: shingles, signatures, LSH bands, verification, clusters.

Shingles follow BigCode's near-dedup (v1, used for SantaCoder/StarCoder): the text is split on `[^A-Za-z_0-9]+`
(case kept), and every run of `ngram_size` consecutive words is one shingle. A document's shingle *set* is what
MinHash estimates the Jaccard similarity of. All of it is vectorised with numpy over batches of documents:

1. Words. The text's UTF-8 bytes are classified (ASCII letters, digits and `_` are word bytes; everything else,
   non-ASCII included, separates words, exactly as the regex does on `str`). Each word is read as 8-byte
   little-endian chunks (zero-padded; word bytes are never zero, so this is injective per chunk count), the chunks
   are multiplied by per-position odd constants and summed mod 2^64, and the sum goes through the MurmurHash3
   64-bit finalizer. Every distinct word of up to 8 bytes gets a distinct 64-bit hash.
2. Shingles. The hashes of `ngram_size` consecutive words (in one document) are multiplied by per-position odd
   constants, summed mod 2^64 and finalized again; the top 32 bits are the shingle's hash (as BigCode keeps 32
   bits of SHA-1). Each document's shingle hashes are sorted and made unique.
3. Permutations. Permutation i maps a shingle hash x to `(a_i * x + b_i) mod 2^32`, with `a_i` odd, so each is a
   bijection of the 32-bit space (an affine permutation; BigCode uses `(a*x + b) mod (2^61 - 1)` truncated to 32
   bits). The inputs are already well-mixed hashes, so the minima behave as under random permutations: the
   signature-estimated Jaccard has the ideal spread sqrt(J(1-J)/k) (tests check it). Computing in 32 bits keeps
   the dominant cost (shingles x permutations) in fast SIMD integer arithmetic. The signature holds, per
   permutation, the minimum over the document's shingles (uint32, as datatrove's 32-bit signature files).

All constants come from SplitMix64 of fixed streams (the permutations from `MinHashConfig.seed`), so results never
depend on numpy's random generators, PYTHONHASHSEED or the order of the input.

LSH: the first `bands * rows` signature values form `bands` bands of `rows` values; documents whose values agree
in a whole band are candidates (datatrove's bucket files use the same layout). With `verify`, a candidate pair is
kept only when its signature-estimated Jaccard (equal values over all `num_permutations`) is at least the threshold
(text-dedup's false-positive check). Clusters are the connected components of the kept pairs; `choose_survivor`
keeps the longest text (ties: the smallest id in string order), so the outcome does not depend on input order or
sharding. The datatrove steps in `repolm.data.dedup_steps` share this linking and survivor rule.

Not handled here: reading corpora, writing outputs and exact (hash) dedup; decisions about which documents are
compared (repository samples vs files) belong to the pipeline that calls this module; measuring near-dedup (exact
Jaccard, signature estimates, the S-curve, planted near-duplicates) is in `repolm.data.minhash_evaluation`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from repolm.errors import RepolmError

logger = logging.getLogger(__name__)

WORD_PATTERN = re.compile(r"[A-Za-z_0-9]+")  # the words between BigCode's `[^A-Za-z_0-9]+` separators
SIGNATURE_DTYPE = np.uint32
SIGNATURE_MAX = np.uint32(0xFFFFFFFF)  # the value of an empty minimum

BATCH_BYTES = 4 * 1024 * 1024  # texts are shingled in batches of about this many bytes
PERMUTATION_CHUNK = 2048  # shingles per block of the (permutations x shingles) product; 2 MB of uint32 at k=256

# SplitMix64 streams: one per family of constants, so changing one family never moves another.
_STREAM_WORD_CHUNKS = 1
_STREAM_NGRAM_POSITIONS = 2
_STREAM_PERMUTATIONS = 3

_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_MURMUR_MULTIPLIER_1 = 0xFF51AFD7ED558CCD
_MURMUR_MULTIPLIER_2 = 0xC4CEB9FE1A85EC53


@dataclass
class MinHashConfig:
    """Parameters of MinHash LSH near-dedup (BigCode's defaults).

    Attributes:
        num_permutations: signature length (number of hash permutations).
        ngram_size: words per shingle.
        threshold: the Jaccard similarity at and above which two documents are near-duplicates.
        bands: LSH bands; None -> derived from `threshold` and `num_permutations`: with `verify`,
            `recall_first_bands_rows` (42 for the defaults: a pair at the threshold becomes a candidate 99.5% of
            the time, and verification removes the extra candidates); without it, datasketch's balanced
            `optimal_bands_rows` (25 for the defaults), since nothing would remove them.
        rows: signature values per band; None -> derived with `bands` (6 for the defaults, 10 without `verify`).
            Give both `bands` and `rows` or neither; `bands * rows` must not exceed `num_permutations`.
        seed: seed of the permutations; documents compared with each other must use the same seed.
        verify: drop LSH candidate pairs whose signature-estimated Jaccard is below `threshold`.
        min_ngrams: documents with fewer distinct shingles are never near-duplicates (with 5-grams, 5 shingles is
            about 9 words; such snippets are left to exact dedup).
    """

    num_permutations: int = 256
    ngram_size: int = 5
    threshold: float = 0.7
    bands: int | None = None
    rows: int | None = None
    seed: int = 42
    verify: bool = True
    min_ngrams: int = 5

    def __post_init__(self) -> None:
        for name in ("num_permutations", "ngram_size", "min_ngrams"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RepolmError(f"MinHashConfig.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise RepolmError(f"MinHashConfig.seed must be an integer in [0, 2^64), got {self.seed!r}")
        if not isinstance(self.threshold, (int, float)) or not 0.0 < self.threshold < 1.0:
            raise RepolmError(f"MinHashConfig.threshold must be in (0, 1), got {self.threshold!r}")
        if not isinstance(self.verify, bool):
            raise RepolmError(f"MinHashConfig.verify must be true or false, got {self.verify!r}")
        if (self.bands is None) != (self.rows is None):
            raise RepolmError("MinHashConfig.bands and MinHashConfig.rows must be given together (or both left unset)")
        if self.bands is None:
            derive = recall_first_bands_rows if self.verify else optimal_bands_rows
            self.bands, self.rows = derive(self.threshold, self.num_permutations)
        for name in ("bands", "rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RepolmError(f"MinHashConfig.{name} must be an integer >= 1, got {value!r}")
        if self.bands * self.rows > self.num_permutations:
            raise RepolmError(
                f"MinHashConfig.bands * rows ({self.bands} * {self.rows}) exceeds num_permutations "
                f"({self.num_permutations})"
            )

    @property
    def required_matches(self) -> int:
        """Equal signature values that a verified pair needs: ceil(threshold * num_permutations)."""
        return math.ceil(round(self.threshold * self.num_permutations, 9))


@lru_cache(maxsize=64)
def optimal_bands_rows(
    threshold: float,
    num_permutations: int,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """The (bands, rows) that minimise the weighted false-positive and false-negative areas of the LSH S-curve.

    This is datasketch's / BigCode's `optimal_param`: for every b and r with b * r <= num_permutations, the
    probability that a pair of similarity s becomes a candidate is P(s) = 1 - (1 - s^r)^b; the false-positive area
    is the integral of P over [0, threshold], the false-negative area the integral of 1 - P over [threshold, 1].
    The integrals are computed with Simpson's rule (datasketch uses scipy's quad; the choice is the same). For
    (0.7, 256) this gives (25, 10).
    """
    if not 0.0 < threshold < 1.0:
        raise RepolmError(f"threshold must be in (0, 1), got {threshold!r}")
    if num_permutations < 1:
        raise RepolmError(f"num_permutations must be >= 1, got {num_permutations!r}")
    points = 2001  # odd: Simpson's rule
    low = np.linspace(0.0, threshold, points)
    high = np.linspace(threshold, 1.0, points)

    def simpson(values: np.ndarray, width: float) -> float:
        step = width / (points - 1)
        return float(step / 3 * (values[0] + values[-1] + 4 * values[1:-1:2].sum() + 2 * values[2:-1:2].sum()))

    best, best_error = (1, 1), math.inf
    for bands in range(1, num_permutations + 1):
        for rows in range(1, num_permutations // bands + 1):
            false_positive = simpson(1.0 - (1.0 - low**rows) ** bands, threshold)
            false_negative = simpson((1.0 - high**rows) ** bands, 1.0 - threshold)
            error = false_positive_weight * false_positive + false_negative_weight * false_negative
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


@lru_cache(maxsize=64)
def recall_first_bands_rows(
    threshold: float, num_permutations: int, recall_at_threshold: float = 0.99
) -> tuple[int, int]:
    """The (bands, rows) for LSH followed by verification: the most rows per band (the fewest candidate pairs) with
    which a pair of Jaccard exactly `threshold` still becomes a candidate with probability >= `recall_at_threshold`,
    and as many bands as the permutations allow.

    Verification at the threshold removes false candidates, so only misses cost quality; datasketch's balanced
    choice (`optimal_bands_rows`) puts the S-curve's midpoint at the threshold and misses about half the pairs
    there. For (0.7, 256) this gives (42, 6): P(0.7) = 1 - (1 - 0.7^6)^42 = 0.995 (25 x 10: 0.51). When no row
    count reaches `recall_at_threshold`, one row per band (the highest recall) is used.
    """
    if not 0.0 < threshold < 1.0:
        raise RepolmError(f"threshold must be in (0, 1), got {threshold!r}")
    if num_permutations < 1:
        raise RepolmError(f"num_permutations must be >= 1, got {num_permutations!r}")
    for rows in range(num_permutations, 0, -1):
        bands = num_permutations // rows
        if 1.0 - (1.0 - threshold**rows) ** bands >= recall_at_threshold:
            return bands, rows
    return num_permutations, 1


# -----------------------------------------------------------------------------
# Hash constants


def _splitmix64(stream: int, indices: np.ndarray) -> np.ndarray:
    """SplitMix64 outputs number `indices` (uint64 array) of the generator seeded with `stream`."""
    state = np.uint64(stream % 2**64) + (indices.astype(np.uint64) + np.uint64(1)) * np.uint64(_GOLDEN_GAMMA)
    state = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    state = (state ^ (state >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state ^ (state >> np.uint64(31))


def _odd_constants(stream: int, count: int) -> np.ndarray:
    return _splitmix64(stream, np.arange(count, dtype=np.uint64)) | np.uint64(1)


def _finalize64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (a bijection that mixes every input bit into every output bit), in place."""
    values ^= values >> np.uint64(33)
    values *= np.uint64(_MURMUR_MULTIPLIER_1)
    values ^= values >> np.uint64(33)
    values *= np.uint64(_MURMUR_MULTIPLIER_2)
    values ^= values >> np.uint64(33)
    return values


_word_chunk_multipliers = _odd_constants(_STREAM_WORD_CHUNKS, 64)


def _chunk_multipliers(count: int) -> np.ndarray:
    """The odd multiplier of each 8-byte chunk position 0..count-1 of a word (the table grows, never changes)."""
    global _word_chunk_multipliers
    if count > len(_word_chunk_multipliers):
        _word_chunk_multipliers = _odd_constants(_STREAM_WORD_CHUNKS, max(count, 2 * len(_word_chunk_multipliers)))
    return _word_chunk_multipliers


@lru_cache(maxsize=8)
def _ngram_multipliers(ngram_size: int) -> np.ndarray:
    return _odd_constants(_STREAM_NGRAM_POSITIONS, ngram_size)


@lru_cache(maxsize=8)
def _permutations(num_permutations: int, seed: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, b) of the permutations `(a*x + b) mod 2^32`, each tiled to (num_permutations, width) for fast products."""
    stream = (_STREAM_PERMUTATIONS << 56) ^ seed
    values = _splitmix64(stream, np.arange(num_permutations, dtype=np.uint64))
    multipliers = (values & np.uint64(0xFFFFFFFF)).astype(np.uint32) | np.uint32(1)
    offsets = (values >> np.uint64(32)).astype(np.uint32)
    tiled_multipliers = np.ascontiguousarray(np.broadcast_to(multipliers[:, None], (num_permutations, width)))
    tiled_offsets = np.ascontiguousarray(np.broadcast_to(offsets[:, None], (num_permutations, width)))
    return tiled_multipliers, tiled_offsets


# -----------------------------------------------------------------------------
# Shingles


def _batch_shingles(texts: Sequence[str], ngram_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The unique shingle hashes of each text: (hashes uint32, sorted within each text, and bounds (n + 1,))."""
    encoded = [text.encode("utf-8", "surrogatepass") for text in texts]
    lengths = np.fromiter((len(item) + 1 for item in encoded), dtype=np.int64, count=len(encoded))
    text_ends = np.cumsum(lengths)
    # one buffer, texts separated by "\n" (never part of a word); zero bytes at the end for 8-byte reads
    buffer = np.frombuffer(b"\n".join(encoded) + b"\n" + bytes(16), dtype=np.uint8)
    is_word = ((buffer | np.uint8(0x20)) - np.uint8(ord("a")) < 26) | (buffer - np.uint8(ord("0")) < 10)
    is_word |= buffer == ord("_")
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1
    if is_word[0]:
        edges = np.concatenate(([0], edges))
    word_starts, word_ends = edges[0::2], edges[1::2]
    if len(word_starts) < ngram_size:
        return np.zeros(0, dtype=SIGNATURE_DTYPE), np.zeros(len(texts) + 1, dtype=np.int64)
    word_hashes = _word_hashes(buffer, word_starts, word_ends - word_starts)

    # shingle hashes: the n words' hashes times per-position multipliers, summed, finalized, top 32 bits
    shingle_count = len(word_hashes) - ngram_size + 1
    multipliers = _ngram_multipliers(ngram_size)
    shingles = word_hashes[:shingle_count] * multipliers[0]
    for position in range(1, ngram_size):
        shingles += word_hashes[position : position + shingle_count] * multipliers[position]
    shingles = (_finalize64(shingles) >> np.uint64(32)).astype(SIGNATURE_DTYPE)

    # keep the shingles whose n words lie in one text: text t owns starts [first word, last word - n + 1]
    text_word_bounds = np.searchsorted(word_starts, np.concatenate(([0], text_ends)))
    text_shingle_counts = np.maximum(np.diff(text_word_bounds) - ngram_size + 1, 0)
    inside_one_text = np.zeros(shingle_count + 1, dtype=np.int8)
    owners = np.flatnonzero(text_shingle_counts)
    np.add.at(inside_one_text, text_word_bounds[owners], 1)
    np.add.at(inside_one_text, text_word_bounds[owners] + text_shingle_counts[owners], -1)
    shingles = shingles[np.cumsum(inside_one_text[:-1], dtype=np.int8).astype(bool)]

    # sort each text's shingles in place, then drop repeats
    bounds = np.concatenate(([0], np.cumsum(text_shingle_counts)))
    for start, stop in zip(bounds[owners].tolist(), bounds[owners + 1].tolist(), strict=True):
        shingles[start:stop].sort()
    first_of_run = np.ones(len(shingles), dtype=bool)
    np.not_equal(shingles[1:], shingles[:-1], out=first_of_run[1:])
    first_of_run[bounds[owners]] = True
    kept_before = np.concatenate(([0], np.cumsum(first_of_run)))
    return shingles[first_of_run], kept_before[bounds]


def _read_8_bytes(words: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The little-endian uint64 at each byte offset of a buffer viewed as aligned uint64 `words`."""
    index, shift = offsets >> 3, (offsets & 7).astype(np.uint64) << np.uint64(3)
    # (x << 1) << (63 - shift) is x << (64 - shift) without the undefined shift by 64 when shift == 0
    return (words[index] >> shift) | ((words[index + 1] << np.uint64(1)) << (np.uint64(63) - shift))


def _word_hashes(buffer: np.ndarray, word_starts: np.ndarray, word_lengths: np.ndarray) -> np.ndarray:
    """64-bit hash of each word: the sum of its 8-byte chunks times per-position odd constants, finalized.

    `buffer` must end with at least 16 zero bytes (so every read of 8 bytes, and the next aligned word, exists).
    """
    words = buffer[: len(buffer) // 8 * 8].view("<u8")
    multipliers = _chunk_multipliers(int((word_lengths.max() + 7) >> 3))
    all_ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    sums = _read_8_bytes(words, word_starts)
    sums &= all_ones >> (np.uint64(64) - (np.minimum(word_lengths, 8).astype(np.uint64) << np.uint64(3)))
    sums *= multipliers[0]
    long_words = np.flatnonzero(word_lengths > 8)
    if len(long_words):  # chunks 1, 2, ... of the words longer than 8 bytes
        extra_counts = (word_lengths[long_words] - 1) >> 3
        first_extra = np.cumsum(extra_counts) - extra_counts
        position = np.arange(1, int(extra_counts.sum()) + 1) - np.repeat(first_extra, extra_counts)
        offsets = np.repeat(word_starts[long_words], extra_counts) + 8 * position
        byte_counts = np.minimum(np.repeat(word_lengths[long_words], extra_counts) - 8 * position, 8)
        extras = _read_8_bytes(words, offsets)
        extras &= all_ones >> (np.uint64(64) - (byte_counts.astype(np.uint64) << np.uint64(3)))
        extras *= multipliers[position]
        sums[long_words] += np.add.reduceat(extras, first_extra)
    return _finalize64(sums)


def shingle_hashes(text: str, config: MinHashConfig | None = None) -> np.ndarray:
    """The sorted unique 32-bit shingle hashes of one text (what its signature is computed from)."""
    shingles, _ = _batch_shingles([text], (config or MinHashConfig()).ngram_size)
    return shingles


# -----------------------------------------------------------------------------
# Signatures


def _batch_signatures(shingles: np.ndarray, bounds: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """Signatures (n, num_permutations) of the texts whose shingles are `shingles[bounds[i]:bounds[i + 1]]`.

    Works on blocks of PERMUTATION_CHUNK shingles laid out (permutations, shingles), so the products and the
    per-text minima (`minimum.reduceat` along the contiguous axis) run at SIMD speed; a text can span blocks.
    """
    text_count = len(bounds) - 1
    minima_by_permutation = np.full((config.num_permutations, text_count), SIGNATURE_MAX, dtype=SIGNATURE_DTYPE)
    width = min(PERMUTATION_CHUNK, max(len(shingles), 1))
    multipliers, offsets = _permutations(config.num_permutations, config.seed, width)
    block = np.empty((config.num_permutations, width), dtype=SIGNATURE_DTYPE)
    for start in range(0, len(shingles), width):
        values = shingles[start : start + width]
        end = start + len(values)
        permuted = block[:, : len(values)]
        np.multiply(multipliers[:, : len(values)], values, out=permuted)
        np.add(permuted, offsets[:, : len(values)], out=permuted)
        first_text = int(np.searchsorted(bounds, start, side="right")) - 1
        stop_text = int(np.searchsorted(bounds, end, side="left"))
        segment_starts = np.maximum(bounds[first_text:stop_text], start) - start
        segment_ends = np.minimum(bounds[first_text + 1 : stop_text + 1], end) - start
        nonempty = segment_ends > segment_starts
        texts = np.arange(first_text, stop_text)[nonempty]
        block_minima = np.minimum.reduceat(permuted, segment_starts[nonempty], axis=1)
        # the first text may have started in an earlier block
        np.minimum(block_minima[:, 0], minima_by_permutation[:, texts[0]], out=block_minima[:, 0])
        minima_by_permutation[:, texts] = block_minima
    return np.ascontiguousarray(minima_by_permutation.T)


def signature_from_shingles(shingles: np.ndarray, config: MinHashConfig | None = None) -> np.ndarray:
    """The signature (num_permutations,) uint32 of one shingle-hash array (as `shingle_hashes` returns)."""
    config = config or MinHashConfig()
    shingles = np.asarray(shingles, dtype=SIGNATURE_DTYPE).ravel()
    return _batch_signatures(shingles, np.array([0, len(shingles)]), config)[0]


def minhash_signatures(texts: Sequence[str], config: MinHashConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Signatures of many texts at once: (signatures (n, num_permutations) uint32, distinct shingle counts (n,)).

    A text with fewer than `config.min_ngrams` distinct shingles has no usable signature (its row is all
    0xFFFFFFFF) and must not be compared; `counts < config.min_ngrams` marks them.
    """
    config = config or MinHashConfig()
    signatures = np.full((len(texts), config.num_permutations), SIGNATURE_MAX, dtype=SIGNATURE_DTYPE)
    counts = np.zeros(len(texts), dtype=np.int64)
    start = 0
    while start < len(texts):
        stop, batch_bytes = start, 0
        while stop < len(texts) and (stop == start or batch_bytes + len(texts[stop]) <= BATCH_BYTES):
            batch_bytes += len(texts[stop])
            stop += 1
        shingles, bounds = _batch_shingles(texts[start:stop], config.ngram_size)
        counts[start:stop] = np.diff(bounds)
        if len(shingles):
            signatures[start:stop] = _batch_signatures(shingles, bounds, config)
        start = stop
    signatures[counts < config.min_ngrams] = SIGNATURE_MAX
    return signatures, counts


def minhash_signature(text: str, config: MinHashConfig | None = None) -> np.ndarray | None:
    """The signature (num_permutations,) uint32 of one text, or None when it has fewer than `min_ngrams` shingles."""
    config = config or MinHashConfig()
    signatures, counts = minhash_signatures([text], config)
    return signatures[0] if counts[0] >= config.min_ngrams else None


# -----------------------------------------------------------------------------
# LSH, verification, clusters


class DisjointSets:
    """Union-find over 0..size-1; the root of a set is always its smallest member (so results are order-free)."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, item_a: int, item_b: int) -> None:
        root_a, root_b = self.find(item_a), self.find(item_b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


@dataclass
class LinkStatistics:
    """What linking candidate groups did.

    Attributes:
        candidate_groups: band buckets with two or more documents.
        checked_pairs: pairs whose signatures were compared (pairs already linked are not compared again).
        rejected_pairs: checked pairs whose estimated Jaccard was below the threshold.
    """

    candidate_groups: int = 0
    checked_pairs: int = 0
    rejected_pairs: int = 0


def band_groups(signatures: np.ndarray, config: MinHashConfig) -> list[np.ndarray]:
    """Per band, the sets (sorted row-index arrays, 2+ members) of signatures whose values agree in that band."""
    groups = []
    for band in range(config.bands):
        values = np.ascontiguousarray(signatures[:, band * config.rows : (band + 1) * config.rows])
        keys = values.view(np.dtype((np.void, values.dtype.itemsize * config.rows))).ravel()
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
        sizes = np.diff(np.append(starts, len(keys)))
        for start, size in zip(starts.tolist(), sizes.tolist(), strict=True):
            if size > 1:
                groups.append(np.sort(order[start : start + size]))
    return groups


def link_candidate_groups(
    groups: Iterable[np.ndarray], signatures: np.ndarray, config: MinHashConfig
) -> tuple[list[list[int]], LinkStatistics]:
    """Clusters (sorted lists of row indices, 2+ members, ordered by first member) from LSH candidate groups.

    Every pair inside a group is a candidate. With `config.verify`, a candidate pair links its two documents only
    when their signatures agree in at least `config.required_matches` values; otherwise all pairs link. Documents
    with identical signatures link at once; pairs whose documents are already linked are not compared. The result
    is the connected components of the accepted pairs, which depend only on the groups and signatures.
    """
    statistics = LinkStatistics()
    sets = DisjointSets(len(signatures))
    touched: set[int] = set()
    for group in groups:
        members = np.asarray(group, dtype=np.int64)
        if np.any(members[1:] <= members[:-1]):
            members = np.unique(members)
        if len(members) < 2:
            continue
        statistics.candidate_groups += 1
        touched.update(members.tolist())
        if not config.verify:
            for member in members[1:].tolist():
                sets.union(int(members[0]), member)
            continue
        representatives = members.tolist()
        if len(members) > 2:  # documents with identical signatures are linked without comparing every pair
            first_with_signature: dict[bytes, int] = {}
            representatives = []
            for member in members.tolist():
                twin = first_with_signature.setdefault(signatures[member].tobytes(), member)
                if twin == member:
                    representatives.append(member)
                else:
                    sets.union(twin, member)
        for position, member in enumerate(representatives[:-1]):
            root = sets.find(member)
            others = [other for other in representatives[position + 1 :] if sets.find(other) != root]
            if not others:
                continue
            matches = (signatures[others] == signatures[member]).sum(axis=1)
            statistics.checked_pairs += len(others)
            for other, match_count in zip(others, matches.tolist(), strict=True):
                if match_count >= config.required_matches:
                    sets.union(member, other)
                else:
                    statistics.rejected_pairs += 1
    components: dict[int, list[int]] = {}
    for item in sorted(touched):
        components.setdefault(sets.find(item), []).append(item)
    clusters = [members for _, members in sorted(components.items()) if len(members) > 1]
    return clusters, statistics


def choose_survivor(members: Iterable[tuple[Hashable, int]]) -> Hashable:
    """The id to keep of a cluster given (id, text length) pairs: the longest text; ties -> smallest id as a string."""
    return min(members, key=lambda member: (-member[1], str(member[0])))[0]


def near_duplicate_clusters(
    ids: Sequence[Hashable], texts: Sequence[str], config: MinHashConfig | None = None
) -> list[list[Hashable]]:
    """Near-duplicate clusters of in-memory documents (the reference for the datatrove steps).

    Returns one list per cluster of two or more documents: the survivor (`choose_survivor`) first, then the ids
    to remove sorted as strings; clusters are sorted by their survivor's id as a string. `ids` must be unique.
    Documents with fewer than `config.min_ngrams` distinct shingles are never in a cluster.
    """
    config = config or MinHashConfig()
    if len(ids) != len(texts):
        raise RepolmError(f"near-dedup got {len(ids)} ids for {len(texts)} texts")
    if len(set(ids)) != len(ids):
        raise RepolmError("near-dedup ids must be unique")
    signatures, counts = minhash_signatures(texts, config)
    eligible = np.flatnonzero(counts >= config.min_ngrams)
    clusters, statistics = link_candidate_groups(
        band_groups(signatures[eligible], config), signatures[eligible], config
    )
    logger.debug("near-dedup: %d documents, %d clusters, %s", len(texts), len(clusters), statistics)
    result = []
    for cluster in clusters:
        members = [(ids[index], len(texts[index])) for index in eligible[cluster].tolist()]
        survivor = choose_survivor(members)
        result.append([survivor, *sorted((member for member, _ in members if member != survivor), key=str)])
    return sorted(result, key=lambda cluster: str(cluster[0]))
