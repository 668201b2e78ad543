"""Ablations: one recipe, several arms that differ in a few settings, the same budget each, compared in one table.

A recipe with `arms` ({arm name: {dotted key of the recipe config: value}}) runs every arm as a recipe of its own in
`OUT/<arm>/`. A key reaches into a stage's `overrides` with `.overrides.` ("data.overrides.assembly.repository_level"
sets the data build's `assembly.repository_level`). Stages that an arm shares with an earlier arm (the same
settings for that stage and every stage before it) are not run twice: the later arm's folder links to the earlier
one's (the FIM ablation builds the data and the tokenizer once and tokenizes four times).

At the end `OUT/ablation.json` and `OUT/ablation.md` compare the arms on the figures of their evaluations and check
the config's `claims`: each claim is a sentence from the paper and conditions "ARM.METRIC < ARM.METRIC" (or >),
where METRIC is a figure's key (`figure_key`: "group/name/metric" in lower case, spaces as "_"); a claim holds when
every condition holds, and the table says so, with the numbers.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from repolm.errors import RepolmError
from repolm.folder_writer import write_file_atomically
from repolm.recipe.config import STAGES, RecipeConfig, validate
from repolm.yaml_config import from_mapping

logger = logging.getLogger(__name__)

ABLATION_FILE = "ablation.json"
# the config sections each stage depends on, on top of those of the stages before it
STAGE_SECTIONS = {
    "data": ("data", "seed"),
    "tokenizer": ("tokenizer",),
    "tokenize": ("tokenize",),
    "pretrain": ("pretrain", "device"),
    "long_context": ("long_context",),
    "sft": ("sft",),
    "eval": ("eval",),
    "report": (),
}
_CONDITION = re.compile(r"^\s*([\w-]+)\.(\S+)\s*([<>])\s*([\w-]+)\.(\S+)\s*$")


def arm_config(base: RecipeConfig, overrides: dict[str, Any], where: str, folder: Path) -> RecipeConfig:
    """The base config with one arm's overrides, checked like a config file."""
    mapping = copy.deepcopy(base.to_dict())
    mapping.pop("arms", None)
    mapping.pop("claims", None)
    for dotted, value in overrides.items():
        if ".overrides." in dotted:
            section, inner = dotted.split(".overrides.", 1)
            if section not in mapping or not isinstance(mapping[section], dict):
                raise RepolmError(f"{where}: {dotted}: {section} is not a section")
            mapping[section].setdefault("overrides", {})[inner] = value
            continue
        *parents, last = dotted.split(".")
        target = mapping
        for parent in parents:
            if not isinstance(target.get(parent), dict):
                raise RepolmError(f"{where}: {dotted}: {parent} is not a section")
            target = target[parent]
        if last not in target:
            raise RepolmError(f"{where}: {dotted}: unknown key")
        target[last] = value
    return validate(from_mapping(RecipeConfig, mapping, where, ""), where, folder)


def stage_fingerprints(config: RecipeConfig) -> dict[str, str]:
    """For every stage, the settings it and the stages before it depend on (equal fingerprints: shareable)."""
    settings = config.to_dict()
    fingerprints, seen = {}, {}
    for stage in STAGES:
        for section in STAGE_SECTIONS[stage]:
            seen[section] = settings[section]
        fingerprints[stage] = json.dumps(seen, sort_keys=True, default=str)
    return fingerprints


def link_shared_stages(
    arm_folder: Path, earlier: list[tuple[Path, dict[str, str]]], mine: dict[str, str], base_stage: str
) -> list[str]:
    """Links each stage of `arm_folder` to an earlier arm's finished folder of the same fingerprint (and the model
    folders those stages exported: `model` after `base_stage`, `instruct` after sft); returns the linked stages."""
    linked = []
    for stage in STAGES[:-1]:
        sources = [folder for folder, theirs in earlier if theirs[stage] == mine[stage]]
        source = next((folder for folder in sources if (folder / stage / "DONE.json").is_file()), None)
        if source is None:
            break
        arm_folder.mkdir(parents=True, exist_ok=True)
        exported = {base_stage: "model", "sft": "instruct"}.get(stage)
        for name in (stage, exported) if exported else (stage,):
            if (source / name).exists() and not (arm_folder / name).exists():
                os.symlink(os.path.relpath(source / name, arm_folder), arm_folder / name)
        linked.append(stage)
    return linked


def figure_key(figure: dict[str, Any]) -> str:
    """A figure's key in claims: "group/name/metric", lower case, spaces as "_"."""
    return "/".join(str(figure[part]).lower().replace(" ", "_") for part in ("group", "name", "metric"))


def arm_figures(arm_folder: Path) -> dict[str, dict[str, Any]]:
    path = arm_folder / "eval" / "results.json"
    if not path.is_file():
        return {}
    return {figure_key(figure): figure for figure in json.loads(path.read_text(encoding="utf-8"))["figures"]}


def check_claims(claims: list[dict[str, Any]], figures: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each claim with the value of each condition and whether all hold (None when a figure is missing)."""
    checked = []
    for claim in claims:
        results, holds = [], True
        for condition in claim.get("conditions", []):
            match = _CONDITION.match(condition)
            if match is None:
                raise RepolmError(f"claims: {condition!r}: expected ARM.METRIC < ARM.METRIC (or >)")
            left_arm, left_key, operator, right_arm, right_key = match.groups()
            left = figures.get(left_arm, {}).get(left_key, {}).get("value")
            right = figures.get(right_arm, {}).get(right_key, {}).get("value")
            if left is None or right is None:
                verdict = None
            else:
                verdict = left < right if operator == "<" else left > right
            results.append({"condition": condition, "left": left, "right": right, "holds": verdict})
            holds = None if verdict is None or holds is None else holds and verdict
        checked.append({"text": claim.get("text", ""), "holds": holds, "conditions": results})
    return checked


def _shown(value: Any) -> str:
    return "–" if value is None else f"{value:.4g}"


def write_comparison(output: Path, arms: list[str], claims: list[dict[str, Any]]) -> dict[str, Any]:
    """`OUT/ablation.json` and `OUT/ablation.md`: every figure per arm, and the claims checked."""
    figures = {arm: arm_figures(output / arm) for arm in arms}
    keys = sorted({key for per_arm in figures.values() for key in per_arm})
    checked = check_claims(claims, figures)
    comparison = {
        "arms": arms,
        "figures": {key: {arm: figures[arm].get(key, {}).get("value") for arm in arms} for key in keys},
        "claims": checked,
    }
    lines = ["# Ablation", "", "| figure | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
    for key in keys:
        better = next((figures[arm][key].get("better") for arm in arms if key in figures[arm]), "")
        lines.append(
            f"| {key} ({better} is better) | "
            + " | ".join(_shown(comparison["figures"][key][arm]) for arm in arms)
            + " |"
        )
    lines += ["", "## The paper's findings at this scale", ""]
    for claim in checked:
        verdict = {True: "holds", False: "does not hold", None: "not measured"}[claim["holds"]]
        numbers = "; ".join(
            f"{item['condition']}: {_shown(item['left'])} vs {_shown(item['right'])}" for item in claim["conditions"]
        )
        lines.append(f"- **{verdict}**: {claim['text']} ({numbers})")
    write_file_atomically(output / ABLATION_FILE, json.dumps(comparison, indent=1))
    write_file_atomically(output / "ablation.md", "\n".join(lines) + "\n")
    return comparison
