# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NATIVE := $(VENV)/.native
TRACE_FILE := telemetry/traces.jsonl

.PHONY: install native demo report test lint unit clean stack stack-up stack-down stack-status demo-stack fleet-demo

# Each step says what it does and how long it took on a busy 2-core machine (measured; a quiet or
# faster machine takes less): pip and the Rust build are otherwise silent for minutes.
$(INSTALLED): pyproject.toml
	@echo "[install 1/2] creating $(VENV) and installing alphatrace and its dependencies with pip (about 5 minutes the first time)"
	@$(PYTHON) -m venv $(VENV)
	@$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(INSTALLED)

## native: the report's compiled reader (native/, Rust): about 2x faster full builds; without a Rust
## toolchain the report uses its Python reader, with the same results (docs/benchmarks.md).
$(NATIVE): $(INSTALLED) native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	@if command -v cargo >/dev/null 2>&1; then \
		echo "[install 2/2] building the report's compiled reader (native/, a Rust release build: about 5 minutes the first time)"; \
		$(VPY) -m pip install --quiet --disable-pip-version-check ./native && touch $(NATIVE); \
	else \
		echo "[install 2/2] no Rust toolchain (cargo): the report uses its Python reader (same results, slower)"; \
	fi

native: $(NATIVE)

install: $(INSTALLED) $(NATIVE)

## demo: replay a year of real market history through the fleet (simulated LLM unless OPENAI_API_KEY
## is set), spans to telemetry/traces.jsonl, build the meta report from that file, and show what the
## supervisor's policy would decide (a dry run: nothing is written).
demo: install
	@echo "[demo 1/3] replaying a year of market history through the fleet: 250 trading days, spans to $(TRACE_FILE) (about half a minute)"
	@rm -f $(TRACE_FILE)
	$(VPY) scheduler.py --replay
	@echo "[demo 2/3] building the meta report from $(TRACE_FILE), and each forecast's outcome back on its run's trace"
	@rm -f meta_supervisor/cache/evaluation_spans.json
	$(VPY) meta_supervisor/build_meta_report.py --evaluation-spans
	@echo "[demo 3/3] what the supervisor's policy would decide (a dry run: nothing is written)"
	$(VPY) -m meta_supervisor.supervise --dry-run

report: install
	$(VPY) meta_supervisor/build_meta_report.py

lint: install
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	@echo "the import contract (tests/test_import_contract.py): no cycles, imports flow one way"
	$(VPY) -m pytest -q -p no:cacheprovider tests/test_import_contract.py
	@if command -v cargo >/dev/null 2>&1; then \
		cd native && cargo fmt --check && cargo clippy --quiet --release --all-targets -- -D warnings && cargo test --quiet --release; \
	fi

## test: lint, then the whole suite (integration tests build and run the real collector and Jaeger;
## their first build takes 12 to 16 minutes on a busy 2-core machine, measured; seconds afterwards).
test: lint
	@echo "building the collector and Jaeger for the integration tests (the first time 12 to 16 minutes on a busy 2-core machine; then seconds)"
	collector/stack.sh build || [ "$$CI" != "true" ]
	@echo "the report's tests with the Python reader only (the native core off):"
	ALPHATRACE_NATIVE=off $(VPY) -m pytest -q -m "not integration" tests/test_report_*.py tests/test_trace_reader.py
	$(VPY) -m pytest

unit: install
	$(VPY) -m pytest -m "not integration"

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis telemetry meta_supervisor/reports meta_supervisor/cache native/target

## The Docker-less stack: the OpenTelemetry Collector (built with the Collector Builder from
## collector/builder-config.yaml) and Jaeger v2 (built from its Go module) in bin/, on 127.0.0.1.
stack:
	collector/stack.sh build

stack-up: stack
	collector/stack.sh up

stack-down:
	collector/stack.sh down

stack-status:
	collector/stack.sh status

## demo-stack: the demo through the running stack (make stack-up first): OTLP to the collector, whose
## file exporter writes telemetry/traces.jsonl and whose OTLP exporter feeds Jaeger.
demo-stack: install
	@collector/stack.sh status >/dev/null 2>&1 || { echo "the stack is not running: make stack-up"; exit 1; }
	OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 $(VPY) scheduler.py --replay --days 20
	@sleep 2
	OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 $(VPY) meta_supervisor/build_meta_report.py --evaluation-spans
	@$(VPY) collector/jaeger_link.py llm_analyst

## fleet-demo: the fleet on several hosts, simulated here (docs/several-hosts.md): three scheduler
## shards, an agent-mode collector each, two gateway collectors with a trace file each, one report
## over both; loopback only, free ports, under telemetry/fleet-demo/ (about 15 s once built).
fleet-demo: install stack
	$(VPY) collector/fleet_demo.py
