# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
REF_VENV := .venv-ref
BIN := $(VENV)/bin
REF_AISTORE := aistore[etl]==2.0.0
# The CPU build of PyTorch, for the speech_detect example (pip takes it from the local wheel
# cache; asked for by a range instead, pip would fetch a CUDA build of several GB).
TORCH ?= torch==2.13.0

.PHONY: venv ref-venv test lint typecheck pytest demo bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '$(TORCH)'
	$(BIN)/python -m pip install -q -e '.[all,dev,examples,speech]'
	touch $@

$(VENV)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e '.[all,dev,examples,speech,bench]'
	touch $@

$(REF_VENV)/.installed:
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q '$(REF_AISTORE)'
	touch $@

venv: $(BIN)/.installed
ref-venv: $(REF_VENV)/.installed

lint: venv
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

typecheck: venv
	$(BIN)/mypy

pytest: venv ref-venv
	AISETL_REFERENCE_PYTHON=$(abspath $(REF_VENV))/bin/python $(BIN)/python -m pytest -q

test: lint typecheck pytest

demo: venv
	$(BIN)/python -m aisetl.demo

# `make bench` runs the quick preset; pass more with ARGS, e.g. make bench ARGS="--full --docs"
bench: $(VENV)/.bench-installed ref-venv
	AISETL_REFERENCE_PYTHON=$(abspath $(REF_VENV))/bin/python $(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) $(REF_VENV) .pytest_cache .mypy_cache .ruff_cache
