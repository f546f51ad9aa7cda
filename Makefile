# make demo: create .venv, install, generate the built-in sample, convert it, print what was made.
# make test: install the test extras, lint, type-check, run the whole suite (slow tests included).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# torch is pinned in the [torch] extra (the CPU wheel on these machines); ray comes with [ray].
TEST_EXTRAS := test,torch,ray,browse

.PHONY: demo test install install-test lint typecheck bench bench-peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install -e ".[$(TEST_EXTRAS)]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/mose-shards demo demo --videos 6 --frames 16

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install-test
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

bench: install-test
	$(BIN)/python benchmarks/convert.py
	$(BIN)/python benchmarks/scale.py
	$(BIN)/python benchmarks/stream.py
	$(BIN)/python benchmarks/stats.py
	$(BIN)/python benchmarks/index.py
	$(BIN)/python benchmarks/sam2.py
	$(BIN)/python benchmarks/mixture.py
	$(BIN)/python benchmarks/archives.py
	$(BIN)/python benchmarks/rehearsal.py --videos 500  # the full MOSEv2 size: drop --videos (about 10 min)

# mose-shards beside Mosaic Streaming, LitData, webdataset and the raw tree (peers get venvs of their
# own under .bench-peers/, made on first use, Mosaic's ~6 GB; about half an hour on 2 cores)
bench-peers: install-test
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
