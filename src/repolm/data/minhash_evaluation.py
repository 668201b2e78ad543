"""Measuring MinHash near-dedup: the true similarities, the estimates, the predicted S-curve, planted near-duplicates.

`repolm.data.minhash` finds near-duplicates; tests and benchmarks need the truth to score it against and test data
with known answers. Here:

- `word_ngrams` and `exact_jaccard` give the exact shingle sets (BigCode's word n-grams, as tuples of strings) and
  the true Jaccard similarity of two texts, in slow pure Python, independent of the hashing in `minhash`;
- `estimated_jaccard` is what two signatures estimate (the fraction of agreeing minima), and
  `candidate_probability` the LSH S-curve, the probability that a pair of a given similarity becomes a candidate;
- `plant_near_duplicate` makes a mutated copy of a text at a chosen exact Jaccard similarity, for precision/recall
  measurements on real files.

Nothing here is used by the pipeline. Not handled here: near-dedup itself (signatures, LSH bands, verification,
clusters and survivors), which is in `repolm.data.minhash` and the datatrove steps of `repolm.data.dedup_steps`.
"""

from __future__ import annotations

import random
import re

import numpy as np

from repolm.data.minhash import WORD_PATTERN, MinHashConfig, shingle_hashes
from repolm.errors import RepolmError


def candidate_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The LSH S-curve: the probability that a pair of Jaccard `similarity` shares at least one band."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=np.float64) ** rows) ** bands


def word_ngrams(text: str, ngram_size: int) -> set[tuple[str, ...]]:
    """The exact shingle set (word n-grams as tuples of strings), for labelling pairs; slow, pure Python."""
    words = WORD_PATTERN.findall(text)
    return {tuple(words[index : index + ngram_size]) for index in range(len(words) - ngram_size + 1)}


def exact_jaccard(text_a: str, text_b: str, config: MinHashConfig | None = None) -> float:
    """The true Jaccard similarity of two texts' word n-gram sets (0.0 when both sets are empty)."""
    ngram_size = (config or MinHashConfig()).ngram_size
    shingles_a, shingles_b = word_ngrams(text_a, ngram_size), word_ngrams(text_b, ngram_size)
    union = len(shingles_a | shingles_b)
    return len(shingles_a & shingles_b) / union if union else 0.0


def estimated_jaccard(signature_a: np.ndarray, signature_b: np.ndarray) -> float:
    """The Jaccard similarity that two signatures estimate: the fraction of permutations whose minima agree."""
    if np.shape(signature_a) != np.shape(signature_b):
        raise ValueError(f"signatures differ in shape: {np.shape(signature_a)} vs {np.shape(signature_b)}")
    return float(np.mean(np.asarray(signature_a) == np.asarray(signature_b)))


def plant_near_duplicate(
    text: str, target_jaccard: float, seed: int, config: MinHashConfig | None = None
) -> tuple[str, float]:
    """A mutated copy of `text` whose exact n-gram Jaccard to `text` is as close to `target_jaccard` as it gets.

    Mutations, in an order drawn from `seed`: replace a word by a fresh one, or insert a fresh word after it
    (fresh words never occur in the text, so they only remove shared shingles). A binary search finds how many
    mutations to apply (Jaccard falls as mutations accumulate). Returns (copy, its exact Jaccard to `text`).
    """
    config = config or MinHashConfig()
    if not 0.0 <= target_jaccard <= 1.0:
        raise RepolmError(f"target_jaccard must be in [0, 1], got {target_jaccard!r}")
    parts = re.split(r"([A-Za-z_0-9]+)", text)  # words at odd positions
    word_positions = list(range(1, len(parts), 2))
    generator = random.Random(seed)
    generator.shuffle(word_positions)
    mutations = [
        (position, generator.random() < 0.5, f"zq{generator.getrandbits(48):012x}") for position in word_positions
    ]
    original = shingle_hashes(text, config)

    def mutated(count: int) -> str:
        copy = list(parts)
        for position, replace, fresh in mutations[:count]:
            copy[position] = fresh if replace else f"{copy[position]} {fresh}"
        return "".join(copy)

    def hashed_jaccard(candidate: str) -> float:
        shingles = shingle_hashes(candidate, config)
        union = len(np.union1d(original, shingles))
        return len(np.intersect1d(original, shingles, assume_unique=True)) / union if union else 0.0

    low, high = 0, len(mutations)  # jaccard(low) >= target > jaccard(high), as far as monotone
    while high - low > 1:
        middle = (low + high) // 2
        if hashed_jaccard(mutated(middle)) >= target_jaccard:
            low = middle
        else:
            high = middle
    scored = []
    for count in sorted({low, high}):
        candidate = mutated(count)
        scored.append((exact_jaccard(text, candidate, config), candidate))
    similarity, best = min(scored, key=lambda item: abs(item[0] - target_jaccard))
    return best, similarity
