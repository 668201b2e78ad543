"""The instruct recipe end to end, as measured for the README (slow: ~25 minutes on 2 busy cores): instructions mined
from the Python standard library, a `tiny` model pretrained on it, tuned on the mined pairs; the answer-only loss falls
and at least 90% of the greedy answers to held-out instructions end with <|EOT|> (the base model: almost none)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_tiny_model_tuned_on_mined_instructions_learns_the_format(tmp_path: Path) -> None:
    out = tmp_path / "recipe"
    command = [
        sys.executable,
        str(REPOSITORY / "benchmarks" / "bench_sft.py"),
        "--output",
        str(out),
        "--measure",
        "120",
    ]
    subprocess.run(command, check=True, cwd=REPOSITORY, timeout=4 * 3600)
    results = json.loads((out / "results.json").read_text())
    # measured (README): base 0.0%, tuned 96.3% of 218; loss 4.86 -> 4.05, validation 4.36 -> 4.20 -> 4.15; held-out
    # answer loss base 4.998, tuned 3.944
    assert results["instruct_format"]["share"] >= 0.9
    assert results["base_format"]["share"] <= 0.05
    losses = results["sft_losses"]
    assert losses["last_loss"] < losses["first_loss"] - 0.4
    validation = list(losses["val_loss"].values())
    assert len(validation) == 3 and validation == sorted(validation, reverse=True)
    assert results["instruct_answer_loss"] < results["base_answer_loss"] - 0.5
    assert results["mining"]["pairs"]["kept"] > 10000
