"""The recipe's held-out subset (recipe.evaluation.choose_heldout_files): every held-out repository of a language
gets about the same share, near-duplicate files count once, and each record keeps its chosen files in order."""

import random

from repolm.data.records import sample_record_files
from repolm.recipe.evaluation import choose_heldout_files


def _record(repo: str, files: dict[str, str]) -> dict:
    blocks = [f"# {path}\n{text}" for path, text in files.items()]
    offsets, position = [], 0
    for block in blocks:
        offsets.append(position)
        position += len(block) + 1
    return {"text": "\n".join(blocks), "repo": repo, "files": list(files), "offsets": offsets,
            "languages": ["Python"] * len(files), "kind": "code", "source": "test", "part": 0}  # fmt: skip


def _code(seed: int, lines: int) -> str:
    """Distinct code: random identifiers, so two calls share no word 5-grams."""
    rng = random.Random(seed)
    names = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=8)) for _ in range(lines * 3)]
    return "".join(f"{names[3 * i]} = {names[3 * i + 1]}({names[3 * i + 2]})\n" for i in range(lines))


def test_each_repository_gets_an_equal_share_and_near_duplicates_count_once():
    table = _code(99, 60)
    big = _record("big", {f"big/m{index}.py": _code(index, 60) for index in range(10)})  # 10 files of ~1.7K
    small = _record("small", {"small/only.py": _code(50, 20)})  # one file, ~0.6K
    variants = {f"cfg/v{index}.py": table + f"VERSION = {index}\n" for index in range(8)}  # 8 near-identical files
    platform = _record("platform", {**variants, "cfg/real.py": _code(77, 60)})
    budget = 12000
    records, summary = choose_heldout_files({"big": [big], "small": [small], "platform": [platform]}, budget)

    taken = sum(len(record["text"]) for record in records)
    assert taken <= budget
    assert summary["small"]["files"] == 1  # a small repository gives all it has
    assert summary["platform"]["files"] == 2  # the distinct file and one of the 8 variants
    assert summary["platform"]["near_duplicates_skipped"] == 7
    # the big repository takes what the others could not give: it is not cut to their shares
    assert summary["big"]["characters"] > summary["platform"]["characters"] > summary["small"]["characters"]
    assert taken > budget - 2000  # filled up to less than one file
    by_repo = {record["repo"]: record for record in records}
    assert by_repo["platform"]["files"] == ["cfg/v0.py", "cfg/real.py"]
    assert by_repo["big"]["files"] == [f"big/m{index}.py" for index in range(len(by_repo["big"]["files"]))]
    texts = {path: text for path, _, text in sample_record_files(platform)}
    for path, _, text in sample_record_files(by_repo["platform"]):
        assert text.rstrip("\n") == texts[path].rstrip("\n")


def test_a_long_file_gives_its_first_lines_and_a_short_remainder_is_passed_over():
    long_file, short_file = _code(1, 400), _code(2, 10)
    repository = _record("repo", {"repo/a.py": long_file, "repo/b.py": short_file})
    records, summary = choose_heldout_files({"repo": [repository]}, 2000)
    [record] = records
    [(path, _, text)] = sample_record_files(record)
    assert path == "repo/a.py" and long_file.startswith(text) and text.endswith("\n")
    assert 1000 <= len(record["text"]) <= 2000  # the first lines, within the budget; b.py no longer fits
    assert summary == {"repo": {"files": 1, "characters": len(record["text"]), "near_duplicates_skipped": 0}}
    # a roomier budget takes both files whole
    records, summary = choose_heldout_files({"repo": [repository]}, 100_000)
    assert [text for _, _, text in sample_record_files(records[0])] == [long_file, short_file]
