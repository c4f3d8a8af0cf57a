# Quick start:   make demo   (the whole job on the loopback demo profile)
#                make test   (the test suite; installs what it needs)
#                make lint   (ruff and mypy, as CI runs them: docs/development.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.installed

.PHONY: demo test lint sysdeps bench clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# PYTHONWARNINGS: setuptools' build backend prints an "Editable installation" box
	@# on every editable install; a new user's `make demo` should not start with it
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(READY)
	$(BIN)/cutover demo

sysdeps:
	bash scripts/sysdeps.sh

# --reruns 1: the lab's real-time figures (jitter, timers, throughput) share 2 cores
# with everything else; a test failing twice fails. Reruns are listed in the summary.
test: $(READY) sysdeps
	$(BIN)/python -m pytest -q --timeout=600 --reruns 1 --reruns-delay 2

# the rule set and the strictness live in pyproject.toml ([tool.ruff], [tool.mypy])
lint: $(READY)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(READY) sysdeps
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) cutover-demo .pytest_cache .mypy_cache .ruff_cache
