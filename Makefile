# The two commands: `make demo` and `make test`. Both create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo demo-ibkr test lint typecheck pytest bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	$(PY) -m compileall -q src  # editable installs ship no bytecode; compile once, not on every mdp run
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -e '.[dev]'
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/mdp run --config examples/demo.yaml --fresh  # the demo runs whole every time
	$(PY) examples/show_bars.py demo.sqlite

# the fake TWS and a source.ibkr job together (no IB account needed); docs/ibkr.md
demo-ibkr: $(VENV)/.base
	$(PY) examples/run_ibkr_demo.py

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/lint-imports --no-cache  # the layers: each package imports only the ones below it

typecheck: $(VENV)/.dev
	$(VENV)/bin/mypy

pytest: $(VENV)/.dev
	$(PY) -m pytest -q -n 3 --dist loadgroup  # tests share nothing; many wait on subprocess start-up, servers or paced clocks, so 3 workers keep 2 cores busy (6m45s, was 9m18s with 2); loadgroup keeps the tests on one shared stream together

test: lint typecheck pytest

# regenerate docs/{configuration,components,cli}.md from the code (tests/unit/test_docs.py checks them)
.PHONY: docs
docs: $(VENV)/.base
	$(PY) -m mdp.docgen

# docs/img/dashboard-job.png: the job page, taken by the browser test (needs Debian's chromium)
.PHONY: dashboard-screenshot
dashboard-screenshot: $(VENV)/.dev
	MDP_DOCS_SCREENSHOT=1 $(PY) -m pytest -q tests/e2e/test_dashboard_browser.py -k job_page

# make bench: every benchmark, the goals met or missed, and the generated part of docs/performance.md
# (a full run only; BENCH_ARGS=--quick is a small smoke run that leaves the page alone)
bench: $(VENV)/.dev
	$(PY) benchmarks/run_all.py --json .bench/results.json --docs docs/performance.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) demo.sqlite* ibkr.sqlite* ib_session.csv ibkr_ticks .pytest_cache .mypy_cache .ruff_cache
