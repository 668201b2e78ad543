"""Tests of the build config: the README's example loads, every section maps onto its stage's dataclass, and bad
values are errors that name the file and the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from repolm.data.config import BuildConfig, load_build_config
from repolm.errors import RepolmError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_example_loads(tmp_path):
    readme = README.read_text(encoding="utf-8")
    data_section = readme[readme.index("## Data: `repolm data build`") :]
    block = re.search(r"```yaml\n(.*?)```", data_section, re.S)
    assert block, "the README's data section has no YAML build config example"
    path = tmp_path / "build.yaml"
    path.write_text(block.group(1), encoding="utf-8")
    config = load_build_config(path)
    assert [source.name for source in config.sources] == ["mine", "docs"]
    assert (config.minhash.bands, config.minhash.rows) == (42, 6)
    assert config.run.tasks == 8


def test_defaults_are_the_papers():
    config = load_build_config(None)
    assert config.mixture == {"code": 0.87, "code-text": 0.10, "other-text": 0.03}
    assert config.filters.max_line_length == 1000 and config.filters.max_average_line_length == 100
    assert config.minhash.num_permutations == 256 and config.minhash.ngram_size == 5
    assert config.to_dict() == BuildConfig().to_dict()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("filters:\n  max_line_length: long\n", "filters.max_line_length: expected an integer"),
        ("minhash: {threshold: 1.5}\n", "minhash"),
        ("mixture: {code: 0.9, prose: 0.1}\n", "mixture.prose: unknown kind"),
        ("run: {executor: spark}\n", "run.executor"),
        ("run: {executor: slurm}\n", "run.slurm: executor slurm needs at least partition and time"),
        ("sources:\n  - {name: a, path: /x, colour: red}\n", "sources.a.colour: unknown key"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("filters: [\n", "not valid YAML"),
    ],
)
def test_bad_values_name_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "build.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RepolmError) as error:
        load_build_config(path)
    assert str(path) in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_overrides_use_dotted_keys():
    config = load_build_config(None, {"run.tasks": 3, "decontamination.enabled": False, "seed": 7})
    assert config.run.tasks == 3 and not config.decontamination.enabled and config.seed == 7
