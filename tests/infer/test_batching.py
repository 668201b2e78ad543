"""Continuous batching: requests that join and leave a running batch get what they would get alone."""

import asyncio
import threading
import time
from pathlib import Path

import pytest

from repolm.errors import RepolmError
from repolm.hf_folder import load_pretrained
from repolm.infer.batching import BatcherConfig, ContinuousBatcher, QueueFull, collect
from repolm.infer.engine import Engine
from repolm.infer.sampling import SamplingParams
from repolm.infer.text import TextGenerator
from repolm.tokenizer import CodeTokenizer

PROMPTS = [
    "import os\n",
    "def read_file(path):\n    with open(path) as f:\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "for i in range(10):\n    print(",
    "x = 1\n",
    '# Copyright\n"""Utilities for parsing command-line options."""\n\nimport sys\nimport re\n',
    "try:\n    import json\nexcept ImportError:\n",
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> CodeTokenizer:
    return CodeTokenizer.load(tiny_model_dir)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: Path, tokenizer: CodeTokenizer) -> TextGenerator:
    """The static-batch engine on its own copy of the model: what each request gives alone."""
    return TextGenerator(Engine(load_pretrained(tiny_model_dir, device="cpu")), tokenizer)


def _batcher(tiny_model_dir: Path, tokenizer: CodeTokenizer, device: str = "cpu", **config) -> ContinuousBatcher:
    model = load_pretrained(tiny_model_dir, device=device)
    return ContinuousBatcher(model, tokenizer, BatcherConfig(**config))


def _ids(tokenizer: CodeTokenizer, text: str) -> list[int]:
    return [tokenizer.bos_id, *tokenizer.encode(text)]


def _alone(reference: TextGenerator, ids: list[int], params: SamplingParams, stop=(), seed=None) -> str:
    return reference.generate_ids([ids], params, stop, None if seed is None else [seed])[0]


def test_greedy_requests_joining_a_running_batch_equal_them_alone(tiny_model_dir, tokenizer, reference):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=3)
    try:
        lengths = [5, 23, 11, 40, 2, 17, 30]  # unequal: rows finish at different steps, waiting ones join
        handles = [
            batcher.submit(_ids(tokenizer, prompt), SamplingParams(max_new_tokens=n))
            for prompt, n in zip(PROMPTS, lengths, strict=True)
        ]
        results = [collect(handle, timeout=60) for handle in handles]
        for prompt, n, (text, last) in zip(PROMPTS, lengths, results, strict=True):
            assert text == _alone(reference, _ids(tokenizer, prompt), SamplingParams(max_new_tokens=n))
            assert last.finished and last.finish_reason in ("length", "stop")
            assert last.completion_tokens <= n and last.prompt_tokens == len(_ids(tokenizer, prompt))
        stats = batcher.stats()
        assert stats["requests_total"] == len(PROMPTS) and stats["running"] == 0 and stats["waiting"] == 0
        # more steps than the longest request alone, fewer than all requests one after another
        assert max(lengths) <= stats["steps_total"] < sum(lengths)
    finally:
        batcher.shutdown()


def test_a_request_submitted_mid_batch_joins_between_steps(tiny_model_dir, tokenizer, reference):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=4)
    try:
        first = batcher.submit(_ids(tokenizer, PROMPTS[2]), SamplingParams(max_new_tokens=60))
        events = first.events(timeout=60)
        for _ in range(10):  # the first request is well under way
            next(events)
        late = batcher.submit(_ids(tokenizer, PROMPTS[1]), SamplingParams(max_new_tokens=20))
        late_text, _ = collect(late, timeout=60)
        first_text = "".join(event.text for event in events)  # the rest of the first request's events
        assert batcher.stats()["steps_total"] < 60 + 20  # the late request ran beside the first one
        assert late_text == _alone(reference, _ids(tokenizer, PROMPTS[1]), SamplingParams(max_new_tokens=20))
        expected = _alone(reference, _ids(tokenizer, PROMPTS[2]), SamplingParams(max_new_tokens=60))
        assert expected.endswith(first_text)
    finally:
        batcher.shutdown()


def test_sampled_text_depends_on_the_seed_not_on_the_company(tiny_model_dir, tokenizer, reference):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=8)
    sampled = SamplingParams(max_new_tokens=24, temperature=1.3, top_p=0.95, top_k=50)
    penalized = SamplingParams(max_new_tokens=24, temperature=0.8, repetition_penalty=1.3)
    try:
        ids = _ids(tokenizer, PROMPTS[3])
        crowd = [
            batcher.submit(_ids(tokenizer, prompt), params, seed=index)
            for index, prompt in enumerate(PROMPTS)
            for params in (SamplingParams(max_new_tokens=30), penalized)
        ]
        in_company = batcher.submit(ids, sampled, seed=1234)
        penalized_in_company = batcher.submit(ids, penalized, seed=99)
        texts = [collect(handle, timeout=120)[0] for handle in [in_company, penalized_in_company, *crowd]]
        alone = collect(batcher.submit(ids, sampled, seed=1234), timeout=60)[0]
        assert texts[0] == alone == _alone(reference, ids, sampled, seed=1234)
        assert texts[1] == _alone(reference, ids, penalized, seed=99)
        assert collect(batcher.submit(ids, sampled, seed=1235), timeout=60)[0] != alone
    finally:
        batcher.shutdown()


def test_stop_strings_stop_ids_and_lengths_end_requests(tiny_model_dir, tokenizer, reference):
    batcher = _batcher(tiny_model_dir, tokenizer)
    try:
        ids = _ids(tokenizer, PROMPTS[1])
        free = _alone(reference, ids, SamplingParams(max_new_tokens=40))
        stop = free[len(free) // 2 : len(free) // 2 + 2]
        assert stop.strip(), f"pick a visible stop string from {free!r}"
        text, last = collect(batcher.submit(ids, SamplingParams(max_new_tokens=40), stop_strings=[stop]), 60)
        assert text == free[: free.index(stop)] and last.finish_reason == "stop"
        text, last = collect(batcher.submit(ids, SamplingParams(max_new_tokens=3)), 60)
        assert last.finish_reason == "length" and last.completion_tokens == 3
        first_token = tokenizer.encode(free)[0]
        params = SamplingParams(max_new_tokens=40, stop_token_ids=(first_token,))
        text, last = collect(batcher.submit(ids, params), 60)
        assert (text, last.finish_reason, last.completion_tokens, last.token_ids) == ("", "stop", 1, [first_token])
    finally:
        batcher.shutdown()


def test_cancel_frees_the_row_within_a_step_or_two(tiny_model_dir, tokenizer):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=2)
    try:
        ids = _ids(tokenizer, PROMPTS[0])
        other = batcher.submit(ids, SamplingParams(max_new_tokens=1500))
        doomed = batcher.submit(ids, SamplingParams(max_new_tokens=1500))
        events = doomed.events(timeout=60)
        next(events)
        steps_at_cancel = batcher.stats()["steps_total"]
        doomed.cancel()
        last = list(events)[-1]
        assert last.finish_reason == "cancelled" and last.completion_tokens < 1500
        deadline = time.monotonic() + 30
        while batcher.stats()["running"] != 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert batcher.stats()["running"] == 1
        assert batcher.stats()["steps_total"] - steps_at_cancel <= 3
        other.cancel()
        assert collect(other, 60)[1].finish_reason == "cancelled"
    finally:
        batcher.shutdown()


def test_the_waiting_queue_is_bounded_and_static_admission_waits_for_an_empty_batch(tiny_model_dir, tokenizer):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=1, max_waiting=1, admission="static")
    try:
        ids = _ids(tokenizer, PROMPTS[0])
        running = batcher.submit(ids, SamplingParams(max_new_tokens=200))
        events = running.events(timeout=60)
        next(events)  # it runs: the queue is empty again
        waiting = batcher.submit(ids, SamplingParams(max_new_tokens=5))
        with pytest.raises(QueueFull, match="max_waiting"):
            batcher.submit(ids, SamplingParams(max_new_tokens=5))
        assert batcher.stats()["waiting"] == 1
        rest = list(events)
        assert rest[-1].finished
        text, last = collect(waiting, 60)
        assert last.finished
    finally:
        batcher.shutdown()


def test_static_admission_starts_a_batch_only_when_the_last_one_ended(tiny_model_dir, tokenizer):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=4, admission="static")
    order: list[tuple[str, bool]] = []
    try:
        ids = _ids(tokenizer, PROMPTS[0])
        long = batcher.submit(ids, SamplingParams(max_new_tokens=80))
        events = long.events(timeout=60)
        next(events)
        late = batcher.submit(ids, SamplingParams(max_new_tokens=5))

        def record(name, iterator):
            for event in iterator:
                order.append((name, event.finished))

        thread = threading.Thread(target=record, args=("late", late.events(timeout=60)))
        thread.start()
        record("long", events)
        thread.join(60)
        first_late = order.index(("late", False)) if ("late", False) in order else order.index(("late", True))
        assert order.index(("long", True)) < first_late
    finally:
        batcher.shutdown()


def test_async_handles_and_bad_requests(tiny_model_dir, tokenizer, reference):
    batcher = _batcher(tiny_model_dir, tokenizer, max_seq_len=64)
    ids = _ids(tokenizer, PROMPTS[4])

    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        handles = [batcher.submit(ids, SamplingParams(max_new_tokens=n), loop=loop) for n in (4, 9)]

        async def text(handle) -> str:
            return "".join([event.text async for event in handle.async_events()])

        return await asyncio.gather(*(text(handle) for handle in handles))

    try:
        texts = asyncio.run(run())
        assert texts == [_alone(reference, ids, SamplingParams(max_new_tokens=n)) for n in (4, 9)]
        with pytest.raises(ValueError, match="max_seq_len 64"):
            batcher.submit(ids, SamplingParams(max_new_tokens=64))
        with pytest.raises(ValueError, match="outside the vocabulary"):
            batcher.submit([10**6], SamplingParams(max_new_tokens=4))
        with pytest.raises(ValueError, match="empty"):
            batcher.submit([], SamplingParams(max_new_tokens=4))
        with pytest.raises(RepolmError, match="max_batch_size"):
            BatcherConfig(max_batch_size=0)
    finally:
        batcher.shutdown()
    with pytest.raises(RepolmError, match="shutting down"):
        batcher.submit(ids, SamplingParams(max_new_tokens=4))


def test_shutdown_without_drain_cancels_what_runs_and_waits(tiny_model_dir, tokenizer):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=1)
    ids = _ids(tokenizer, PROMPTS[0])
    running = batcher.submit(ids, SamplingParams(max_new_tokens=1500))
    events = running.events(timeout=60)
    next(events)
    waiting = batcher.submit(ids, SamplingParams(max_new_tokens=5))
    batcher.shutdown(drain=False, timeout=60)
    assert list(events)[-1].finish_reason == "cancelled"
    assert collect(waiting, 10)[1].finish_reason == "cancelled"


@pytest.mark.slow
def test_compiled_frozen_weight_steps_equal_eager(tiny_model_dir, tokenizer, reference):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=4, compile=True)
    try:
        handles = [batcher.submit(_ids(tokenizer, p), SamplingParams(max_new_tokens=12)) for p in PROMPTS[:5]]
        for prompt, handle in zip(PROMPTS, handles, strict=False):
            expected = _alone(reference, _ids(tokenizer, prompt), SamplingParams(max_new_tokens=12))
            assert collect(handle, 600)[0] == expected
    finally:
        batcher.shutdown()


@pytest.mark.gpu
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "cuda-graphs"])
def test_cuda_batcher_gives_the_cpu_greedy_texts(tiny_model_dir, tokenizer, reference, compile):
    from torch._dynamo.utils import counters

    batcher = _batcher(tiny_model_dir, tokenizer, device="cuda", max_batch_size=4, compile=compile, max_seq_len=256)
    assert batcher.engine.cuda_graphs == compile
    skips = counters["inductor"]["cudagraph_skips"]
    try:
        lengths = [5, 23, 11, 40, 2, 17, 30]
        handles = [
            batcher.submit(_ids(tokenizer, prompt), SamplingParams(max_new_tokens=n))
            for prompt, n in zip(PROMPTS, lengths, strict=True)
        ]
        for prompt, n, handle in zip(PROMPTS, lengths, handles, strict=True):
            expected = _alone(reference, _ids(tokenizer, prompt), SamplingParams(max_new_tokens=n))
            assert collect(handle, 300)[0] == expected
        assert counters["inductor"]["cudagraph_skips"] == skips  # the steps really ran as CUDA graphs
    finally:
        batcher.shutdown()


def test_a_static_batch_waits_briefly_to_fill(tiny_model_dir, tokenizer):
    batcher = _batcher(tiny_model_dir, tokenizer, max_batch_size=4, admission="static", static_batch_wait=5.0)
    try:
        ids = _ids(tokenizer, PROMPTS[0])
        params = SamplingParams(max_new_tokens=10, stop_token_ids=(len(tokenizer) + 1,))  # no early stop
        handles = [batcher.submit(ids, params) for _ in range(4)]
        assert all(collect(handle, 60)[1].completion_tokens == 10 for handle in handles)
        assert batcher.stats()["steps_total"] == 9  # one batch: the first tokens come from the prefills
    finally:
        batcher.shutdown()
