"""Instruction tuning: packed rows (answer-only targets, no attention across conversations), the resumable
data-parallel batch source, a short `repolm sft` run through the one training loop (the answer-only loss falls, an
instruct folder comes out, stop + resume equals an uninterrupted run), and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from repolm.errors import RepolmError
from repolm.hf_folder import load_pretrained
from repolm.model.llama import IGNORE_INDEX
from repolm.tokenizer import EOT_TOKEN, ChatFormat, CodeTokenizer
from repolm.train.config import load_train_config
from repolm.train.metrics import read_metrics
from repolm.train.sft import Conversations, InstructionData, make_batch, pack_rows, run_sft

REPOSITORY = Path(__file__).resolve().parents[2]


def conversations_of(lengths: list[int], seed: int = 0) -> Conversations:
    """Synthetic conversations: ids 1..n (offset per conversation), the second half of each trained."""
    generator = np.random.default_rng(seed)
    ids, masks = [], []
    for length in lengths:
        ids.append(generator.integers(3, 500, size=length).astype(np.int32))
        mask = np.zeros(length, dtype=bool)
        mask[length // 2 :] = True
        masks.append(mask)
    return Conversations(ids, masks)


def test_rows_pack_greedily_and_targets_are_answer_tokens_only() -> None:
    conversations = conversations_of([5, 4, 6, 3])
    rows = pack_rows(conversations.lengths, np.arange(4), capacity=10)
    assert rows == [[0, 1], [2, 3]]
    batch = make_batch(conversations, rows, sequence_length=9, pad_id=0)  # rows of 10 tokens
    assert batch.input_ids.shape == batch.targets.shape == batch.positions.shape == (2, 9)
    first = np.concatenate([conversations.ids[0], conversations.ids[1], [0]])  # one pad token
    assert batch.input_ids[0].tolist() == first[:-1].tolist()
    trained = np.concatenate([conversations.masks[0], conversations.masks[1], [False]])
    expected_targets = np.where(trained[1:], first[1:], IGNORE_INDEX)
    assert batch.targets[0].tolist() == expected_targets.tolist()
    assert batch.targets[0, 4].item() == IGNORE_INDEX  # the seam: the next conversation's first token is no target
    assert batch.positions[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert batch.positions[1].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2]
    assert batch.documents_started == 4 and batch.document_masking
    mask = batch.attention_mask[0, 0]  # (T, T)
    causal = torch.ones(9, 9, dtype=torch.bool).tril()
    assert not mask[5:, :5].any()  # the second conversation does not see the first
    assert torch.equal(mask[5:, 5:], causal[:4, :4]) and torch.equal(mask[:5, :5], causal[:5, :5])


def test_no_attention_across_packed_conversations(tiny_model_dir: Path) -> None:
    """A conversation's logits are the same alone and packed after another one."""
    model = load_pretrained(tiny_model_dir).eval()
    conversations = conversations_of([7, 9])
    packed = make_batch(conversations, [[0, 1]], sequence_length=15, pad_id=0)
    alone = make_batch(Conversations([conversations.ids[1]], [conversations.masks[1]]), [[0]], 8, pad_id=0)
    with torch.no_grad():
        packed_logits = model(packed.input_ids, packed.positions, packed.attention_mask)
        alone_logits = model(alone.input_ids, alone.positions, alone.attention_mask)
        unmasked = model(packed.input_ids, packed.positions)  # plain causal: the second conversation sees the first
    torch.testing.assert_close(packed_logits[0, 7:15], alone_logits[0, :8], atol=1e-5, rtol=1e-5)
    assert (unmasked[0, 7:15] - alone_logits[0, :8]).abs().max() > 1e-3


def test_instruction_data_splits_ranks_and_resumes_exactly() -> None:
    conversations = conversations_of([int(n) for n in np.random.default_rng(1).integers(3, 30, size=50)])
    single = InstructionData(conversations, 31, micro_batch_size=4, seed=5, pad_id=0)
    ranks = [InstructionData(conversations, 31, 2, seed=5, pad_id=0, rank=rank, world_size=2) for rank in (0, 1)]
    for _ in range(12):  # several epochs
        whole = single.next_batch()
        parts = [source.next_batch() for source in ranks]
        assert torch.equal(whole.input_ids, torch.cat([part.input_ids for part in parts]))
        assert torch.equal(whole.targets, torch.cat([part.targets for part in parts]))
    state = single.state_dict()
    expected = [single.next_batch().input_ids for _ in range(5)]
    resumed = InstructionData(conversations, 31, micro_batch_size=4, seed=5, pad_id=0)
    resumed.load_state_dict(state)
    assert all(torch.equal(batch, resumed.next_batch().input_ids) for batch in expected)
    with pytest.raises(RepolmError, match="seed"):
        InstructionData(conversations, 31, 4, seed=6, pad_id=0).load_state_dict(state)


def test_each_conversation_is_seen_once_per_epoch() -> None:
    conversations = conversations_of([int(n) for n in np.random.default_rng(2).integers(3, 30, size=40)])
    data = InstructionData(conversations, 63, micro_batch_size=1, seed=0, pad_id=0)
    rows_in_epoch = len(data._rows_of_epoch(0))
    seen = [index for row in range(rows_in_epoch) for index in data.row(row)]
    assert sorted(seen) == list(range(40))
    next_epoch = [
        index for row in range(rows_in_epoch, rows_in_epoch + len(data._rows_of_epoch(1))) for index in data.row(row)
    ]
    assert sorted(next_epoch) == list(range(40)) and next_epoch != seen  # reshuffled


# -----------------------------------------------------------------------------
# runs


def write_instructions(path: Path, count: int) -> Path:
    """A learnable task (the answer restates the instruction's numbers) plus one over-long and one bad record."""
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            record = {
                "instruction": f"Return {number} plus one.",
                "output": f"```python\nreturn {number} + 1\n```",
                "system": "Answer with code.\n",  # shorter than the default system prompt
            }
            handle.write(json.dumps(record) + "\n")
        handle.write(json.dumps({"instruction": "long " * 400, "output": "x"}) + "\n")
        handle.write('{"instruction": "broken"\n')
    return path


def sft_overrides(tmp_path: Path, model_dir: Path, data: Path, run: str, steps: int = 30) -> dict:
    return {
        "run_dir": str(tmp_path / run),
        "model.init_from": str(model_dir),
        "data.folder": str(data),
        "data.sequence_length": 128,
        "data.validation_share": 0.1,
        "optimizer.lr": 3e-3,
        "schedule.warmup_steps": 5,
        "batch.micro_batch_size": 4,
        "max_steps": steps,
        "checkpoint.every_steps": 10,
        "eval.every_steps": 10,
        "eval.batches": 2,
        "logging.every_steps": 1,
        "logging.progress_bar": False,
        "logging.peak_flops": 1e12,
        "cpu_threads": int(os.environ.get("REPOLM_TEST_THREADS", "1")),
    }


@pytest.fixture(scope="module")
def sft_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("sft")
    data = write_instructions(tmp_path / "instructions.jsonl", 120)
    config = load_train_config(
        REPOSITORY / "configs/sft/tiny.yaml", sft_overrides(tmp_path, tiny_model_dir, data, "run")
    )
    result, folder = run_sft(config)
    return tmp_path, data, result, folder


def test_sft_lowers_the_answer_loss_and_writes_an_instruct_folder(sft_run, tiny_model_dir: Path) -> None:
    tmp_path, _, result, folder = sft_run
    metrics = read_metrics(result.run_dir)
    losses = [record["loss"] for record in metrics if "loss" in record]
    validation = [record["val_loss"] for record in metrics if "val_loss" in record]
    assert len(losses) == 30 and len(validation) == 3
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])  # answer tokens only: a learnable pattern
    assert validation[-1] < 0.5 * validation[0]
    report = json.loads((result.run_dir / "sft_data.json").read_text())
    assert report["records"]["skipped"] == {"invalid-json": 1, "too-long": 1}
    assert report["train"]["conversations"] + report["validation"]["conversations"] == 120

    assert folder == result.run_dir / "model"
    tokenizer = CodeTokenizer.load(folder)
    assert tokenizer.eos_token == EOT_TOKEN and tokenizer.chat_template is not None
    assert json.loads((folder / "config.json").read_text())["eos_token_id"] == tokenizer.eot_id
    assert load_pretrained(folder).config.vocab_size == load_pretrained(tiny_model_dir).config.vocab_size


def test_the_tuned_model_answers_in_the_format(sft_run) -> None:
    from repolm.data.instruction_records import held_out, read_instructions
    from repolm.eval.instruct_format import end_of_turn_share

    tmp_path, data, _, folder = sft_run
    samples, _ = read_instructions(data)
    held = [sample for sample in samples if held_out(sample.messages, 0.1)]
    window = 129
    chat_format = ChatFormat(CodeTokenizer.load(folder))
    held = [sample for sample in held if len(chat_format.conversation(sample.messages).ids) <= window]
    result = end_of_turn_share(folder, held, max_new_tokens=40)
    assert result.share >= 0.9, result


def test_stop_and_resume_equals_an_uninterrupted_run(sft_run, tiny_model_dir: Path) -> None:
    tmp_path, data, result, _ = sft_run
    overrides = sft_overrides(tmp_path, tiny_model_dir, data, "stopped")
    run_sft(load_train_config(REPOSITORY / "configs/sft/tiny.yaml", overrides), stop_at_step=20)
    resumed, _ = run_sft(load_train_config(REPOSITORY / "configs/sft/tiny.yaml", overrides), resume=True)

    def curve(run_dir: Path) -> list:
        return [
            (r["step"], r.get("loss"), r.get("val_loss"))
            for r in read_metrics(run_dir)
            if "step" in r and "event" not in r
        ]

    assert curve(resumed.run_dir) == curve(result.run_dir)


def test_bad_instruction_data_fails_with_exit_code_2(tmp_path: Path, tiny_model_dir: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": ""}\nnot json\n')
    command = [sys.executable, "-m", "repolm", "sft", "--config", str(REPOSITORY / "configs/sft/tiny.yaml")]
    arguments = [f"--model.init_from={tiny_model_dir}", f"--run_dir={tmp_path / 'run'}", "--max_steps=2"]
    arguments.append("--schedule.warmup_steps=1")
    done = subprocess.run([*command, *arguments, f"--data.folder={bad}"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: data.folder: {bad}: no usable instruction record (kept 0 of 2 records; skipped: 1 invalid-json, "
        "1 empty-answer)"
    )
    assert not (tmp_path / "run").exists()  # refused before any compute or output
    absent = subprocess.run(
        [*command, *arguments, f"--data.folder={tmp_path / 'no.jsonl'}"], capture_output=True, text=True
    )
    assert absent.returncode == 2 and "data.folder" in absent.stderr and "no such file" in absent.stderr


def test_config_checks(tmp_path: Path, tiny_model_dir: Path) -> None:
    data = write_instructions(tmp_path / "d.jsonl", 3)
    base = {"run_dir": str(tmp_path / "r"), "model.init_from": str(tiny_model_dir), "data.folder": str(data)}
    config = REPOSITORY / "configs/sft/tiny.yaml"
    with pytest.raises(RepolmError, match="data.validation_share: only for data.format instructions"):
        load_train_config(config, {**base, "data.format": "tokens"})
    with pytest.raises(RepolmError, match="data.mixture: instruction data has no kinds"):
        load_train_config(config, {**base, "data.mixture": {"code": 1.0}})
    with pytest.raises(RepolmError, match="data.format: 'text' is not one of"):
        load_train_config(config, {**base, "data.format": "text"})
    with pytest.raises(RepolmError, match="eval.every_steps: no validation data"):
        load_train_config(config, {**base, "data.validation_share": 0.0})
    loaded = load_train_config(config, base)
    assert loaded.data.document_masking  # always on for instructions


def test_sft_starts_from_a_hugging_face_folder_written_by_transformers(
    tmp_path: Path, saved_small_tokenizer: Path, small_tokenizer: CodeTokenizer
) -> None:
    """A base folder as DeepSeek-Coder ships it (written by transformers, no chat template) tunes into an instruct
    folder that transformers loads and renders with the template it was tuned with."""
    transformers = pytest.importorskip("transformers")
    base = tmp_path / "base"
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(saved_small_tokenizer)
    their_tokenizer.chat_template = None
    their_tokenizer.save_pretrained(base)
    (base / "chat_template.jinja").unlink(missing_ok=True)
    config = transformers.LlamaConfig(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=small_tokenizer.bos_id,
        eos_token_id=small_tokenizer.eos_id, tie_word_embeddings=False,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(base)
    assert CodeTokenizer.load(base).chat_template is None
    data = write_instructions(tmp_path / "d.jsonl", 20)
    overrides = {
        **sft_overrides(tmp_path, base, data, "run", steps=3),
        "eval.every_steps": 0,
        "data.validation_share": 0,
        "schedule.warmup_steps": 1,
    }
    result, folder = run_sft(load_train_config(REPOSITORY / "configs/sft/tiny.yaml", overrides))
    assert result.steps == 3
    tuned = transformers.AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "hi"}]
    assert tuned.eos_token == EOT_TOKEN
    assert tuned.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == ChatFormat(
        CodeTokenizer.load(folder)
    ).prompt_text(messages)
    assert transformers.AutoModelForCausalLM.from_pretrained(folder).config.eos_token_id == small_tokenizer.eot_id


def test_sft_starts_from_a_training_run_folder(sft_run, tiny_model_dir: Path) -> None:
    """A run folder (its latest checkpoint) as the starting point: the tokenizer is found through its run config."""
    tmp_path, data, result, _ = sft_run
    overrides = {**sft_overrides(tmp_path, result.run_dir, data, "chained", steps=2), "schedule.warmup_steps": 1}
    overrides["eval.every_steps"] = 0
    config = load_train_config(REPOSITORY / "configs/sft/tiny.yaml", overrides)
    chained, folder = run_sft(config)
    assert chained.steps == 2 and folder is not None
    assert CodeTokenizer.load(folder).encode("x = 1") == CodeTokenizer.load(tiny_model_dir).encode("x = 1")
    assert CodeTokenizer.load(folder).eos_token == EOT_TOKEN


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_tune_like_one(tmp_path: Path, tiny_model_dir: Path, mode: str) -> None:
    """`torchrun --nproc-per-node 2 -m repolm sft` (micro-batch 2 each) follows the one-process run (micro-batch 4)."""
    import socket

    data = write_instructions(tmp_path / "d.jsonl", 120)
    options = {**sft_overrides(tmp_path, tiny_model_dir, data, "one", steps=8), "schedule.warmup_steps": 2}
    options.update({"eval.every_steps": 4, "device": "cpu", "cpu_threads": 1})
    del options["run_dir"], options["batch.micro_batch_size"]
    arguments = ["sft", "--config", str(REPOSITORY / "configs/sft/tiny.yaml")]
    arguments += [
        f"--{key}={str(value).lower() if isinstance(value, bool) else value}" for key, value in options.items()
    ]
    environment = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(name, None)
    one = [sys.executable, "-m", "repolm", *arguments, f"--run_dir={tmp_path / 'one'}", "--batch.micro_batch_size=4"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--nnodes=1",
                "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "repolm"]  # fmt: skip
    two = [*launcher, *arguments, f"--run_dir={tmp_path / 'two'}", "--batch.micro_batch_size=2"]
    two.append(f"--parallel.mode={mode}")
    for command in (one, two):
        done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]

    def curve(run: str) -> tuple[list[float], list[float]]:
        records = read_metrics(tmp_path / run)
        return [r["loss"] for r in records if "loss" in r], [r["val_loss"] for r in records if "val_loss" in r]

    (losses_one, validation_one), (losses_two, validation_two) = curve("one"), curve("two")
    assert len(losses_one) == len(losses_two) == 8 and len(validation_one) == len(validation_two) == 2
    np.testing.assert_allclose(losses_two, losses_one, rtol=1e-4)  # gradient sums in another order
    np.testing.assert_allclose(validation_two, validation_one, rtol=1e-4)
    assert CodeTokenizer.load(tmp_path / "two" / "model").eos_token == EOT_TOKEN
