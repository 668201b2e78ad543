#!/usr/bin/env bash
# The demo, for real, on CPU in a few minutes: train a byte-level BPE on this machine's Python standard
# library, build a `tiny` DeepSeek-Coder-architecture model, save it as a Hugging Face folder, reload it
# (with repolm and with transformers, checking both give the same logits), then generate and infill.
# The model is untrained, so its text is noise; later stages (pretraining) make it speak code.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
STDLIB=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')

echo "== 1. tokenizer: byte-level BPE (vocab 2048 + DeepSeek-Coder special tokens) on $STDLIB"
time $PY -m repolm tokenizer train --input "$STDLIB" --exclude site-packages \
    --exclude test --exclude tests --exclude idlelib --exclude "*.pyc" --vocab-size 2048 --output "$OUT/tokenizer"

echo "== 2. model: the tiny preset, sized to the tokenizer, saved as a Hugging Face folder"
$PY -m repolm model init --preset tiny --tokenizer "$OUT/tokenizer" --output "$OUT/tiny"
ls -l "$OUT/tiny"
$PY -m repolm model info "$OUT/tiny" | head -8

echo "== 3. reload: repolm and transformers read the same folder and give the same logits"
$PY - "$OUT/tiny" <<'PYEOF'
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from repolm.hf_folder import load_pretrained
from repolm.tokenizer import CodeTokenizer
folder = sys.argv[1]
ours, theirs = load_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
ids = CodeTokenizer.load(folder).encode("def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1)")
assert ids == AutoTokenizer.from_pretrained(folder)("def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1)", add_special_tokens=False)["input_ids"]
with torch.no_grad():
    difference = (ours(torch.tensor([ids])) - theirs(torch.tensor([ids])).logits).abs().max().item()
print(f"{len(ids)} tokens; max |logit difference| repolm vs transformers = {difference:.2e}")
assert difference < 1e-4
PYEOF

echo "== 4. generate (greedy, 24 tokens; streamed)"
$PY -m repolm generate --model "$OUT/tiny" --prompt "def fibonacci(n):" --max-new-tokens 24
echo
echo "== 5. generate (temperature 0.8, top-p 0.95, seed 1)"
$PY -m repolm generate --model "$OUT/tiny" --prompt "import os" --max-new-tokens 24 --temperature 0.8 --top-p 0.95 --seed 1
echo
echo "== 6. infill (PSM: <｜fim▁begin｜>prefix<｜fim▁hole｜>suffix<｜fim▁end｜>)"
$PY -m repolm infill --model "$OUT/tiny" --prefix "def add(a, b):
    " --suffix "
    return result" --max-new-tokens 16
echo
echo "== demo done: artifacts in $OUT"
