"""The official `openai` client against a real server: completions (plain, `suffix` = FIM, `n`, `stop`), chat, both
streamed; answers are compared with what the engine gives for the same prompt ids alone."""

from __future__ import annotations

import httpx
import openai
import pytest
from server_harness import start_server

from repolm.infer.prompt_builder import PromptBudget, PromptBuilder
from repolm.infer.sampling import SamplingParams
from repolm.infer.server import ServerConfig

PREFIX = "def read_file(path):\n    with open(path) as f:\n"
SUFFIX = "\n    return data\n"


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    running = start_server(tiny_model_dir)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def _alone(tiny_generator, ids, max_new_tokens, seed=None, temperature=0.0, stop=()):
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature)
    return tiny_generator.generate_ids([ids], params, stop, None if seed is None else [seed])[0]


def _builder(tiny_generator) -> PromptBuilder:
    return PromptBuilder(tiny_generator.tokenizer)


def test_models_lists_the_served_model(client):
    assert [model.id for model in client.models.list().data] == ["tiny"]


def test_completion_equals_the_engine_alone(client, tiny_generator):
    answer = client.completions.create(model="tiny", prompt=PREFIX, max_tokens=20, temperature=0)
    ids = _builder(tiny_generator).completion(PREFIX, budget=PromptBudget(400)).ids
    assert answer.choices[0].text == _alone(tiny_generator, ids, 20)
    assert answer.choices[0].finish_reason in ("length", "stop")
    assert answer.usage.prompt_tokens == len(ids)
    assert answer.usage.completion_tokens <= 20
    assert answer.model == "tiny" and answer.object == "text_completion"


def test_suffix_makes_a_fim_prompt(client, tiny_generator):
    answer = client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=16, temperature=0)
    built = _builder(tiny_generator).completion(PREFIX, SUFFIX, budget=PromptBudget(400))
    assert built.kind == "fim-psm"
    assert answer.choices[0].text == _alone(tiny_generator, built.ids, 16)
    assert answer.usage.prompt_tokens == len(built.ids)


# what Continue's autocomplete sends for a model named "deepseek...": its DeepSeek FIM template's stops, then blank
# lines, /src/, a Python encoding line, code fences and the language's stop words
CONTINUE_STOPS = ["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "//", "<｜end▁of▁sentence｜>"]
CONTINUE_STOPS += ["\n\n", "\r\n\r\n", "/src/", "#- coding: utf-8", "```", "\ndef", "\nclass"]


def test_a_fim_template_written_by_the_client_is_used_verbatim(client):
    """Continue (provider openai) writes DeepSeek-Coder's FIM template itself and posts it to /v1/completions."""
    template = f"<｜fim▁begin｜>{PREFIX}<｜fim▁hole｜>{SUFFIX}<｜fim▁end｜>"
    settings = {"model": "deepseek", "max_tokens": 16, "temperature": 0.01, "stop": CONTINUE_STOPS, "seed": 5}
    by_suffix = client.completions.create(prompt=PREFIX, suffix=SUFFIX, **settings)
    chunks = client.completions.create(prompt=template, stream=True, **settings)
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == by_suffix.choices[0].text


def test_stop_cuts_the_text_before_the_stop_string(client, tiny_generator):
    ids = _builder(tiny_generator).completion(PREFIX, budget=PromptBudget(400)).ids
    full = _alone(tiny_generator, ids, 30)
    # a 3-character stop string that first occurs at `cut` (>= 3), inside the greedy text
    cut = next(
        i for i in range(3, len(full) - 3) if full.find(full[i : i + 3]) == i and "\ufffd" not in full[i : i + 3]
    )
    stop = full[cut : cut + 3]
    answer = client.completions.create(model="tiny", prompt=PREFIX, max_tokens=30, temperature=0, stop=[stop, "@@@"])
    assert answer.choices[0].text == full[:cut]
    assert answer.choices[0].finish_reason == "stop"


def test_n_choices_sample_with_seed_plus_index(client):
    many = client.completions.create(model="tiny", prompt=PREFIX, max_tokens=12, temperature=1.0, n=3, seed=7)
    assert [choice.index for choice in many.choices] == [0, 1, 2]
    for index, choice in enumerate(many.choices):
        alone = client.completions.create(model="tiny", prompt=PREFIX, max_tokens=12, temperature=1.0, seed=7 + index)
        assert choice.text == alone.choices[0].text
    assert len({choice.text for choice in many.choices}) > 1, "three seeds gave the same sample"
    assert 3 <= many.usage.completion_tokens <= 36


def test_streamed_completion_equals_the_plain_one(client):
    plain = client.completions.create(model="tiny", prompt=PREFIX, suffix=SUFFIX, max_tokens=24, temperature=0)
    chunks = list(
        client.completions.create(
            model="tiny",
            prompt=PREFIX,
            suffix=SUFFIX,
            max_tokens=24,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text_chunks = [chunk for chunk in chunks if chunk.choices]
    assert len(text_chunks) > 2, "the completion did not come in pieces"
    assert "".join(chunk.choices[0].text for chunk in text_chunks) == plain.choices[0].text
    assert text_chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    assert all(chunk.choices[0].finish_reason is None for chunk in text_chunks[:-1])
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_streamed_choices_of_n_are_kept_apart(client):
    plain = client.completions.create(model="tiny", prompt=PREFIX, max_tokens=10, temperature=1.0, n=2, seed=3)
    texts = ["", ""]
    for chunk in client.completions.create(
        model="tiny", prompt=PREFIX, max_tokens=10, temperature=1.0, n=2, seed=3, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts == [choice.text for choice in plain.choices]


def test_chat_answers_through_the_chat_template(client, tiny_generator):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Reverse a string."}]
    answer = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, temperature=0)
    built = _builder(tiny_generator).chat(messages, budget=PromptBudget(400))
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == _alone(tiny_generator, built.ids, 16)
    assert answer.usage.prompt_tokens == len(built.ids)
    assert answer.object == "chat.completion"


def test_streamed_chat_sends_the_role_first_then_the_text(client):
    messages = [{"role": "user", "content": "Write a function that adds two numbers."}]
    plain = client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0)
    chunks = list(
        client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0, stream=True)
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_unsupported_features_are_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", prompt="x", echo=True)
    assert caught.value.body["param"] == "echo"
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", prompt="x", logprobs=2)
    assert caught.value.body["param"] == "logprobs"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}], logprobs=True)
    assert caught.value.body["param"] == "logprobs"


def test_limits_answer_400_naming_the_field(client):
    cases = [
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"n": 9}, "n"),
        ({"stop": ["a"] * 33}, "stop"),
        ({"temperature": 3}, "temperature"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model="tiny", prompt="x", **extra)
        assert caught.value.body["param"] == param, caught.value.body
        assert param in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny", prompt="def f(): pass\n" * 200, max_tokens=16)
    assert caught.value.body["code"] == "context_length_exceeded"


def test_the_prompt_is_returned_when_asked(client, tiny_generator):
    answer = client.completions.create(
        model="tiny",
        prompt=PREFIX,
        suffix=SUFFIX,
        max_tokens=4,
        temperature=0,
        extra_body={"repolm": {"path": "pkg/files.py", "return_prompt": True}},
    )
    report = answer.model_extra["repolm"]
    built = _builder(tiny_generator).completion(PREFIX, SUFFIX, budget=PromptBudget(400), path="pkg/files.py")
    assert report["prompt"] == built.text
    assert "# pkg/files.py" in report["prompt"]
    assert report["prompt_tokens"] == len(built.ids) == answer.usage.prompt_tokens


def test_metrics_count_requests_tokens_and_first_tokens(server, client):
    client.completions.create(model="tiny", prompt="x", max_tokens=5, temperature=0)
    text = httpx.get(server.url + "/metrics").text
    assert 'repolm_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert 'repolm_requests_total{endpoint="/v1/completions",status="400"}' in text
    assert 'repolm_time_to_first_token_seconds_count{endpoint="/v1/completions"}' in text
    generated = float(text.split("\nrepolm_generation_tokens_total ")[1].split()[0])
    assert generated >= 5
    assert "repolm_batch_running_requests 0.0" in text


@pytest.fixture(scope="module")
def keyed_server(tiny_model_dir):
    running = start_server(tiny_model_dir, ServerConfig(model_name="tiny", api_key="s3cret"))
    yield running
    running.stop()


def test_api_key_is_required_when_set(keyed_server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    good = openai.OpenAI(base_url=keyed_server.url + "/v1", api_key="s3cret", max_retries=0)
    assert good.completions.create(model="tiny", prompt="x", max_tokens=2).choices[0].finish_reason
    with httpx.Client(base_url=keyed_server.url) as http:
        missing = http.post("/infill", json={"input_prefix": "x"})
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "invalid_api_key"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert http.get("/metrics").status_code == 401
        assert http.get("/health").status_code == 200
        assert http.get("/").status_code == 200
        assert http.get("/page/app.js").status_code == 200
        keyed = http.post("/tokenize", json={"content": "x"}, headers={"Authorization": "Bearer s3cret"})
        assert keyed.status_code == 200
