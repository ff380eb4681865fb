# vse: every target installs what it needs into .venv (ignored by git) on first use.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PORT    ?= 8765

.PHONY: help venv test test-fast reproduce record smoke llm-server llm-binary bench bench-server fixtures atlas-demo lock clean

help:
	@echo "make test        run the offline test suite (installs .venv first)"
	@echo "make test-fast   the same without the slow cross-environment replays"
	@echo "make reproduce   replay the recorded cassettes offline and rebuild every table"
	@echo "make record      re-record the experiments against the local LLM server (resumable)"
	@echo "make llm-server  assemble the local Qwen2.5-Coder-1.5B GGUF, build llama-server once, serve on 127.0.0.1:$(PORT)"
	@echo "make smoke       live smoke test against the real local LLM server"
	@echo "make bench       benchmarks (simulator modes, activation extraction)"
	@echo "make bench-server  the old llama-cpp-python server vs llama-server; one scored explanation, cold and warm"
	@echo "make fixtures    regenerate fixtures/ from the real images and models"
	@echo "make atlas-demo  build an atlas of every recorded neuron (build/atlas-demo/index.html)"
	@echo "make lock        rewrite requirements/*.txt (exact versions and hashes) from pyproject.toml"

venv: $(VENV)/.stamp

# Two layers in one .venv, each installed from a lock file: exact versions with their hashes
# (requirements/*.txt, written by `make lock`), so a clone made next year replays with the numpy,
# scipy and matplotlib that wrote results/. The light one is all the offline replay needs: no torch,
# no CUDA wheels, so `make reproduce` on a fresh clone installs in well under a minute. The full one
# adds the vision extras (torch==2.14.1 and torchvision==0.29.1, pinned in pyproject.toml) and the
# test tools. vse itself goes in editable, without dependencies: the lock decided them.
$(VENV)/.stamp-light: pyproject.toml requirements/replay.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements/replay.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.stamp: $(VENV)/.stamp-light requirements/test.txt
	$(BIN)/pip install -q --require-hashes -r requirements/test.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Rewrite the lock files from pyproject.toml (after changing a dependency; then `make reproduce`
# and commit both). uv resolves for every platform at once, one version per package.
LOCK := $(BIN)/uv pip compile -q pyproject.toml --generate-hashes --python-version 3.11 --universal --fork-strategy fewest --no-header
lock: $(VENV)/.stamp-light
	$(BIN)/pip install -q 'uv==0.13.9'
	$(LOCK) --extra report -o requirements/replay.txt
	$(LOCK) --extra vision --extra report --extra dev -o requirements/test.txt

# llama.cpp's llama-server, built once from the pinned source (the llama-cpp-python 0.3.36 sdist's
# vendor/llama.cpp) into the model cache (about 10 minutes on 2 cores; needs cmake and a C++
# compiler), unless VSE_LLAMA_SERVER names a binary. A second run finds it at once.
llm-binary: $(VENV)/.stamp-light
	$(BIN)/vse llm build-server

# Only for `make bench-server`: the server vse ran before llama-server, in a venv of its own
# (compiles llama.cpp again: about 5 minutes on 2 cores).
OLD_SERVER_VENV ?= $(HOME)/.cache/vse/bench-llama-cpp-python
$(OLD_SERVER_VENV)/.stamp:
	$(PY) -m venv $(OLD_SERVER_VENV)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(OLD_SERVER_VENV)/bin/pip install -q 'llama-cpp-python[server]==0.3.36'
	touch $@

# Style and layering first (seconds): ruff (line length 120) and import-linter's layers contract
# (pyproject.toml; docs/ARCHITECTURE.md), then the offline test suite.
test: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not live"

# A replay that changes a committed result fails here (when run inside a git clone), and then
# compares every number with the committed files, so last-bit noise (another libm, another CPU
# architecture) reads apart from a changed result: `vse reproduce --check`, docs/setup.md "Same numbers".
# The same checks without the tests marked slow (the four cross-environment replays of every
# experiment, about 1.5 of the suite's 4 minutes on 2 cores): for a quick loop while editing.
test-fast: venv
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not live and not slow"

reproduce: $(VENV)/.stamp-light
	$(BIN)/vse reproduce
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  if ! git diff --quiet -- results || test -n "$$(git status --porcelain --untracked-files=all -- results)"; then \
	    git status --short -- results | head -20; \
	    echo "results/ differ from the committed ones; every number compared with the commit:"; \
	    d=$$(mktemp -d); git archive HEAD results | tar -x -C "$$d"; \
	    $(BIN)/vse reproduce --check --against "$$d/results"; rm -rf "$$d"; exit 1; fi; fi

record: llm-binary
	$(BIN)/vse reproduce --record

llm-server: llm-binary
	$(BIN)/vse llm serve --port $(PORT)

# The live tests against a freshly started llama-server (built first if needed).
smoke: venv llm-binary
	$(BIN)/python -m pytest -q -m live -p no:cacheprovider --force-enable-socket

bench: venv llm-binary
	$(BIN)/python bench/simulators.py
	$(BIN)/python bench/extraction.py

# The old server (llama-cpp-python + vse's logprobs patch) against llama-server, one run.
bench-server: venv llm-binary $(OLD_SERVER_VENV)/.stamp
	nice $(BIN)/python bench/server_compare.py --old-python $(OLD_SERVER_VENV)/bin/python
	$(BIN)/python bench/cold_start.py --protocol recall-free uniform --in-flight 8

fixtures: venv
	$(BIN)/vse fixtures

# The recorded explanations and scores of every experiment, with the fixtures' probe images: open the index from disk.
atlas-demo: $(VENV)/.stamp-light
	$(BIN)/vse atlas $(filter-out results/img/,$(wildcard results/*/)) --out build/atlas-demo
	@echo "open build/atlas-demo/index.html"

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
