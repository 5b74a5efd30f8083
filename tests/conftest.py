"""Shared fixtures: a clean environment per test, and a telemetry set-up with fixed ids that tests
assert whole span trees against. No test touches the network."""

from __future__ import annotations

import itertools
import os
import threading

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from otel.provider import Telemetry, configure_telemetry
from tests.fleet_fixtures import write_fleet, write_market

_ENV_PREFIXES = ("OTEL_", "ALPHATRACE_", "OPENAI_")


_KEPT = "ALPHATRACE_NATIVE"  # which report reader a whole run tests: `make test` runs the report's tests with it off too


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with none of the variables alphatrace reads (but the reader choice)."""
    for key in list(os.environ):
        if key.startswith(_ENV_PREFIXES) and key != _KEPT:
            monkeypatch.delenv(key)


class SequentialIds(IdGenerator):
    """Trace ids 1, 2, 3 ... and span ids 1, 2, 3 ...: readable and stable in assertions."""

    def __init__(self) -> None:
        self._traces = itertools.count(1)
        self._spans = itertools.count(1)
        self._lock = threading.Lock()

    def generate_trace_id(self) -> int:
        with self._lock:
            return next(self._traces)

    def generate_span_id(self) -> int:
        with self._lock:
            return next(self._spans)


@pytest.fixture
def span_exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def telemetry(span_exporter: InMemorySpanExporter):
    """A provider exporting synchronously to memory, the OpenAI instrumentation on, ids sequential."""
    handle: Telemetry = configure_telemetry(
        exporter=span_exporter,
        processor_factory=SimpleSpanProcessor,
        id_generator=SequentialIds(),
        llm_simulated=True,
    )
    yield handle
    handle.shutdown()


@pytest.fixture
def sequential_run_ids():
    counter = itertools.count(1)
    lock = threading.Lock()

    def next_id() -> str:
        with lock:
            return f"run-{next(counter)}"

    return next_id


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Generated market data, a four-agent fleet config and state files, all under tmp_path."""
    calendar = write_market(tmp_path / "data")
    monkeypatch.setenv("ALPHATRACE_MARKET_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ALPHATRACE_KILL_SWITCH_FILE", str(tmp_path / "killed_agents.json"))
    monkeypatch.setenv("ALPHATRACE_AGENT_STATUS_FILE", str(tmp_path / "agent_status.json"))
    monkeypatch.setenv("ALPHATRACE_SPEND_DIR", str(tmp_path / "spend"))
    config = write_fleet(tmp_path / "agents.toml", calendar[70])
    return {"tmp": tmp_path, "calendar": calendar, "config": config, "kill_file": tmp_path / "killed_agents.json"}


@pytest.fixture(scope="session")
def built():
    """The real collector and Jaeger binaries (make stack); skips with how to enable them, except
    in CI (CI=true), where a missing Go toolchain or a failed build fails."""
    from tests import stack

    reason = stack.ensure_built()
    if reason:
        pytest.skip(reason)


def count_merges_of(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Split every file across processes (``parallel``) and record whether each part's merge was
    accepted: the list the parallel-build tests assert on."""
    from meta_supervisor.build import merge
    from meta_supervisor.build import parallel as parallel_build

    monkeypatch.setattr(parallel_build, "MIN_SPLIT_BYTES", 1)
    monkeypatch.setattr(parallel_build, "fork_is_safe", lambda: True)  # the child only reads and decodes
    results: list[bool] = []
    original = merge.merge_part

    def counting(*args, **kwargs):
        accepted = original(*args, **kwargs)
        results.append(accepted)
        return accepted

    monkeypatch.setattr(merge, "merge_part", counting)
    return results
