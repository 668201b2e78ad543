"""In-context copying (`repolm.eval.copying`): the second copy of a span against the first, on a real tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as functional

from repolm.data.assembly import AssemblyConfig, assemble_repository
from repolm.data.records import CodeFile
from repolm.errors import RepolmError
from repolm.eval.copying import _copy_row, in_context_copying


def write_heldout(folder: Path, repositories: dict[str, list[CodeFile]]) -> Path:
    """Held-out repositories written with the build's writer."""
    from repolm.data.steps import output_record, sample_to_document, shard_writer

    with shard_writer(str(folder), "${kind}/${rank}.jsonl.zst", adapter=output_record) as writer:
        for repo, files in repositories.items():
            for sample in assemble_repository(repo, "test", "code", files, AssemblyConfig()):
                writer.write(sample_to_document(sample), rank=0)
    return folder


SHORT_REPOSITORY = {"short": [CodeFile("tiny.py", "x = 1\n", "Python")]}


@pytest.fixture(scope="module")
def heldout_folder(tmp_path_factory, stdlib_files: list[Path]) -> Path:
    """Two held-out repositories of real stdlib files (one too short for a span)."""
    long_files = [CodeFile(f"pkg/{path.name}", path.read_text(encoding="utf-8"), "Python") for path in stdlib_files[:3]]
    return write_heldout(tmp_path_factory.mktemp("heldout"), {"long": long_files, **SHORT_REPOSITORY})


def test_copy_row_splits_each_sequence_at_the_span():
    # element i is token i + 1's loss: the first 3 are the first copy, the next 3 the second
    nats = [np.array([2.0, 2.0, 2.0, 0.5, 0.5, 0.5]), np.array([4.0, 4.0, 4.0, 1.5, 1.5, 1.5])]
    row = _copy_row(nats, span_tokens=3)
    assert row == {"spans": 2, "first_copy_loss": 3.0, "second_copy_loss": 1.0, "copy_gain": 2.0}
    assert _copy_row([], 3)["first_copy_loss"] is None


def direct_copy_losses(model, start_id: int, span: list[int]) -> tuple[float, float]:
    ids = torch.tensor([[start_id, *span, *span]])
    with torch.inference_mode():
        logits = model(ids)[0].double()
    nats = functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="none").numpy()
    return float(nats[: len(span)].mean()), float(nats[len(span) :].mean())


def test_copying_scores_the_spans_it_reports(tiny_generator, heldout_folder):
    span_tokens, seed = 16, 5
    result = in_context_copying(tiny_generator, heldout_folder, span_tokens=span_tokens, max_spans=8, seed=seed)
    assert result["span_tokens"] == span_tokens
    # every file of the long repository has 16 tokens, the short one's does not
    assert result["code"]["spans"] == 3 and result["random"]["spans"] == 8
    tokenizer, model = tiny_generator.tokenizer, tiny_generator.engine.model
    # the random spans, drawn independently here: ordinary ids only, the same seed
    special = set(tokenizer.backend.get_added_tokens_decoder())
    ordinary = np.array([index for index in range(tokenizer.vocab_size) if index not in special])
    rng = np.random.default_rng(seed)
    spans = [rng.choice(ordinary, size=span_tokens).tolist() for _ in range(8)]
    start_id = tokenizer.bos_id if tokenizer.add_bos_token and tokenizer.bos_id is not None else tokenizer.eos_id
    losses = np.array([direct_copy_losses(model, start_id, span) for span in spans])
    assert result["random"]["first_copy_loss"] == pytest.approx(losses[:, 0].mean(), rel=1e-4)
    assert result["random"]["second_copy_loss"] == pytest.approx(losses[:, 1].mean(), rel=1e-4)
    gain = result["random"]["first_copy_loss"] - result["random"]["second_copy_loss"]
    assert result["random"]["copy_gain"] == pytest.approx(gain)


def test_copying_without_long_enough_files_has_no_code_row(tiny_generator, tmp_path):
    result = in_context_copying(tiny_generator, write_heldout(tmp_path, SHORT_REPOSITORY), span_tokens=16, max_spans=2)
    assert result["code"] == {"spans": 0, "first_copy_loss": None, "second_copy_loss": None, "copy_gain": None}
    assert result["random"]["spans"] == 2


def test_copying_rejects_bad_settings(tiny_generator, heldout_folder):
    with pytest.raises(RepolmError, match="span_tokens"):
        in_context_copying(tiny_generator, heldout_folder, span_tokens=0)
