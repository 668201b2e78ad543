"""Held-out baselines that need no model, on real repositories: xz and zstd bits per byte per language, and the BM25
line baseline of single-line infilling (`repolm.eval.heldout_tasks`, `repolm.eval.heldout_infilling`).

Repositories: stdlib packages (Python; files named like tests left out) and `/usr/include` folders (C headers), each
assembled into samples by the data pipeline (`repolm.data.assembly.assemble_repository`) and written as a held-out
folder with the build's writer, so the evaluations read what `repolm data build` writes. Holes: up to
`--lines-per-file` per code file (seeded). With `--model DIR`, the model's bits per byte per language too (on the
first `--max-bytes` bytes) and its line infilling.

Run: `python benchmarks/bench_heldout.py [--model DIR] [--lines-per-file 5] [--max-bytes N] [--json FILE]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sysconfig
import tempfile
import time
from pathlib import Path

from machine import machine_description
from repolm.data.assembly import AssemblyConfig, assemble_repository
from repolm.data.languages import language_of
from repolm.data.records import CodeFile
from repolm.data.steps import output_record, sample_to_document, shard_writer
from repolm.eval.heldout_infilling import baseline_predictions, choose_holes, line_infilling
from repolm.eval.heldout_tasks import bits_per_byte_by_language, compressed_sizes, read_heldout_samples, spread_files
from repolm.eval.text_metrics import edit_similarity, exact_match

STDLIB = Path(sysconfig.get_paths()["stdlib"])
PACKAGES = "json,email,http,asyncio,xml,logging,unittest,importlib,concurrent,sqlite3,urllib,tomllib,zoneinfo,wsgiref"
INCLUDE_FOLDERS = "netinet,arpa,linux/netfilter,sys"
MAX_FILE_CHARACTERS = 200_000


def write_heldout(folder: Path, trees: dict[str, Path]) -> None:
    """The trees' source files (tests and files of no known language left out) as samples of a held-out folder."""
    with shard_writer(str(folder), "${kind}/${rank}.jsonl.zst", adapter=output_record) as writer:
        for repo, root in trees.items():
            files = []
            for path in sorted(root.rglob("*")):
                if not path.is_file() or "test" in path.name or "__pycache__" in path.parts:
                    continue
                relative = path.relative_to(root).as_posix()
                try:
                    text = path.read_text("utf-8")
                except UnicodeDecodeError:
                    continue
                language = language_of(relative, text[:256])
                if language is not None and len(text) <= MAX_FILE_CHARACTERS:
                    files.append(CodeFile(relative, text, language))
            for sample in assemble_repository(repo, "bench", "code", files, AssemblyConfig()):
                writer.write(sample_to_document(sample), rank=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model folder: also score it (bits per byte, line infilling)")
    parser.add_argument("--lines-per-file", type=int, default=5, help="holes per code file (default 5)")
    parser.add_argument("--max-holes", type=int, default=5000, help="holes in all (default 5000)")
    parser.add_argument("--max-bytes", type=int, default=1_000_000, help="bytes the model scores (default 1 MB)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # a line per index otherwise

    trees = {f"stdlib/{name}": STDLIB / name for name in PACKAGES.split(",") if (STDLIB / name).is_dir()}
    trees.update({f"include/{name}": Path("/usr/include", name) for name in INCLUDE_FOLDERS.split(",")})
    trees = {repo: root for repo, root in trees.items() if root.is_dir()}
    results: dict = {"machine": machine_description(["bm25s", "zstandard"])}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary, "heldout")
        write_heldout(folder, trees)
        samples = list(read_heldout_samples(folder))
        parts: dict[str, list[bytes]] = {}
        for sample in samples:
            for file in sample.files:
                parts.setdefault(file.language, []).append(file.block.encode("utf-8"))
        started = time.perf_counter()
        compression = {}
        for language, blocks in sorted(parts.items(), key=lambda item: -sum(map(len, item[1]))):
            data = b"".join(blocks)
            xz, zstd = compressed_sizes(data)
            compression[language] = {
                "bytes": len(data),
                "xz_bits_per_byte": xz * 8 / len(data),
                "zstd_bits_per_byte": zstd * 8 / len(data),
            }
        results["repositories"] = len(trees)
        results["compression"] = compression
        results["compression_seconds"] = time.perf_counter() - started

        started = time.perf_counter()
        holes = choose_holes(spread_files(samples, 0), args.lines_per_file, args.max_holes, 0)
        repositories: dict = {}
        for sample in samples:
            repositories.setdefault(sample.repo, []).extend(sample.files)
        predictions = baseline_predictions(holes, repositories, progress=False)
        baseline: dict[str, dict] = {}
        for hole, prediction in zip(holes, predictions, strict=True):
            row = baseline.setdefault(hole.file.language, {"holes": 0, "exact_match": 0.0, "edit_similarity": 0.0})
            row["holes"] += 1
            row["exact_match"] += 100.0 * exact_match(prediction, hole.target)
            row["edit_similarity"] += edit_similarity(prediction, hole.target)
        for row in baseline.values():
            row["exact_match"] /= row["holes"]
            row["edit_similarity"] /= row["holes"]
        results["bm25_line_baseline"] = baseline
        results["bm25_seconds"] = time.perf_counter() - started

        if args.model:
            results["model_bits_per_byte"] = bits_per_byte_by_language(args.model, folder, max_bytes=args.max_bytes)
            results["model_line_infilling"] = line_infilling(
                args.model, folder, max_examples=args.max_holes, lines_per_file=args.lines_per_file
            )
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
