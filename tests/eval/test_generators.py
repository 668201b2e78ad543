"""The generators on real parts: `LocalGenerator` on the tiny model folder of tests/conftest.py, and
`EndpointGenerator` against real HTTP servers on 127.0.0.1 (tests/eval/openai_server.py), one of them backed by the
same tiny model, so that the endpoint path and the local path must give the same greedy text.

The tiny model is untrained: its text is noise, which is all these tests need (same ids in, same text out)."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from dataclasses import replace
from pathlib import Path

import pytest
from openai_server import OpenAIServer, ReceivedRequest, Reply, completion_reply, model_responder

from repolm.errors import RepolmError
from repolm.eval.generators import (
    DEEPSEEK_FIM_TEMPLATE,
    EndpointGenerator,
    LocalGenerator,
    request_seed,
)
from repolm.eval.records import DecodingSettings, Generation, GenerationRequest
from repolm.eval.tasks.base import truncate_at_stops
from repolm.infer.prompts import instruct_prompt
from repolm.infer.sampling import SamplingParams
from repolm.infer.text import TextGenerator

GREEDY = DecodingSettings()
SAMPLED = DecodingSettings(temperature=1.0, top_p=0.95, seed=7)
FAST_RETRY = {"backoff_seconds": 0.01, "timeout_seconds": 5.0}

PROMPTS = [
    "def fibonacci(n):",
    "import os\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "",
    "x = 1",
]


def mixed_requests() -> list[GenerationRequest]:
    """Completion, chat and infilling requests of different lengths, two max_new_tokens and two stop settings."""
    requests = [GenerationRequest("completion", prompt=prompt, max_new_tokens=24) for prompt in PROMPTS]
    requests.append(
        GenerationRequest(
            "chat",
            messages=({"role": "user", "content": "Write a function that adds two numbers."},),
            max_new_tokens=20,
        )
    )
    requests.append(
        GenerationRequest("infill", prefix="def add(a, b):\n    ", suffix="\n    return c\n", max_new_tokens=20)
    )
    requests.append(
        GenerationRequest("infill", prefix="", suffix="if __name__ == '__main__':\n    main()\n", max_new_tokens=20)
    )
    requests.append(GenerationRequest("completion", prompt="for i in range(10):", stop=("e", "\n"), max_new_tokens=30))
    return requests


@pytest.fixture(scope="module")
def local(tiny_model_dir: Path) -> LocalGenerator:
    return LocalGenerator(tiny_model_dir, device="cpu", batch_size=8, max_seq_len=512)


@pytest.fixture(scope="module")
def greedy_texts(local: LocalGenerator) -> list[str]:
    generations = local.generate(mixed_requests(), GREEDY)
    assert all(g.error is None for g in generations), generations
    return [g.text for g in generations]


# -----------------------------------------------------------------------------
# LocalGenerator


def test_local_prompts_are_those_of_the_inference_layer(local: LocalGenerator, greedy_texts: list[str]):
    """Completion = `TextGenerator.generate`, chat = the CLI's --instruct prompt, infill = `TextGenerator.infill`."""
    text_generator: TextGenerator = local.text_generator
    tokenizer = local.tokenizer
    requests = mixed_requests()
    for request, text in zip(requests, greedy_texts, strict=True):
        params = SamplingParams(max_new_tokens=request.max_new_tokens)
        if request.kind == "completion":
            expected = text_generator.generate([request.prompt], params, request.stop)[0]
        elif request.kind == "chat":
            ids = tokenizer.encode(instruct_prompt(tokenizer, request.messages[0]["content"]))
            expected = text_generator.generate_ids([ids], params, request.stop)[0]
        else:
            expected = "".join(text_generator.infill(request.prefix, request.suffix, params, "psm", request.stop))
        assert text == expected, request
    assert len(set(greedy_texts)) == len(greedy_texts)  # different prompts, different (noise) texts
    assert local.prompt_ids(requests[0])[0] == tokenizer.bos_id  # the small tokenizer adds BOS
    assert local.prompt_ids(requests[3]) == [tokenizer.bos_id]  # an empty completion prompt is BOS alone


def test_local_batching_does_not_change_greedy_texts(tiny_model_dir: Path, greedy_texts: list[str]):
    one_by_one = LocalGenerator(tiny_model_dir, device="cpu", batch_size=1, max_seq_len=512)
    batched = LocalGenerator(tiny_model_dir, device="cpu", batch_size=3, max_seq_len=512)
    requests = mixed_requests()
    assert [g.text for g in one_by_one.generate(requests, GREEDY)] == greedy_texts
    assert [g.text for g in batched.generate(requests, GREEDY)] == greedy_texts
    # order is restored, whatever the request order
    reversed_texts = [g.text for g in batched.generate(requests[::-1], GREEDY)]
    assert reversed_texts == greedy_texts[::-1]


def test_local_compiled_engine_gives_the_same_texts(tiny_model_dir: Path, greedy_texts: list[str]):
    """`compile=True` (fixed-shape decode steps through torch.compile) changes speed, not text; it is recorded."""
    compiled = LocalGenerator(tiny_model_dir, device="cpu", batch_size=8, max_seq_len=512, compile=True)
    requests = mixed_requests()[:3]  # one batch shape: one compile
    assert [g.text for g in compiled.generate(requests, GREEDY)] == greedy_texts[:3]
    assert compiled.describe()["compile"] is True


@pytest.mark.gpu
def test_local_on_cuda_gives_the_cpu_greedy_texts(tiny_model_dir: Path, greedy_texts: list[str]):
    """fp32 on a CUDA device (no TF32): the CPU's texts; bf16 (the GPU default) runs and is recorded as such."""
    on_cuda = LocalGenerator(tiny_model_dir, device="cuda", dtype="float32", batch_size=8, max_seq_len=512)
    assert [g.text for g in on_cuda.generate(mixed_requests(), GREEDY)] == greedy_texts
    default = LocalGenerator(tiny_model_dir, batch_size=8, max_seq_len=512)
    generations = default.generate(mixed_requests(), GREEDY)
    assert all(g.error is None for g in generations), generations
    description = default.describe()
    assert description["device"].startswith("cuda") and description["dtype"] == "bfloat16", description


def test_local_stop_strings_cut_the_text(local: LocalGenerator):
    request = GenerationRequest("completion", prompt="def fibonacci(n):", max_new_tokens=40)
    [full] = local.generate([request], GREEDY)
    assert len(full.text) > 20
    stop = full.text[12:15]
    expected = full.text[: full.text.find(stop)]
    many_stops = ("\x00never", "\x01never", "\x02never", "\x03never", stop, "\x04never")  # more than an API allows
    stopped = local.generate(
        [
            GenerationRequest("completion", prompt="def fibonacci(n):", stop=stops, max_new_tokens=40)
            for stops in [(stop,), many_stops]
        ],
        GREEDY,
    )
    assert [g.text for g in stopped] == [expected, expected]
    assert stop not in expected


def test_local_describe_is_stable_and_hashes_the_weights(tiny_model_dir: Path, local: LocalGenerator):
    description = local.describe()
    assert description == local.describe()
    assert description["kind"] == "local"
    assert description["model"] == str(tiny_model_dir.resolve())
    expected_hash = hashlib.sha256((tiny_model_dir / "model.safetensors").read_bytes()).hexdigest()
    assert description["weights_sha256"] == expected_hash
    assert description["weight_files_sha256"] == {"model.safetensors": expected_hash}
    tokenizer_hash = hashlib.sha256((tiny_model_dir / "tokenizer.json").read_bytes()).hexdigest()
    assert description["tokenizer_sha256"] == tokenizer_hash
    assert description["device"] == "cpu" and description["dtype"] == "float32"
    assert description["config"]["num_hidden_layers"] == 4
    json.dumps(description)  # a results file can hold it
    again = LocalGenerator(tiny_model_dir, device="cpu").describe()
    assert again["weights_sha256"] == expected_hash and again["tokenizer_sha256"] == description["tokenizer_sha256"]


def test_local_long_prompts_are_cut_from_the_left(tiny_model_dir: Path, local: LocalGenerator, caplog):
    short = LocalGenerator(tiny_model_dir, device="cpu", max_seq_len=48)
    tokenizer = short.tokenizer
    prompt = "".join(f"value_{i} = compute({i}) + offset\n" for i in range(40))
    request = GenerationRequest("completion", prompt=prompt, max_new_tokens=8)
    with caplog.at_level(logging.WARNING, logger="repolm.eval.generators"):
        [generation] = short.generate([request], GREEDY)
    assert "cut to its last 40" in caplog.text
    ids = short.prompt_ids(request)
    full = [tokenizer.bos_id, *tokenizer.encode(prompt)]
    assert ids == [tokenizer.bos_id, *full[-39:]]
    expected = local.text_generator.generate_ids([ids], SamplingParams(max_new_tokens=8))[0]
    assert generation == Generation(text=expected)

    infill = GenerationRequest("infill", prefix=prompt, suffix="\nprint('done')\n" * 3, max_new_tokens=8)
    ids = short.prompt_ids(infill)
    suffix_ids = tokenizer.encode(infill.suffix)
    assert len(ids) == 40
    assert ids[:2] == [tokenizer.bos_id, tokenizer.fim_begin_id]
    assert ids[-len(suffix_ids) - 2 :] == [tokenizer.fim_hole_id, *suffix_ids, tokenizer.fim_end_id]
    assert ids[2 : -len(suffix_ids) - 2] == tokenizer.encode(prompt)[-(40 - 4 - len(suffix_ids)) :]
    # a suffix too long for the window loses its end, after the whole prefix
    long_suffix = GenerationRequest("infill", prefix="a = 1\n", suffix=prompt, max_new_tokens=8)
    ids = short.prompt_ids(long_suffix)
    assert len(ids) == 40 and ids[-1] == tokenizer.fim_end_id and tokenizer.fim_hole_id == ids[2]


def test_local_bad_requests_get_errors_and_the_others_their_text(local: LocalGenerator, greedy_texts: list[str]):
    requests = mixed_requests()
    bad = [
        GenerationRequest("completion", prompt="x", max_new_tokens=600),  # more than max_seq_len 512
        GenerationRequest("chat", messages=()),
    ]
    generations = local.generate([bad[0], *requests, bad[1]], GREEDY)
    assert generations[0].text == "" and "leaves no room for a prompt in max_seq_len 512" in generations[0].error
    assert generations[-1].text == "" and "at least one message" in generations[-1].error
    assert [g.text for g in generations[1:-1]] == greedy_texts
    with pytest.raises(RepolmError, match="temperature"):
        local.generate(requests, DecodingSettings(temperature=-1.0))


def test_local_sampling_is_seeded(tiny_model_dir: Path, local: LocalGenerator):
    request = GenerationRequest("completion", prompt="def fibonacci(n):", max_new_tokens=24)
    copies = [request] * 4
    first = [g.text for g in local.generate(copies, SAMPLED)]
    assert first == [g.text for g in local.generate(copies, SAMPLED)]  # reproducible
    assert len(set(first)) == 4  # the copies are different samples
    other_seed = [g.text for g in local.generate(copies, DecodingSettings(temperature=1.0, top_p=0.95, seed=8))]
    assert other_seed != first
    # a request's sample depends on the seed and its index only, not on its neighbours nor on the batching
    single = LocalGenerator(tiny_model_dir, device="cpu", batch_size=1, max_seq_len=512)
    assert [g.text for g in single.generate(copies, SAMPLED)] == first
    mixed = [g.text for g in local.generate(mixed_requests(), SAMPLED)]
    assert [g.text for g in single.generate(mixed_requests(), SAMPLED)] == mixed
    alone = single.generate([request], SAMPLED)[0].text
    with_neighbours = single.generate([request, GenerationRequest("completion", prompt="import os\n")], SAMPLED)
    assert with_neighbours[0].text == alone
    params = SamplingParams(max_new_tokens=24, temperature=1.0, top_p=0.95, seed=request_seed(SAMPLED.seed, 0))
    assert alone == local.text_generator.generate([request.prompt], params)[0]
    # a request's own seed (what an evaluation run sets per problem and sample) wins over its place in the call
    seeded = replace(request, seed=request_seed(SAMPLED.seed, 0))
    assert local.generate([copies[0], copies[1], seeded], SAMPLED)[2].text == alone


def test_truncate_at_stops():
    assert truncate_at_stops("abc\ndef\nghi", ("\ng", "\nd")) == "abc"
    assert truncate_at_stops("abc", ("", "x")) == "abc"
    assert truncate_at_stops("abc", ()) == "abc"


# -----------------------------------------------------------------------------
# EndpointGenerator against the model-backed server


def test_endpoint_gives_the_local_greedy_texts(local: LocalGenerator, greedy_texts: list[str]):
    requests = mixed_requests()
    six_stops = ("\x00never", "\x01never", "\x02never", "\x03never", greedy_texts[0][10:13], "\x04never")
    requests.append(GenerationRequest("completion", prompt=PROMPTS[0], stop=six_stops, max_new_tokens=24))
    expected = greedy_texts + [local.generate([requests[-1]], GREEDY)[0].text]
    assert expected[-1] == greedy_texts[0][: greedy_texts[0].find(six_stops[4])]
    with OpenAIServer(model_responder(local)) as server:
        endpoint = EndpointGenerator(server.url + "/v1/", "tiny", concurrency=4, **FAST_RETRY)
        generations = endpoint.generate(requests, GREEDY)
    assert [g.error for g in generations] == [None] * len(requests)
    assert [g.text for g in generations] == expected
    paths = sorted(r.path for r in server.received)
    assert paths.count("/v1/chat/completions") == 1 and paths.count("/v1/completions") == len(requests) - 1
    infill_bodies = [r.body for r in server.received if r.body.get("prompt", "").startswith("<｜fim▁begin｜>")]
    assert sorted(b["prompt"] for b in infill_bodies) == sorted(
        DEEPSEEK_FIM_TEMPLATE.format(prefix=r.prefix, suffix=r.suffix) for r in requests if r.kind == "infill"
    )
    assert all(len(r.body.get("stop", ())) <= 4 for r in server.received)
    assert all(r.body["model"] == "tiny" and r.body["temperature"] == 0.0 for r in server.received)


def test_endpoint_sends_the_api_key_only_in_the_header(monkeypatch):
    secret = "sk-test-secret-123"

    def echo_headers(request: ReceivedRequest, number: int) -> Reply:
        return Reply(400, {"error": {"message": f"bad key {request.headers.get('authorization')}"}})

    with OpenAIServer(echo_headers) as server:
        endpoint = EndpointGenerator(server.url, "m", api_key=secret, **FAST_RETRY)
        [generation] = endpoint.generate([GenerationRequest("completion", prompt="x")], GREEDY)
        assert server.received[0].headers["authorization"] == f"Bearer {secret}"
        assert secret not in generation.error and "***" in generation.error
        assert secret not in json.dumps(endpoint.describe()) and secret not in repr(endpoint)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-from-environment")
        EndpointGenerator(server.url, "m", **FAST_RETRY).generate([GenerationRequest("completion", prompt="x")], GREEDY)
        assert server.received[1].headers["authorization"] == "Bearer sk-from-environment"
        monkeypatch.delenv("OPENAI_API_KEY")
        EndpointGenerator(server.url, "m", **FAST_RETRY).generate([GenerationRequest("completion", prompt="x")], GREEDY)
        assert "authorization" not in server.received[2].headers
    assert len(server.received) == 3  # 400: no retries


def test_endpoint_seeds_differ_per_request():
    with OpenAIServer(lambda request, number: completion_reply("ok")) as server:
        EndpointGenerator(server.url, "m", **FAST_RETRY).generate([GenerationRequest("completion")] * 3, SAMPLED)
    seeds = sorted(r.body["seed"] for r in server.received)
    assert seeds == sorted(request_seed(SAMPLED.seed, index) for index in range(3)) and len(set(seeds)) == 3
    with OpenAIServer(lambda request, number: completion_reply("ok")) as server:
        EndpointGenerator(server.url, "m", **FAST_RETRY).generate([GenerationRequest("completion", seed=77)], SAMPLED)
    assert server.received[0].body["seed"] == 77


# -----------------------------------------------------------------------------
# EndpointGenerator against misbehaving servers: one-line errors, never exceptions


def test_endpoint_retries_a_server_error_then_succeeds():
    def flaky(request: ReceivedRequest, number: int) -> Reply:
        return Reply(500, b"internal error") if number == 1 else completion_reply("recovered")

    with OpenAIServer(flaky) as server:
        [generation] = EndpointGenerator(server.url, "m", retries=2, **FAST_RETRY).generate(
            [GenerationRequest("completion", prompt="p")], GREEDY
        )
    assert generation == Generation(text="recovered")
    assert len(server.received) == 2


def test_endpoint_retries_429_with_retry_after():
    def busy(request: ReceivedRequest, number: int) -> Reply:
        return Reply(429, b"slow down", headers={"Retry-After": "0"}) if number <= 2 else completion_reply("done")

    with OpenAIServer(busy) as server:
        [generation] = EndpointGenerator(server.url, "m", retries=3, **FAST_RETRY).generate(
            [GenerationRequest("completion", prompt="p")], GREEDY
        )
    assert generation.text == "done" and len(server.received) == 3


def test_endpoint_persistent_server_error_fails_that_request_only():
    def failing_some(request: ReceivedRequest, number: int) -> Reply:
        if "fail" in request.body["prompt"]:
            return Reply(503, b"overloaded")
        return completion_reply(request.body["prompt"].upper())

    requests = [GenerationRequest("completion", prompt=p) for p in ("a", "fail here", "b", "c")]
    with OpenAIServer(failing_some) as server:
        generations = EndpointGenerator(server.url, "m", retries=2, concurrency=2, **FAST_RETRY).generate(
            requests, GREEDY
        )
    assert [g.text for g in generations] == ["A", "", "B", "C"]
    error = generations[1].error
    assert error == "HTTP 503 Service Unavailable on POST /v1/completions: overloaded (after 3 attempts)"
    assert sum(1 for r in server.received if r.body["prompt"] == "fail here") == 3


def test_endpoint_client_errors_are_not_retried():
    with OpenAIServer(lambda request, number: Reply(400, {"error": {"message": "bad request"}})) as server:
        [generation] = EndpointGenerator(server.url, "m", retries=3, **FAST_RETRY).generate(
            [GenerationRequest("chat", messages=({"role": "user", "content": "hi"},))], GREEDY
        )
    assert generation.text == "" and generation.error.startswith("HTTP 400 Bad Request on POST /v1/chat/completions")
    assert "bad request" in generation.error and len(server.received) == 1


@pytest.mark.parametrize(
    ("reply", "chat", "message"),
    [
        (Reply(200, b"<html>not json</html>"), False, "not JSON ('<html>not json</html>')"),
        (Reply(200, {"choices": []}), False, "malformed answer: no choices"),
        (Reply(200, {"object": "list"}), False, "malformed answer: no choices"),
        (Reply(200, [1, 2]), False, "expected a JSON object, got list"),
        (Reply(200, {"choices": [{"text": 42}]}), False, "choices[0].text is int, not a string"),
        (Reply(200, {"choices": ["text"]}), False, "choices[0] is not an object"),
        (Reply(200, {"choices": [{"message": {"content": None}}]}), True, "message.content is NoneType"),
        (Reply(200, {"error": {"message": "model overloaded"}}), False, "the server answered an error: model overl"),
    ],
)
def test_endpoint_malformed_answers_are_errors(reply: Reply, chat: bool, message: str):
    request = (
        GenerationRequest("chat", messages=({"role": "user", "content": "hi"},))
        if chat
        else GenerationRequest("completion", prompt="p")
    )
    with OpenAIServer(lambda received, number: reply) as server:
        [generation] = EndpointGenerator(server.url, "m", **FAST_RETRY).generate([request], GREEDY)
    assert generation.text == "" and message in generation.error and "\n" not in generation.error
    assert len(server.received) == 1  # a malformed answer is not retried


def test_endpoint_slow_server_times_out():
    with OpenAIServer(lambda request, number: Reply(200, {"choices": [{"text": "late"}]}, delay_seconds=1.5)) as server:
        endpoint = EndpointGenerator(server.url, "m", timeout_seconds=0.3, retries=1, backoff_seconds=0.01)
        [generation] = endpoint.generate([GenerationRequest("completion", prompt="p")], GREEDY)
    assert generation.text == ""
    assert generation.error == "timed out after 0.3 s (ReadTimeout) on POST /v1/completions (after 2 attempts)"
    assert len(server.received) == 2


def test_endpoint_refused_connection_is_an_error():
    with socket.socket() as probe:  # a port that nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = EndpointGenerator(f"http://127.0.0.1:{port}", "m", retries=1, backoff_seconds=0.01)
    generations = endpoint.generate([GenerationRequest("completion", prompt="p")] * 2, GREEDY)
    for generation in generations:
        assert generation.text == ""
        assert generation.error.startswith("connection failed on POST /v1/completions (ConnectError: ")
        assert generation.error.endswith("(after 2 attempts)")


def test_endpoint_describe_and_bad_arguments():
    endpoint = EndpointGenerator("http://user:pw@example.invalid:8000/v1/", "deepseek-coder", api_key="sk-x")
    description = endpoint.describe()
    assert description["kind"] == "endpoint" and description["model"] == "deepseek-coder"
    assert description["url"] == "http://example.invalid:8000" and "sk-x" not in json.dumps(description)
    for arguments, match in [
        (("ftp://host", "m"), "must start with http"),
        (("http://host", ""), "model name"),
    ]:
        with pytest.raises(RepolmError, match=match):
            EndpointGenerator(*arguments)
    with pytest.raises(RepolmError, match="concurrency"):
        EndpointGenerator("http://host", "m", concurrency=0)
    with pytest.raises(RepolmError, match="must contain"):
        EndpointGenerator("http://host", "m", fim_template="{prefix} only")
    with pytest.raises(RepolmError, match="not valid"):
        EndpointGenerator("http://host", "m", fim_template="{prefix}{suffix}{middle}")
    assert EndpointGenerator("http://host", "m").generate([], GREEDY) == []
