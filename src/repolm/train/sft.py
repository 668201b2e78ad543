"""Instruction tuning (DeepSeek-Coder-Instruct, paper section 3.7): instruction data as batches of the one loop.

`repolm sft --config configs/sft/<preset>.yaml` runs `run_sft`: `repolm.train.loop.train` with `data.format:
instructions` (whose batches come from here, `instruction_data` and `instruction_validation`), then the last
checkpoint exported as an instruct model folder. Resume, metrics, plots and DDP/FSDP2 are the loop's.

Data. Records are read by `repolm.data.instruction_records` (Alpaca-style or multi-turn; bad ones are skipped and
counted per reason) and rendered by `repolm.tokenizer.ChatFormat` with the tokenizer's chat template (DeepSeek-Coder's
instruct template when it has none): ids, and a loss mask that is True on the answers' tokens only (each answer
ending with `<|EOT|>`). A conversation longer than a window (`sequence_length + 1` tokens) is skipped as "too-long",
never cut: a cut answer would teach the model to stop without `<|EOT|>`. With `data.validation_share` s, the
conversations whose content hash falls below s (`repolm.data.instruction_records.held_out`) are held out for the
validation loss; the split depends on each conversation's content only, not on the order or on the other records.
`data.validation_folder` names a separate held-out file instead. What was kept and skipped is written to
`<run_dir>/sft_data.json`.

Packing. Each epoch the training conversations are shuffled (PCG64 seeded with (seed, epoch)) and packed greedily in
that order into rows of `sequence_length + 1` tokens: a conversation goes into the current row when it fits, else it
opens the next row; the rest of a row is padding. Positions restart at 0 at each conversation (and at the padding),
so with the block-diagonal mask of `repolm.train.data.document_attention_mask` no token attends across two
conversations. A row's input is its first T tokens and its targets the next tokens where those are answer tokens,
-100 (ignored) elsewhere: prompts, padding and the seam between two conversations. The loop averages the loss over
the answer tokens of the global batch, so `loss` in metrics.jsonl is the answer-only loss.

Data parallel and resume as `repolm.train.data.TrainData`: at step s, rank r takes the global rows s*W*B + r*B + b,
b < B; `state_dict` holds the global row counter, and a fresh object re-packs the epochs from the seed, so a resumed
run (with any W and B) gets the rows an uninterrupted one would have.

Cost: every conversation's ids and mask stay in memory (5 bytes per token); tokenizing takes about as long as
`tokenizers` needs for the text plus two template renders per turn. Epoch packing is O(conversations) in Python.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repolm.data.instruction_records import InstructionSample, SkipReport, held_out, iter_instructions
from repolm.errors import RepolmError
from repolm.folder_writer import write_file_atomically
from repolm.model.llama import IGNORE_INDEX
from repolm.tokenizer import ChatFormat, CodeTokenizer
from repolm.train.config import RunPlan, TrainConfig, prepare_run
from repolm.train.data import Batch
from repolm.train.loop import TrainResult, train
from repolm.train.parallelize import DistributedInfo

logger = logging.getLogger(__name__)

STATE_FORMAT = "repolm-sft-data/1"
DATA_REPORT_FILE = "sft_data.json"
_EPOCHS_CACHED = 2


@dataclass
class Conversations:
    """Tokenized conversations: per conversation its ids (int32) and loss mask (bool), same length."""

    ids: list[np.ndarray]
    masks: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(ids) for ids in self.ids], dtype=np.int64)


def tokenize_conversations(
    samples: list[InstructionSample], chat_format: ChatFormat, max_tokens: int, report: SkipReport
) -> Conversations:
    """Ids and loss masks of `samples`; those longer than `max_tokens` are counted as "too-long" and left out."""
    conversations = Conversations([], [])
    for number, sample in enumerate(samples, start=1):
        rendered = chat_format.conversation(sample.messages, sample.where)
        if len(rendered.ids) > max_tokens:
            report.kept -= 1
            report.add("too-long", sample.where, f"{len(rendered.ids)} tokens, more than a window of {max_tokens}")
            continue
        conversations.ids.append(np.asarray(rendered.ids, dtype=np.int32))
        conversations.masks.append(np.asarray(rendered.loss_mask, dtype=bool))
        if number % 20000 == 0:
            logger.info("tokenized %d of %d conversations", number, len(samples))
    return conversations


def pack_rows(lengths: np.ndarray, order: np.ndarray, capacity: int) -> list[list[int]]:
    """Conversation indices per row: `order` packed greedily into rows of at most `capacity` tokens."""
    rows: list[list[int]] = []
    current: list[int] = []
    used = 0
    for index in order.tolist():
        length = int(lengths[index])
        if current and used + length > capacity:
            rows.append(current)
            current, used = [], 0
        current.append(index)
        used += length
    if current:
        rows.append(current)
    return rows


def make_batch(conversations: Conversations, rows: list[list[int]], sequence_length: int, pad_id: int) -> Batch:
    """The batch of `rows` (conversation indices per row): inputs, answer-only targets, restarting positions."""
    width = sequence_length + 1
    tokens = np.full((len(rows), width), pad_id, dtype=np.int64)  # (B, T+1)
    trained = np.zeros((len(rows), width), dtype=bool)  # (B, T+1): the token is an answer token
    positions = np.zeros((len(rows), width), dtype=np.int64)  # (B, T+1)
    for row_index, row in enumerate(rows):
        offset = 0
        for index in row:
            ids, mask = conversations.ids[index], conversations.masks[index]
            tokens[row_index, offset : offset + len(ids)] = ids
            trained[row_index, offset : offset + len(ids)] = mask
            positions[row_index, offset : offset + len(ids)] = np.arange(len(ids))
            offset += len(ids)
        positions[row_index, offset:] = np.arange(width - offset)  # the padding is a document of its own
    targets = np.where(trained[:, 1:], tokens[:, 1:], IGNORE_INDEX)  # (B, T)
    return Batch(
        input_ids=torch.from_numpy(tokens[:, :-1].copy()),
        targets=torch.from_numpy(targets),
        positions=torch.from_numpy(positions[:, :-1].copy()),
        documents_started=sum(len(row) for row in rows),
        document_masking=True,
    )


class InstructionData:
    """Deterministic, resumable, data-parallel batches of packed conversations (see the module docstring).

    Args:
        conversations: the training conversations, each at most `sequence_length + 1` tokens.
        sequence_length: T, input tokens per row.
        micro_batch_size: B, rows per batch on this rank.
        seed: seed of the per-epoch shuffles.
        pad_id: id that fills the end of rows (never a target).
        rank, world_size: this process's data-parallel rank and the number of ranks.
    """

    def __init__(
        self,
        conversations: Conversations,
        sequence_length: int,
        micro_batch_size: int,
        seed: int,
        pad_id: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not len(conversations):
            raise RepolmError("no training conversations")
        lengths = conversations.lengths
        if int(lengths.max()) > sequence_length + 1:
            longest = int(lengths.max())
            raise RepolmError(f"a conversation has {longest} tokens, more than a row of {sequence_length + 1}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise RepolmError(f"rank {rank} is not in [0, world_size {world_size})")
        self.conversations = conversations
        self.lengths = lengths
        self.sequence_length = sequence_length
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.pad_id = pad_id
        self.rank = rank
        self.world_size = world_size
        self.global_rows = 0
        self._epoch_rows: dict[int, list[list[int]]] = {}
        self._epoch_starts = [0]  # global index of the first row of epoch e (known for the epochs packed so far)

    def _rows_of_epoch(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epoch_rows:
            order = np.random.Generator(np.random.PCG64((self.seed, epoch))).permutation(len(self.lengths))
            self._epoch_rows[epoch] = pack_rows(self.lengths, order, self.sequence_length + 1)
            while len(self._epoch_rows) > _EPOCHS_CACHED:
                del self._epoch_rows[min(self._epoch_rows)]
        return self._epoch_rows[epoch]

    def row(self, global_row: int) -> list[int]:
        """The conversation indices of global row `global_row` (epoch after epoch)."""
        while self._epoch_starts[-1] <= global_row:  # learn where the next epochs start
            epoch = len(self._epoch_starts) - 1
            self._epoch_starts.append(self._epoch_starts[-1] + len(self._rows_of_epoch(epoch)))
        epoch = int(np.searchsorted(self._epoch_starts, global_row, side="right")) - 1
        return self._rows_of_epoch(epoch)[global_row - self._epoch_starts[epoch]]

    @property
    def epochs(self) -> float:
        """Epochs consumed so far over all ranks (fractional)."""
        epoch = int(np.searchsorted(self._epoch_starts, self.global_rows, side="right")) - 1
        if epoch + 1 >= len(self._epoch_starts):
            return float(epoch)
        start, stop = self._epoch_starts[epoch], self._epoch_starts[epoch + 1]
        return epoch + (self.global_rows - start) / (stop - start)

    def next_batch(self) -> Batch:
        """This rank's rows of the next step."""
        first = self.global_rows + self.rank * self.micro_batch_size
        rows = [self.row(first + offset) for offset in range(self.micro_batch_size)]
        self.global_rows += self.world_size * self.micro_batch_size
        return make_batch(self.conversations, rows, self.sequence_length, self.pad_id)

    def state_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "sequence_length": self.sequence_length,
            "seed": self.seed,
            "conversations": len(self.lengths),
            "tokens": int(self.lengths.sum()),
            "global_rows": self.global_rows,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state`; RepolmError when it belongs to other data or settings."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise RepolmError(f"data state: not a {STATE_FORMAT} state")
        for name, value in (
            ("sequence_length", self.sequence_length),
            ("seed", self.seed),
            ("conversations", len(self.lengths)),
            ("tokens", int(self.lengths.sum())),
        ):
            if state[name] != value:
                raise RepolmError(f"data state: {name} {state[name]} differs from this run's {value}")
        self.global_rows = int(state["global_rows"])


def validation_rows(
    conversations: Conversations, sequence_length: int, micro_batch_size: int, max_batches: int
) -> list[list[list[int]]]:
    """Batches of the held-out conversations in their order, packed like training rows (at most `max_batches`)."""
    rows = pack_rows(conversations.lengths, np.arange(len(conversations)), sequence_length + 1)
    rows = rows[: max_batches * micro_batch_size]
    return [rows[first : first + micro_batch_size] for first in range(0, len(rows), micro_batch_size)]


# -----------------------------------------------------------------------------
# the loop's data hooks


@dataclass
class _Prepared:
    train: Conversations
    validation: Conversations
    pad_id: int
    report: SkipReport
    validation_report: SkipReport


_PREPARED: dict[tuple, _Prepared] = {}  # one tokenization per run, shared by the data and the validation hooks


def load_tokenizer(plan: RunPlan) -> CodeTokenizer:
    """The run's tokenizer (the one the instructions are rendered with)."""
    if plan.tokenizer_dir is None:
        raise RepolmError("tokenizer: not set (the tokenizer of the model, to tokenize the instructions)")
    return CodeTokenizer.load(plan.tokenizer_dir)


def prepare_instructions(config: TrainConfig, plan: RunPlan) -> _Prepared:
    """Reads, checks, splits and tokenizes the run's instruction data (once per run and process)."""
    data = config.data
    key = (data.folder, data.validation_folder, data.validation_share, str(plan.tokenizer_dir), data.sequence_length)
    if key in _PREPARED:
        _write_data_report(config, _PREPARED[key])
        return _PREPARED[key]
    tokenizer = load_tokenizer(plan)
    chat_format = ChatFormat(tokenizer)
    if tokenizer.eot_id is None:
        raise RepolmError(f"tokenizer: {plan.tokenizer_dir} has no <|EOT|> token to end answers with")
    max_tokens = data.sequence_length + 1
    report = SkipReport()
    samples = list(iter_instructions(data.folder, report))
    training = [sample for sample in samples if not held_out(sample.messages, data.validation_share)]
    held = [sample for sample in samples if held_out(sample.messages, data.validation_share)]
    train_conversations = tokenize_conversations(training, chat_format, max_tokens, report)
    validation_report = SkipReport()  # of a separate validation file
    if data.validation_folder is not None:
        held = list(iter_instructions(data.validation_folder, validation_report))
    held_report = validation_report if data.validation_folder is not None else report
    validation_conversations = tokenize_conversations(held, chat_format, max_tokens, held_report)
    if not len(train_conversations):
        raise RepolmError(f"data.folder: {data.folder}: no usable instruction record ({report.summary()})")
    logger.info("instructions %s: %s", data.folder, report.summary())
    if validation_report.lines:
        logger.info("validation instructions %s: %s", data.validation_folder, validation_report.summary())
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else tokenizer.eos_id
    prepared = _Prepared(train_conversations, validation_conversations, int(pad_id or 0), report, validation_report)
    _PREPARED.clear()
    _PREPARED[key] = prepared
    _write_data_report(config, prepared)
    return prepared


def _write_data_report(config: TrainConfig, prepared: _Prepared) -> None:
    """`<run_dir>/sft_data.json` (rank 0): records kept and skipped per reason, conversations and tokens."""
    path = Path(config.run_dir) / DATA_REPORT_FILE
    if int(os.environ.get("RANK", "0")) != 0 or path.is_file():
        return
    report, validation = prepared.report, prepared.validation_report

    def figures(conversations: Conversations) -> dict:
        return {
            "conversations": len(conversations),
            "tokens": int(conversations.lengths.sum()) if len(conversations) else 0,
            "answer_tokens": int(sum(int(mask.sum()) for mask in conversations.masks)),
        }

    content = {
        "data": config.data.folder,
        "records": report.to_dict(),
        "validation_records": validation.to_dict() if validation.lines else None,
        "train": figures(prepared.train),
        "validation": figures(prepared.validation),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomically(path, json.dumps(content, indent=1) + "\n")


def instruction_data(config: TrainConfig, plan: RunPlan, info: DistributedInfo) -> InstructionData:
    """The loop's batch source for `data.format: instructions`."""
    prepared = prepare_instructions(config, plan)
    return InstructionData(
        prepared.train,
        config.data.sequence_length,
        config.batch.micro_batch_size,
        config.seed,
        prepared.pad_id,
        rank=info.rank,
        world_size=info.world_size,
    )


def instruction_validation(config: TrainConfig, plan: RunPlan) -> list[Batch]:
    """The loop's validation batches for `data.format: instructions` (none without held-out conversations)."""
    prepared = prepare_instructions(config, plan)
    if not len(prepared.validation):
        return []
    batches = validation_rows(
        prepared.validation, config.data.sequence_length, config.batch.micro_batch_size, config.eval.batches
    )
    return [make_batch(prepared.validation, rows, config.data.sequence_length, prepared.pad_id) for rows in batches]


# -----------------------------------------------------------------------------
# the command


def run_sft(
    config: TrainConfig,
    resume: bool = False,
    stop_at_step: int | None = None,
    output: str | Path | None = None,
) -> tuple[TrainResult, Path | None]:
    """Fine-tunes `config` (its data.format must be "instructions") with the training loop, then, when the run has
    reached `max_steps`, exports the last checkpoint as an instruct folder to `output` (default `<run_dir>/model`)
    on rank 0. Returns the loop's result and the folder (None when not exported)."""
    from repolm.train.checkpoint import export_checkpoint

    if config.data.format != "instructions":
        raise RepolmError(f"data.format: SFT trains on instructions, got {config.data.format!r}")
    plan = prepare_run(config)
    prepare_instructions(config, plan)  # bad data fails here, before a model is built
    if config.tokenizer is None and plan.tokenizer_dir is not None:
        # recorded in the run config, so exports and runs that start from this one find it
        config = dataclasses.replace(config, tokenizer=str(plan.tokenizer_dir))
    result = train(config, resume=resume, stop_at_step=stop_at_step)
    if result.steps < config.max_steps or int(os.environ.get("RANK", "0")) != 0:
        return result, None
    output = output or Path(config.run_dir) / "model"
    return result, export_checkpoint(config.checkpoint_folder, output, tokenizer_dir=plan.tokenizer_dir)
