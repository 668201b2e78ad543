"""Packed training windows: coverage per epoch, determinism, exact resume, data parallel, mixture, document masking."""

from __future__ import annotations

import io
import json
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch

from repolm.errors import RepolmError
from repolm.model import build_model, preset_config
from repolm.tokenizer.token_shards import TokenShardWriter, write_meta
from repolm.train.data import (
    Batch,
    TrainData,
    document_attention_mask,
    document_block_mask,
    document_spans,
    shuffled_index,
    validation_batches,
)

EOS = 99
VOCAB = 100


def random_documents(count: int, seed: int, low: int = 0, high: int = 97, max_length: int = 40) -> list[list[int]]:
    """Distinct documents: a two-token prefix encoding the index, random tokens in [low, high), then EOS."""
    generator = np.random.default_rng(seed)
    documents = []
    for index in range(count):
        body = generator.integers(low, high, size=int(generator.integers(0, max_length - 2))).tolist()
        documents.append([low + index // 97 % (high - low), low + index % (high - low), *body, EOS])
    return documents


def write_token_folder(
    folder: Path, documents: list[list[int]], vocab_size: int = VOCAB, shards: int = 2, eos: int = EOS
) -> Path:
    """A token folder with the documents split over `shards` shards, in order."""
    entries = []
    for shard_index, part in enumerate(np.array_split(np.arange(len(documents)), shards)):
        writer = TokenShardWriter(folder, f"{shard_index:05d}", vocab_size)
        for index in part:
            writer.add(documents[index])
        entries.append(writer.close())
    write_meta(folder, vocab_size, eos, entries)
    return folder


def windows_of(batch: Batch) -> list[list[int]]:
    """The T + 1 tokens of each row: inputs, then the last target."""
    return [
        row_input + [row_target[-1]]
        for row_input, row_target in zip(batch.input_ids.tolist(), batch.targets.tolist(), strict=True)
    ]


def assert_batches_equal(first: Batch, second: Batch) -> None:
    assert torch.equal(first.input_ids, second.input_ids)
    assert torch.equal(first.targets, second.targets)
    assert torch.equal(first.positions, second.positions)
    assert (first.attention_mask is None) == (second.attention_mask is None)
    if first.attention_mask is not None:
        assert torch.equal(first.attention_mask, second.attention_mask)
    assert first.documents_started == second.documents_started


def split_documents(stream: list[int]) -> tuple[list[tuple[int, ...]], list[int]]:
    """Complete documents (ending in EOS) of a token stream, and the unfinished rest."""
    documents, current = [], []
    for token in stream:
        current.append(token)
        if token == EOS:
            documents.append(tuple(current))
            current = []
    return documents, current


def test_windows_cover_each_epoch_without_gaps_or_overlaps(tmp_path: Path) -> None:
    documents = random_documents(60, seed=1)
    folder = write_token_folder(tmp_path / "code", documents, shards=3)
    sequence_length = 16
    data = TrainData([(folder, 1.0)], sequence_length, micro_batch_size=1, seed=7)
    total_tokens = sum(map(len, documents))
    windows_per_epoch = (total_tokens - 1) // sequence_length
    orders = []
    for epoch in range(2):
        visited = [windows_of(data.next_batch())[0] for _ in range(windows_per_epoch)]
        # windows are visited in a seeded permutation of their stream positions: put them back in stream order
        key = (7 * 1_000_003 + epoch) * 1_000_033 + 0
        windows = [None] * windows_per_epoch
        for index, window in enumerate(visited):
            windows[shuffled_index(index, windows_per_epoch, key)] = window
        in_stream_order = sum(later[0] == earlier[-1] for earlier, later in pairwise(visited))
        assert in_stream_order < windows_per_epoch // 4  # visited shuffled, not slice after slice
        for previous, window in pairwise(windows):
            assert window[0] == previous[-1]  # stride T: only the boundary token is shared
        stream = windows[0] + [token for window in windows[1:] for token in window[1:]]
        assert len(stream) == windows_per_epoch * sequence_length + 1
        complete, rest = split_documents(stream)
        originals = Counter(tuple(document) for document in documents)
        assert all(originals[document] == 1 for document in complete)  # whole documents, none repeated
        assert len(set(complete)) == len(complete)
        unfinished = [document for document in originals if document not in set(complete)]
        assert any(document[: len(rest)] == tuple(rest) for document in unfinished)  # the stream ends inside one
        dropped = total_tokens - len(stream)  # the epoch's tail, shorter than one stride
        assert 0 <= dropped < sequence_length
        assert sum(map(len, unfinished)) - len(rest) == dropped
        orders.append(complete)
    assert orders[0] != orders[1]  # each epoch draws a new document order
    assert data.source_epochs == [2.0]


@pytest.mark.parametrize("count", [1, 2, 3, 7, 64, 1000, 4097])
def test_shuffled_index_is_a_permutation_for_every_key(count: int) -> None:
    for key in (0, 1, 12345):
        assert sorted(shuffled_index(index, count, key) for index in range(count)) == list(range(count))
    if count >= 64:
        assert [shuffled_index(index, count, 1) for index in range(count)] != list(range(count))
        assert [shuffled_index(index, count, 1) for index in range(count)] != [
            shuffled_index(index, count, 2) for index in range(count)
        ]


def test_batches_are_deterministic_and_depend_on_the_seed(tmp_path: Path) -> None:
    folder = write_token_folder(tmp_path / "code", random_documents(50, seed=2))

    def first_batches(seed: int) -> list[Batch]:
        data = TrainData([(folder, 1.0)], 12, micro_batch_size=4, seed=seed)
        return [data.next_batch() for _ in range(5)]

    for first, second in zip(first_batches(3), first_batches(3), strict=True):
        assert_batches_equal(first, second)
    assert not torch.equal(first_batches(3)[0].input_ids, first_batches(4)[0].input_ids)


def test_unmasked_batch_layout(tmp_path: Path) -> None:
    folder = write_token_folder(tmp_path / "code", random_documents(30, seed=3))
    batch = TrainData([(folder, 1.0)], 10, micro_batch_size=3, seed=0).next_batch()
    assert batch.input_ids.shape == batch.targets.shape == batch.positions.shape == (3, 10)
    assert batch.input_ids.dtype == batch.targets.dtype == batch.positions.dtype == torch.int64
    assert batch.attention_mask is None
    assert torch.equal(batch.input_ids[:, 1:], batch.targets[:, :-1])
    assert torch.equal(batch.positions, torch.arange(10).expand(3, 10))
    assert batch.num_tokens == 30


@pytest.mark.parametrize("document_masking", [False, True])
def test_resume_gives_the_batches_of_an_uninterrupted_run(tmp_path: Path, document_masking: bool) -> None:
    code = write_token_folder(tmp_path / "code", random_documents(8, seed=4))
    text = write_token_folder(tmp_path / "text", random_documents(6, seed=5), shards=1)
    sources = [(code, 0.7), (text, 0.3)]

    def make() -> TrainData:
        return TrainData(sources, 16, micro_batch_size=3, seed=11, document_masking=document_masking)

    uninterrupted = make()
    expected = [uninterrupted.next_batch() for _ in range(12)]
    assert min(uninterrupted.source_epochs) > 1  # both sources wrapped into a new epoch on the way

    interrupted = make()
    for _ in range(7):
        interrupted.next_batch()
    buffer = io.BytesIO()
    torch.save(interrupted.state_dict(), buffer)  # as a checkpoint stores it
    json.dumps(interrupted.state_dict())  # and it is plain data
    buffer.seek(0)
    resumed = make()
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for index in range(7, 12):
        assert_batches_equal(resumed.next_batch(), expected[index])


def test_two_ranks_see_the_windows_of_one_rank_with_twice_the_batch(tmp_path: Path) -> None:
    code = write_token_folder(tmp_path / "code", random_documents(40, seed=6))
    text = write_token_folder(tmp_path / "text", random_documents(30, seed=7), shards=1)
    sources = [(code, 2.0), (text, 1.0)]
    single = TrainData(sources, 8, micro_batch_size=4, seed=5, document_masking=True)
    ranks = [
        TrainData(sources, 8, micro_batch_size=2, seed=5, rank=rank, world_size=2, document_masking=True)
        for rank in range(2)
    ]
    for _step in range(10):
        whole = single.next_batch()
        parts = [data.next_batch() for data in ranks]
        # rule: at step s, rank r holds global windows s*W*B + r*B + b, so rank 0's rows come first
        assert torch.equal(torch.cat([part.input_ids for part in parts]), whole.input_ids)
        assert torch.equal(torch.cat([part.targets for part in parts]), whole.targets)
        assert torch.equal(torch.cat([part.positions for part in parts]), whole.positions)
        assert torch.equal(torch.cat([part.attention_mask for part in parts]), whole.attention_mask)
        assert sum(part.documents_started for part in parts) == whole.documents_started
    assert ranks[0].state_dict()["source_windows"] == single.state_dict()["source_windows"]


def test_mixture_follows_the_weights(tmp_path: Path) -> None:
    # the two sources use disjoint token ranges, so each window shows where it came from
    low = write_token_folder(tmp_path / "low", random_documents(30, seed=8, low=0, high=40), shards=1)
    high = write_token_folder(tmp_path / "high", random_documents(30, seed=9, low=50, high=90), shards=1)
    data = TrainData([(low, 3.0), (high, 1.0)], 8, micro_batch_size=64, seed=1)
    counts = Counter()
    for _ in range(50):
        for window in windows_of(data.next_batch()):
            body = [token for token in window if token != EOS]
            counts["low" if max(body) < 40 else "high"] += 1
            assert max(body) < 40 or min(body) >= 50  # never two sources in one window
    windows = counts["low"] + counts["high"]
    assert windows == 3200
    # binomial standard deviation sqrt(0.75 * 0.25 / 3200) = 0.0077: allow 4 of them
    assert abs(counts["low"] / windows - 0.75) < 0.031
    assert data.source_windows == [counts["low"], counts["high"]]


def test_document_masking_positions_mask_and_counts(tmp_path: Path) -> None:
    documents = [[1, 2, 3, 4, EOS], [5, 6, EOS], [7, 8, 9, 10, 11, 12, 13, 14, 15, EOS]]  # lengths 5, 3, 10
    folder = write_token_folder(tmp_path / "code", documents, shards=1)
    first, second = validation_batches(folder, 8, micro_batch_size=1, max_batches=2, document_masking=True)
    assert first.input_ids.tolist() == [[1, 2, 3, 4, EOS, 5, 6, EOS]]
    assert first.targets.tolist() == [[2, 3, 4, EOS, 5, 6, EOS, 7]]
    assert first.positions.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2]]
    document = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])
    expected_mask = (document[:, None] == document[None, :]) & torch.ones(8, 8, dtype=torch.bool).tril()
    assert first.attention_mask.shape == (1, 1, 8, 8)
    assert first.attention_mask.dtype == torch.bool
    assert torch.equal(first.attention_mask[0, 0], expected_mask)
    assert first.documents_started == 2
    # the third document starts on the shared boundary token: it is counted in the window where it is an input
    assert second.input_ids.tolist() == [[7, 8, 9, 10, 11, 12, 13, 14]]
    assert second.positions.tolist() == [list(range(8))]
    assert torch.equal(second.attention_mask[0, 0], torch.ones(8, 8, dtype=torch.bool).tril())
    assert second.documents_started == 1
    moved = first.to("meta")  # the mask is rebuilt where the batch goes, not copied there
    assert moved.attention_mask.device.type == "meta" and moved.attention_mask.shape == (1, 1, 8, 8)
    assert torch.equal(document_attention_mask(first.positions), first.attention_mask)


def test_masked_forward_equals_each_document_run_alone(tmp_path: Path) -> None:
    folder = write_token_folder(tmp_path / "code", random_documents(40, seed=10, max_length=20))
    batch = TrainData([(folder, 1.0)], 32, micro_batch_size=2, seed=0, document_masking=True).next_batch()
    config = preset_config("tiny", vocab_size=VOCAB, initializer_range=0.05)
    model = build_model(config, device="cpu", dtype=torch.float32, seed=0).eval()
    with torch.no_grad():
        packed = model(batch.input_ids, positions=batch.positions, attention_mask=batch.attention_mask)  # (B, T, V)
        pieces = 0
        for row in range(batch.input_ids.shape[0]):
            starts = torch.nonzero(batch.positions[row] == 0).flatten().tolist() + [batch.input_ids.shape[1]]
            for start, stop in pairwise(starts):
                alone = model(batch.input_ids[row : row + 1, start:stop])  # (1, length, V), plain causal
                torch.testing.assert_close(packed[row : row + 1, start:stop], alone, rtol=0, atol=1e-5)
                pieces += 1
    assert pieces >= 4  # several documents per row were checked


def test_the_block_mask_has_the_tiles_of_the_dense_mask(tmp_path: Path) -> None:
    """Empty, partial and full 128 x 128 tiles as the dense mask has them, from documents that cross tiles,
    fill tiles exactly, and a window that opens inside a document (positions not starting at 0)."""
    generator = torch.Generator().manual_seed(3)
    rows = []
    for row in range(3):
        lengths, total = [], 0
        while total < 1024:
            lengths.append(int(torch.randint(1, 300, (1,), generator=generator)) if row else 128)
            total += lengths[-1]
        positions = torch.cat([torch.arange(length) for length in lengths])[:1024]
        rows.append(positions + (57 if row == 2 else 0) * (torch.arange(1024) < lengths[0]))  # row 2 opens inside
    positions = torch.stack(rows)  # (3, 1024)
    dense = document_attention_mask(positions)[:, 0].view(3, 8, 128, 8, 128)  # (B, tiles, 128, tiles, 128)
    some, every = dense.any(dim=(2, 4)), dense.all(dim=(2, 4))
    block = document_block_mask(positions)
    tiles = block.to_dense()[:, 0].bool()  # (B, 8, 8): partial or full tiles
    assert torch.equal(tiles, some)
    full = torch.zeros_like(some)
    for b in range(3):
        for q in range(8):
            for index in block.full_kv_indices[b, 0, q, : block.full_kv_num_blocks[b, 0, q]]:
                full[b, q, index] = True
    assert torch.equal(full, every) and every.sum() > 0 and (some & ~every).sum() > 0
    with pytest.raises(ValueError, match="multiple of 128"):
        document_block_mask(positions[:, :1000])


def masked_loss_and_gradients(mask, device: str = "cpu") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Summed loss and every weight's gradient of a GQA model on two rows of documents that cross 128-token tiles."""
    config = preset_config("tiny", vocab_size=VOCAB, initializer_range=0.05, num_key_value_heads=2)
    generator = torch.Generator().manual_seed(5)
    input_ids = torch.randint(0, VOCAB, (2, 256), generator=generator).to(device)
    targets = torch.randint(0, VOCAB, (2, 256), generator=generator).to(device)
    model = build_model(config, device=device, dtype=torch.float32, seed=0)
    loss = model(input_ids, positions=MASK_POSITIONS.to(device), attention_mask=mask, targets=targets)
    loss.backward()
    return loss.detach(), {name: parameter.grad for name, parameter in model.named_parameters()}


MASK_POSITIONS = torch.stack(
    [torch.cat([torch.arange(length) for length in row]) for row in ([100, 28, 128], [7, 200, 1, 48])]
)  # (2, 256): documents of 100, 28, 128 and 7, 200, 1, 48 tokens


def test_document_spans_equal_the_dense_mask_in_loss_and_gradients() -> None:
    """SDPA document by document (no T x T tensor) against SDPA with the dense block-diagonal mask."""
    spans = document_spans(MASK_POSITIONS)
    assert spans.starts == ((0, 100, 128), (0, 7, 207, 208))
    assert document_spans(MASK_POSITIONS[:, 3:]).starts == ((0, 97, 125), (0, 4, 204, 205))  # opens inside one
    dense_loss, dense_gradients = masked_loss_and_gradients(document_attention_mask(MASK_POSITIONS))
    spans_loss, spans_gradients = masked_loss_and_gradients(spans)
    torch.testing.assert_close(spans_loss, dense_loss, rtol=1e-5, atol=1e-4)
    for name, gradient in dense_gradients.items():  # float32 rounding of a summed loss: ~1e-7 of the largest entry
        scale = float(gradient.abs().max())
        torch.testing.assert_close(spans_gradients[name], gradient, rtol=1e-4, atol=1e-6 * scale, msg=name)


@pytest.mark.slow
def test_flex_attention_document_mask_equals_the_dense_one_forward_on_cpu() -> None:
    """The compiled flex_attention kernel with the block mask gives the dense mask's loss (CPU: forward only,
    PyTorch has no flex backward there; the gradients are compared on a GPU). Compiling needs a C++ compiler."""
    config = preset_config("tiny", vocab_size=VOCAB, initializer_range=0.05, num_key_value_heads=2)
    model = build_model(config, device="cpu", dtype=torch.float32, seed=0).eval()
    input_ids = torch.randint(0, VOCAB, (2, 256), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        dense = model(input_ids, positions=MASK_POSITIONS, attention_mask=document_attention_mask(MASK_POSITIONS))
        flex = model(input_ids, positions=MASK_POSITIONS, attention_mask=document_block_mask(MASK_POSITIONS))
    torch.testing.assert_close(flex, dense, rtol=1e-4, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_flex_attention_document_mask_equals_the_dense_one_in_loss_and_gradients_on_a_gpu() -> None:
    dense_loss, dense_gradients = masked_loss_and_gradients(
        document_attention_mask(MASK_POSITIONS.cuda()), device="cuda"
    )
    flex_loss, flex_gradients = masked_loss_and_gradients(document_block_mask(MASK_POSITIONS.cuda()), device="cuda")
    torch.testing.assert_close(flex_loss, dense_loss, rtol=1e-4, atol=1e-3)
    for name, gradient in dense_gradients.items():
        scale = float(gradient.abs().max())
        torch.testing.assert_close(flex_gradients[name], gradient, rtol=1e-3, atol=1e-5 * scale, msg=name)


def test_validation_batches_are_windows_spread_over_the_folder_in_file_order(tmp_path: Path) -> None:
    documents = random_documents(20, seed=12)
    folder = write_token_folder(tmp_path / "code", documents)
    batches = validation_batches(folder, 10, micro_batch_size=3, max_batches=4)
    assert [batch.input_ids.shape[0] for batch in batches] == [3, 3, 3, 3]
    windows = [window for batch in batches for window in windows_of(batch)]
    file_order = [token for document in documents for token in document]
    windows_per_epoch = (len(file_order) - 1) // 10
    for number, window in enumerate(windows):  # window k of 12 is stream window k * windows / 12
        start = (number * windows_per_epoch // 12) * 10
        assert window == file_order[start : start + 11]
    assert windows[-1] != file_order[11 * 10 : 11 * 10 + 11]  # not simply the first 12 windows
    again = validation_batches(folder, 10, micro_batch_size=3, max_batches=4)
    for first, second in zip(batches, again, strict=True):
        assert_batches_equal(first, second)
    everything = validation_batches(folder, 10, micro_batch_size=3, max_batches=1000)
    windows_per_epoch = (len(file_order) - 1) // 10
    assert sum(batch.input_ids.shape[0] for batch in everything) == windows_per_epoch
    assert len(everything) == -(-windows_per_epoch // 3)  # the last batch holds the remaining windows


def test_bad_inputs_are_named(tmp_path: Path) -> None:
    folder = write_token_folder(tmp_path / "code", random_documents(10, seed=13))
    with pytest.raises(RepolmError, match="not a token folder"):
        TrainData([(tmp_path / "missing", 1.0)], 8, 1, seed=0)
    with pytest.raises(RepolmError, match=r"code: mixture weight must be a positive number, got 0"):
        TrainData([(folder, 0.0)], 8, 1, seed=0)
    with pytest.raises(RepolmError, match="mixture weight"):
        TrainData([(folder, -1.0)], 8, 1, seed=0)
    with pytest.raises(RepolmError, match="sequence_length"):
        TrainData([(folder, 1.0)], 0, 1, seed=0)
    with pytest.raises(RepolmError, match="micro_batch_size"):
        TrainData([(folder, 1.0)], 8, 0, seed=0)
    with pytest.raises(RepolmError, match="rank 2"):
        TrainData([(folder, 1.0)], 8, 1, seed=0, rank=2, world_size=2)
    small = write_token_folder(tmp_path / "small", [[1, 2, EOS]], shards=1)
    with pytest.raises(RepolmError, match=r"small: 3 tokens, fewer than one window of sequence_length \+ 1 = 9"):
        TrainData([(folder, 1.0), (small, 1.0)], 8, 1, seed=0)
    other_vocab = write_token_folder(tmp_path / "other", random_documents(10, seed=14), vocab_size=200)
    with pytest.raises(RepolmError, match=r"disagree on vocab_size: .*code \(100\), .*other \(200\)"):
        TrainData([(folder, 1.0), (other_vocab, 1.0)], 8, 1, seed=0)
    with pytest.raises(RepolmError, match="max_batches"):
        validation_batches(folder, 8, 1, max_batches=0)


def test_state_of_other_data_or_settings_is_refused(tmp_path: Path) -> None:
    folder = write_token_folder(tmp_path / "code", random_documents(20, seed=15))
    other = write_token_folder(tmp_path / "other", random_documents(21, seed=15))
    state = TrainData([(folder, 1.0)], 8, 2, seed=0).state_dict()
    with pytest.raises(RepolmError, match="seed 0 differs"):
        TrainData([(folder, 1.0)], 8, 2, seed=1).load_state_dict(state)
    with pytest.raises(RepolmError, match="sequence_length 8 differs"):
        TrainData([(folder, 1.0)], 9, 2, seed=0).load_state_dict(state)
    with pytest.raises(RepolmError, match="documents"):
        TrainData([(other, 1.0)], 8, 2, seed=0).load_state_dict(state)
    with pytest.raises(RepolmError, match="not a repolm-train-data"):
        TrainData([(folder, 1.0)], 8, 2, seed=0).load_state_dict({"step": 3})
