"""Data pipeline benchmarks: the whole `repolm data build` on the stdlib (MB/s), and repolm's MinHash near-dedup
core against datasketch on the same files with the same parameters (speed ratio, precision/recall/F1).

Pipeline part: `run_build` on the Python standard library as the default corpus reads it (each top-level package a
repository, tests left out), every stage (screen, exact dedup, assembly, MinHash, output, summary), local executor,
one task per CPU core; the figure is input MB over wall seconds, with the seconds of each stage.

MinHash part:

Corpus: every .py file of the running Python's stdlib (tests included, site-packages excluded; `--no-tests`
drops `test/`, `tests/` and `idlelib/idle_test/`), plus planted near-duplicates: mutated copies of
`--planted` real files (`plant_near_duplicate`) at exact word-5-gram Jaccard similarities spread evenly over
0.30..0.95. A pair is a near-duplicate when its exact Jaccard is >= 0.7.

Both systems get the texts in memory and produce clusters, each with BigCode's balanced 25 bands x 10 rows and
with repolm's default 42 x 6 (recall-first bands, then verification at the threshold):
- datasketch: the same shingles (BigCode's word 5-grams as UTF-8 strings) fed to `MinHash(num_perm=256, seed=42)`
  with `update_batch`, `MinHashLSH(threshold=0.7, num_perm=256, params=(bands, rows))`, a query per document for
  candidate pairs, optionally verified by `MinHash.jaccard`, union-find. Timed from the texts, shingling included.
- repolm: `near_duplicate_clusters` (vectorised shingles and signatures, the same bands, verification of
  candidate pairs by estimated Jaccard, union-find). Timed from the texts.

Quality is measured on the planted pairs (original, copy): predicted near-duplicate when both end in one
cluster. The table gives precision/recall/F1 over all planted pairs and over those outside [0.6, 0.8) (the band
where the 25 x 10 S-curve is between 0.14 and 0.94), then the share predicted per Jaccard bin.
`--datatrove TASKS` also times the four datatrove stages (`repolm.data.dedup_steps`) on the unplanted corpus.
Run: `python benchmarks/bench_data.py` (options: --no-tests, --planted N, --seed N, --datatrove TASKS, --json FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import machine_description
from repolm.data.minhash import (
    WORD_PATTERN,
    DisjointSets,
    MinHashConfig,
    near_duplicate_clusters,
)
from repolm.data.minhash_evaluation import candidate_probability, plant_near_duplicate

TEST_FOLDERS = {"test", "tests", "idle_test"}
JACCARD_TARGETS = [round(0.30 + 0.05 * step, 2) for step in range(14)]  # 0.30, 0.35, ..., 0.95


def load_stdlib_documents(include_tests: bool) -> list[tuple[str, str]]:
    """(path relative to the stdlib, text) of every stdlib .py file, sorted; site-packages excluded."""
    root = Path(sysconfig.get_paths()["stdlib"])
    documents = []
    for folder, folder_names, file_names in os.walk(root):
        folder_names[:] = sorted(
            name
            for name in folder_names
            if name not in {"site-packages", "dist-packages", "__pycache__"}
            and (include_tests or name not in TEST_FOLDERS)
        )
        for name in sorted(file_names):
            if name.endswith(".py"):
                path = Path(folder, name)
                try:
                    documents.append((str(path.relative_to(root)), path.read_text(encoding="utf-8")))
                except (UnicodeDecodeError, OSError):
                    continue  # a handful of test files are deliberately undecodable
    return documents


def plant_documents(
    documents: list[tuple[str, str]], count: int, seed: int
) -> tuple[list[tuple[str, str]], list[tuple[str, str, float]]]:
    """The documents plus `count` mutated copies of real files; returns (documents, [(original, copy, jaccard)])."""
    word_counts = [len(WORD_PATTERN.findall(text)) for _, text in documents]
    candidates = [
        position
        for position, (_, text) in enumerate(documents)
        if word_counts[position] >= 300 and len(text) <= 100_000
    ]
    chosen = [candidates[int(step * len(candidates) / count)] for step in range(count)]
    planted, pairs = list(documents), []
    for step, position in enumerate(chosen):
        name, text = documents[position]
        copy, similarity = plant_near_duplicate(text, JACCARD_TARGETS[step % len(JACCARD_TARGETS)], seed=seed + step)
        planted.append((f"{name}~copy", copy))
        pairs.append((name, f"{name}~copy", similarity))
    return planted, pairs


def clusters_from_pairs(ids: list[str], pairs: list[tuple[int, int]]) -> list[list[str]]:
    sets = DisjointSets(len(ids))
    for first, second in pairs:
        sets.union(first, second)
    members: dict[int, list[str]] = {}
    for position in range(len(ids)):
        members.setdefault(sets.find(position), []).append(ids[position])
    return [cluster for cluster in members.values() if len(cluster) > 1]


def run_datasketch(ids: list[str], texts: list[str], config: MinHashConfig, verify: bool = False) -> list[list[str]]:
    """datasketch MinHash + MinHashLSH on BigCode's word 5-gram strings; optionally the same verification."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_permutations, params=(config.bands, config.rows))
    sketches: dict[int, MinHash] = {}
    for position, text in enumerate(texts):
        words = WORD_PATTERN.findall(text)
        size = config.ngram_size
        shingles = {" ".join(words[start : start + size]).encode("utf-8") for start in range(len(words) - size + 1)}
        if len(shingles) < config.min_ngrams:
            continue
        sketch = MinHash(num_perm=config.num_permutations, seed=config.seed)
        sketch.update_batch(list(shingles))
        sketches[position] = sketch
        lsh.insert(position, sketch)
    pairs = []
    for position, sketch in sketches.items():
        for other in lsh.query(sketch):
            if other > position and (not verify or sketch.jaccard(sketches[other]) >= config.threshold):
                pairs.append((position, other))
    return clusters_from_pairs(ids, pairs)


def pair_quality(clusters: list[list[str]], pairs: list[tuple[str, str, float]], threshold: float, keep=None) -> dict:
    """Precision, recall and F1 over the planted pairs (those `keep(jaccard)` selects)."""
    cluster_of = {member: index for index, cluster in enumerate(clusters) for member in cluster}
    counts = {"true_positive": 0, "false_positive": 0, "false_negative": 0, "pairs": 0}
    for original, copy, similarity in pairs:
        if keep is not None and not keep(similarity):
            continue
        counts["pairs"] += 1
        predicted = original in cluster_of and cluster_of[original] == cluster_of.get(copy)
        actual = similarity >= threshold
        counts["true_positive"] += predicted and actual
        counts["false_positive"] += predicted and not actual
        counts["false_negative"] += actual and not predicted
    found = counts["true_positive"] + counts["false_positive"]
    relevant = counts["true_positive"] + counts["false_negative"]
    precision = counts["true_positive"] / found if found else 1.0
    recall = counts["true_positive"] / relevant if relevant else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {**counts, "precision": precision, "recall": recall, "f1": f1}


def predicted_share_by_bin(clusters: list[list[str]], pairs: list[tuple[str, str, float]]) -> dict[str, float]:
    cluster_of = {member: index for index, cluster in enumerate(clusters) for member in cluster}
    shares = {}
    for low in np.arange(0.25, 1.0, 0.05):
        selected = [(a, b) for a, b, similarity in pairs if low <= similarity < low + 0.05]
        if selected:
            together = sum(a in cluster_of and cluster_of[a] == cluster_of.get(b) for a, b in selected)
            shares[f"{low:.2f}"] = together / len(selected)
    return shares


def minhash_benchmark(include_tests: bool = True, planted: int = 280, seed: int = 0) -> dict:
    """Run both systems (and repolm variants) on the planted corpus; returns every figure the table shows."""
    documents, pairs = plant_documents(load_stdlib_documents(include_tests), planted, seed)
    ids = [name for name, _ in documents]
    texts = [text for _, text in documents]
    megabytes = sum(len(text.encode("utf-8")) for text in texts) / 1e6
    config = MinHashConfig()  # the default: 42 x 6 + verification
    balanced = MinHashConfig(bands=25, rows=10)  # BigCode's / datasketch's balanced choice for (0.7, 256)
    outside_band = lambda similarity: similarity < 0.6 or similarity >= 0.8  # noqa: E731
    systems = [
        ("datasketch MinHash+LSH 25x10", lambda: run_datasketch(ids, texts, balanced)),
        ("datasketch 25x10 + verification", lambda: run_datasketch(ids, texts, balanced, verify=True)),
        ("repolm 25x10 + verification", lambda: near_duplicate_clusters(ids, texts, balanced)),
        ("repolm 25x10, no verification", lambda: near_duplicate_clusters(ids, texts, MinHashConfig(verify=False))),
        ("datasketch 42x6 + verification", lambda: run_datasketch(ids, texts, config, verify=True)),
        ("repolm 42x6 + verification (default)", lambda: near_duplicate_clusters(ids, texts, config)),
    ]
    results = []
    for name, run in systems:
        start = time.perf_counter()
        clusters = run()
        seconds = time.perf_counter() - start
        results.append(
            {
                "system": name,
                "seconds": seconds,
                "files_per_second": len(texts) / seconds,
                "megabytes_per_second": megabytes / seconds,
                "all_pairs": pair_quality(clusters, pairs, config.threshold),
                "outside_band": pair_quality(clusters, pairs, config.threshold, outside_band),
                "share_by_bin": predicted_share_by_bin(clusters, pairs),
            }
        )
    return {
        "machine": machine_description(("numpy", "datasketch", "datatrove", "xxhash")),
        "files": len(texts),
        "planted_pairs": len(pairs),
        "positive_pairs": sum(similarity >= config.threshold for *_, similarity in pairs),
        "megabytes": megabytes,
        "include_tests": include_tests,
        "results": results,
        "speedup": results[0]["seconds"] / results[2]["seconds"],
        "speedup_default": results[4]["seconds"] / results[5]["seconds"],
    }


def datatrove_benchmark(documents: list[tuple[str, str]], working_folder: Path, tasks: int) -> dict[str, float]:
    """Seconds of each of the four datatrove stages (LocalPipelineExecutor, one worker) over `documents`."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    from repolm.data.dedup_steps import minhash_pipelines

    input_folder = working_folder / "input"
    input_folder.mkdir(parents=True)
    for shard in range(tasks):
        lines = (json.dumps({"id": name, "text": text}) + "\n" for name, text in documents[shard::tasks])
        (input_folder / f"{shard:03d}.jsonl").write_text("".join(lines), encoding="utf-8")
    pipelines = minhash_pipelines(
        lambda: JsonlReader(str(input_folder)),
        working_folder / "work",
        output_steps=[JsonlWriter(str(working_folder / "kept"))],
    )
    seconds = {}
    names = ["1 signatures", "2 buckets", "3 clusters", "4 filter"]
    for name, steps, stage_tasks in zip(
        names, pipelines.stages, [tasks, pipelines.bucket_tasks, 1, tasks], strict=True
    ):
        start = time.perf_counter()
        logging_dir = str(working_folder / "logs" / name.replace(" ", "-"))
        LocalPipelineExecutor(steps, tasks=stage_tasks, workers=1, logging_dir=logging_dir).run()
        seconds[name] = time.perf_counter() - start
    return seconds


def pipeline_benchmark(working_folder: Path) -> dict:
    """Runs the whole data build on the stdlib; returns its stats.json (input size, seconds per stage, MB/s)."""
    from repolm.data.config import BuildConfig, RunConfig
    from repolm.data.pipeline import run_build
    from repolm.data.sources import SourceConfig

    cores = os.cpu_count() or 1
    config = BuildConfig(
        sources=[SourceConfig(name="stdlib", format="stdlib")], run=RunConfig(tasks=cores, workers=cores)
    )
    start = time.perf_counter()
    output = run_build(config, working_folder / "build", progress=False)
    wall = time.perf_counter() - start
    stats = json.loads((output / "stats.json").read_text())
    stats["wall_seconds"] = wall
    return stats


def print_pipeline_table(stats: dict) -> None:
    source = stats["input"]
    megabytes = source["bytes"] / 1e6
    print(f"whole pipeline (repolm data build, local executor, {os.cpu_count()} tasks) on the Python stdlib:")
    print(f"  input: {source['repositories']} repositories, {source['files']} files, {megabytes:.1f} MB")
    for name, seconds in stats["seconds"].items():
        if name != "total":
            print(f"  {name:10} {seconds:7.2f} s")
    wall = stats["wall_seconds"]
    print(f"  {'wall':10} {wall:7.2f} s  -> {megabytes / wall:.2f} MB/s (process start-up of every stage included)")
    print()


def print_minhash_table(report: dict) -> None:
    scope = "tests included" if report["include_tests"] else "without tests"
    print(f"MinHash near-dedup ({report['machine']})")
    print(
        f"corpus: {report['files']} files ({scope}), {report['megabytes']:.1f} MB, {report['planted_pairs']} planted "
        f"pairs ({report['positive_pairs']} with exact Jaccard >= 0.7)"
    )
    quality_columns = " ".join(f"{name:>5}" for name in ("P", "R", "F1", "", "P*", "R*", "F1*"))
    header = f"{'system':38} {'seconds':>8} {'files/s':>8} {'MB/s':>7}  {quality_columns}"
    print(header)
    print("-" * len(header))
    for row in report["results"]:
        every, outside = row["all_pairs"], row["outside_band"]
        print(
            f"{row['system']:38} {row['seconds']:8.2f} {row['files_per_second']:8.0f} "
            f"{row['megabytes_per_second']:7.2f}  "
            f"{every['precision']:5.3f} {every['recall']:5.3f} {every['f1']:5.3f}       "
            f"{outside['precision']:5.3f} {outside['recall']:5.3f} {outside['f1']:5.3f}"
        )
    print("P/R/F1: all planted pairs; P*/R*/F1*: pairs with Jaccard < 0.6 or >= 0.8")
    print(f"speed ratio (datasketch / repolm, both 25x10): {report['speedup']:.1f}x")
    print(f"speed ratio (datasketch / repolm, both 42x6 + verification): {report['speedup_default']:.1f}x")
    print()
    bins = list(report["results"][0]["share_by_bin"])
    print("share of planted pairs predicted near-duplicate, by exact Jaccard bin (LSH S-curve at the bin centre)")
    print(f"{'Jaccard bin':38} " + " ".join(f"{label:>5}" for label in bins))
    for bands, rows in ((25, 10), (42, 6)):
        curve = [candidate_probability(float(label) + 0.025, bands, rows) for label in bins]
        print(f"{f'S-curve {bands}x{rows} (theory)':38} " + " ".join(f"{value:5.2f}" for value in curve))
    for row in report["results"]:
        print(f"{row['system']:38} " + " ".join(f"{row['share_by_bin'].get(label, 0.0):5.2f}" for label in bins))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-tests", action="store_true", help="leave out the stdlib's test folders")
    parser.add_argument("--planted", type=int, default=280, help="near-duplicate copies to plant")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mutations")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--datatrove", type=int, metavar="TASKS", default=0, help="also time the 4 datatrove stages with TASKS shards"
    )
    parser.add_argument("--no-pipeline", action="store_true", help="skip the whole-pipeline run")
    arguments = parser.parse_args()
    if not arguments.no_pipeline:
        with tempfile.TemporaryDirectory() as folder:
            pipeline_stats = pipeline_benchmark(Path(folder))
        print_pipeline_table(pipeline_stats)
    report = minhash_benchmark(include_tests=not arguments.no_tests, planted=arguments.planted, seed=arguments.seed)
    print_minhash_table(report)
    if not arguments.no_pipeline:
        report["pipeline"] = pipeline_stats
    if arguments.datatrove:
        documents = load_stdlib_documents(not arguments.no_tests)
        with tempfile.TemporaryDirectory() as folder:
            seconds = datatrove_benchmark(documents, Path(folder), arguments.datatrove)
        report["datatrove_stage_seconds"] = seconds
        megabytes = sum(len(text.encode("utf-8")) for _, text in documents) / 1e6
        print()
        print(
            f"datatrove stages, LocalPipelineExecutor, {arguments.datatrove} tasks, 1 worker, {len(documents)} files:"
        )
        for name, value in seconds.items():
            print(f"  {name:14} {value:7.2f} s")
        total = sum(seconds.values())
        print(f"  {'total':14} {total:7.2f} s  ({megabytes / total:.2f} MB/s)")
    if arguments.json:
        arguments.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
