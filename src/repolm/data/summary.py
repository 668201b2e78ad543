"""The last stage of a data build: add up every stage's counts into `stats.json`, `summary.md` and `mixture.json`.

`stats.json` is for programs (the training loader reads `mixture.json`, which holds the target shares of the
kinds and the bytes available per kind and source); `summary.md` is for people: per language, per filter, the
dedup clusters, the time per stage and the throughput. All three are written atomically, `stats.json` last: its
presence marks a complete build.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from repolm.data import logs  # noqa: F401  (quiets datatrove's per-task console logs)
from repolm.data.records import KINDS, write_build_mixture
from repolm.folder_writer import write_file_atomically


def read_counts(folder: Path) -> Counter:
    """The sum of the per-rank counters in `folder` (`NNNNN.json` files written by `StageCounts`)."""
    total: Counter = Counter()
    for path in sorted(folder.glob("*.json")):
        total.update(json.loads(path.read_text(encoding="utf-8")))
    return total


def _with_prefix(counts: Counter, prefix: str) -> dict[str, int]:
    found = {key[len(prefix) :]: value for key, value in counts.items() if key.startswith(prefix)}
    return dict(sorted(found.items(), key=lambda item: (-item[1], item[0])))


def read_clusters(work: Path) -> list[dict]:
    """The near-dedup clusters report (one dict per cluster), or [] when there is none."""
    clusters = []
    for path in sorted(work.glob("minhash/**/clusters.jsonl")):
        with path.open(encoding="utf-8") as file:
            clusters.extend(json.loads(line) for line in file if line.strip())
    return clusters


def collect_stats(output: Path, notes: list[str], mixture: dict[str, float], inputs: list[dict] | None = None) -> dict:
    """Every stage's counts added up; `inputs`: how each source was read (`repolm.data.sources.describe_source`)."""
    work = output / "work"
    screen = read_counts(work / "counts" / "screen")
    assemble = read_counts(work / "counts" / "assemble")
    written = read_counts(work / "counts" / "output")
    heldout = read_counts(work / "counts" / "heldout")
    clusters = read_clusters(work)
    timings = json.loads((work / "timings.json").read_text()) if (work / "timings.json").is_file() else {}
    excluded: dict[str, dict[str, int]] = {}
    for counts in (screen, assemble):
        for key, value in _with_prefix(counts, "excluded:").items():
            stage, reason = key.split(":", 1)
            excluded.setdefault(stage, {})[reason] = value
    removed_near = sum(len(cluster.get("removed", ())) for cluster in clusters)
    excluded["near-dedup"] = {"near-duplicate": removed_near} if removed_near else {}
    output_bytes = _with_prefix(written, "output_bytes:")
    total_output = sum(output_bytes.values())
    seconds = sum(timings.values())
    return {
        "inputs": inputs or [],
        "input": {
            "repositories": screen.get("repositories", 0),
            "files": screen.get("files", 0),
            "bytes": screen.get("bytes", 0),
        },
        "excluded": {stage: reasons for stage, reasons in excluded.items() if reasons},
        "kept_after_screening": {
            "files": _with_prefix(screen, "kept_files:"),
            "bytes": _with_prefix(screen, "kept_bytes:"),
        },
        "samples_assembled": {kind: assemble.get(f"samples:{kind}", 0) for kind in KINDS},
        "near_dedup": {
            "clusters": len(clusters),
            "removed_samples": removed_near,
            "largest_cluster": max((cluster.get("size", 0) for cluster in clusters), default=0),
        },
        "output": {
            "samples": _with_prefix(written, "output_samples:"),
            "bytes": output_bytes,
            "files_per_language": _with_prefix(written, "output_files:"),
        },
        "heldout": {
            "repositories": sorted(key.split(":", 1)[1] for key in heldout if key.startswith("heldout_repository:")),
            "samples": _with_prefix(heldout, "heldout_samples:"),
            "bytes": _with_prefix(heldout, "heldout_bytes:"),
            "files_per_language": _with_prefix(heldout, "heldout_files:"),
        },
        "mixture": {
            "target": mixture,
            "bytes": {kind: output_bytes.get(kind, 0) for kind in KINDS},
            "share": {kind: (output_bytes.get(kind, 0) / total_output if total_output else 0.0) for kind in KINDS},
        },
        "seconds": {**{name: round(value, 3) for name, value in timings.items()}, "total": round(seconds, 3)},
        "input_mb_per_second": round(screen.get("bytes", 0) / 1e6 / seconds, 3) if seconds else None,
        "notes": notes,
    }


def render_summary(stats: dict) -> str:
    """The human-readable summary (Markdown)."""
    lines = ["# Data build summary", ""]
    source = stats["input"]
    lines.append(
        f"Input: {source['repositories']} repositories, {source['files']} files, {source['bytes'] / 1e6:.1f} MB. "
        f"Time: {stats['seconds']['total']:.1f} s ({stats['input_mb_per_second'] or 0:.2f} MB/s of input)."
    )
    for described in stats.get("inputs", []):
        lines.append(f"- read {described['how']}")
    for note in stats["notes"]:
        lines.append(f"- note: {note}")
    lines += ["", "## Excluded", "", "| stage | reason | count |", "|---|---|---:|"]
    for stage, reasons in stats["excluded"].items():
        for reason, count in reasons.items():
            lines.append(f"| {stage} | {reason} | {count} |")
    lines += ["", "## Languages", "", "| language | files kept | MB kept | files in output |", "|---|---:|---:|---:|"]
    kept = stats["kept_after_screening"]
    for language, files in kept["files"].items():
        megabytes = kept["bytes"].get(language, 0) / 1e6
        in_output = stats["output"]["files_per_language"].get(language, 0)
        lines.append(f"| {language} | {files} | {megabytes:.2f} | {in_output} |")
    near = stats["near_dedup"]
    lines += [
        "",
        "## Deduplication",
        "",
        f"- exact: {stats['excluded'].get('exact-dedup', {}).get('identical-file', 0)} files removed",
        f"- near (MinHash): {near['clusters']} clusters, {near['removed_samples']} samples removed, "
        f"largest cluster {near['largest_cluster']}",
        "",
        "## Output and mixture",
        "",
        "| kind | samples | MB | share | target share |",
        "|---|---:|---:|---:|---:|",
    ]
    mixture = stats["mixture"]
    for kind in KINDS:
        lines.append(
            f"| {kind} | {stats['output']['samples'].get(kind, 0)} | {mixture['bytes'][kind] / 1e6:.2f} | "
            f"{mixture['share'][kind]:.3f} | {mixture['target'].get(kind, 0):.3f} |"
        )
    heldout = stats.get("heldout", {})
    if heldout.get("repositories"):
        lines += [
            "",
            "## Held out (never trained on)",
            "",
            f"{len(heldout['repositories'])} repositories, written to heldout/: "
            + ", ".join(heldout["repositories"][:30])
            + (" ..." if len(heldout["repositories"]) > 30 else ""),
            "",
            "| kind | samples | MB |",
            "|---|---:|---:|",
        ]
        for kind, samples in heldout["samples"].items():
            lines.append(f"| {kind} | {samples} | {heldout['bytes'].get(kind, 0) / 1e6:.2f} |")
    lines += ["", "## Time per stage", "", "| stage | seconds |", "|---|---:|"]
    for name, value in stats["seconds"].items():
        lines.append(f"| {name} | {value:.1f} |")
    return "\n".join(lines) + "\n"


class WriteSummary(PipelineStep):
    """The summary stage (one task): writes `mixture.json`, `summary.md`, then `stats.json` into the build folder."""

    name = "📝 summary"
    type = "📊 - STATS"

    def __init__(
        self, output: str, notes: list[str], mixture: dict[str, float], inputs: list[dict] | None = None
    ) -> None:
        super().__init__()
        self.output = output
        self.notes = notes
        self.mixture = mixture
        self.inputs = inputs or []

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        output = Path(self.output)
        stats = collect_stats(output, self.notes, self.mixture, self.inputs)
        write_build_mixture(output, self.mixture, stats["mixture"]["bytes"])
        write_file_atomically(output / "summary.md", render_summary(stats))
        write_file_atomically(output / "stats.json", json.dumps(stats, indent=1) + "\n")
        return
        yield
