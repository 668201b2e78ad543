# `make demo` and `make test` create .venv and install everything they need, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch lies on disk on the project's CPU machines; on a CUDA machine override,
# e.g. `make test TORCH_SPEC=torch==2.13.0` from an index that serves CUDA wheels.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install toolchains test test-slow lint demo bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# compilers and interpreters that evaluations run generated code with (Debian packages + TypeScript from npm);
# a language whose toolchain is missing is reported as skipped, never as failed
toolchains:
	bash scripts/install_toolchains.sh

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: install lint
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-slow: install
	$(BIN)/python -m pytest -q -m "slow"

# the whole recipe on this machine's own code: data -> tokenizer -> pretraining -> long context -> SFT -> eval -> report
# (about 30 minutes on 2 CPU cores; run it again to resume; BUDGET=10 for a quicker, smaller run)
demo: install
	$(BIN)/python -m repolm recipe run configs/recipes/demo.yaml --output out/demo $(if $(BUDGET),--budget $(BUDGET))

bench: install
	$(BIN)/python benchmarks/bench_generate.py
	$(BIN)/python benchmarks/bench_data.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_eval.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
