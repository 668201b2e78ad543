"""Exact match and edit similarity of a predicted code line against the real one, as CrossCodeEval scores them.

Both compare the strings with surrounding whitespace stripped (`str.strip`):

- `exact_match(prediction, target)`: True when the stripped strings are equal.
- `edit_similarity(prediction, target)`: CrossCodeEval's ES, `fuzz.ratio` (fuzzywuzzy with python-Levenshtein, or
  rapidfuzz's `fuzz.ratio`): the normalized Indel similarity times 100, `100 * (1 - indel / (len(a) + len(b)))`,
  where `indel` is the fewest single-character insertions and deletions that turn one string into the other
  (a substitution counts as two). Since `indel = len(a) + len(b) - 2 * LCS(a, b)`, this is
  `200 * LCS(a, b) / (len(a) + len(b))`; 100.0 when both strings are empty. A float in [0, 100], not rounded
  (fuzzywuzzy rounds to an integer, rapidfuzz does not).

The longest common subsequence is computed with the bit-parallel algorithm of Allison and Dix (1986; Hyyrö's
formulation): one pass over the longer string with Python integers as bit vectors over the shorter one, so a long
prediction costs O(len(a) * len(b) / 64) word operations rather than a Python loop per character pair.
"""

from __future__ import annotations


def exact_match(prediction: str, target: str) -> bool:
    """Whether the prediction equals the target once both are stripped of surrounding whitespace."""
    return prediction.strip() == target.strip()


def longest_common_subsequence(first: str, second: str) -> int:
    """The length of the longest common subsequence of two strings (bit-parallel, see the module docstring)."""
    if len(first) < len(second):
        first, second = second, first
    if not second:
        return 0
    positions: dict[str, int] = {}
    for index, character in enumerate(second):
        positions[character] = positions.get(character, 0) | (1 << index)
    full = (1 << len(second)) - 1
    vector = full  # bit i cleared: a common subsequence ending at second[i] has grown
    for character in first:
        matches = vector & positions.get(character, 0)
        vector = ((vector + matches) | (vector - matches)) & full
    return len(second) - vector.bit_count()


def edit_similarity(prediction: str, target: str) -> float:
    """CrossCodeEval's edit similarity of the stripped strings, in [0, 100] (see the module docstring)."""
    first, second = prediction.strip(), target.strip()
    total = len(first) + len(second)
    if total == 0:
        return 100.0
    return 200.0 * longest_common_subsequence(first, second) / total
