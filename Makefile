# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
TRACE_FILE := telemetry/traces.jsonl

.PHONY: install demo report test lint unit clean stack stack-up stack-down demo-stack

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(INSTALLED)

install: $(INSTALLED)

## demo: replay a year of real market history through the fleet (simulated LLM unless OPENAI_API_KEY
## is set), spans to telemetry/traces.jsonl, then build the meta report from that file.
demo: install
	rm -f $(TRACE_FILE)
	$(VPY) scheduler.py --replay
	$(VPY) meta_supervisor/build_meta_report.py

report: install
	$(VPY) meta_supervisor/build_meta_report.py

lint: install
	$(VPY) -m ruff check .

## test: lint, then the whole suite (integration tests build and run the real collector and Jaeger).
test: lint
	$(VPY) -m pytest

unit: install
	$(VPY) -m pytest -m "not integration"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis telemetry meta_supervisor/reports
