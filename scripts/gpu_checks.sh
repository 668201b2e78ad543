#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one run: the `gpu`-marked tests (fp32 parity with transformers and the CPU,
# bf16 accuracy, FlashAttention kernels in forward and backward, greedy generation = transformers, compiled decoding,
# bf16 + torch.compile training with stop/resume, the evaluation generator on the GPU, flex_attention's document
# mask against the dense one in loss and gradients), then the training, document-mask and decode benchmarks on the
# device. Logs and JSON results go to $OUT (default out/gpu).
#
# Needs a python whose torch is a CUDA build, with transformers, tokenizers, safetensors, pyyaml, jinja2, tqdm, numpy,
# httpx and pytest (the data-pipeline packages are not needed). Run from the repository root:
#   bash scripts/gpu_checks.sh                 # or PY=.venv/bin/python OUT=out/gpu bash scripts/gpu_checks.sh
#   BENCH=0 bash scripts/gpu_checks.sh         # the tests only, without the speed benchmarks
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu}
PY=${PY:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
status=0

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__)"

echo "== gpu tests"
$PY -m pytest -m gpu -q -rA -s -p no:cacheprovider tests/model/test_model_cuda.py tests/infer/test_engine.py \
    tests/infer/test_batching.py tests/eval/test_generators.py tests/train/test_loop.py tests/train/test_data.py 2>&1 | tee "$OUT/pytest_gpu.log" || status=1

[ "${BENCH:-1}" = 0 ] && exit $status

echo "== document masking at 4K and 16K tokens: dense mask, spans, flex_attention's fused kernel"
$PY benchmarks/bench_document_mask.py --json "$OUT/bench_document_mask.json" 2>&1 | tee "$OUT/bench_document_mask.log" || status=1

echo "== training speed: deepseek-coder-1.3b, bf16 autocast, 4 x 2048 tokens"
$PY benchmarks/bench_train.py --device cuda --preset deepseek-coder-1.3b --batch 4 --sequence-length 2048 --compile \
    --json "$OUT/bench_train.json" 2>&1 | tee "$OUT/bench_train.log" || status=1

echo "== decode speed: small and deepseek-coder-1.3b, bf16"
$PY benchmarks/bench_generate.py --device cuda --new-tokens 48 --json "$OUT/bench_generate.json" 2>&1 \
    | tee "$OUT/bench_generate.log" || status=1
exit $status
