# Every check goes through these targets; `.ci/run` calls `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv system-deps test lint typecheck imports pytest demo bench soak monitoring dashboards clean

help:
	@echo "make demo        run the exporter against the built-in simulator on :9654"
	@echo "make test        lint, type-check and run every test (creates .venv)"
	@echo "make bench       performance benchmarks (not part of make test)"
	@echo "make soak        one-hour soak test against the api_faults scenario"
	@echo "make monitoring  regenerate the rules, PrometheusRule, dashboards and mixin from monitoring/config.py"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall only when the project metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

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
	$(BIN)/ruff format --check exporter tests grafana bench monitoring deploy

typecheck: $(STAMP)
	$(BIN)/mypy exporter
	$(BIN)/mypy tests grafana bench monitoring

# The stages' layers (pyproject.toml [tool.importlinter]): every import points down.
imports: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP) system-deps
	$(BIN)/pytest -W error

test: lint typecheck imports pytest

demo: $(STAMP)
	$(BIN)/alvaria-emailqueue-exporter --demo --listen-address 127.0.0.1:9654 --poll-interval 5s --agent-metrics

bench: $(STAMP)
	$(BIN)/python -m bench

soak: $(STAMP)
	$(BIN)/python -m bench.soak

monitoring dashboards: $(STAMP)
	$(BIN)/python -m monitoring.generate

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
