"""MinHash near-dedup as datatrove pipeline steps, so it runs under any datatrove executor (local, Slurm, Ray).

Four stages, each launched as its own executor run (`minhash_pipelines` builds them):

1. `RepoMinhashSignature` (one task per input shard): repolm's shingles and signatures (`repolm.data.minhash`),
   written in datatrove's bucket layout, `signatures/bucket_{band:03d}/{rank:05d}.minhash.sig` (per document
   that has at least `min_ngrams` shingles: the band's `rows` values then the document's index, all "<u4",
   sorted). Per rank it also writes what stage 3 needs: `signatures/documents/{rank:05d}.keys.jsonl` (one line
   per signed document: its index in the shard, `Document.id` and text length) and
   `signatures/documents/{rank:05d}.signatures.npy` (the full signatures, same order, for verification).
2. `RepoMinhashBuckets` (`bands` tasks, or a multiple): datatrove's `MinhashDedupBuckets`, which merges each
   band's sorted files and writes the pairs of documents with equal band values to `buckets/*.dups`.
3. `RepoMinhashCluster` (one task): rebuilds each band bucket from the pairs, links candidates exactly as the
   in-memory reference does (`link_candidate_groups`: verification by estimated Jaccard, union-find), keeps one
   document per cluster with `choose_survivor` (longest text, then smallest id), and writes datatrove's
   `clusters/{rank:06d}.remove` files plus `clusters/clusters.jsonl` (one line per cluster).
4. datatrove's `MinhashDedupFilter`, unchanged, drops the removed documents (the reader must shard the input
   exactly as in stage 1).

Every file is written under a scratch name and then moved into place, so a crashed task never leaves a partial
file where the next stage looks. The kept documents do not depend on the number of shards or on input order.

Not handled here: choosing executors, reading/writing the corpus (the caller passes readers and writers), and
exact dedup.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from datatrove.data import DocumentsPipeline
from datatrove.io import DataFolder, DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup.minhash import (
    SENTINEL,
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.writers.disk_base import DiskWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from repolm.data import logs  # noqa: F401  (quiets datatrove's per-task console logs in every process)
from repolm.data.minhash import (
    WORD_PATTERN,
    DisjointSets,
    MinHashConfig,
    choose_survivor,
    link_candidate_groups,
    minhash_signatures,
    shingle_hashes,
    signature_from_shingles,
)
from repolm.errors import RepolmError

logger = logging.getLogger(__name__)

SCRATCH_FOLDER = "_scratch"  # scratch files, never inside a folder that a later stage lists
DOCUMENTS_FOLDER = "documents"  # keys and full signatures of each stage-1 rank
CLUSTERS_REPORT = "clusters.jsonl"
SIGNATURE_BATCH_DOCUMENTS = 1024  # documents signed together (the core is vectorised over a batch)
SIGNATURE_BATCH_BYTES = 8 * 1024 * 1024
COPY_BLOCK_BYTES = 16 * 1024 * 1024


def datatrove_minhash_config(config: MinHashConfig) -> MinhashConfig:
    """datatrove's `MinhashConfig` describing the same bucket files: `bands` buckets of `rows` 32-bit values."""
    return MinhashConfig(
        n_grams=config.ngram_size,
        num_buckets=config.bands,
        hashes_per_bucket=config.rows,
        seed=config.seed,
        # 32-bit values as repolm's signatures; the hash function is never used (repolm hashes the shingles)
        hash_config=HashConfig(precision=32, hash_fc="sha1"),
    )


class CodeWordTokenizer(WordTokenizer):
    """BigCode's code word split (`[^A-Za-z_0-9]+`) as a datatrove `WordTokenizer` (no spacy or nltk needed)."""

    def __init__(self) -> None:
        super().__init__(language=None)

    def word_tokenize(self, text: str) -> list[str]:
        return WORD_PATTERN.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [line for line in text.splitlines() if line.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for line in text.splitlines(keepends=True):
            if line.strip():
                spans.append((start, start + len(line.rstrip("\r\n"))))
            start += len(line)
        return spans


def _publish(folder: DataFolder, scratch_path: str, final_path: str) -> None:
    """Move a finished scratch file to its final name (a rename on local disks, so readers never see half a file)."""
    parent = os.path.dirname(final_path)
    if parent:
        folder.makedirs(parent, exist_ok=True)
    folder.mv(scratch_path, final_path)


def _write_atomically(folder: DataFolder, path: str, content: bytes) -> None:
    scratch_path = f"{SCRATCH_FOLDER}/{path.replace('/', '__')}.{os.getpid()}.part"
    with folder.open(scratch_path, "wb") as file:
        file.write(content)
    _publish(folder, scratch_path, path)


class RepoMinhashSignature(MinhashDedupSignature):
    """Stage 1: repolm's MinHash signatures in datatrove's bucket files, plus per-rank keys and full signatures.

    Args:
        output_folder: the signature folder (stage 2 reads `bucket_*/`, stage 3 reads `documents/`).
        config: repolm's MinHash parameters (the same object must go to every stage).
    """

    name = "🎯 repolm MinHash signatures"

    def __init__(self, output_folder: DataFolderLike, config: MinHashConfig | None = None) -> None:
        self.minhash_config = config or MinHashConfig()
        super().__init__(
            output_folder, config=datatrove_minhash_config(self.minhash_config), language=CodeWordTokenizer()
        )

    def get_shingles(self, text: str) -> np.ndarray:
        """repolm's shingle hashes of `text`, shaped (n, 1) uint64 as datatrove's `get_shingles` returns them."""
        return shingle_hashes(text, self.minhash_config).astype(np.uint64).reshape(-1, 1)

    def get_signature(self, shingles: np.ndarray) -> list[list[int]]:
        """repolm's signature of `shingles`, split into datatrove's per-bucket lists."""
        signature = signature_from_shingles(shingles.ravel(), self.minhash_config)
        rows = self.minhash_config.rows
        return [signature[band * rows : (band + 1) * rows].tolist() for band in range(self.minhash_config.bands)]

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> None:
        config = self.minhash_config
        scratch = f"{SCRATCH_FOLDER}-{rank:05d}"  # one folder per rank: parallel ranks never share a folder
        with self.track_time():
            bucket_files = [
                self.output_folder.open(f"{scratch}/bucket_{band:03d}", "wb") for band in range(config.bands)
            ]
            signature_file = self.output_folder.open(f"{scratch}/signatures", "wb")
            keys_file = self.output_folder.open(f"{scratch}/keys.jsonl", "wt", encoding="utf-8")
            signed = 0
            batch: list = []
            batch_bytes = 0
            for index, document in enumerate(data):
                self.stat_update("documents")
                batch.append((index, document))
                batch_bytes += len(document.text)
                if len(batch) >= SIGNATURE_BATCH_DOCUMENTS or batch_bytes >= SIGNATURE_BATCH_BYTES:
                    signed += self._write_batch(batch, bucket_files, signature_file, keys_file)
                    batch, batch_bytes = [], 0
            if batch:
                signed += self._write_batch(batch, bucket_files, signature_file, keys_file)
            for file in [*bucket_files, signature_file, keys_file]:
                file.close()

            record_type = np.dtype([(f"field{position}", "<u4") for position in range(config.rows + 1)])
            for band in range(config.bands):
                with self.output_folder.open(f"{scratch}/bucket_{band:03d}", "rb") as file:
                    records = np.frombuffer(file.read(), dtype=record_type).copy()
                if len(records) != signed:
                    raise RepolmError(f"MinHash band {band} of rank {rank} holds {len(records)} records, not {signed}")
                records.sort(order=record_type.names)  # datatrove's merge needs each file sorted
                with self.output_folder.open(f"{scratch}/bucket_{band:03d}", "wb") as file:
                    file.write(records.tobytes())
                _publish(
                    self.output_folder, f"{scratch}/bucket_{band:03d}", f"bucket_{band:03d}/{rank:05d}.minhash.sig"
                )

            with self.output_folder.open(f"{scratch}/signatures.npy", "wb") as target:
                header = {"descr": "<u4", "fortran_order": False, "shape": (signed, config.num_permutations)}
                np.lib.format.write_array_header_1_0(target, header)
                with self.output_folder.open(f"{scratch}/signatures", "rb") as source:
                    while block := source.read(COPY_BLOCK_BYTES):
                        target.write(block)
            _publish(self.output_folder, f"{scratch}/signatures.npy", f"{DOCUMENTS_FOLDER}/{rank:05d}.signatures.npy")
            _publish(self.output_folder, f"{scratch}/keys.jsonl", f"{DOCUMENTS_FOLDER}/{rank:05d}.keys.jsonl")
            self.output_folder.rm(scratch, recursive=True)

    def _write_batch(self, batch: list, bucket_files: list, signature_file, keys_file) -> int:
        config = self.minhash_config
        signatures, counts = minhash_signatures([document.text for _, document in batch], config)
        eligible = np.flatnonzero(counts >= config.min_ngrams)
        self.stat_update("signed", value=len(eligible))
        self.stat_update("too_short", value=len(batch) - len(eligible))
        if len(eligible) == 0:
            return 0
        if batch[-1][0] >= 2**32:
            raise RepolmError(
                f"near-dedup: a shard holds more than 2^32 documents ({batch[-1][0] + 1}); use more tasks"
            )
        signatures = signatures[eligible]
        indices = np.array([batch[position][0] for position in eligible.tolist()], dtype=np.uint32)
        records = np.empty((len(eligible), config.rows + 1), dtype="<u4")
        records[:, config.rows] = indices
        for band, file in enumerate(bucket_files):
            records[:, : config.rows] = signatures[:, band * config.rows : (band + 1) * config.rows]
            file.write(records.tobytes())
        signature_file.write(signatures.astype("<u4").tobytes())
        for position in eligible.tolist():
            index, document = batch[position]
            keys_file.write(json.dumps({"index": index, "id": document.id, "length": len(document.text)}) + "\n")
        return len(eligible)


class RepoMinhashBuckets(MinhashDedupBuckets):
    """Stage 2: datatrove's bucket merge over repolm's 32-bit band files (run `bands` tasks, or a multiple).

    datatrove stops reading a file at the first band whose first value is >= the worker's upper bound, and for
    32-bit signatures the last worker's bound is 0xFFFFFFFF, which would drop bands that start with that value.
    The last worker of each band gets 2^32 instead, so every 32-bit value is read.
    """

    name = "🎯 repolm MinHash buckets"

    def __init__(
        self,
        input_folder: DataFolderLike,
        output_folder: DataFolderLike,
        config: MinHashConfig | None = None,
        lines_to_buffer: int = 1024,
    ) -> None:
        super().__init__(
            input_folder,
            output_folder,
            config=datatrove_minhash_config(config or MinHashConfig()),
            lines_to_buffer=lines_to_buffer,
        )

    def get_worker_hash_range(self, sig_files: list[str], rank: int, world_size: int) -> tuple[int, int]:
        hash_min, hash_max = super().get_worker_hash_range(sig_files, rank, world_size)
        workers_per_bucket = world_size // self.config.num_buckets
        if rank % workers_per_bucket == workers_per_bucket - 1:
            hash_max = 1 << 32
        return hash_min, hash_max


class RepoMinhashCluster(PipelineStep):
    """Stage 3 (one task): verified clusters from the band pairs; datatrove `.remove` files and a cluster report.

    Args:
        input_folder: the folder of stage 2's `.dups` files.
        signature_folder: stage 1's folder (its `documents/` keys and signatures).
        output_folder: where `{rank:06d}.remove` and `clusters.jsonl` go (earlier ones there are replaced).
        config: the same MinHash parameters as stages 1 and 2.
    """

    type = "🫂 - DEDUP"
    name = "🎯 repolm MinHash clusters"

    def __init__(
        self,
        input_folder: DataFolderLike,
        signature_folder: DataFolderLike,
        output_folder: DataFolderLike,
        config: MinHashConfig | None = None,
    ) -> None:
        super().__init__()
        self.input_folder = get_datafolder(input_folder)
        self.signature_folder = get_datafolder(signature_folder)
        self.output_folder = get_datafolder(output_folder)
        self.minhash_config = config or MinHashConfig()

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> None:
        if world_size != 1:
            raise RepolmError(f"RepoMinhashCluster must run as a single task, got {world_size} tasks")
        with self.track_time():
            groups = self._candidate_groups()
            nodes = np.unique(np.concatenate(groups)) if groups else np.zeros(0, dtype=np.uint64)
            signatures, ids, lengths = self._load_documents(nodes)
            dense_groups = [np.searchsorted(nodes, group) for group in groups]
            clusters, statistics = link_candidate_groups(dense_groups, signatures, self.minhash_config)
            self.stat_update("candidate_groups", value=statistics.candidate_groups)
            self.stat_update("checked_pairs", value=statistics.checked_pairs)
            self.stat_update("rejected_pairs", value=statistics.rejected_pairs)

            removals: dict[int, list[int]] = {}
            report = []
            for cluster in clusters:
                member_ids = [ids[member] for member in cluster]
                if len(set(member_ids)) != len(member_ids):
                    duplicated = sorted({item for item in member_ids if member_ids.count(item) > 1})
                    raise RepolmError(f"near-dedup needs unique document ids; {duplicated[0]!r} appears twice")
                survivor_id = choose_survivor((ids[member], lengths[member]) for member in cluster)
                survivor = cluster[member_ids.index(survivor_id)]
                removed = [member for member in cluster if member != survivor]
                for member in removed:
                    removals.setdefault(int(nodes[member] >> np.uint64(32)), []).append(
                        int(nodes[member] & np.uint64(0xFFFFFFFF))
                    )
                similarities = (signatures[removed] == signatures[survivor]).mean(axis=1)
                report.append(
                    {
                        "survivor": survivor_id,
                        "removed": sorted((ids[member] for member in removed), key=str),
                        "size": len(cluster),
                        "min_jaccard": round(float(similarities.min()), 6),
                        "max_jaccard": round(float(similarities.max()), 6),
                    }
                )
                self.stat_update("clusters")
                self.stat_update("documents_removed", value=len(removed))

            for stale in self.output_folder.list_files(glob_pattern="*.remove"):
                self.output_folder.rm(stale)
            for shard, indices in sorted(removals.items()):
                content = np.array(sorted(indices), dtype="<u4").tobytes()
                _write_atomically(self.output_folder, f"{shard:06d}.remove", content)
            report.sort(key=lambda line: str(line["survivor"]))
            lines = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in report)
            _write_atomically(self.output_folder, CLUSTERS_REPORT, lines.encode("utf-8"))
            self.output_folder.rm(SCRATCH_FOLDER, recursive=True)
            logger.info(
                "near-dedup: %d clusters, %d documents removed, %d pairs checked (%d rejected)",
                len(report),
                sum(len(line["removed"]) for line in report),
                statistics.checked_pairs,
                statistics.rejected_pairs,
            )

    def _candidate_groups(self) -> list[np.ndarray]:
        """Each band bucket with 2+ documents, as sorted keys `rank << 32 | index`, rebuilt from the `.dups` pairs.

        datatrove writes a pair for each two neighbours with equal band values, so within one `.dups` file the
        buckets are the connected components of its pairs.
        """
        groups = []
        for path in self.input_folder.list_files(glob_pattern="*.dups"):
            with self.input_folder.open(path, "rb") as file:
                pairs = np.frombuffer(file.read(), dtype="<u4").reshape(-1, 4).astype(np.uint64)
            from_index = (pairs[:, 0] == SENTINEL) | (pairs[:, 2] == SENTINEL)
            if from_index.any():
                logger.warning("%s: ignoring %d matches against an index", path, int(from_index.sum()))
                pairs = pairs[~from_index]
            if len(pairs) == 0:
                continue
            left = (pairs[:, 0] << np.uint64(32)) | pairs[:, 1]
            right = (pairs[:, 2] << np.uint64(32)) | pairs[:, 3]
            local_nodes = np.unique(np.concatenate([left, right]))
            sets = DisjointSets(len(local_nodes))
            for item_a, item_b in zip(
                np.searchsorted(local_nodes, left).tolist(), np.searchsorted(local_nodes, right).tolist(), strict=True
            ):
                sets.union(item_a, item_b)
            roots = np.array([sets.find(item) for item in range(len(local_nodes))])
            order = np.argsort(roots, kind="stable")
            boundaries = np.flatnonzero(np.diff(roots[order])) + 1
            groups.extend(local_nodes[members] for members in np.split(order, boundaries))
        return groups

    def _load_documents(self, nodes: np.ndarray) -> tuple[np.ndarray, list, list[int]]:
        """Signatures, ids and text lengths of the documents `nodes` (keys `rank << 32 | index`), in that order."""
        signatures = np.zeros((len(nodes), self.minhash_config.num_permutations), dtype=np.uint32)
        ids: list = [None] * len(nodes)
        lengths = [0] * len(nodes)
        shards = nodes >> np.uint64(32)
        for shard in np.unique(shards).tolist():
            positions = np.flatnonzero(shards == shard)
            wanted = (nodes[positions] & np.uint64(0xFFFFFFFF)).astype(np.int64)
            keys_path = f"{DOCUMENTS_FOLDER}/{shard:05d}.keys.jsonl"
            signatures_path = f"{DOCUMENTS_FOLDER}/{shard:05d}.signatures.npy"
            if not self.signature_folder.exists(keys_path) or not self.signature_folder.exists(signatures_path):
                raise RepolmError(
                    f"near-dedup: {self.signature_folder.resolve_paths(keys_path)} or its signatures is missing"
                )
            with self.signature_folder.open(keys_path, "rt", encoding="utf-8") as file:
                keys = [json.loads(line) for line in file]
            indices = np.array([key["index"] for key in keys], dtype=np.int64)
            rows = np.searchsorted(indices, wanted)
            if (
                len(indices) == 0
                or np.any(rows >= len(indices))
                or np.any(indices[np.minimum(rows, len(indices) - 1)] != wanted)
            ):
                raise RepolmError(
                    f"near-dedup: {keys_path} does not list every document of the band files (stale folder?)"
                )
            if self.signature_folder.is_local():
                shard_signatures = np.load(self.signature_folder.resolve_paths(signatures_path), mmap_mode="r")
            else:
                with self.signature_folder.open(signatures_path, "rb") as file:
                    shard_signatures = np.lib.format.read_array(file)
            signatures[positions] = shard_signatures[rows]
            for position, row in zip(positions.tolist(), rows.tolist(), strict=True):
                ids[position] = keys[row]["id"]
                lengths[position] = keys[row]["length"]
        return signatures, ids, lengths


@dataclass
class MinhashPipelines:
    """The four stages of MinHash near-dedup, each a datatrove pipeline for its own executor run.

    Unpacks as `signatures, buckets, clusters, filter = minhash_pipelines(...)`.

    Attributes:
        signatures: reader + `RepoMinhashSignature`; run with the input's number of tasks.
        buckets: `RepoMinhashBuckets`; run with `bucket_tasks` tasks (a multiple also works).
        clusters: `RepoMinhashCluster`; run with exactly one task.
        filter: reader + datatrove's `MinhashDedupFilter` + the output steps; run with the same tasks as `signatures`.
        bucket_tasks: the number of bands.
        work_folder: where the stages keep their files (`signatures/`, `buckets/`, `clusters/`; the cluster report
            is `clusters/clusters.jsonl`).
    """

    signatures: list[PipelineStep]
    buckets: list[PipelineStep]
    clusters: list[PipelineStep]
    filter: list[PipelineStep]
    bucket_tasks: int
    work_folder: str

    @property
    def stages(self) -> list[list[PipelineStep]]:
        return [self.signatures, self.buckets, self.clusters, self.filter]

    def __iter__(self) -> Iterator[list[PipelineStep]]:
        return iter(self.stages)


def minhash_pipelines(
    make_reader: Callable[[], PipelineStep],
    work_folder: str | os.PathLike,
    config: MinHashConfig | None = None,
    output_steps: Sequence[PipelineStep] = (),
    exclusion_writer: DiskWriter | None = None,
) -> MinhashPipelines:
    """Build the four stage pipelines of near-dedup over the documents that `make_reader()` reads.

    `make_reader` is called twice (stages 1 and 4) and must shard the same way both times, since stage 4 finds
    documents by their index within the shard. `output_steps` (e.g. a writer) follow the filter and receive the
    kept documents; `exclusion_writer` (optional) receives the removed ones. `work_folder` is a local path or an
    fsspec URL.
    """
    config = config or MinHashConfig()
    root = os.fspath(work_folder).rstrip("/")
    signature_folder, bucket_folder, cluster_folder = f"{root}/signatures", f"{root}/buckets", f"{root}/clusters"
    return MinhashPipelines(
        signatures=[make_reader(), RepoMinhashSignature(signature_folder, config)],
        buckets=[RepoMinhashBuckets(signature_folder, bucket_folder, config)],
        clusters=[RepoMinhashCluster(bucket_folder, signature_folder, cluster_folder, config)],
        filter=[
            make_reader(),
            MinhashDedupFilter(input_folder=cluster_folder, exclusion_writer=exclusion_writer),
            *output_steps,
        ],
        bucket_tasks=config.bands,
        work_folder=root,
    )
