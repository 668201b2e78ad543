"""Training batches: token folders packed into fixed windows, mixed by weight, split across data-parallel ranks.

Packing. Each source (a token folder, see `repolm.tokenizer.token_shards`; every document already ends with its
end-of-sentence id) is read as one stream per epoch: its documents in a seeded random order (epoch `e` of source
`i` draws its permutation from the seed sequence `(seed + e, i)`), concatenated. The stream is cut into windows of
`sequence_length + 1` tokens with stride `sequence_length`: window `k` holds stream tokens `[k*T, k*T + T + 1)`, so
consecutive windows share exactly one token, the last target of one being the first input of the next. Every
token of the stream except the first is thus a target exactly once per epoch and no token is wasted on the seam.
The tail of an epoch that does not fill a window (fewer than T tokens) is dropped; the next epoch starts a fresh
permutation. A source is repeated (new epochs) as often as the mixture asks for it. The windows of an epoch are
visited in a seeded pseudo-random order (`shuffled_index`: a 4-round Feistel permutation of the window indices with
cycle walking, O(1) memory at any corpus size), as Megatron and torchtitan shuffle samples: a repository-level
document spans hundreds of windows, and taken in stream order every batch would be consecutive slices of one
repository, with the loss swinging from repository to repository instead of falling.

Mixture. Window `g` of the global sequence (g = 0, 1, 2, ...) comes from the source picked by the `g`-th uniform
draw of a PCG64 generator seeded with `(seed, 2)`, against the normalized cumulative weights; that source's next
window (in its own order) fills it. The global sequence depends only on the seed, the sources and their weights.

Data parallel. Each `next_batch` call is one step over a global batch of `world_size * micro_batch_size` windows:
at step `s`, rank `r` takes the global windows `g = s*W*B + r*B + b` for `b = 0..B-1` (a contiguous block). Hence
W ranks with micro-batch B see, row for row, the same windows as one rank with micro-batch W*B (rank 0's rows
first). Every rank draws the whole step's mixture choices, so all ranks agree without communicating.

Document masking (optional). Positions restart at 0 at each document start (and at the window start for the
document the window opens inside), and the attention mask is block-diagonal causal, so no token attends across a
document boundary. The mask follows from the positions alone; a batch builds it on first use, on its own device, so a
batch moved to a GPU never copies it over. Three forms: the dense (B, 1, T, T) boolean mask for SDPA
(`document_attention_mask`: 268 MB per 16K-token row, and SDPA's masked kernels hold more), the document starts
(`document_spans`: attention runs document by document with the kernel's causal mask, no T x T tensor, on any
device) and flex_attention's block mask (`document_block_mask`: which 128 x 128 tiles are empty, partial or full,
from the document starts without any T x T tensor, for the fused kernel on a GPU). The target of
a document's last token (its end-of-sentence) is still the next document's first token, as in unmasked packing;
the loss is unchanged in form.

Resuming. `state_dict()` holds the window counters (global and per source; each source's epoch and position in its
permutation follow from its counter) and the mixture generator's state; a fresh object that loads it yields
exactly the batches the uninterrupted one would have. Since the global window sequence does not depend on B or W,
a state also resumes under another world size or micro-batch size (the following windows are the same ones).

Cost. Token files are memory-mapped; per source the object keeps the document lengths (8 bytes per document) and,
per epoch in use, the permutation and its cumulative lengths (16 bytes per document, computed with numpy once per
epoch). A window is located by binary search (O(log documents)) and copied from the maps.

Not handled here: tokenization and FIM (done before packing, when the token folders are written), the loss, and
moving batches across processes (each rank builds its own).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from repolm.errors import RepolmError
from repolm.model import DocumentSpans
from repolm.tokenizer.token_shards import TokenShards

logger = logging.getLogger(__name__)

STATE_FORMAT = "repolm-train-data/1"
_MIXTURE_STREAM = 2  # seed-sequence tag of the mixture generator, distinct from the per-source permutation seeds
_EPOCHS_CACHED = 2  # a batch can straddle one epoch boundary of a source; older epochs are dropped


@dataclass
class Batch:
    """A micro-batch of B windows of T tokens (tensors on the CPU until `to` moves them)."""

    input_ids: torch.Tensor
    """(B, T) int64: tokens 0..T-1 of each window."""
    targets: torch.Tensor
    """(B, T) int64: tokens 1..T of each window (the next token of each input position)."""
    positions: torch.Tensor
    """(B, T) int64: RoPE positions, 0..T-1, or restarting at 0 at each document start with document masking."""
    documents_started: int
    """Documents whose first token is among the batch's input tokens (each document counts once per epoch)."""
    document_masking: bool = False
    """Whether attention stays inside documents (then `attention_mask` is derived from `positions`)."""
    _attention_mask: torch.Tensor | None = field(default=None, repr=False, compare=False)
    _block_mask: object | None = field(default=None, repr=False, compare=False)

    @property
    def attention_mask(self) -> torch.Tensor | None:
        """(B, 1, T, T) bool, True = may attend: block-diagonal causal with document masking; None = plain causal.

        Built on first use, on the device of `positions` (B*T*T bytes: 134 MB for 8 x 4096), so a batch moved to
        a GPU builds it there instead of copying it.
        """
        if self.document_masking and self._attention_mask is None:
            self._attention_mask = document_attention_mask(self.positions)
        return self._attention_mask

    @property
    def document_spans(self) -> DocumentSpans | None:
        """The same mask as the documents' starts (`document_spans`); None = plain causal."""
        return document_spans(self.positions) if self.document_masking else None

    @property
    def block_mask(self):
        """The same mask as a flex_attention `BlockMask` (`document_block_mask`); None = plain causal."""
        if self.document_masking and self._block_mask is None:
            self._block_mask = document_block_mask(self.positions)
        return self._block_mask

    @property
    def num_tokens(self) -> int:
        """Input tokens in the batch (B * T)."""
        return self.input_ids.numel()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on `device` (pinned host memory first for asynchronous copies to a GPU)."""
        device = torch.device(device)

        def move(tensor: torch.Tensor) -> torch.Tensor:
            if tensor.device == device:
                return tensor
            if device.type == "cuda" and non_blocking:
                tensor = tensor.pin_memory()
            return tensor.to(device, non_blocking=non_blocking)

        return Batch(
            input_ids=move(self.input_ids),
            targets=move(self.targets),
            positions=move(self.positions),
            documents_started=self.documents_started,
            document_masking=self.document_masking,
        )


def document_attention_mask(positions: torch.Tensor) -> torch.Tensor:
    """Block-diagonal causal mask (B, 1, T, T) bool from positions (B, T) that restart at 0 at each document start.

    Query i may attend to key j when j <= i and j >= i - positions[i] (the start of i's document in the row).
    """
    length = positions.shape[1]
    index = torch.arange(length, device=positions.device)  # (T,)
    document_starts = index - positions  # (B, T): where each query's document begins in the row
    mask = index.view(1, 1, length) >= document_starts.unsqueeze(-1)  # (B, T, T): key at or after the start
    mask &= torch.ones(length, length, dtype=torch.bool, device=positions.device).tril()  # and not in the future
    return mask.unsqueeze(1)  # (B, 1, T, T)


def document_spans(positions: torch.Tensor) -> DocumentSpans:
    """Where each row's documents start: the positions (B, T) that are 0, and 0 itself (a window that opens inside a
    document starts with its rest)."""
    rows = []
    for row in positions.cpu():
        starts = torch.nonzero(row == 0).flatten().tolist()
        rows.append(tuple(starts if starts and starts[0] == 0 else [0, *starts]))
    return DocumentSpans(tuple(rows))


BLOCK_SIZE = 128
"""flex_attention's tile: the block mask says for each 128 x 128 tile of (query, key) whether it is empty, partial
(the mask function decides per element) or full."""


def document_block_mask(positions: torch.Tensor, block_size: int = BLOCK_SIZE):
    """`document_attention_mask` as a flex_attention `BlockMask`, built from the document starts: O(B (T/128)^2).

    Query q may attend to key k when start(q) <= k <= q, start(q) = q - positions[q] being nondecreasing in q
    (documents are contiguous). For a query tile [qs, qe) and a key tile [ks, ke): some pair is allowed when
    qe - 1 >= ks and start(max(qs, ks)) <= ke - 1 (the smallest start among the queries at or after ks); every pair
    is allowed when qs >= ke - 1 and start(qe - 1) <= ks (the largest start). T must be a multiple of `block_size`.
    """
    from torch.nn.attention.flex_attention import BlockMask

    batch, length = positions.shape
    if length % block_size:
        raise ValueError(f"document_block_mask: sequence length {length} is not a multiple of {block_size}")
    tiles = length // block_size
    index = torch.arange(length, device=positions.device)
    starts = index - positions  # (B, T)
    tile_starts = torch.arange(tiles, device=positions.device) * block_size  # (n,)
    query_first, query_last = tile_starts.view(1, tiles, 1), (tile_starts + block_size - 1).view(1, tiles, 1)
    key_first, key_last = tile_starts.view(1, 1, tiles), (tile_starts + block_size - 1).view(1, 1, tiles)
    first_at_or_after = torch.maximum(query_first, key_first).expand(batch, tiles, tiles)  # (B, n, n)
    smallest_start = starts.gather(1, first_at_or_after.reshape(batch, -1)).view(batch, tiles, tiles)
    largest_start = starts[:, tile_starts + block_size - 1].view(batch, tiles, 1)  # start(qe - 1)
    some = (query_last >= key_first) & (smallest_start <= key_last)  # (B, n, n)
    every = (query_first >= key_last) & (largest_start <= key_first)
    partial = some & ~every

    def counts_and_indices(chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = chosen.sum(-1, dtype=torch.int32)  # (B, n)
        order = torch.argsort(chosen.to(torch.int8), dim=-1, descending=True, stable=True).to(torch.int32)
        return counts.unsqueeze(1), order.unsqueeze(1)  # (B, 1, n), (B, 1, n, n): the chosen tiles first

    def mask_mod(b, h, q_index, kv_index):  # per element, inside partial tiles
        return (kv_index <= q_index) & (kv_index >= starts[b, q_index])

    partial_counts, partial_indices = counts_and_indices(partial)
    full_counts, full_indices = counts_and_indices(every)
    return BlockMask.from_kv_blocks(
        partial_counts, partial_indices, full_counts, full_indices, BLOCK_SIZE=block_size, mask_mod=mask_mod
    )


@dataclass
class _Window:
    """One packed window: `tokens` (T+1,) int64 and the lengths of the document pieces it is made of."""

    tokens: np.ndarray
    piece_lengths: list[int]
    documents_started: int


class _DocumentStream:
    """One token folder as a stream of documents, in a seeded order per epoch (or file order), cut into windows."""

    def __init__(self, folder: str | Path, source_index: int, sequence_length: int, seed: int, shuffle: bool) -> None:
        self.folder = Path(folder)
        self.shards = TokenShards(self.folder)
        self.source_index = source_index
        self.sequence_length = sequence_length
        self.seed = seed
        self.shuffle = shuffle
        lengths = []
        for shard in self.shards.shards:
            ends = np.asarray(shard.document_ends, dtype=np.int64)
            shard_lengths = np.diff(ends, prepend=0)
            if ends.size and (int(ends[-1]) != shard.tokens.size or (shard_lengths < 0).any()):
                raise RepolmError(f"{self.folder}: shard {shard.name}: its index does not match its tokens")
            lengths.append(shard_lengths)
        self.document_lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)  # (D,)
        # global document index of each shard's first document, and the total: (S+1,)
        self.shard_first_document = np.cumsum([0] + [len(part) for part in lengths], dtype=np.int64)
        self.num_tokens = int(self.document_lengths.sum())
        self.num_documents = int(self.document_lengths.size)
        if self.num_tokens < sequence_length + 1:
            raise RepolmError(
                f"{self.folder}: {self.num_tokens} tokens, fewer than one window of sequence_length + 1 = "
                f"{sequence_length + 1} tokens"
            )
        self.windows_per_epoch = (self.num_tokens - 1) // sequence_length
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def vocab_size(self) -> int:
        return self.shards.vocab_size

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's document order (D,) and the stream end offset of each document in that order (D,)."""
        if epoch not in self._epochs:
            if self.shuffle:
                generator = np.random.default_rng((self.seed + epoch, self.source_index))
                order = generator.permutation(self.num_documents)
            else:
                order = np.arange(self.num_documents, dtype=np.int64)
            self._epochs[epoch] = (order, np.cumsum(self.document_lengths[order]))
            while len(self._epochs) > _EPOCHS_CACHED:
                del self._epochs[min(self._epochs)]
        return self._epochs[epoch]

    def _document_tokens(self, document: int) -> np.ndarray:
        shard_index = int(np.searchsorted(self.shard_first_document, document, side="right")) - 1
        return self.shards.shards[shard_index].document(document - int(self.shard_first_document[shard_index]))

    def window(self, window_index: int) -> _Window:
        """Window `window_index` of the source's window sequence (epoch after epoch; shuffled within an epoch when the
        stream shuffles)."""
        epoch, index_in_epoch = divmod(window_index, self.windows_per_epoch)
        if self.shuffle:
            key = (self.seed * 1_000_003 + epoch) * 1_000_033 + self.source_index
            index_in_epoch = shuffled_index(index_in_epoch, self.windows_per_epoch, key)
        order, stream_ends = self._epoch(epoch)
        window_start = index_in_epoch * self.sequence_length
        window_stop = window_start + self.sequence_length + 1
        tokens = np.empty(self.sequence_length + 1, dtype=np.int64)
        piece_lengths: list[int] = []
        documents_started = 0
        position = window_start
        in_order = int(np.searchsorted(stream_ends, window_start, side="right"))  # document holding window_start
        while position < window_stop:
            document = int(order[in_order])
            document_end = int(stream_ends[in_order])
            document_start = document_end - int(self.document_lengths[document])
            piece_stop = min(document_end, window_stop)
            if piece_stop > position:  # empty documents contribute nothing
                piece = self._document_tokens(document)[position - document_start : piece_stop - document_start]
                tokens[position - window_start : piece_stop - window_start] = piece
                piece_lengths.append(piece_stop - position)
                if document_start == position and position < window_start + self.sequence_length:
                    documents_started += 1
            position = piece_stop
            in_order += 1
        return _Window(tokens, piece_lengths, documents_started)


_MASK64 = (1 << 64) - 1


def _mix(value: int, key: int, round_number: int) -> int:
    """A 64-bit mixing function (splitmix64's finalizer) of a value, a key and a round number."""
    z = (value + key * 0x9E3779B97F4A7C15 + round_number * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def shuffled_index(index: int, count: int, key: int) -> int:
    """The image of `index` under a pseudo-random permutation of range(count) chosen by `key`: a balanced 4-round
    Feistel network over the smallest even number of bits that holds `count`, applied again while the result is
    out of range (cycle walking). A bijection for every key, O(1) time on average and no memory."""
    if not 0 <= index < count:
        raise ValueError(f"index {index} is outside range({count})")
    if count <= 2:
        return index
    bits = max(2, (count - 1).bit_length())
    bits += bits % 2
    half = bits // 2
    mask = (1 << half) - 1
    value = index
    while True:
        left, right = value >> half, value & mask
        for round_number in range(4):
            left, right = right, left ^ (_mix(right, key, round_number) & mask)
        value = (left << half) | right
        if value < count:
            return value


def _check_sizes(sequence_length: int, micro_batch_size: int) -> None:
    if isinstance(sequence_length, bool) or not isinstance(sequence_length, int) or sequence_length < 1:
        raise RepolmError(f"sequence_length must be a positive integer, got {sequence_length!r}")
    if isinstance(micro_batch_size, bool) or not isinstance(micro_batch_size, int) or micro_batch_size < 1:
        raise RepolmError(f"micro_batch_size must be a positive integer, got {micro_batch_size!r}")


def _make_batch(windows: list[_Window], sequence_length: int, document_masking: bool) -> Batch:
    tokens = torch.from_numpy(np.stack([window.tokens for window in windows]))  # (B, T+1)
    batch_size, length = len(windows), sequence_length
    if document_masking:
        positions = np.empty((batch_size, length + 1), dtype=np.int64)
        for row, window in enumerate(windows):
            piece_lengths = np.asarray(window.piece_lengths, dtype=np.int64)
            piece_starts = np.cumsum(piece_lengths) - piece_lengths
            positions[row] = np.arange(length + 1) - np.repeat(piece_starts, piece_lengths)
        position_tensor = torch.from_numpy(positions[:, :-1].copy())  # (B, T)
    else:
        position_tensor = torch.arange(length, dtype=torch.int64).repeat(batch_size, 1)  # (B, T)
    return Batch(
        input_ids=tokens[:, :-1].contiguous(),
        targets=tokens[:, 1:].contiguous(),
        positions=position_tensor,
        documents_started=sum(window.documents_started for window in windows),
        document_masking=document_masking,
    )


class TrainData:
    """Deterministic, resumable, data-parallel training batches from weighted token folders (see the module doc).

    Args:
        sources: (token folder, weight) pairs; weights are positive and normalized to shares of the windows.
        sequence_length: T, tokens per row of input (each window holds T + 1 tokens).
        micro_batch_size: B, rows per batch on this rank.
        seed: non-negative seed of the document orders and of the mixture draws.
        rank, world_size: this process's data-parallel rank and the number of ranks.
        document_masking: restart positions at document starts and mask attention across documents.
    """

    def __init__(
        self,
        sources: list[tuple[str | Path, float]],
        sequence_length: int,
        micro_batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        document_masking: bool = False,
    ) -> None:
        _check_sizes(sequence_length, micro_batch_size)
        if not sources:
            raise RepolmError("no training data sources given")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise RepolmError(f"seed must be a non-negative integer, got {seed!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise RepolmError(f"rank {rank} is not in [0, world_size {world_size})")
        for folder, weight in sources:
            if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight > 0:
                raise RepolmError(f"{folder}: mixture weight must be a positive number, got {weight!r}")
        self.sequence_length = sequence_length
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.document_masking = document_masking
        self.weights = [float(weight) for _, weight in sources]
        self.streams = [
            _DocumentStream(folder, index, sequence_length, seed, shuffle=True)
            for index, (folder, _) in enumerate(sources)
        ]
        vocab_sizes = {stream.vocab_size for stream in self.streams}
        if len(vocab_sizes) > 1:
            listed = ", ".join(f"{stream.folder} ({stream.vocab_size})" for stream in self.streams)
            raise RepolmError(f"token folders disagree on vocab_size: {listed}")
        total_weight = sum(self.weights)
        self.shares = [weight / total_weight for weight in self.weights]
        self._cumulative_shares = np.cumsum(self.shares)  # (N,)
        self._mixture = np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, _MIXTURE_STREAM))))
        self.global_windows = 0
        self.source_windows = [0] * len(self.streams)
        for stream, share in zip(self.streams, self.shares, strict=True):
            logger.info(
                "source %s: %d tokens in %d documents, %d windows of %d per epoch, share %.3f",
                stream.folder,
                stream.num_tokens,
                stream.num_documents,
                stream.windows_per_epoch,
                sequence_length + 1,
                share,
            )

    @property
    def vocab_size(self) -> int:
        """Vocabulary size recorded in the token folders (all agree)."""
        return self.streams[0].vocab_size

    @property
    def eos_id(self) -> int:
        """End-of-sentence id of the first source."""
        return self.streams[0].shards.eos_id

    @property
    def global_batch_size(self) -> int:
        """Windows per step over all ranks (W * B)."""
        return self.world_size * self.micro_batch_size

    @property
    def source_epochs(self) -> list[float]:
        """Epochs of each source consumed so far over all ranks (fractional)."""
        return [
            windows / stream.windows_per_epoch
            for windows, stream in zip(self.source_windows, self.streams, strict=True)
        ]

    def next_batch(self) -> Batch:
        """This rank's micro-batch of the next step (see the module doc for which global windows it holds)."""
        draws = self._mixture.random(self.global_batch_size)  # (W*B,) uniforms in [0, 1)
        choices = np.minimum(np.searchsorted(self._cumulative_shares, draws, side="right"), len(self.streams) - 1)
        first_row = self.rank * self.micro_batch_size
        windows = []
        for slot, source in enumerate(choices.tolist()):
            window_index = self.source_windows[source]
            self.source_windows[source] += 1
            if first_row <= slot < first_row + self.micro_batch_size:
                windows.append(self.streams[source].window(window_index))
        self.global_windows += self.global_batch_size
        return _make_batch(windows, self.sequence_length, self.document_masking)

    def state_dict(self) -> dict:
        """Position in the data: window counters, the mixture generator's state, and what they refer to."""
        return {
            "format": STATE_FORMAT,
            "sequence_length": self.sequence_length,
            "seed": self.seed,
            "sources": [
                {"folder": str(stream.folder), "tokens": stream.num_tokens, "documents": stream.num_documents}
                for stream in self.streams
            ],
            "weights": list(self.weights),
            "global_windows": self.global_windows,
            "source_windows": list(self.source_windows),
            "source_epochs": self.source_epochs,  # informational; follows from source_windows
            "mixture_generator": self._mixture.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (of `state_dict`); raises RepolmError when it belongs to other data or settings."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise RepolmError(f"data state: not a {STATE_FORMAT} state")
        for name in ("sequence_length", "seed"):
            if state[name] != getattr(self, name):
                raise RepolmError(f"data state: {name} {state[name]} differs from this run's {getattr(self, name)}")
        if len(state["sources"]) != len(self.streams):
            raise RepolmError(f"data state: {len(state['sources'])} sources, this run has {len(self.streams)}")
        for saved, stream in zip(state["sources"], self.streams, strict=True):
            if (saved["tokens"], saved["documents"]) != (stream.num_tokens, stream.num_documents):
                raise RepolmError(
                    f"data state: source {saved['folder']} had {saved['tokens']} tokens in {saved['documents']} "
                    f"documents, {stream.folder} has {stream.num_tokens} in {stream.num_documents}"
                )
        if sum(state["source_windows"]) != state["global_windows"]:
            raise RepolmError("data state: the per-source window counters do not add up to the global counter")
        if list(state["weights"]) != self.weights:
            logger.warning("data state: mixture weights changed from %s to %s", state["weights"], self.weights)
        self.global_windows = int(state["global_windows"])
        self.source_windows = [int(count) for count in state["source_windows"]]
        self._mixture.bit_generator.state = state["mixture_generator"]


def validation_batches(
    folder: str | Path,
    sequence_length: int,
    micro_batch_size: int,
    max_batches: int,
    document_masking: bool = False,
) -> list[Batch]:
    """Up to `max_batches` batches of the folder's windows, documents in file order: windows spread evenly over the
    whole folder (every `windows / (max_batches * micro_batch_size)`-th one), so that the validation loss covers all
    its documents, not only the first.

    The same windows every call (stride `sequence_length`, as in training); the last batch may hold fewer than
    `micro_batch_size` rows when the folder runs out of windows.
    """
    _check_sizes(sequence_length, micro_batch_size)
    if isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1:
        raise RepolmError(f"max_batches must be a positive integer, got {max_batches!r}")
    stream = _DocumentStream(folder, 0, sequence_length, seed=0, shuffle=False)
    num_windows = min(max_batches * micro_batch_size, stream.windows_per_epoch)
    batches = []
    spread = [index * stream.windows_per_epoch // num_windows for index in range(num_windows)]
    for first in range(0, num_windows, micro_batch_size):
        windows = [stream.window(spread[index]) for index in range(first, min(first + micro_batch_size, num_windows))]
        batches.append(_make_batch(windows, sequence_length, document_masking))
    return batches
