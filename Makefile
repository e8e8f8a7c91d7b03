# Every check goes through these targets; `.ci/run` calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Material for MkDocs prints a banner about MkDocs 2 on every build; the builds stay quiet.
export NO_MKDOCS_2_WARNING := 1
# The runtime alone (make demo), and the runtime with the test and docs toolchain (make test).
RUNTIME := $(VENV)/.runtime
STAMP   := $(VENV)/.installed

.PHONY: help venv system-deps test lint typecheck imports pytest demo bench soak monitoring \
	dashboards docs docs-check docs-serve docs-screenshot clean

# Every target, one line each (tests/test_make.py checks that none is missing).
help:
	@echo "make help             this list"
	@echo "make demo             run the exporter against the built-in simulator on :9654 (runtime only)"
	@echo "make test             lint, type-check, check imports, build the docs strictly and run every test"
	@echo "make venv             create .venv with the test and docs toolchain"
	@echo "make system-deps      install Prometheus and Alertmanager (Debian packages) for the rule tests"
	@echo "make lint             ruff check and ruff format --check"
	@echo "make typecheck        mypy --strict on exporter/, and on the tests and generators"
	@echo "make imports          lint-imports: every import points down the stages"
	@echo "make pytest           the pytest suite alone"
	@echo "make docs             regenerate the docs' references from the code and build the site (site/)"
	@echo "make docs-check       fail when a generated reference is stale, then build the site strictly"
	@echo "make docs-serve       serve the docs site with live reload on http://127.0.0.1:8000"
	@echo "make docs-screenshot  retake docs/images/landing-page.png from make demo (needs chromium)"
	@echo "make monitoring       regenerate the rules, PrometheusRule, dashboards and mixin from monitoring/config.py"
	@echo "make dashboards       the same as make monitoring"
	@echo "make bench            performance benchmarks (not part of make test)"
	@echo "make soak             one-hour soak test against the api_faults scenario"
	@echo "make clean            remove .venv, site/ and build leftovers"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project metadata changes.
$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(STAMP) $(RUNTIME)

venv: $(STAMP)

# Real Prometheus and Alertmanager for the rule and end-to-end tests (Debian packages).
system-deps:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null \
	    || ! { command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; }; then \
	  echo "installing Debian packages prometheus and prometheus-alertmanager"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    prometheus prometheus-alertmanager >/dev/null && \
	  echo "the tests start their own instances; stopping the services the packages started" && \
	  { $$SUDO service prometheus stop; $$SUDO service prometheus-alertmanager stop; } >/dev/null 2>&1 || true; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check exporter tests grafana bench monitoring deploy docsgen

typecheck: $(STAMP)
	$(BIN)/mypy exporter
	$(BIN)/mypy tests grafana bench monitoring docsgen

# The stages' layers (pyproject.toml [tool.importlinter]): every import points down.
imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) system-deps
	$(BIN)/pytest -W error

test: lint typecheck imports docs-check pytest

demo: $(RUNTIME)
	$(BIN)/alvaria-emailqueue-exporter --demo --listen-address 127.0.0.1:9654 --poll-interval 5s --agent-metrics

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m bench.soak

monitoring dashboards: $(STAMP)
	$(BIN)/python -m monitoring.generate

# The references in docs/ (metrics, settings, regions, poll error reasons, alerts) are generated
# from the code by docsgen/: one command after a merge, `make docs`.
docs: $(STAMP)
	$(BIN)/python -m docsgen
	$(BIN)/mkdocs build --strict

docs-check: $(STAMP)
	$(BIN)/python -m docsgen --check
	$(BIN)/mkdocs build --strict --quiet

docs-serve: $(STAMP)
	$(BIN)/python -m docsgen
	$(BIN)/mkdocs serve

docs-screenshot: $(STAMP)
	$(BIN)/python -m docsgen.screenshot

clean:
	rm -rf $(VENV) site build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
