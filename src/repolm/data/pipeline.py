"""`repolm data build`: runs the repository-level data pipeline, stage after stage, on a datatrove executor.

Stages (the paper's section 2, in its order where the order matters):

    screen     (tasks)   read repositories; rule filters, syntax check, decontamination per file
    exact      (tasks)   find files with identical content across the corpus (survivor: smallest id)
    assemble   (tasks)   per repository: drop exact duplicates, order files by dependencies, concatenate
    signature  (tasks)   MinHash signatures of the samples           \
    buckets    (bands)   LSH band buckets -> candidate pairs          |  near-dedup on datatrove's MinHash stages
    clusters   (1)       verified pairs -> clusters -> survivors      |
    output     (tasks)   drop near-duplicates, write the samples     /
    summary    (1)       stats.json, summary.md, mixture.json

The output folder holds `data/<kind>/NNNNN.jsonl.zst` (one sample per line: text, id, repo, files, languages,
source, kind, part), `excluded/<stage>/NNNNN.jsonl.zst` (every dropped file or sample with its reason),
`stats.json`, `summary.md`, `mixture.json`, and `work/` (intermediate shards, datatrove logs and completion
markers). Running the same command again resumes: datatrove skips the tasks that completed, and a task that was
killed starts over and rewrites its files, so the output equals that of an uninterrupted run. A build folder
remembers its config (`work/build.json`); resuming it with a different config is refused.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from repolm.benchmark_folder import find_benchmarks
from repolm.data.config import BuildConfig
from repolm.data.split import HELDOUT_FOLDER, HeldoutRule, heldout_repositories
from repolm.errors import RepolmError
from repolm.folder_writer import write_file_atomically

logger = logging.getLogger(__name__)

BUILD_FORMAT = 1


@dataclass
class BuildPlan:
    """What a build will read and where it writes: resolved once, before anything runs."""

    config: BuildConfig
    output: Path
    units: list  # [(SourceConfig, SourceUnit)], in a fixed order
    notes: list[str]
    benchmarks: str | None
    heldout: HeldoutRule
    inputs: list[dict]  # how each source is read (`repolm.data.sources.describe_source`), said before any work

    @property
    def work(self) -> Path:
        return self.output / "work"

    def fingerprint(self) -> dict:
        """What must be equal for a build folder to be resumed: the config, the units, the benchmark folder."""
        return {
            "format": BUILD_FORMAT,
            "config": self.config.to_dict(),
            "units": [[source.name, asdict(unit)] for source, unit in self.units],
            "benchmarks": self.benchmarks,
        }


def plan_build(config: BuildConfig, output: str | Path) -> BuildPlan:
    """Resolves sources (or the default corpus), lists their units and finds the benchmark folder. Fails early."""
    from repolm.data.sources import default_sources, describe_source, ensure_sources_exist, list_units

    notes: list[str] = []
    sources = list(config.sources)
    if not sources:
        sources, notes = default_sources()
        if not sources:
            raise RepolmError("no --input given and no default corpus found on this machine: " + "; ".join(notes))
        config.sources = sources
    ensure_sources_exist(sources)
    units_of = {source.name: list_units(source) for source in sources}
    units = [(source, unit) for source in sources for unit in units_of[source.name]]
    inputs = [describe_source(source, units_of[source.name]) for source in sources]
    if not units:
        raise RepolmError("the inputs hold no repositories: " + ", ".join(str(source.path) for source in sources))
    benchmarks = None
    if config.decontamination.enabled:
        found = find_benchmarks(config.decontamination.benchmarks, option="decontamination.benchmarks")
        benchmarks = None if found is None else str(found)
        if benchmarks is None:
            notes.append("decontamination skipped: no benchmark folder (set decontamination.benchmarks)")
    else:
        notes.append("decontamination disabled by the config")
    listed: dict[str, list[str]] = {}
    for source, unit in units:
        if unit.repo:
            listed.setdefault(source.name, []).append(unit.repo)
    split = config.split
    heldout = HeldoutRule(
        heldout_repositories(listed, split),
        frozenset(source.name for source in sources if source.name not in listed),
        split.heldout_fraction,
        split.seed,
    )
    return BuildPlan(config, Path(output), units, notes, benchmarks, heldout, inputs)


def prepare_output(plan: BuildPlan, overwrite: bool) -> bool:
    """Creates or checks the build folder; returns True when the build there is already complete."""
    build_file = plan.work / "build.json"
    fingerprint = plan.fingerprint()
    if plan.output.exists() and any(plan.output.iterdir()):
        if not build_file.is_file():
            if not overwrite:
                raise RepolmError(f"--output {plan.output}: the folder is not empty and holds no repolm data build")
            shutil.rmtree(plan.output)
        else:
            previous = json.loads(build_file.read_text(encoding="utf-8"))
            if previous != json.loads(json.dumps(fingerprint)):
                if not overwrite:
                    raise RepolmError(
                        f"--output {plan.output} holds a build with another config or other inputs; "
                        "use another --output, or --overwrite to start it again"
                    )
                shutil.rmtree(plan.output)
            else:
                return (plan.output / "stats.json").is_file()
    plan.work.mkdir(parents=True, exist_ok=True)
    write_file_atomically(build_file, json.dumps(fingerprint, indent=1, default=str))
    return False


def build_stages(plan: BuildPlan) -> list[tuple[str, list, int]]:
    """The build as (stage name, datatrove pipeline, tasks), in order."""
    from repolm.data.dedup_steps import minhash_pipelines
    from repolm.data.steps import (
        AssembleSamples,
        CountOutput,
        FindExactDuplicates,
        RankShardReader,
        ScreenRepositories,
        SplitHeldout,
        near_duplicate_record,
        output_record,
        shard_writer,
    )
    from repolm.data.summary import WriteSummary

    config, work, output = plan.config, str(plan.work), str(plan.output)
    tasks = config.run.tasks
    screen = [
        ScreenRepositories(
            plan.units,
            config.filters,
            config.quality,
            plan.benchmarks,
            exclusions_folder=f"{output}/excluded",
            exact_folder=f"{work}/exact",
            counts_folder=f"{work}/counts/screen",
        ),
        shard_writer(f"{work}/files"),
    ]
    exact = [FindExactDuplicates(f"{work}/exact")]
    assemble = [
        RankShardReader(f"{work}/files"),
        AssembleSamples(
            config.assembly,
            config.seed,
            exact_folder=f"{work}/exact",
            exclusions_folder=f"{output}/excluded",
            counts_folder=f"{work}/counts/assemble",
        ),
        shard_writer(f"{work}/samples"),
    ]
    minhash = minhash_pipelines(
        make_reader=lambda: RankShardReader(f"{work}/samples"),
        work_folder=f"{work}/minhash",
        config=config.minhash,
        output_steps=[
            SplitHeldout(plan.heldout, f"{output}/{HELDOUT_FOLDER}", f"{work}/counts/heldout"),
            CountOutput(f"{work}/counts/output"),
            shard_writer(f"{output}/data", "${kind}/${rank}.jsonl.zst", adapter=output_record),
        ],
        exclusion_writer=shard_writer(
            f"{output}/excluded", "near-dedup/${rank}.jsonl.zst", adapter=near_duplicate_record
        ),
    )
    signature, buckets, clusters, filtered = minhash
    summary = [WriteSummary(str(plan.output), plan.notes, plan.config.mixture, plan.inputs)]
    return [
        ("screen", screen, tasks),
        ("exact", exact, tasks),
        ("assemble", assemble, tasks),
        ("signature", signature, tasks),
        ("buckets", buckets, config.minhash.bands),
        ("clusters", clusters, 1),
        ("output", filtered, tasks),
        ("summary", summary, 1),
    ]


def run_build(config: BuildConfig, output: str | Path, overwrite: bool = False, progress: bool = True) -> Path:
    """Plans, runs (or resumes) a build; returns the output folder. Raises RepolmError for bad input."""
    plan = plan_build(config, output)
    complete = prepare_output(plan, overwrite)  # refuses a folder of another build before anything is logged
    for described in plan.inputs:  # said before any work, beside the stage progress lines
        if progress:
            print(f"reading {described['how']}", flush=True)
        else:
            logger.info("reading %s", described["how"])
    for note in plan.notes:
        logger.warning(note)
    if complete:
        logger.warning("%s: the build is complete already (delete the folder or pass --overwrite to redo it)", output)
        return plan.output
    stages = build_stages(plan)
    timings_path = plan.work / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    if config.run.executor == "slurm":
        submit_slurm(plan, stages)
        return plan.output
    if config.run.executor == "ray":
        start_ray()
    workers = config.run.workers or os.cpu_count() or 1
    for number, (name, pipeline, tasks) in enumerate(stages, start=1):
        if name == "summary":
            write_file_atomically(timings_path, json.dumps(timings, indent=1))
        logging_dir = plan.work / "logs" / name
        executor = make_executor(config, pipeline, tasks, min(workers, tasks), str(logging_dir))
        incomplete = executor.get_incomplete_ranks()
        if not incomplete:
            continue
        if progress:
            print(f"[{number}/{len(stages)}] {name}: {len(incomplete)} of {tasks} tasks", flush=True)
        started = time.perf_counter()
        executor.run()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
        if name != "summary":
            write_file_atomically(timings_path, json.dumps(timings, indent=1))
        failed = executor.get_incomplete_ranks()
        if failed:
            raise RepolmError(
                f"stage {name}: {len(failed)} of {tasks} tasks did not complete (ranks {failed[:10]}); "
                f"their logs are in {logging_dir}/logs; run the same command again to retry them"
            )
    return plan.output


def make_executor(config: BuildConfig, pipeline: list, tasks: int, workers: int, logging_dir: str, depends=None):
    if config.run.executor == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir, mem_per_cpu_gb=1)
    if config.run.executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        return SlurmPipelineExecutor(
            pipeline,
            tasks=tasks,
            logging_dir=logging_dir,
            depends=depends,
            job_name=f"repolm-{Path(logging_dir).name}",
            **config.run.slurm,
        )
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers, logging_dir=logging_dir)


def submit_slurm(plan: BuildPlan, stages: list) -> None:
    """Submits every stage as a Slurm job array that depends on the previous stage's job."""
    previous = None
    for name, pipeline, tasks in stages:
        previous = make_executor(plan.config, pipeline, tasks, tasks, str(plan.work / "logs" / name), depends=previous)
    previous.run()  # launches the chain of dependencies first
    print(f"submitted {len(stages)} Slurm stages; the summary lands in {plan.output}/summary.md", flush=True)


def start_ray() -> None:
    """Connects to a running Ray cluster (RAY_ADDRESS) or starts a local one on this machine's cores."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"REPOLM_DATA_VERBOSE": os.environ.get("REPOLM_DATA_VERBOSE", "0")}},
        )
