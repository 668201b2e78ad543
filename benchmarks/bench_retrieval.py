"""Repository retrieval benchmark: how often the defining chunk is retrieved, and how fast, against rank_bm25.

Hit rate (`--hit-rate`, on by default): each stdlib package of `--packages` (tests left out) is one repository,
indexed with `RepositoryRetriever.from_files`. Cursors (`repolm.infer.retrieval_evaluation.definition_cursors`):
calls of a function or class that another file of the package defines at its top level and the calling file
imports by name, one per (file, name), either just after `name(` ("call": the name is typed) or at the start of
that line ("line": the line is still to write). A hit is the chunk holding the `def`/`class` line among the top 5.
The configurations go from CrossCodeEval's plain BM25 (identifiers, no definitions, no imports) to repolm's default,
one change at a time; the last rows index the whole stdlib as one repository (87K chunks) for the same cursors.

Speed (`--speed`, on by default), in one run on the same chunks and queries:
- index: `RepositoryRetriever(stdlib folder)` (walk, read, tokenize, import graph, BM25 matrix), also without the
  import graph; a `refresh()` with nothing changed and with one file changed; bm25s's own `BM25.index` on the
  same token ids (the BM25 matrix alone); rank_bm25: `code_tokens` of the same chunk texts, then `BM25Okapi`.
- query: `retrieve` (top 5, imports, filters) at random cursors of the indexed files (seeded); bm25s's own
  `retrieve` (k=5) on the same index and the same query tokens (both: the fastest of 3 passes over the queries);
  rank_bm25's `get_scores` + top 5 (one pass over `--rank-bm25-queries` of the same queries: it scores every
  chunk in Python).
Sizes: the whole stdlib folder (every source file the retriever indexes, tests included) and its first files by
path up to 50,000 chunks. Goal: <= 1 ms per query at 50K chunks.

Run: `python benchmarks/bench_retrieval.py [--json FILE] [--no-hit-rate] [--no-speed] [--queries N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import sysconfig
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import bm25s
import numpy as np
from rank_bm25 import BM25Okapi
from tqdm import tqdm

from repolm.infer.retrieval import (
    DEFINITION_PREFIX,
    ContextSnippet,
    RepositoryRetriever,
    RetrievalConfig,
    code_tokens,
)
from repolm.infer.retrieval_evaluation import POSITIONS, definition_cursors, hit_count

STDLIB = Path(sysconfig.get_paths()["stdlib"])
PACKAGES = "email,json,http,asyncio,concurrent,importlib,xml,logging,multiprocessing,unittest,urllib,lib2to3,idlelib"
TEST_FOLDERS = {"test", "tests", "idle_test"}
PLAIN = {"definition_weight": 0.0, "cursor_line_weight": 1.0}
CONFIGURATIONS = [
    ("BM25, identifiers (CrossCodeEval)", {"tokenization": "identifiers", "use_imports": False, **PLAIN}),
    ("BM25, identifiers + sub-tokens", {"use_imports": False, **PLAIN}),
    ("  + imports", PLAIN),
    ("BM25 + definitions + cursor line, identifiers", {"tokenization": "identifiers", "use_imports": False}),
    ("BM25 + definitions + cursor line, sub-tokens", {"tokenization": "subtokens", "use_imports": False}),
    ("BM25 + definitions + cursor line, both", {"use_imports": False}),
    ("  + imports (2, 1.5): default", {}),
    ("  + imports as strict tiers (1000, 100)", {"direct_import_boost": 1000.0, "transitive_import_boost": 100.0}),
    ("  + imports, direct only", {"max_import_depth": 1}),
    ("  + imports, identifiers", {"tokenization": "identifiers"}),
    ("  + imports, sub-tokens", {"tokenization": "subtokens"}),
]
CHUNKS_50K = 50_000


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    packages = ", ".join(f"{name} {version(name)}" for name in ("numpy", "bm25s", "rank-bm25"))
    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; {packages}"


def package_files(package: str) -> dict[str, str]:
    """A stdlib package's .py files (tests left out), keyed by their path relative to the stdlib."""
    files = {}
    for path in sorted((STDLIB / package).rglob("*.py")):
        relative = path.relative_to(STDLIB)
        if not TEST_FOLDERS & set(relative.parts):
            files[relative.as_posix()] = path.read_text(encoding="utf-8")
    return files


def rate(hits: int, total: int) -> dict[str, float]:
    return {"hits": hits, "total": total, "rate": hits / total if total else 0.0}


def hit_rates(packages: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    repositories = {package: package_files(package) for package in packages}
    cursors = {
        position: {package: definition_cursors(files, position) for package, files in repositories.items()}
        for position in POSITIONS
    }
    totals = {position: sum(map(len, found.values())) for position, found in cursors.items()}
    print(f"\n## Hit rate: defining chunk in the top 5 ({len(packages)} stdlib packages; cursors: {totals})\n")
    print("| configuration | after `name(` | at line start |\n|---|---|---|")
    results = {}
    for label, options in tqdm(CONFIGURATIONS, desc="configurations", leave=False):
        config = RetrievalConfig(**options)
        retrievers = {package: RepositoryRetriever.from_files(files, config) for package, files in repositories.items()}
        results[label] = {
            position: rate(sum(hit_count(retrievers[p], cursors[position][p]) for p in packages), totals[position])
            for position in POSITIONS
        }
        print(f"| {label} | " + " | ".join(_rate_text(results[label][position]) for position in POSITIONS) + " |")
    for use_imports in (False, True):
        label = f"whole stdlib as one repository, {'default' if use_imports else 'without imports'}"
        retriever = RepositoryRetriever(STDLIB, RetrievalConfig(use_imports=use_imports))
        results[label] = {
            position: rate(sum(hit_count(retriever, found) for found in cursors[position].values()), totals[position])
            for position in POSITIONS
        }
        print(f"| {label} | " + " | ".join(_rate_text(results[label][position]) for position in POSITIONS) + " |")
    return results


def _rate_text(figure: dict[str, float]) -> str:
    return f"{figure['rate']:.3f} ({figure['hits']}/{figure['total']})"


def random_cursors(files: dict[str, str], count: int, seed: int) -> list[tuple[str, str, str]]:
    """(path, prefix, suffix) at `count` seeded random positions inside lines of the files with 20+ lines."""
    generator = random.Random(seed)
    paths = sorted(path for path, text in files.items() if text.count("\n") >= 20)
    cursors = []
    while len(cursors) < count:
        path = generator.choice(paths)
        text = files[path]
        lines = text.split("\n")
        line = generator.randrange(10, len(lines) - 1)
        cut = sum(len(before) + 1 for before in lines[:line]) + generator.randrange(len(lines[line]) + 1)
        if query_tokens(text[:cut]):
            cursors.append((path, text[:cut], text[cut:]))
    return cursors


def files_of(chunks: list[ContextSnippet], limit: int | None = None) -> dict[str, str]:
    """The texts of the files the chunks cover (the first files in index order up to `limit` chunks)."""
    parts: dict[str, list[str]] = {}
    for count, chunk in enumerate(chunks):
        if limit is not None and count >= limit and chunk.path not in parts:
            break
        parts.setdefault(chunk.path, []).append(chunk.text)
    return {path: "".join(texts) for path, texts in parts.items()}


def query_tokens(prefix: str, lines: int = 10) -> list[str]:
    """The distinct tokens repolm queries with: those of the last lines, and the definition token of each name."""
    text = "\n".join(prefix.rsplit("\n", lines)[-lines:])
    names = code_tokens(text, "identifiers", definitions=False)
    return list(dict.fromkeys(code_tokens(text, definitions=False) + [DEFINITION_PREFIX + name for name in names]))


def seconds(function, *arguments):
    started = time.perf_counter()
    result = function(*arguments)
    return time.perf_counter() - started, result


def per_query_ms(function, queries, desc: str, passes: int = 3) -> float:
    """Milliseconds per query: the mean over the queries of the fastest of `passes` passes (the machine is shared;
    the fastest pass is the one least disturbed)."""
    means = []
    for _ in range(passes):
        started = time.perf_counter()
        for query in tqdm(queries, desc=desc, leave=False):
            function(query)
        means.append((time.perf_counter() - started) / len(queries) * 1e3)
    return min(means)


def speed_at(label: str, retriever: RepositoryRetriever, index_seconds: float, queries: int, rank_queries: int) -> dict:
    chunks = retriever.chunks()
    files = files_of(chunks)
    cursors = random_cursors(files, queries, seed=13)
    figures = {"chunks": len(chunks), "files": len(files), "repolm_index_s": index_seconds}
    figures["repolm_query_ms"] = per_query_ms(lambda cursor: retriever.retrieve(*cursor), cursors, "repolm queries")

    vocabulary = retriever.index.vocab_dict
    tokenize_seconds, corpus_tokens = seconds(
        lambda: [code_tokens(chunk.text, retriever.config.tokenization) for chunk in chunks]
    )
    corpus_ids = [[vocabulary[token] for token in tokens] for tokens in corpus_tokens]
    reference = bm25s.BM25(method="lucene")
    figures["bm25s_index_s"], _ = seconds(lambda: reference.index((corpus_ids, dict(vocabulary)), show_progress=False))
    tokenized = [[token for token in query_tokens(prefix) if token in vocabulary] for _, prefix, _ in cursors]
    retrieve = retriever.index.retrieve
    figures["bm25s_query_ms"] = per_query_ms(
        lambda tokens: retrieve([tokens], k=5, show_progress=False, n_threads=0), tokenized, "bm25s queries"
    )
    okapi_seconds, okapi = seconds(BM25Okapi, corpus_tokens)
    figures["rank_bm25_index_s"] = tokenize_seconds + okapi_seconds  # from the same texts, tokenized the same way
    figures["rank_bm25_tokenize_s"], figures["rank_bm25_okapi_s"] = tokenize_seconds, okapi_seconds

    def rank_bm25_query(tokens: list[str]) -> np.ndarray:
        scores = okapi.get_scores(tokens)
        return np.argpartition(scores, -5)[-5:]

    figures["rank_bm25_query_ms"] = per_query_ms(
        rank_bm25_query, tokenized[:rank_queries], "rank_bm25 queries", passes=1
    )
    figures["rank_bm25_queries"] = min(rank_queries, len(tokenized))
    figures["query_speedup_vs_rank_bm25"] = figures["rank_bm25_query_ms"] / figures["repolm_query_ms"]
    figures["index_speedup_vs_rank_bm25"] = figures["rank_bm25_index_s"] / index_seconds
    print(
        f"| {label} | {len(chunks):,} | {index_seconds:.2f} s | {figures['bm25s_index_s']:.2f} s "
        f"| {figures['rank_bm25_index_s']:.2f} s ({okapi_seconds:.2f} s without tokenizing) "
        f"| {figures['repolm_query_ms']:.3f} ms "
        f"| {figures['bm25s_query_ms']:.3f} ms | {figures['rank_bm25_query_ms']:.1f} ms "
        f"| {figures['query_speedup_vs_rank_bm25']:.0f}x |"
    )
    return figures


def refresh_figures() -> dict[str, float]:
    """refresh() on a copy of the stdlib: nothing changed, then one file changed (re-tokenized, BM25 rebuilt)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "stdlib"
        shutil.copytree(STDLIB, copy, ignore=shutil.ignore_patterns("site-packages", "__pycache__"), symlinks=True)
        retriever = RepositoryRetriever(copy)
        unchanged, count = seconds(retriever.refresh)
        assert count == 0
        target = copy / "email" / "utils.py"
        target.write_text(target.read_text() + "\n\ndef added_helper():\n    return None\n")
        one_changed, count = seconds(retriever.refresh)
        assert count == 1
    return {"refresh_unchanged_s": unchanged, "refresh_one_file_s": one_changed}


def speed(queries: int, rank_queries: int) -> dict:
    print("\n## Speed (index: walk + read + tokenize + import graph + BM25 matrix; query: top 5)\n")
    print(
        "| corpus | chunks | repolm index | bm25s index() | rank_bm25 index | repolm query | bm25s retrieve "
        "| rank_bm25 query | query ratio |\n|---|---|---|---|---|---|---|---|---|"
    )
    without_imports, _ = seconds(RepositoryRetriever, STDLIB, RetrievalConfig(use_imports=False))
    index_seconds, whole = seconds(RepositoryRetriever, STDLIB)
    results = {"whole_stdlib": speed_at("whole stdlib", whole, index_seconds, queries, rank_queries)}
    results["whole_stdlib"]["repolm_index_without_imports_s"] = without_imports
    index_seconds, subset = seconds(RepositoryRetriever.from_files, files_of(whole.chunks(), CHUNKS_50K))
    results["50k_chunks"] = speed_at("stdlib, first 50K chunks", subset, index_seconds, queries, rank_queries)
    results.update(refresh_figures())
    print(
        f"\nwhole stdlib index without the import graph: {without_imports:.2f} s; refresh() on the stdlib: "
        f"{results['refresh_unchanged_s'] * 1e3:.0f} ms with nothing changed, {results['refresh_one_file_s']:.2f} s "
        "with one file changed (re-tokenized, its imports resolved again, the BM25 matrix rebuilt)"
    )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--no-hit-rate", dest="hit_rate", action="store_false", help="skip the hit-rate part")
    parser.add_argument("--no-speed", dest="speed", action="store_false", help="skip the speed part")
    parser.add_argument("--packages", default=PACKAGES, help="comma-separated stdlib packages for the hit rate")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries per corpus (repolm, bm25s)")
    parser.add_argument("--rank-bm25-queries", type=int, default=30, help="timed rank_bm25 queries per corpus")
    arguments = parser.parse_args()
    figures: dict = {"machine": machine_description()}
    print(f"# Retrieval benchmark\n\n{figures['machine']}")
    if arguments.hit_rate:
        figures["hit_rate"] = hit_rates(arguments.packages.split(","))
    if arguments.speed:
        figures["speed"] = speed(arguments.queries, arguments.rank_bm25_queries)
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
