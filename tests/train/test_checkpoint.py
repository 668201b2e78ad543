"""Tests of repolm.train.checkpoint: round trip, RNG restore, atomic folders, pruning, export to an HF folder."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from repolm.errors import RepolmError
from repolm.hf_folder import load_pretrained
from repolm.model import build_model, preset_config
from repolm.tokenizer import CodeTokenizer
from repolm.train.checkpoint import (
    MODEL_FILE,
    export_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from repolm.train.optim import OptimizerConfig, build_optimizer


@pytest.fixture(scope="module")
def trained(small_tokenizer):
    """A tiny model and its AdamW after one step (so the optimizer has moments)."""
    config = preset_config(
        "tiny", vocab_size=1024, num_hidden_layers=2, eos_token_id=small_tokenizer.eos_id, bos_token_id=None
    )
    model = build_model(config, seed=0)
    optimizer = build_optimizer(model, OptimizerConfig(lr=1e-3))
    input_ids = torch.randint(0, 1024, (2, 16), generator=torch.Generator().manual_seed(0))
    model(input_ids).logsumexp(-1).mean().backward()
    optimizer.step()
    return model, optimizer


def save(folder, model, optimizer, step, keep_last=3, tokenizer=None):
    return save_checkpoint(
        folder,
        step=step,
        tokens=step * 32,
        model_config=model.config,
        model_state=model.state_dict(),
        optimizer_state=optimizer.state_dict(),
        rank_states=[{"data": {"position": step}, "rng": rng_states()}],
        metrics_lines=step + 1,
        elapsed_seconds=1.5,
        config={"tokenizer": tokenizer},
        keep_last=keep_last,
    )


def test_round_trip(tmp_path, trained):
    model, optimizer = trained
    path = save(tmp_path / "checkpoints", model, optimizer, step=7)
    assert path.name == "step_0000007" and latest_checkpoint(tmp_path) == path  # a run folder or its checkpoints/
    checkpoint = load_checkpoint(path)
    assert (checkpoint.step, checkpoint.tokens, checkpoint.metrics_lines, checkpoint.world_size) == (7, 224, 8, 1)
    assert checkpoint.model_config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(checkpoint.model_state[name], tensor), name
    saved_moments = checkpoint.optimizer_state["state"][0]["exp_avg_sq"]
    assert torch.equal(saved_moments, optimizer.state_dict()["state"][0]["exp_avg_sq"])
    assert checkpoint.rank_states[0]["data"] == {"position": 7}
    assert load_checkpoint(path, load_weights=False).model_state is None
    restored = model_from_checkpoint(path)
    input_ids = torch.arange(20).view(1, 20)
    assert torch.equal(restored(input_ids), model.eval()(input_ids))


def test_rng_states_restore_every_generator():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    states = rng_states()
    first = (random.random(), np.random.rand(), torch.rand(3))
    set_rng_states(states)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_keep_last_and_staging_folders_are_ignored(tmp_path, trained):
    model, optimizer = trained
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".step_0000009.tmp-abc").mkdir()  # what a save killed midway leaves
    (folder / "step_0000008").mkdir()  # a folder without trainer_state.json is not a checkpoint
    assert latest_checkpoint(folder) is None
    for step in (1, 2, 3, 4):
        save(folder, model, optimizer, step=step, keep_last=2)
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["step_0000003", "step_0000004", "step_0000008"]
    assert latest_checkpoint(folder).name == "step_0000004"


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path, trained):
    model, optimizer = trained
    path = save(tmp_path, model, optimizer, step=1)
    weights = path / MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(RepolmError, match="model.safetensors: cannot read it"):
        load_checkpoint(path)
    with pytest.raises(RepolmError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "missing")


def test_export_loads_with_the_same_logits(tmp_path, trained, saved_small_tokenizer):
    model, optimizer = trained
    save(tmp_path / "run" / "checkpoints", model, optimizer, step=3, tokenizer=str(saved_small_tokenizer))
    output = export_checkpoint(tmp_path / "run", tmp_path / "export")  # a run folder: its latest checkpoint
    exported = load_pretrained(output)
    input_ids = torch.arange(30).view(2, 15)
    assert torch.equal(exported(input_ids), model.eval()(input_ids))
    assert len(CodeTokenizer.load(output)) == 1022  # the run's tokenizer travels with the weights
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoModelForCausalLM.from_pretrained(output, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = reference(input_ids).logits
    torch.testing.assert_close(exported(input_ids), expected, rtol=1e-4, atol=1e-4)


def test_export_of_a_folder_without_checkpoints(tmp_path):
    with pytest.raises(RepolmError, match="neither a checkpoint nor a run folder"):
        export_checkpoint(tmp_path, tmp_path / "export")
