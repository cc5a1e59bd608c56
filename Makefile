# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
REF_VENV := .venv-ref
BIN := $(VENV)/bin
REF_AISTORE := aistore[etl]==2.0.0

.PHONY: venv ref-venv test lint typecheck pytest demo bench clean prometheus-check memory-check \
	bench-scrape

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
	$(BIN)/ruff check src tests examples benchmarks checks
	$(BIN)/ruff format --check src tests examples benchmarks checks

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

# Opt-in (not part of `make test`): a real Prometheus server (Debian's package, installed here
# when run as root on a Debian-like system) scrapes every server and must store what was sent.
prometheus-check: venv
	@command -v prometheus >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "prometheus-check: install Prometheus first (sudo apt-get install prometheus)" >&2; \
	    exit 2; \
	  fi; }
	$(BIN)/python -m checks.prometheus_check

# Opt-in: 64 concurrent 64 MiB PUTs into each server under a 1 GiB AISETL_MAX_INFLIGHT_BYTES,
# byte-exact, with peak RSS under the bound plus the stated overhead (a few minutes, 2 GiB free)
memory-check: venv
	$(BIN)/python -m benchmarks.memory_bound $(ARGS)

# Opt-in: server CPU per object with a /metrics scrape every second, none, and metrics off
bench-scrape: venv
	$(BIN)/python -m benchmarks.scrape_cost $(ARGS)

clean:
	rm -rf $(VENV) $(REF_VENV) .pytest_cache .mypy_cache .ruff_cache
