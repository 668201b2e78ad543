"""The id-level engine against Hugging Face `generate`, and its sampling rules."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from repolm.hf_folder import config_to_hf, to_hf_state_dict
from repolm.infer.engine import Engine
from repolm.infer.sampling import SamplingParams, filter_top_k, filter_top_p, sample_next_token
from repolm.model import ModelConfig, build_model

VOCAB = 211

# the id-level parity tests also run on a CUDA device when one is present (marked `gpu`: `pytest -m gpu`)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture
def device(request) -> torch.device:
    """The device of a parametrized test (the `gpu` mark of the CUDA case skips it without CUDA: tests/conftest.py)."""
    return torch.device(request.param)


def _pair(num_kv_heads: int, rope_scaling_factor: float, device: str | torch.device = "cpu") -> tuple:
    config = ModelConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=num_kv_heads,
        rope_scaling_factor=rope_scaling_factor,
        initializer_range=0.05,
    )
    ours = build_model(config, seed=1)
    hf_config = LlamaConfig(**{k: v for k, v in config_to_hf(config).items() if k != "architectures"})
    hf_config.pad_token_id = 0
    hf_config._attn_implementation = "sdpa"
    reference = LlamaForCausalLM(hf_config).eval()
    reference.load_state_dict(to_hf_state_dict(ours), strict=True)
    return ours.to(device), reference.to(device)


def _prompts(lengths: tuple[int, ...], seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=generator).tolist() for n in lengths]


def _hf_greedy(reference: LlamaForCausalLM, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    length = max(len(p) for p in prompts)
    device = reference.device
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.no_grad():
        out = reference.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
        )
    return out[:, length:].tolist()


@pytest.mark.parametrize("device", DEVICES, indirect=True)
@pytest.mark.parametrize("num_kv_heads,rope_scaling_factor", [(4, 1.0), (2, 4.0)])
def test_greedy_matches_transformers_at_batch_1_and_4(num_kv_heads, rope_scaling_factor, device):
    ours, reference = _pair(num_kv_heads, rope_scaling_factor, device)
    engine = Engine(ours)
    params = SamplingParams(max_new_tokens=32)
    single = _prompts((13,))
    assert engine.generate(single, params) == _hf_greedy(reference, single, 32)
    batch = _prompts((5, 17, 9, 30), seed=1)
    assert engine.generate(batch, params) == _hf_greedy(reference, batch, 32)


def test_batched_rows_equal_rows_alone():
    ours, _ = _pair(2, 4.0)
    engine = Engine(ours)
    batch = _prompts((3, 21, 8), seed=2)
    params = SamplingParams(max_new_tokens=20)
    together = engine.generate(batch, params)
    assert together == [engine.generate([p], params)[0] for p in batch]


def test_stop_ids_end_rows_and_batch_keeps_going():
    ours, _ = _pair(4, 1.0)
    engine = Engine(ours)
    batch = _prompts((6, 11, 4), seed=3)
    free = engine.generate(batch, SamplingParams(max_new_tokens=24))
    stop_token = free[1][5]  # row 1 must stop at its 6th token (or earlier if that id came before)
    stopped = engine.generate(batch, SamplingParams(max_new_tokens=24, stop_token_ids=(stop_token,)))
    for row, tokens in enumerate(stopped):
        if stop_token in free[row]:
            cut = free[row].index(stop_token) + 1
            assert tokens == free[row][:cut]
        else:
            assert tokens == free[row]


def test_stop_condition_and_stream_agree_with_generate():
    ours, _ = _pair(2, 1.0)
    engine = Engine(ours)
    batch = _prompts((7, 2), seed=4)
    params = SamplingParams(max_new_tokens=15)
    collected = [[], []]
    finished = []
    for step in engine.stream(batch, params, stop=lambda row, generated: row == 0 and len(generated) == 4):
        for row, token in step.tokens.items():
            collected[row].append(token)
        finished += step.finished
    full = engine.generate(batch, params)
    assert collected[0] == full[0][:4]
    assert collected[1] == full[1]
    assert sorted(finished) == [0, 1]


def test_seeded_sampling_is_reproducible_and_varies_with_seed():
    ours, _ = _pair(2, 1.0)
    engine = Engine(ours)
    batch = _prompts((5, 9), seed=5)
    params = dict(max_new_tokens=16, temperature=1.5, top_k=50, top_p=0.95)
    first = engine.generate(batch, SamplingParams(**params, seed=7))
    assert first == engine.generate(batch, SamplingParams(**params, seed=7))
    assert first != engine.generate(batch, SamplingParams(**params, seed=8))


def test_per_row_seeds_make_samples_independent_of_the_batch():
    ours, _ = _pair(2, 1.0)
    engine = Engine(ours)
    batch = _prompts((5, 9, 14), seed=9)
    params = SamplingParams(max_new_tokens=16, temperature=1.5, top_k=50, top_p=0.95)
    seeds = [11, 12, 13]
    together = engine.generate(batch, params, seeds=seeds)
    alone = [engine.generate([prompt], params, seeds=[seed])[0] for prompt, seed in zip(batch, seeds, strict=True)]
    assert together == alone
    assert engine.generate(batch[::-1], params, seeds=[13, 12, 11]) == together[::-1]
    assert together[0] != engine.generate(batch, params, seeds=[14, 12, 13])[0]
    with pytest.raises(ValueError, match="one seed per prompt"):
        engine.generate(batch, params, seeds=[1])


def test_top_k_top_p_and_repetition_penalty_match_transformers():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 300, generator=generator) * 3
    input_ids = torch.randint(0, 300, (4, 40), generator=generator)
    expected = TopKLogitsWarper(top_k=17)(input_ids, logits.clone())
    assert torch.equal(filter_top_k(logits, 17), expected)
    expected = TopPLogitsWarper(top_p=0.8)(input_ids, logits.clone())
    assert torch.equal(filter_top_p(logits, 0.8).isinf(), expected.isinf())
    seen = torch.zeros(4, 300, dtype=torch.bool).scatter_(1, input_ids, True)
    expected = RepetitionPenaltyLogitsProcessor(1.3)(input_ids, logits.clone())
    greedy = sample_next_token(logits, SamplingParams(repetition_penalty=1.3), seen)
    assert torch.equal(greedy, expected.argmax(-1))


def test_sampling_frequencies_follow_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 1e-9]]))
    generator = torch.Generator().manual_seed(0)
    params = SamplingParams(temperature=1.0)
    draws = torch.stack([sample_next_token(logits, params, generator=generator) for _ in range(4000)])
    frequencies = torch.bincount(draws.flatten(), minlength=4).float() / 4000
    assert torch.allclose(frequencies, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.03)
    # top_p 0.6 keeps {0.5, 0.3}; top_k 1 keeps the argmax only
    draws = {int(sample_next_token(logits, SamplingParams(temperature=1.0, top_p=0.6))) for _ in range(200)}
    assert draws == {0, 1}
    assert {int(sample_next_token(logits, SamplingParams(temperature=1.0, top_k=1))) for _ in range(50)} == {0}
    # one generator per row (the batcher's and seeded batches' path): 4000 rows, each its own generator
    rows = logits.expand(4000, 4)
    generators = [torch.Generator().manual_seed(seed) for seed in range(4000)]
    draws = sample_next_token(rows, params, generator=generators)
    frequencies = torch.bincount(draws, minlength=4).float() / 4000
    assert torch.allclose(frequencies, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.03)
    top_p = sample_next_token(rows[:200], SamplingParams(temperature=1.0, top_p=0.6), generator=generators[:200])
    assert set(top_p.tolist()) == {0, 1}


def test_bad_prompts_and_params_are_rejected():
    ours, _ = _pair(4, 1.0)
    engine = Engine(ours)
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[1, 2], []], SamplingParams(max_new_tokens=2))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        engine.generate([[1, VOCAB + 5]], SamplingParams(max_new_tokens=2))
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    assert engine.generate([[1, 2]], SamplingParams(max_new_tokens=0)) == [[]]


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_compiled_fixed_shape_decoding_equals_eager(device):
    """Engine(compile=True): fixed-shape decode steps through torch.compile give the eager engine's tokens. On CPUs
    the weights are frozen into inductor's C++ GEMM kernels and one graph serves every cache length of a batch size
    (on CUDA a graph per length bucket, replayed as a CUDA graph)."""
    from torch._dynamo.utils import counters

    ours, _ = _pair(2, 4.0, device)
    eager, compiled = Engine(ours), Engine(ours, compile=True)
    assert compiled.freeze_weights is (device.type == "cpu") and compiled.cuda_graphs is (device.type == "cuda")
    batch = _prompts((5, 17, 9), seed=6)
    params = SamplingParams(max_new_tokens=20)
    free = eager.generate(batch, params)
    assert compiled.generate(batch, params) == free
    # a row that stops early rides along in the fixed-shape batch without changing the others
    stop_token = free[1][3]
    params = SamplingParams(max_new_tokens=20, stop_token_ids=(stop_token,))
    assert compiled.generate(batch, params) == eager.generate(batch, params)
    # a longer request of the same batch size: another cache length bucket (64 -> 128 slots)
    graphs = counters["stats"]["unique_graphs"]
    longer = SamplingParams(max_new_tokens=90)
    assert compiled.generate(batch, longer) == eager.generate(batch, longer)
    new_graphs = counters["stats"]["unique_graphs"] - graphs
    assert new_graphs == (0 if device.type == "cpu" else 1), new_graphs


def test_frozen_weights_options_are_checked():
    """`freeze_weights` is for the plain compiled path: combined with CUDA graphs it is refused with a clear error;
    `freeze_weights=False` on a CPU compiles without freezing (a graph per length bucket) and gives the same tokens."""
    ours, _ = _pair(4, 1.0)
    with pytest.raises(ValueError, match="freeze_weights and cuda_graphs"):
        Engine(ours, compile=True, cuda_graphs=True, freeze_weights=True)
    with pytest.raises(ValueError, match="freeze_weights is for models on CPUs"):
        Engine(ours.to("meta"), compile=True, freeze_weights=True)
    ours, _ = _pair(4, 1.0)
    assert not Engine(ours).freeze_weights  # only compiled engines freeze
    plain = Engine(ours, compile=True, freeze_weights=False)
    assert not plain.freeze_weights
    batch = _prompts((4, 9), seed=10)
    params = SamplingParams(max_new_tokens=12)
    assert plain.generate(batch, params) == Engine(ours).generate(batch, params)


@pytest.mark.parametrize("device", DEVICES, indirect=True)
def test_cuda_graph_mode_reuses_its_cache_across_requests(device):
    """With `cuda_graphs=True` (the default on CUDA) the cache of a shape is kept and reused by the next request of
    that shape; results equal the eager engine's, whatever the order of shapes. (On CPU no graph is captured, but
    the cache reuse runs.)"""
    ours, _ = _pair(2, 4.0, device)
    eager, graphed = Engine(ours), Engine(ours, compile=True, cuda_graphs=True)
    first, second = _prompts((5, 17, 9), seed=7), _prompts((11, 4), seed=8)
    params = SamplingParams(max_new_tokens=12)
    expected_first, expected_second = eager.generate(first, params), eager.generate(second, params)
    assert graphed.generate(first, params) == expected_first
    cache = graphed._static_cache
    assert graphed.generate(first, params) == expected_first and graphed._static_cache is cache  # reused
    assert graphed.generate(second, params) == expected_second and graphed._static_cache is not cache
    assert graphed.generate(first, params) == expected_first
    # two streams of the same shape at once: the second gets its own cache, neither disturbs the other
    other = _prompts((6, 16, 10), seed=9)
    expected_other = eager.generate(other, params)
    outputs = {"first": [[] for _ in first], "other": [[] for _ in other]}
    streams = {"first": graphed.stream(first, params), "other": graphed.stream(other, params)}
    for steps in zip(*streams.values(), strict=True):
        for name, step in zip(streams, steps, strict=True):
            for row, token in step.tokens.items():
                outputs[name][row].append(token)
    assert outputs == {"first": expected_first, "other": expected_other}
    assert graphed.generate(first, params) == expected_first and not graphed._static_cache_busy


def test_input_major_weights_keep_values_and_saved_folders(tmp_path):
    """On CPU the engine re-stores linear weights input-major: same logits, same names and shapes, same saved files."""
    from repolm.hf_folder import load_pretrained, save_pretrained
    from repolm.infer.engine import input_major_linear_weights

    ours, _ = _pair(2, 4.0)
    ids = torch.tensor(_prompts((7, 7), seed=3))
    with torch.no_grad():
        before = ours(ids)
    state = {name: tensor.clone() for name, tensor in ours.state_dict().items()}
    input_major_linear_weights(ours)
    assert ours.lm_head.weight.t().is_contiguous() and ours.layers[0].self_attn.qkv_proj.weight.t().is_contiguous()
    after_state = ours.state_dict()
    assert after_state.keys() == state.keys()
    assert all(torch.equal(after_state[name], tensor) for name, tensor in state.items())
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), before, rtol=1e-5, atol=1e-5)
    Engine(ours)  # on CPU the engine does the same (a second call changes nothing)
    save_pretrained(ours, tmp_path / "saved")
    reloaded = load_pretrained(tmp_path / "saved").state_dict()
    assert all(torch.equal(reloaded[name], tensor) for name, tensor in state.items())


def test_a_tiny_temperature_samples_the_greedy_token_instead_of_nan():
    logits = torch.tensor([[1.0, 3.0, -2.0, 2.9], [0.5, -1.0, 0.4, 0.0]])
    for temperature in (1e-30, 1e-300):
        params = SamplingParams(temperature=temperature, top_p=0.9, top_k=3, seed=0)
        tokens = sample_next_token(logits, params, generator=torch.Generator().manual_seed(0))
        assert tokens.tolist() == [1, 0]
