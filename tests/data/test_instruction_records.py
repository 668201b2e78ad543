"""The instruction JSONL format: both record shapes, every skip reason counted (and nothing else dropped), a file with
no usable record refused, atomic writes, the content-hash split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from repolm.data.instruction_records import (
    InstructionSample,
    SkipReport,
    held_out,
    instruction_files,
    read_instructions,
    write_instructions,
)
from repolm.errors import RepolmError

GOOD = [
    {"instruction": "Reverse a string.", "output": "s[::-1]"},
    {"instruction": "Sum a list.", "input": "[1, 2, 3]", "output": "sum(xs)", "kind": "mined"},
    {"instruction": "Greet.", "output": "hello", "system": "Be brief.\n"},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {
        "messages": [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
            {"role": "assistant", "content": "d"},
        ],
        "id": 7,
    },
]
BAD = {
    "invalid-json": ['{"instruction": "x", "output": ', "\xff\xfe not utf-8"],
    "not-an-object": ["[1, 2]", '"text"'],
    "missing-field": [
        {"instruction": "no output"},
        {"output": "no instruction"},
        {"text": "neither shape"},
        {"messages": []},
        {"messages": [{"role": "user"}]},
    ],
    "wrong-type": [
        {"instruction": 3, "output": "x"},
        {"instruction": "x", "output": ["y"]},
        {"instruction": "x", "input": 5, "output": "y"},
        {"messages": "hi"},
        {"messages": [{"role": "user", "content": 1}, {"role": "assistant", "content": "x"}]},
    ],
    "empty-instruction": [{"instruction": "  ", "output": "x"}],
    "empty-answer": [
        {"instruction": "x", "output": ""},
        {"instruction": "x", "output": " \n "},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
    ],
    "bad-turns": [
        {"messages": [{"role": "user", "content": "q"}]},
        {"messages": [{"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "user", "content": "q"}]},
        {"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]},
    ],
}


def write_lines(path: Path, records: list) -> Path:
    with path.open("wb") as handle:
        for record in records:
            if isinstance(record, str):
                handle.write(
                    record.encode("utf-8", "surrogateescape") if record.isascii() else record.encode("latin-1")
                )
            else:
                handle.write(json.dumps(record).encode("utf-8"))
            handle.write(b"\n")
    return path


def test_good_records_are_read_and_every_bad_one_is_counted_by_reason(tmp_path: Path) -> None:
    bad = [record for records in BAD.values() for record in records]
    records = [GOOD[0], *bad[:7], GOOD[1], "", GOOD[2], *bad[7:], GOOD[3], GOOD[4]]
    path = write_lines(tmp_path / "mixed.jsonl", records)

    samples, report = read_instructions(path)

    assert report.counts == {reason: len(records) for reason, records in BAD.items()}
    assert report.kept == len(GOOD) == len(samples)
    assert report.lines == len(GOOD) + len(bad)  # the blank line is not a record
    assert report.skipped + report.kept == report.lines  # nothing else dropped
    assert set(report.examples) == set(BAD)
    assert report.examples["invalid-json"].startswith(f"{path}:2: not JSON")
    first, second, third, fourth, fifth = samples
    assert first.messages == [
        {"role": "user", "content": "Reverse a string."},
        {"role": "assistant", "content": "s[::-1]"},
    ]
    assert second.messages[0]["content"] == "Sum a list.\n\n[1, 2, 3]"  # Alpaca: instruction, blank line, input
    assert second.metadata == {"kind": "mined"}
    assert third.messages[0] == {"role": "system", "content": "Be brief.\n"}
    assert fourth.messages == GOOD[3]["messages"]
    assert fifth.messages == GOOD[4]["messages"] and fifth.metadata == {"id": 7}
    assert "skipped: 2 invalid-json, 2 not-an-object, 5 missing-field" in report.summary()


def test_a_file_without_a_usable_record_is_an_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", ["nope", {"instruction": "x", "output": ""}])
    with pytest.raises(RepolmError, match=r"bad.jsonl: no usable instruction record \(kept 0 of 2 records"):
        read_instructions(path)
    with pytest.raises(RepolmError, match="no such file"):
        read_instructions(tmp_path / "absent.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepolmError, match="holds no .jsonl file"):
        instruction_files(tmp_path / "empty")


def test_a_folder_is_read_file_by_file_in_name_order(tmp_path: Path) -> None:
    write_lines(tmp_path / "b.jsonl", [GOOD[1]])
    write_lines(tmp_path / "a.jsonl", [GOOD[0]])
    (tmp_path / "notes.txt").write_text("ignored")
    samples, _ = read_instructions(tmp_path)
    assert [sample.where for sample in samples] == [f"{tmp_path / 'a.jsonl'}:1", f"{tmp_path / 'b.jsonl'}:1"]


def test_written_records_read_back_the_same(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", GOOD)
    samples, _ = read_instructions(path)
    out = tmp_path / "out" / "copy.jsonl"
    assert write_instructions(out, samples) == len(GOOD)
    again, _ = read_instructions(out)
    assert [sample.messages for sample in again] == [sample.messages for sample in samples]
    assert [sample.metadata for sample in again] == [sample.metadata for sample in samples]
    assert json.loads(out.read_text().splitlines()[0]) == {"instruction": "Reverse a string.", "output": "s[::-1]"}
    assert not list(out.parent.glob("*.partial"))


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def records():
        yield {"instruction": "a", "output": "b"}
        raise RuntimeError("interrupted")

    out = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError):
        write_instructions(out, records())
    assert list(tmp_path.iterdir()) == []


def test_the_held_out_split_depends_on_content_only() -> None:
    conversations = [[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}] for i in range(4000)]
    chosen = [held_out(messages, 0.1) for messages in conversations]
    assert 300 < sum(chosen) < 500
    assert chosen == [held_out(messages, 0.1) for messages in reversed(conversations)][::-1]
    assert not any(held_out(messages, 0.0) for messages in conversations)
    assert all(not a or b for a, b in zip(chosen, [held_out(m, 0.2) for m in conversations], strict=True))


def test_skip_report_rejects_unknown_reasons() -> None:
    with pytest.raises(ValueError):
        SkipReport().add("cosmic-rays", "f:1", "")
    assert InstructionSample([{"role": "user", "content": "a"}], "f:1").where == "f:1"
