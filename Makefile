# make demo: create .venv, install, generate the built-in sample, convert it, print what was made.
# make test: install the test extras, lint, type-check, build the docs (strict), run the whole suite.
# make docs: the documentation site (docs/, mkdocs.yml) into site/, failing on any broken link.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
# torch is pinned in the [torch] extra (the CPU wheel on these machines); ray comes with [ray].
TEST_EXTRAS := test,torch,ray,docs,browse

.PHONY: demo test install install-test lint typecheck docs bench bench-peers clean

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
	$(BIN)/python .ci/check_modules.py  # no import cycles, no module over 400 lines

typecheck: install-test
	$(BIN)/mypy

docs: install-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test: lint typecheck docs
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
	rm -rf $(VENV) demo demo-davis site .pytest_cache .mypy_cache .ruff_cache
