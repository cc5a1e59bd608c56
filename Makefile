# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
REF_VENV := .venv-ref
BIN := $(VENV)/bin
REF_AISTORE := aistore[etl]==2.0.0

.PHONY: venv ref-venv test lint typecheck pytest demo bench reliability image-check clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev,examples]'
	touch $@

$(VENV)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e '.[all,dev,examples,bench]'
	touch $@

$(REF_VENV)/.installed:
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q '$(REF_AISTORE)'
	touch $@

venv: $(BIN)/.installed
ref-venv: $(REF_VENV)/.installed

lint: venv
	$(BIN)/ruff check src tests examples benchmarks docker reliability
	$(BIN)/ruff format --check src tests examples benchmarks docker reliability

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

# Not part of `make test` (about 10 minutes): hop faults x comm types, floods, slowloris,
# seeded fuzz, SIGTERM and a soak against every server under `aisetl serve`; ARGS="--docs"
# writes docs/reliability.md, e.g. ARGS="--only fuzz,soak --servers flask --soak 20".
reliability: venv
	$(BIN)/python -m reliability.run $(ARGS)

# Opt-in (not part of `make test`): build the runtime image, an example and an `aisetl new`
# project with docker, and drive each container through the emulated target. Needs a
# container engine and the network; ARGS="--debootstrap" builds a missing python:3.11-slim
# base from Debian's packages, ARGS="--variants slim" skips the Alpine runtime image.
image-check: venv
	$(BIN)/python docker/image_check.py $(ARGS)

clean:
	rm -rf $(VENV) $(REF_VENV) .pytest_cache .mypy_cache .ruff_cache
