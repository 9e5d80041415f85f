# Thin targets; the real work lives in the `crm` command and in pytest.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test test-unit lint bench bench-analytics bench-termination clean

$(STAMP): pyproject.toml plugins/examples/crm_example_scoring/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]' -e plugins/examples/crm_example_scoring
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/crm run

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(PY) -m pip install --quiet 'ruff>=0.6,<1'
	$(VENV)/bin/ruff check services plugins tests

# The suite's figures (docs/benchmarks.md), then the outbox relay against a naive one.
bench: install
	$(PY) tests/bench/bench_suite.py
	$(PY) tests/bench/bench_outbox_relay.py

# Customer analytics at 1M customers / 10M purchases on PostgreSQL (docs/analytics.md; about 10 minutes).
bench-analytics: install
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) tests/bench/bench_analytics.py $(BENCH_ARGS)

# A termination simulation of the five customer policies over 100,000 customers in the worker (docs/termination.md).
bench-termination: install
	$(PY) tests/bench/bench_termination.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache
