"""The DeepSeek-Coder paper's figures for the benchmarks repolm runs, shown beside a run's score in its report.

Greedy pass@1 in percent, from the paper's Tables 3 (HumanEval, MultiPL-E, MBPP), 5 (LeetCode contest) and 8
(PAL math), as collected in shared/docs/deepseek-coder-facts.md section 6. The paper does not report HumanEval
in Go or Rust, nor HumanEval infilling, so those tasks have no reference.
"""

from __future__ import annotations

_HUMANEVAL_COLUMNS = ("humaneval", "humaneval-cpp", "humaneval-java", "humaneval-php", "humaneval-ts",
                      "humaneval-cs", "humaneval-sh", "humaneval-js", "mbpp")  # fmt: skip
_HUMANEVAL_ROWS = {
    ("base", "DeepSeek-Coder-Base 1.3B"): (34.8, 31.1, 32.3, 24.2, 28.9, 36.7, 10.1, 28.6, 46.2),
    ("base", "DeepSeek-Coder-Base 6.7B"): (49.4, 50.3, 43.0, 38.5, 49.7, 50.0, 28.5, 48.4, 60.6),
    ("base", "DeepSeek-Coder-Base 33B"): (56.1, 58.4, 51.9, 44.1, 52.8, 51.3, 32.3, 55.3, 66.0),
    ("instruct", "DeepSeek-Coder-Instruct 1.3B"): (65.2, 45.3, 51.9, 45.3, 59.7, 55.1, 12.7, 52.2, 49.4),
    ("instruct", "DeepSeek-Coder-Instruct 6.7B"): (78.6, 63.4, 68.4, 68.9, 67.2, 72.8, 36.7, 72.7, 65.4),
    ("instruct", "DeepSeek-Coder-Instruct 33B"): (79.3, 68.9, 73.4, 72.7, 67.9, 74.1, 43.0, 73.9, 70.0),
}
_LEETCODE = {  # overall pass@1 of the instruct models (Table 5)
    "leetcode": {"DeepSeek-Coder-Instruct 1.3B": 7.2, "DeepSeek-Coder-Instruct 6.7B": 19.4,
                 "DeepSeek-Coder-Instruct 33B": 27.8},
    "leetcode-cot": {"DeepSeek-Coder-Instruct 1.3B": 7.2, "DeepSeek-Coder-Instruct 6.7B": 21.1,
                     "DeepSeek-Coder-Instruct 33B": 28.9},
}  # fmt: skip
_PAL_COLUMNS = ("pal-gsm8k", "pal-gsm-hard", "pal-svamp", "pal-asdiv")
_PAL_ROWS = {  # Table 8, the columns of the sets in shared/benchmarks
    "DeepSeek-Coder-Base 1.3B": (14.6, 14.5, 36.7, 48.2),
    "DeepSeek-Coder-Base 6.7B": (43.2, 40.3, 58.4, 67.2),
    "DeepSeek-Coder-Base 33B": (60.7, 54.1, 71.6, 76.7),
}


def paper_results(task: str, mode: str) -> dict[str, float]:
    """The paper's pass@1 (%) per model for `task` in prompt `mode`; empty when the paper has no figure."""
    if task in _HUMANEVAL_COLUMNS:
        column = _HUMANEVAL_COLUMNS.index(task)
        return {model: row[column] for (row_mode, model), row in _HUMANEVAL_ROWS.items() if row_mode == mode}
    if task in _LEETCODE and mode == "instruct":
        return dict(_LEETCODE[task])
    if task in _PAL_COLUMNS and mode == "base":
        column = _PAL_COLUMNS.index(task)
        return {model: row[column] for model, row in _PAL_ROWS.items()}
    return {}
