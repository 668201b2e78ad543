"""MinHash near-dedup on datatrove: the four stages under LocalPipelineExecutor keep exactly the documents that the
in-memory reference keeps, whatever the number of shards, run after run; the 32-bit bucket range is complete."""

from __future__ import annotations

import gzip
import json
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from datatrove.data import Document
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter

from repolm.data.dedup_steps import (
    CLUSTERS_REPORT,
    RepoMinhashBuckets,
    RepoMinhashCluster,
    RepoMinhashSignature,
    minhash_pipelines,
)
from repolm.data.minhash import (
    MinHashConfig,
    minhash_signature,
    near_duplicate_clusters,
    shingle_hashes,
)
from repolm.data.minhash_evaluation import plant_near_duplicate
from repolm.errors import RepolmError

INPUT_FILES = 6


def corpus_documents() -> list[tuple[str, str]]:
    """(id, text): 30 stdlib modules, mutated copies at Jaccard 0.45..0.95, exact copies, a length tie, tiny files."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [path for path in sorted(root.glob("*.py")) if 3_000 <= path.stat().st_size <= 20_000]
    if len(files) < 60:
        pytest.skip(f"the Python stdlib is not at {root}")
    originals = [(path.name, path.read_text(encoding="utf-8", errors="replace")) for path in files[::2][:30]]
    documents = list(originals)
    targets = [0.45, 0.6, 0.75, 0.8, 0.9, 0.95]
    for position, (name, text) in enumerate(originals[:18]):
        copy, _ = plant_near_duplicate(text, targets[position % len(targets)], seed=position)
        documents.append((f"{name}~near", copy))
    for name, text in originals[18:21]:
        documents.append((f"{name}~exact", text))
    name, text = originals[21]
    documents.append((f"{name}~tie", text.replace("\n", "\r", 1)))  # same length and words: the smaller id survives
    documents += [("tiny-a", "x = 1\n"), ("tiny-b", "x = 1\n")]  # below min_ngrams: both kept
    return documents


def write_input(folder: Path, documents: list[tuple[str, str]]) -> None:
    """Documents dealt round-robin into INPUT_FILES jsonl files (so 3 tasks get 2 files each)."""
    folder.mkdir(parents=True)
    for file_index in range(INPUT_FILES):
        lines = [
            json.dumps({"id": identifier, "text": text}) for identifier, text in documents[file_index::INPUT_FILES]
        ]
        (folder / f"part_{file_index:02d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_ids(folder: Path) -> set[str]:
    ids = set()
    for path in folder.glob("*.jsonl.gz"):
        with gzip.open(path, "rt", encoding="utf-8") as file:
            ids.update(json.loads(line)["id"] for line in file)
    return ids


def run_near_dedup(
    input_folder: Path, working_folder: Path, tasks: int, config: MinHashConfig
) -> tuple[set[str], set[str]]:
    """All four stages with LocalPipelineExecutor (workers=1); returns the ids of the kept and removed documents."""
    output_folder = working_folder / "kept"
    pipelines = minhash_pipelines(
        lambda: JsonlReader(str(input_folder), glob_pattern="*.jsonl"),
        working_folder / "work",
        config,
        output_steps=[JsonlWriter(str(output_folder))],
        exclusion_writer=JsonlWriter(str(working_folder / "removed")),
    )
    signatures, buckets, clusters, kept = pipelines
    for stage, (steps, stage_tasks) in enumerate(
        [(signatures, tasks), (buckets, pipelines.bucket_tasks), (clusters, 1), (kept, tasks)], start=1
    ):
        LocalPipelineExecutor(
            steps, tasks=stage_tasks, workers=1, logging_dir=str(working_folder / "logs" / f"stage{stage}")
        ).run()
    return read_ids(output_folder), read_ids(working_folder / "removed")


def test_datatrove_stages_match_the_reference_across_shards_and_runs(tmp_path: Path) -> None:
    documents = corpus_documents()
    config = MinHashConfig()
    ids = [identifier for identifier, _ in documents]
    clusters = near_duplicate_clusters(ids, [text for _, text in documents], config)
    removed = {identifier for cluster in clusters for identifier in cluster[1:]}
    expected_kept = set(ids) - removed
    assert len(clusters) >= 10 and len(removed) >= 10
    assert {"tiny-a", "tiny-b"} <= expected_kept
    tie = next(cluster for cluster in clusters if any(member.endswith("~tie") for member in cluster))
    assert not tie[0].endswith("~tie")  # equal length: "name.py" < "name.py~tie"

    input_folder = tmp_path / "input"
    write_input(input_folder, documents)
    outcome_one_shard = run_near_dedup(input_folder, tmp_path / "one", tasks=1, config=config)
    outcome_three_shards = run_near_dedup(input_folder, tmp_path / "three", tasks=3, config=config)
    outcome_again = run_near_dedup(input_folder, tmp_path / "three-again", tasks=3, config=config)
    assert outcome_one_shard == outcome_three_shards == outcome_again == (expected_kept, removed)

    reports = [
        (tmp_path / run / "work" / "clusters" / CLUSTERS_REPORT).read_bytes() for run in ("one", "three", "three-again")
    ]
    assert reports[0] == reports[1] == reports[2]
    report = [json.loads(line) for line in reports[0].decode().splitlines()]
    assert [[line["survivor"], *line["removed"]] for line in report] == clusters
    assert all(
        line["size"] == len(line["removed"]) + 1 and 0.7 <= line["min_jaccard"] <= line["max_jaccard"]
        for line in report
    )
    for run in ("three", "three-again"):  # same sharding, same bytes
        for remove_file in sorted((tmp_path / "three" / "work" / "clusters").glob("*.remove")):
            assert (tmp_path / run / "work" / "clusters" / remove_file.name).read_bytes() == remove_file.read_bytes()
    assert not [path for path in (tmp_path / "one" / "work").rglob("*") if "_scratch" in path.name]
    assert len(list((tmp_path / "three" / "work" / "signatures" / "documents").glob("*.keys.jsonl"))) == 3


def test_signature_step_matches_the_core_and_writes_what_the_cluster_step_reads(tmp_path: Path) -> None:
    config = MinHashConfig()
    step = RepoMinhashSignature(str(tmp_path / "signatures"), config)
    text = "def area(width, height):\n    return width * height  # rectangle\n\nprint(area(2, 3))\n"
    shingles = step.get_shingles(text)
    assert shingles.shape == (len(shingle_hashes(text)), 1) and shingles.dtype == np.uint64
    bands = step.get_signature(shingles)
    assert len(bands) == 42 and all(len(band) == 6 for band in bands)
    assert sum(bands, []) == minhash_signature(text, config)[:252].tolist()

    documents = [Document(text=text, id="a"), Document(text="x = 1", id="short"), Document(text=text + "\n", id="b")]
    step.run(iter(documents), rank=2, world_size=3)
    folder = tmp_path / "signatures"
    keys = [json.loads(line) for line in (folder / "documents" / "00002.keys.jsonl").read_text().splitlines()]
    assert keys == [{"index": 0, "id": "a", "length": len(text)}, {"index": 2, "id": "b", "length": len(text) + 1}]
    signatures = np.load(folder / "documents" / "00002.signatures.npy")
    assert signatures.shape == (2, 256) and np.array_equal(signatures[0], minhash_signature(text, config))
    records = np.frombuffer((folder / "bucket_041" / "00002.minhash.sig").read_bytes(), dtype="<u4").reshape(-1, 7)
    assert records[:, 6].tolist() == [0, 2] and np.array_equal(records[0, :6], signatures[0, 246:252])
    assert sorted(path.name for path in folder.iterdir()) == ["bucket_" + f"{band:03d}" for band in range(42)] + [
        "documents"
    ]


def test_bucket_step_reads_bands_that_start_with_the_largest_32_bit_value(tmp_path: Path) -> None:
    """datatrove's own range ends at 0xFFFFFFFF (exclusive) for 32-bit files; RepoMinhashBuckets reads it too."""
    config = MinHashConfig(num_permutations=4, bands=2, rows=2, min_ngrams=1)
    largest = 0xFFFFFFFF
    records = np.array([[5, 6, 0], [largest, 1, 3], [largest, 1, 7]], dtype="<u4")
    for band in range(2):
        path = tmp_path / "signatures" / f"bucket_{band:03d}" / "00000.minhash.sig"
        path.parent.mkdir(parents=True)
        path.write_bytes(records.tobytes())
    step = RepoMinhashBuckets(str(tmp_path / "signatures"), str(tmp_path / "buckets"), config)
    assert step.get_worker_hash_range([], rank=1, world_size=2) == (0, 1 << 32)
    step.run(rank=1, world_size=2)
    pairs = np.frombuffer((tmp_path / "buckets" / "00001_00.dups").read_bytes(), dtype="<u4").reshape(-1, 4)
    assert pairs.tolist() == [[0, 3, 0, 7]]


def test_cluster_step_refuses_several_tasks_and_missing_signatures(tmp_path: Path) -> None:
    step = RepoMinhashCluster(str(tmp_path / "buckets"), str(tmp_path / "signatures"), str(tmp_path / "out"))
    with pytest.raises(RepolmError, match="single task"):
        step.run(rank=0, world_size=2)
    (tmp_path / "buckets").mkdir()
    pairs = np.array([[0, 1, 0, 2]], dtype="<u4")
    (tmp_path / "buckets" / "00000_00.dups").write_bytes(pairs.tobytes())
    with pytest.raises(RepolmError, match="00000.keys.jsonl"):
        step.run(rank=0, world_size=1)
    (tmp_path / "buckets" / "00000_00.dups").unlink()
    step.run(rank=0, world_size=1)  # no pairs: an empty report and no .remove files
    assert (tmp_path / "out" / CLUSTERS_REPORT).read_text() == ""
    assert not list((tmp_path / "out").glob("*.remove"))
