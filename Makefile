# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
REF_VENV := .venv-ref
BIN := $(VENV)/bin
# The newest versions aisetl supports, pinned (make test installs them; make lock refreshes).
LOCK := requirements/lock.txt
# The lowest versions pyproject.toml declares, pinned.
FLOORS := requirements/oldest.txt
REF_LOCK := requirements/reference.txt
# make lock: the resolver, installed on demand into its own environment.
TOOLS_VENV := .venv-tools
UV := uv==0.13.9
COMPILE = $(TOOLS_VENV)/bin/uv pip compile --quiet --upgrade --universal --python-version 3.10 \
	--custom-compile-command 'make lock'

.PHONY: venv ref-venv test lock lint typecheck pytest demo bench clean

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip setuptools
	$(BIN)/python -m pip install -q --no-build-isolation -c $(LOCK) -e '.[all,dev,examples]'
	touch $@

$(VENV)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install -q --no-build-isolation -c $(LOCK) -e '.[all,dev,examples,bench]'
	touch $@

$(REF_VENV)/.installed: requirements/reference.in $(REF_LOCK)
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q -c $(REF_LOCK) -r requirements/reference.in
	touch $@

$(TOOLS_VENV)/.installed:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install -q '$(UV)'
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

# Re-resolve the three pinned files from pyproject.toml and requirements/*.in (needs PyPI).
lock: $(TOOLS_VENV)/.installed
	$(COMPILE) --all-extras pyproject.toml requirements/build.in -o $(LOCK)
	$(COMPILE) --resolution lowest-direct --extra all --extra dev pyproject.toml -o $(FLOORS)
	$(COMPILE) requirements/reference.in -o $(REF_LOCK)

demo: venv
	$(BIN)/python -m aisetl.demo

# `make bench` runs the quick preset; pass more with ARGS, e.g. make bench ARGS="--full --docs"
bench: $(VENV)/.bench-installed ref-venv
	AISETL_REFERENCE_PYTHON=$(abspath $(REF_VENV))/bin/python $(BIN)/python -m benchmarks.run $(ARGS)

clean:
	rm -rf $(VENV) $(REF_VENV) $(TOOLS_VENV) .pytest_cache .mypy_cache .ruff_cache
