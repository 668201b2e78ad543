"""Cross-file completion benchmark on real local code: how many examples each language gives, how long a build
takes, and whether the contexts hold what the targets need (no model is run).

Repositories, copied or extracted into a temporary folder, each one keeping its own folder in its paths (as the
default corpus reads them: json/decoder.py, openssl/ssl.h):
- Python: stdlib packages (`--python-packages`, tests left out);
- Java: JDK modules (`--jdk-modules`) from the JDK's `lib/src.zip` (`--jdk-sources`, else the first one found under
  /usr/lib/jvm);
- C: header trees of /usr/include (`--include-folders`).

Built with `repolm.eval.crossfile.build_crossfile_benchmark` (`--per-repository`, no other cap). Figures per
language, over the examples:
- examples, repositories that gave some, candidate lines found, build seconds (all languages together);
- oracle: the share of examples whose first oracle chunk (the definition chunk) holds every cross-file name of the
  target, and whose oracle chunks together do;
- target identifiers (cceval's `identifiers` of the groundtruth, keywords and strings left out) found as words in
  the left context alone, in the left context plus the retrieved chunks, in the left context plus the oracle's
  first 4 chunks (about what a 512-token context budget holds): the share over all target identifiers;
- cross-file names found in the retrieved chunks (the retrieval's recall of what the line needs).

Run: `python benchmarks/bench_crossfile.py [--json FILE] [--per-repository N] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sysconfig
import tempfile
import time
import zipfile
from pathlib import Path

from repolm.eval.crossfile import CrossfileConfig, build_crossfile_benchmark, identifiers, read_benchmark

PYTHON_PACKAGES = ("json", "email", "xml", "http", "logging", "urllib", "concurrent", "importlib")
JDK_MODULES = ("java.logging", "java.net.http", "java.sql", "jdk.httpserver", "java.naming", "java.rmi")
INCLUDE_FOLDERS = ("python3.11", "openssl", "libxml2", "nettle", "tcl8.6")
ORACLE_CHUNKS_IN_BUDGET = 4


def _jdk_sources() -> Path | None:
    found = sorted(Path("/usr/lib/jvm").glob("*/lib/src.zip")) + sorted(Path("/usr/lib/jvm").glob("*/src.zip"))
    return next((path for path in found if path.is_file() and zipfile.is_zipfile(path)), None)


def collect(root: Path, args: argparse.Namespace) -> dict[str, list[str]]:
    """Copies the repositories into `root`; returns the names taken, per source."""
    taken: dict[str, list[str]] = {"python": [], "jdk": [], "include": []}
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for name in args.python_packages:
        if (stdlib / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "test", "tests")
            shutil.copytree(stdlib / name, root / name / name, ignore=ignore)
            taken["python"].append(name)
    sources = Path(args.jdk_sources) if args.jdk_sources else _jdk_sources()
    if sources is not None and sources.is_file():
        with zipfile.ZipFile(sources) as archive:
            names = archive.namelist()
            for module in args.jdk_modules:
                members = [name for name in names if name.startswith(module + "/") and name.endswith(".java")]
                if members:
                    archive.extractall(root, members)
                    taken["jdk"].append(module)
    for folder in args.include_folders:
        if Path("/usr/include", folder).is_dir():
            shutil.copytree(Path("/usr/include", folder), root / folder / folder, symlinks=False)
            taken["include"].append(folder)
    return taken


def _has_words(text: str, names: list[str]) -> list[bool]:
    words = set(re.findall(r"\w+", text))
    return [name in words for name in names]


def figures(examples: list[dict]) -> dict[str, dict]:
    """The per-language figures of the module docstring."""
    by_language: dict[str, list[dict]] = {}
    for example in examples:
        by_language.setdefault(example["language"], []).append(example)
    result = {}
    for language, chosen in sorted(by_language.items()):
        first_chunk = all_chunks = retrieved_names = names_total = 0
        found = {"prompt": 0, "prompt + retrieval": 0, "prompt + oracle": 0}
        identifiers_total = 0
        for example in chosen:
            names = example["cross_file_names"]
            oracle = example["oracle"]
            first_chunk += all(_has_words(oracle[0]["text"], names)) if oracle else 0
            all_chunks += all(_has_words("".join(chunk["text"] for chunk in oracle), names))
            retrieval = "".join(chunk["text"] for chunk in example["retrieval"])
            retrieved_names += sum(_has_words(retrieval, names))
            names_total += len(names)
            wanted = sorted(set(identifiers(example["groundtruth"], language)))
            identifiers_total += len(wanted)
            oracle_budget = "".join(chunk["text"] for chunk in oracle[:ORACLE_CHUNKS_IN_BUDGET])
            for key, text in (
                ("prompt", example["prompt"]),
                ("prompt + retrieval", example["prompt"] + retrieval),
                ("prompt + oracle", example["prompt"] + oracle_budget),
            ):
                found[key] += sum(_has_words(text, wanted))
        count = len(chosen)
        result[language] = {
            "examples": count,
            "repositories": len({example["repository"] for example in chosen}),
            "oracle first chunk holds the names": round(first_chunk / count, 3),
            "oracle chunks hold the names": round(all_chunks / count, 3),
            "cross-file names in retrieved chunks": round(retrieved_names / max(names_total, 1), 3),
            "target identifiers found in": {
                key: round(value / max(identifiers_total, 1), 3) for key, value in found.items()
            },
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python-packages", nargs="*", default=list(PYTHON_PACKAGES))
    parser.add_argument("--jdk-modules", nargs="*", default=list(JDK_MODULES))
    parser.add_argument("--jdk-sources", help="the JDK's lib/src.zip (default: the first under /usr/lib/jvm)")
    parser.add_argument("--include-folders", nargs="*", default=list(INCLUDE_FOLDERS))
    parser.add_argument("--per-repository", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", help="build the benchmark into this folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crossfile-") as temporary:
        root = Path(temporary) / "repos"
        root.mkdir()
        taken = collect(root, args)
        bench = Path(args.keep) if args.keep else Path(temporary) / "bench"
        config = CrossfileConfig(max_examples=0, per_repository=args.per_repository, seed=args.seed)
        started = time.perf_counter()
        meta = build_crossfile_benchmark(root, bench, config)
        seconds = time.perf_counter() - started
        report = {
            "repositories": taken,
            "examples": meta["languages"],
            "candidates": meta["candidates"],
            "build_seconds": round(seconds, 1),
            "per_language": figures(read_benchmark(bench)),
        }
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
