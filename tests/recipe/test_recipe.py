"""`repolm recipe run`: the whole recipe on a tiny config (stages, markers, resume after kill -9, --from, the
plan) and bad input (exit code 2, one line, no finished stage lost)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.recipe.conftest import REPO_ROOT, recipe_text, run_recipe_cli

from repolm.errors import RepolmError
from repolm.recipe.config import STAGES, load_recipe_config, scaled


def markers(output: Path) -> dict[str, dict]:
    return {
        stage: json.loads((output / stage / "DONE.json").read_text())
        for stage in STAGES
        if (output / stage / "DONE.json").is_file()
    }


def test_demo_config_is_valid_and_its_plan_names_every_stage_and_command(tmp_path):
    output = tmp_path / "plan"
    result = run_recipe_cli("run", "configs/recipes/demo.yaml", "--output", str(output), "--dry-run")
    assert result.returncode == 0, result.stderr
    for number, stage in enumerate(STAGES, start=1):
        assert f"[{number}/{len(STAGES)}] {stage}" in result.stdout
    for command in ("repolm data build", "repolm tokenizer train", "repolm data tokenize", "-m repolm pretrain",
                    "repolm export", "repolm sft", "repolm eval", "repolm recipe report"):  # fmt: skip
        assert command in result.stdout, command
    assert not output.exists(), "a dry run writes nothing"


def test_budget_scales_training_minutes_and_evaluation_work():
    config = load_recipe_config(REPO_ROOT / "configs" / "recipes" / "demo.yaml")
    half, factor = scaled(config, config.budget_minutes / 2)
    assert factor == pytest.approx(0.5)
    assert half.pretrain.minutes == pytest.approx(config.pretrain.minutes / 2)
    assert half.eval.crossfile_examples == round(config.eval.crossfile_examples / 2)
    assert half.eval.max_seq_len == config.eval.max_seq_len
    with pytest.raises(RepolmError, match="--budget"):
        scaled(config, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"unknown_key": "1"}, "unknown_key"),
        ({"tokenizer": "\n  vocab_size: many"}, "tokenizer.vocab_size"),
        ({"pretrain": "\n  config: no-such.yaml"}, "pretrain.config: no-such.yaml: no such file"),
        ({"pretrain": "\n  config: pretrain.yaml\n  overrides: {optimizer.lr: fast}"}, "optimizer.lr"),
        ({"data": "\n  heldout_fraction: 0"}, "data.heldout_fraction"),
        ({"data": "\n  overrides:\n    sources: [{name: x, path: /no/such/corpus}]"}, "/no/such/corpus"),
    ],
)
def test_bad_config_fails_at_once_with_one_line(recipe_folder, recipe_corpus, change, message):
    (recipe_folder / "recipe.yaml").write_text(recipe_text(recipe_corpus, **change))
    output = recipe_folder / "out"
    result = run_recipe_cli("run", str(recipe_folder / "recipe.yaml"), "--output", str(output))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (output / "data").exists()


def _wait_for(path_glob: Path, pattern: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if list(path_glob.glob(pattern)):
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended (rc {process.returncode}) before {pattern} appeared")
        time.sleep(0.2)
    raise AssertionError(f"{pattern} did not appear within {seconds} s")


def test_recipe_runs_end_to_end_and_resumes_after_kill_9(recipe_folder):
    """Killed (SIGKILL) during pretraining and run again: the finished stages are skipped (their markers are not
    rewritten), pretraining continues from its last checkpoint, and every stage ends with its marker and outputs."""
    output = recipe_folder / "out"
    command = [sys.executable, "-m", "repolm", "recipe", "run", str(recipe_folder / "recipe.yaml"), "--output",
               str(output)]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    process = subprocess.Popen(
        command, env=environment, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        _wait_for(output / "pretrain" / "checkpoints", "step_*", process, 300)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    before = markers(output)
    assert set(before) == {"data", "tokenizer", "tokenize"}
    result = run_recipe_cli("run", str(recipe_folder / "recipe.yaml"), "--output", str(output))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = markers(output)
    assert set(after) == set(STAGES)
    for stage, marker in before.items():
        assert after[stage] == marker, f"{stage} was run again"
    assert after["pretrain"]["summary"]["resumed"] is True
    assert after["pretrain"]["summary"]["steps"] == 40
    for folder in ("model", "instruct"):
        assert (output / folder / "config.json").is_file() and (output / folder / "tokenizer.json").is_file()
    assert (output / "report.html").is_file() and (output / "report.md").is_file()
    assert "finished before" in result.stdout
    held_out = json.loads((output / "data" / "stats.json").read_text())["heldout"]["repositories"]
    assert held_out, "no repository was held out"
    from repolm.tokenizer.corpus import read_documents

    trained = {document.id for path in sorted((output / "data" / "data").glob("*/*.jsonl.zst"))
               for document in read_documents(path, path.name)}  # fmt: skip
    assert trained and not any(repository in identifier for identifier in trained for repository in held_out)

    # --from: that stage and the later ones again, the earlier ones untouched
    again = run_recipe_cli("run", str(recipe_folder / "recipe.yaml"), "--output", str(output), "--from", "eval")
    assert again.returncode == 0, again.stderr[-3000:]
    redone = markers(output)
    assert redone["sft"] == after["sft"] and redone["eval"]["finished"] >= after["eval"]["finished"]


def test_read_only_output_fails_with_one_line_and_keeps_finished_stages(recipe_folder):
    """A full disk, simulated by a read-only output folder: exit 2, one line, no traceback, finished markers kept."""
    output = recipe_folder / "out"
    (output / "data").mkdir(parents=True)
    marker = {"stage": "data", "seconds": 1.0, "started": "", "finished": "", "command": "", "summary": {}}
    (output / "data" / "DONE.json").write_text(json.dumps(marker))
    arguments = ["run", str(recipe_folder / "recipe.yaml"), "--output", str(output)]
    if os.geteuid() == 0:  # root writes through file modes: a read-only bind mount in a private mount namespace
        if shutil.which("unshare") is None:
            pytest.skip("running as root without unshare: cannot make a read-only folder")
        wrapper = f'mount --bind -o ro {output} {output} && exec "$@"'
        prefix = ("unshare", "--mount", "sh", "-c", wrapper, "sh")
        result = run_recipe_cli(*arguments, prefix=prefix)
        if "mount:" in result.stderr:
            pytest.skip(f"cannot bind-mount here: {result.stderr.strip()}")
    else:
        output.chmod(0o555)
        try:
            result = run_recipe_cli(*arguments)
        finally:
            output.chmod(0o755)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot write" in lines[0] and str(output) in lines[0], result.stderr
    assert json.loads((output / "data" / "DONE.json").read_text()) == marker


def test_ablation_arms_share_the_stages_they_have_in_common_and_claims_are_checked(tmp_path):
    from repolm.recipe.arms import arm_config, check_claims, link_shared_stages, stage_fingerprints

    base = load_recipe_config(REPO_ROOT / "configs" / "recipes" / "ablation_fim.yaml")
    assert list(base.arms) == ["fim0", "psm50", "psm100", "msp50"]
    arms = {name: arm_config(base, overrides, "test", REPO_ROOT / "configs" / "recipes")
            for name, overrides in base.arms.items()}  # fmt: skip
    assert arms["psm100"].tokenize.fim_rate == 1.0 and arms["msp50"].tokenize.fim_mode == "msp"
    prints = {name: stage_fingerprints(config) for name, config in arms.items()}
    assert prints["fim0"]["tokenizer"] == prints["psm100"]["tokenizer"]  # data and tokenizer built once
    assert prints["fim0"]["tokenize"] != prints["psm100"]["tokenize"]
    repository = load_recipe_config(REPO_ROOT / "configs" / "recipes" / "ablation_repo_level.yaml")
    file_level = arm_config(repository, repository.arms["file"], "test", REPO_ROOT / "configs" / "recipes")
    assert file_level.data.overrides["assembly.repository_level"] is False
    with pytest.raises(RepolmError, match="unknown key"):
        arm_config(base, {"tokenize.no_such_key": 1}, "test", REPO_ROOT)

    first = tmp_path / "fim0"
    for stage in ("data", "tokenizer", "tokenize"):
        (first / stage).mkdir(parents=True)
        (first / stage / "DONE.json").write_text("{}")
    linked = link_shared_stages(tmp_path / "psm100", [(first, prints["fim0"])], prints["psm100"], "pretrain")
    assert linked == ["data", "tokenizer"] and (tmp_path / "psm100" / "data").is_symlink()
    assert not (tmp_path / "psm100" / "tokenize").exists()

    figures = {"a": {"x/y/z": {"value": 1.0}}, "b": {"x/y/z": {"value": 2.0}}}
    claims = [{"text": "a below b", "conditions": ["a.x/y/z < b.x/y/z"]},
              {"text": "unmeasured", "conditions": ["a.x/y/z > c.x/y/z"]}]  # fmt: skip
    checked = check_claims(claims, figures)
    assert [claim["holds"] for claim in checked] == [True, None]
    with pytest.raises(RepolmError, match="ARM.METRIC"):
        check_claims([{"text": "bad", "conditions": ["a < b"]}], figures)
