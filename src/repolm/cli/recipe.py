"""`repolm recipe run` and `repolm recipe report`: the main job from the command line (see `repolm.recipe.run`)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from repolm.recipe.config import STAGES


def _announce(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def cmd_recipe_run(args: argparse.Namespace) -> None:
    from repolm.recipe.run import run_recipe

    logging.getLogger("repolm").setLevel(logging.INFO)
    output = Path(args.output or Path("out") / Path(args.config).stem)
    started = time.time()
    outcomes = run_recipe(
        args.config, output, budget_minutes=args.budget, from_stage=args.from_stage, dry_run=args.dry_run,
        announce=_announce if not args.dry_run else print,
    )  # fmt: skip
    if args.dry_run:
        return
    ran = ", ".join(f"{outcome.name} {outcome.seconds:.0f} s" for outcome in outcomes if outcome.status == "done")
    print(f"recipe finished in {(time.time() - started) / 60:.1f} minutes ({ran or 'every stage finished before'})")
    _print_results(output.resolve())


def _print_results(output: Path) -> None:
    """Where the report and models are, and a few held-out completions: the model's text next to the real one."""
    import json

    for name in ("report.html", "report.md", "model", "instruct"):
        if (output / name).exists():
            print(f"  {name:12s} {output / name}")
    results = output / "eval" / "results.json"
    if not results.is_file():
        return
    for sample in json.loads(results.read_text(encoding="utf-8")).get("samples", [])[:4]:
        print(f"\n--- {sample['kind']} on held-out {sample['repo']}: {sample['path']} ({sample['language']})")
        print("... " + sample["prompt"][-300:].lstrip("\n"), end="")
        if sample["kind"] == "infill":
            print("<FILL>" + sample.get("suffix", "")[:120], end="")
        print(f"\n>>> model:\n{sample['model']}\n>>> real:\n{sample['real']}", file=sys.stdout)


def cmd_recipe_report(args: argparse.Namespace) -> None:
    from repolm.recipe.report import write_report

    for path in write_report(Path(args.output)):
        print(path)


def add_recipe_parsers(commands, common: argparse.ArgumentParser) -> None:
    recipe = commands.add_parser(
        "recipe",
        help="the main job: data -> tokenizer -> pretrain -> long context -> SFT -> eval -> report",
        description="Run the whole DeepSeek-Coder recipe as one resumable job (configs/recipes/*.yaml).",
    )
    recipe_commands = recipe.add_subparsers(dest="recipe_command", metavar="COMMAND", required=True)
    run = recipe_commands.add_parser("run", help="run, resume or plan a recipe", parents=[common])
    run.add_argument("config", help="recipe YAML (configs/recipes/demo.yaml)")
    run.add_argument("--output", help="run folder (default out/<config name>); an existing one is resumed")
    run.add_argument("--budget", type=float, help="minutes: scales the training stages and evaluations to fit")
    run.add_argument("--from", dest="from_stage", choices=STAGES, help="run this stage and the later ones again")
    run.add_argument("--dry-run", action="store_true", help="print the plan and each stage's standalone command")
    run.set_defaults(handler=cmd_recipe_run)
    report = recipe_commands.add_parser("report", help="write report.html and report.md of a run", parents=[common])
    report.add_argument("output", help="the run folder")
    report.set_defaults(handler=cmd_recipe_report)
