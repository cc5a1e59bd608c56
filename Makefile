# Two commands on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
REF_VENV := .venv-ref
BIN := $(VENV)/bin
# The newest versions aisetl supports, pinned (make test installs them; make lock refreshes).
LOCK := requirements/lock.txt
# The lowest versions pyproject.toml declares, pinned (make test-oldest installs them).
FLOORS := requirements/oldest.txt
REF_LOCK := requirements/reference.txt
# make test-oldest: the lowest supported Python, and what it runs there.
OLDEST_PYTHON ?= python3.10
OLDEST_VENV := .venv-oldest
OLDEST_TESTS ?= tests/test_protocol.py tests/test_hooks.py tests/test_dependencies.py \
	tests/test_ws_frames_split.py tests/test_uvicorn_ws_closing.py \
	tests/servers tests/compat tests/target
# make lock: the resolver, installed on demand into its own environment.
TOOLS_VENV := .venv-tools
UV := uv==0.13.9
COMPILE = $(TOOLS_VENV)/bin/uv pip compile --quiet --upgrade --universal --python-version 3.10 \
	--custom-compile-command 'make lock'
# The CPU build of PyTorch, for the speech_detect example (pip takes it from the local wheel
# cache; asked for by a range instead, pip would fetch a CUDA build of several GB). The lock
# pins the same release (requirements/build.in).
TORCH ?= torch==2.13.0

.PHONY: venv ref-venv test test-oldest lock lint typecheck pytest demo bench reliability image-check clean \
	prometheus-check memory-check bench-scrape bench-handler

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c $(LOCK) pip setuptools
	$(BIN)/python -m pip install -q -c $(LOCK) '$(TORCH)'
	$(BIN)/python -m pip install -q --no-build-isolation -c $(LOCK) -e '.[all,dev,examples,speech]'
	touch $@

$(VENV)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install -q --no-build-isolation -c $(LOCK) -e '.[all,dev,examples,speech,bench]'
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
	$(BIN)/ruff check src tests examples benchmarks docker reliability checks
	$(BIN)/ruff format --check src tests examples benchmarks docker reliability checks

typecheck: venv
	$(BIN)/mypy

# The tests start hundreds of server processes: each imports aisetl from the byte-code
# compiled here once (an environment may forbid Python to write it, and then every process
# compiles the sources again). Test files run on PYTEST_WORKERS processes (pytest-xdist), a
# file's tests on one of them (they share its servers); most of their time is spent waiting
# on sockets and child processes, so that is more processes than cores.
PYTEST_WORKERS ?= 4
PYTEST = -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile
BYTECOMPILE = -m compileall -q src tests examples >/dev/null

pytest: venv ref-venv
	$(BIN)/python $(BYTECOMPILE)
	AISETL_REFERENCE_PYTHON=$(abspath $(REF_VENV))/bin/python $(BIN)/python $(PYTEST)

test: lint typecheck pytest

# The lowest declared versions on the lowest supported Python (the servers, the protocol, the
# drop-in and the emulated target); without that Python it says so and uses $(PYTHON).
test-oldest: ref-venv
	PYTHON=$(PYTHON) bash scripts/oldest-venv.sh $(OLDEST_PYTHON) $(OLDEST_VENV) $(FLOORS) $(LOCK)
	$(OLDEST_VENV)/bin/python $(BYTECOMPILE)
	AISETL_REFERENCE_PYTHON=$(abspath $(REF_VENV))/bin/python \
		$(OLDEST_VENV)/bin/python $(PYTEST) -p no:cacheprovider $(OLDEST_TESTS)
	@cat $(OLDEST_VENV)/NOTICE 2>/dev/null || true

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

# Not part of `make test` (about 7 minutes): hop faults x comm types, floods, slowloris,
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

# The Python cost of a 1 KiB object in each FastAPI server's protocol and handler, no sockets
# (steadier than make bench for small objects; about a minute).
bench-handler: venv ref-venv
	AISETL_REFERENCE_PYTHON=$(abspath $(REF_VENV))/bin/python $(BIN)/python -m benchmarks.handler_cost $(ARGS)

clean:
	rm -rf $(VENV) $(REF_VENV) $(OLDEST_VENV) $(TOOLS_VENV) .pytest_cache .mypy_cache .ruff_cache
