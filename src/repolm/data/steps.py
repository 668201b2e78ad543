"""The data build's datatrove pipeline steps: screen files, drop exact duplicates, assemble repository samples.

Each step is a datatrove `PipelineStep`, so any datatrove executor (local processes, Slurm, Ray) runs it, one task
per shard. Steps that pass work to a later stage write one file per rank (`{rank:05d}.jsonl.zst`), and the next
stage's task of the same rank reads exactly that file (`RankShardReader`), so a rank's documents keep their order
from stage to stage, which datatrove's MinHash stages rely on. A rank that is run again (after a kill) rewrites its
files from the start; nothing is appended, so a resumed build never duplicates output.

Besides datatrove's own stats, every step counts what it did in a `StageCounts` (files in and kept per language,
drops per stage and reason, bytes) written per rank as JSON; the summary adds them up.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict

from datatrove.data import Document, DocumentsPipeline
from datatrove.io import DataFolderLike, get_datafolder
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from tqdm import tqdm

from repolm.data import logs  # noqa: F401  (quiets datatrove's per-task console logs in every process)
from repolm.data.assembly import AssemblyConfig, assemble_repository
from repolm.data.filters import FilterConfig, screen_file
from repolm.data.quality import QualityConfig, screen_quality
from repolm.data.records import CodeFile, Exclusion, RepoSample
from repolm.data.sources import SourceConfig, SourceUnit, read_unit
from repolm.data.split import HeldoutRule

logger = logging.getLogger(__name__)

SHARD_NAME = "{rank:05d}.jsonl.zst"


class StageCounts:
    """Counters of one rank of one stage, written as `{folder}/{rank:05d}.json` (atomically) when the rank ends."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, key: str, value: int = 1) -> None:
        self.counts[key] += value

    def save(self, folder: DataFolderLike, rank: int) -> None:
        write_data_file(folder, f"{rank:05d}.json", json.dumps(dict(sorted(self.counts.items())), indent=0))


def write_data_file(folder: DataFolderLike, name: str, text: str) -> None:
    """Writes `name` in a datatrove folder (local or remote) under a scratch name, then moves it into place."""
    folder = get_datafolder(folder)
    with folder.open(f"{name}.partial", "wt") as file:
        file.write(text)
    folder.fs.mv(folder.resolve_paths(f"{name}.partial"), folder.resolve_paths(name))


class ExclusionLog:
    """Writes `Exclusion` records of one rank as JSON lines (zstd) to `{folder}/{stage}/{rank:05d}.jsonl.zst`."""

    def __init__(self, folder: DataFolderLike, stage: str, rank: int) -> None:
        self.folder = get_datafolder(folder)
        self.path = f"{stage}/{SHARD_NAME.format(rank=rank)}"
        self.file = None

    def write(self, exclusion: Exclusion) -> None:
        if self.file is None:
            self.file = self.folder.open(self.path, "wt", compression="zstd")
        self.file.write(json.dumps(asdict(exclusion), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        elif self.folder.exists(self.path):
            self.folder.rm(self.path)  # a rerun that excludes nothing must not keep an earlier run's records


def count_exclusion(counts: StageCounts, exclusion: Exclusion) -> None:
    counts.add(f"excluded:{exclusion.stage}:{exclusion.reason}")


def shard_writer(folder: DataFolderLike, filename: str = "${rank}.jsonl.zst", adapter=None) -> JsonlWriter:
    """A datatrove JSONL writer (zstd) of one file per rank."""
    return JsonlWriter(folder, output_filename=filename, compression="zstd", adapter=adapter)


class RankShardReader(JsonlReader):
    """Reads the one file `{rank:05d}.jsonl.zst` that the same rank of the previous stage wrote (none: no input)."""

    name = "📖 rank shard"

    def __init__(self, data_folder: DataFolderLike) -> None:
        super().__init__(data_folder, compression="zstd", add_file_path=False)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        path = SHARD_NAME.format(rank=rank)
        if not self.data_folder.exists(path):
            return
        for document in self.read_file(path):
            self.update_doc_stats(document)
            yield document


# -----------------------------------------------------------------------------
# stage 1: read repositories and screen their files


class ScreenRepositories(PipelineStep):
    """Reads this rank's source units and yields one document per file that passes every per-file screen.

    A file goes through, in order: the rule filters (`filters.screen_file`: read errors, vendored and lock files,
    size, binary, encoding, language, the paper's rules), the syntax check (`quality`), and decontamination against
    the benchmark index. The first screen that drops it writes an `Exclusion`. Kept files also write their content
    hash (for the exact-dedup stage) to `{exact_folder}/hashes/{rank:05d}.tsv`.
    """

    name = "🔎 screen repositories"
    type = "📖 - READER"

    def __init__(
        self,
        units: list[tuple[SourceConfig, SourceUnit]],
        filters: FilterConfig,
        quality: QualityConfig,
        benchmarks: str | None,
        exclusions_folder: DataFolderLike,
        exact_folder: DataFolderLike,
        counts_folder: DataFolderLike,
    ) -> None:
        super().__init__()
        self.units = units
        self.filters = filters
        self.quality = quality
        self.benchmarks = benchmarks
        self.exclusions_folder = exclusions_folder
        self.exact_folder = get_datafolder(exact_folder)
        self.counts_folder = counts_folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from repolm.data.decontamination import screen_contamination

        index = load_benchmark_index(self.benchmarks) if self.benchmarks else None
        counts = StageCounts()
        exclusions = ExclusionLog(self.exclusions_folder, "screen", rank)
        my_units = self.units[rank::world_size]
        with self.exact_folder.open(f"hashes/{rank:05d}.tsv", "wt") as hashes:
            for source, unit in tqdm(my_units, desc=f"screen (task {rank})", unit="unit", leave=False, disable=None):
                for repository in read_unit(unit, source):
                    counts.add("repositories")
                    self.stat_update("repositories")
                    for source_file in repository.files:
                        counts.add("files")
                        counts.add("bytes", len(source_file.content or b""))
                        with self.track_time():
                            result = screen_file(repository.name, source_file, self.filters)
                            if isinstance(result, CodeFile):
                                exclusion = screen_quality(repository.name, result, self.quality)
                                if exclusion is None and index is not None:
                                    exclusion = screen_contamination(repository.name, result, index)
                                if exclusion is not None:
                                    result = exclusion
                        if isinstance(result, Exclusion):
                            exclusions.write(result)
                            count_exclusion(counts, result)
                            self.stat_update(f"dropped_{result.stage}")
                            continue
                        encoded = result.text.encode("utf-8")
                        counts.add(f"kept_files:{result.language}")
                        counts.add(f"kept_bytes:{result.language}", len(encoded))
                        self.stat_update("kept")
                        digest = hashlib.sha1(encoded).hexdigest()
                        file_id = f"{repository.name}::{result.path}"
                        hashes.write(f"{digest}\t{file_id}\n")
                        yield Document(
                            text=result.text,
                            id=file_id,
                            metadata={
                                "repo": repository.name,
                                "path": result.path,
                                "language": result.language,
                                "source": repository.source,
                                "kind": repository.kind,
                            },
                        )
        exclusions.close()
        counts.save(self.counts_folder, rank)


_BENCHMARK_INDEXES: dict[str, object] = {}


def load_benchmark_index(folder: str):
    """The benchmark index of `folder`, built once per process."""
    from repolm.data.decontamination import BenchmarkIndex

    if folder not in _BENCHMARK_INDEXES:
        _BENCHMARK_INDEXES[folder] = BenchmarkIndex.from_folder(folder)
    return _BENCHMARK_INDEXES[folder]


# -----------------------------------------------------------------------------
# stage 2: exact duplicates across the corpus


class FindExactDuplicates(PipelineStep):
    """Finds files with identical content across the whole corpus; rank r owns the hashes with value % tasks == r.

    The survivor of a group of identical files is the one with the smallest id ("repo::path"), so the choice does
    not depend on how the corpus was sharded. Writes `{exact_folder}/removed/{rank:05d}.tsv` ("id<TAB>survivor").
    """

    name = "🫂 exact duplicates"
    type = "🫂 - DEDUP"

    def __init__(self, exact_folder: DataFolderLike) -> None:
        super().__init__()
        self.exact_folder = get_datafolder(exact_folder)

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        groups: dict[str, list[str]] = {}
        for path in self.exact_folder.list_files("hashes"):
            with self.exact_folder.open(path, "rt") as file:
                for line in file:
                    digest, file_id = line.rstrip("\n").split("\t", 1)
                    if int(digest[:8], 16) % world_size == rank:
                        groups.setdefault(digest, []).append(file_id)
        lines = []
        for digest in sorted(groups):
            members = sorted(groups[digest])
            lines.extend(f"{member}\t{members[0]}\n" for member in members[1:])
        self.stat_update("duplicates", value=len(lines))
        write_data_file(self.exact_folder, f"removed/{rank:05d}.tsv", "".join(lines))
        return
        yield  # a generator that yields nothing: this stage only writes its table


def load_exact_duplicates(exact_folder: DataFolderLike) -> dict[str, str]:
    """id -> survivor id for every file that the exact-dedup stage removes."""
    folder = get_datafolder(exact_folder)
    removed: dict[str, str] = {}
    for path in folder.list_files("removed", glob_pattern="*.tsv"):
        with folder.open(path, "rt") as file:
            for line in file:
                file_id, survivor = line.rstrip("\n").split("\t", 1)
                removed[file_id] = survivor
    return removed


# -----------------------------------------------------------------------------
# stage 3: repository samples


class AssembleSamples(PipelineStep):
    """Groups this rank's screened files by repository, drops exact duplicates, and yields the repository samples.

    Files of one repository are consecutive in the rank's shard (stage 1 reads a repository whole), so a repository
    is assembled as soon as its last file is read. Samples come from `assembly.assemble_repository`: the files of
    languages with dependency parsing in dependency order (the paper's Algorithm 1), each headed by its path, as one
    sample (split at file boundaries when long); every other file as a sample of its own.
    """

    name = "🧩 assemble samples"
    type = "🔻 - FILTER"

    def __init__(
        self,
        assembly: AssemblyConfig,
        seed: int,
        exact_folder: DataFolderLike,
        exclusions_folder: DataFolderLike,
        counts_folder: DataFolderLike,
    ) -> None:
        super().__init__()
        self.assembly = assembly
        self.seed = seed
        self.exact_folder = exact_folder
        self.exclusions_folder = exclusions_folder
        self.counts_folder = counts_folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        duplicates = load_exact_duplicates(self.exact_folder)
        counts = StageCounts()
        exclusions = ExclusionLog(self.exclusions_folder, "exact-dedup", rank)
        for repository_files in _group_by_repository(data or ()):
            first = repository_files[0].metadata
            files = []
            for document in repository_files:
                survivor = duplicates.get(document.id)
                if survivor is not None:
                    exclusion = Exclusion(
                        first["repo"], document.metadata["path"], "exact-dedup", "identical-file", f"same as {survivor}"
                    )
                    exclusions.write(exclusion)
                    count_exclusion(counts, exclusion)
                    continue
                files.append(CodeFile(document.metadata["path"], document.text, document.metadata["language"]))
            if not files:
                continue
            with self.track_time():
                samples = assemble_repository(
                    first["repo"], first["source"], first["kind"], files, self.assembly, seed=self.seed
                )
            for sample in samples:
                counts.add("samples")
                counts.add(f"samples:{sample.kind}")
                self.stat_update("samples")
                yield sample_to_document(sample)
        exclusions.close()
        counts.save(self.counts_folder, rank)


def _group_by_repository(documents) -> Iterator[list[Document]]:
    group: list[Document] = []
    for document in documents:
        if group and document.metadata["repo"] != group[0].metadata["repo"]:
            yield group
            group = []
        group.append(document)
    if group:
        yield group


def sample_to_document(sample: RepoSample) -> Document:
    return Document(
        text=sample.text,
        id=sample.sample_id,
        metadata={
            "repo": sample.repo,
            "files": sample.files,
            "languages": sample.languages,
            "source": sample.source,
            "kind": sample.kind,
            "part": sample.part,
            "offsets": sample.offsets,
        },
    )


# -----------------------------------------------------------------------------
# the output


def output_record(writer, document: Document) -> dict:
    """The output line of a sample: text, id, repo, files (in text order), offsets (where each file starts in
    text), languages, source, kind, part."""
    return {"text": document.text, "id": document.id, **{key: document.metadata[key] for key in OUTPUT_METADATA}}


def near_duplicate_record(writer, document: Document) -> dict:
    """The exclusion line of a sample that near-dedup removed (its survivor is in `clusters.jsonl`)."""
    return {
        "repo": document.metadata["repo"],
        "path": "",
        "stage": "near-dedup",
        "reason": "near-duplicate",
        "detail": f"sample {document.id}",
        "files": document.metadata["files"],
    }


OUTPUT_METADATA = ("repo", "files", "offsets", "languages", "source", "kind", "part")


class CountOutput(PipelineStep):
    """Counts the samples that reach the output (per kind: samples, bytes; per language: files), passes them on."""

    name = "🧮 count output"
    type = "📊 - STATS"

    def __init__(self, counts_folder: DataFolderLike) -> None:
        super().__init__()
        self.counts_folder = counts_folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counts = StageCounts()
        for document in data or ():
            kind = document.metadata["kind"]
            counts.add(f"output_samples:{kind}")
            counts.add(f"output_bytes:{kind}", len(document.text.encode("utf-8")))
            for language in document.metadata["languages"]:
                counts.add(f"output_files:{language}")
            yield document
        counts.save(self.counts_folder, rank)


class SplitHeldout(PipelineStep):
    """Writes the samples of held-out repositories to `heldout/<kind>/` (the output format) and passes the others on
    to the training output; counts what it holds out (per kind: samples, bytes; repositories)."""

    name = "🔀 held-out split"
    type = "🔢 - SPLIT"

    def __init__(self, rule: HeldoutRule, heldout_folder: DataFolderLike, counts_folder: DataFolderLike) -> None:
        super().__init__()
        self.rule = rule
        self.heldout_folder = heldout_folder
        self.counts_folder = counts_folder

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        counts = StageCounts()
        writer = None
        repositories: set[str] = set()
        for document in data or ():
            metadata = document.metadata
            if not self.rule.holds_out(metadata["repo"], metadata["source"]):
                yield document
                continue
            if writer is None:
                writer = shard_writer(self.heldout_folder, "${kind}/${rank}.jsonl.zst", adapter=output_record)
            writer.write(document, rank)
            repositories.add(metadata["repo"])
            counts.add(f"heldout_samples:{metadata['kind']}")
            counts.add(f"heldout_bytes:{metadata['kind']}", len(document.text.encode("utf-8")))
            for language in metadata["languages"]:
                counts.add(f"heldout_files:{language}")
        for repository in repositories:
            counts.add(f"heldout_repository:{repository}")
        if writer is not None:
            writer.close()
        counts.save(self.counts_folder, rank)
