"""One benchmark run, and the telemetry variants the run benchmarks compare (no timing here).

A run is what an LLM-assisted agent does: one chat completion through the real ``openai`` client over
the simulated transport (in-process, no network), then three alpha signals. Only the telemetry
differs between the variants:

* ``bare``: none (the baseline the others add to);
* ``seed_jsonl``: what the seed's guide does (``/work/shared/seed``, "PHASE 2" to "PHASE 6"): a
  ``RunTelemetry`` with a ``uuid4`` run id in a context variable, the LLM usage added to it, one
  ``mkdir`` + ``open(..., "a")`` + ``write`` of the run record and one per alpha signal, on the
  agent's thread;
* ``otel_plain``: the plain OpenTelemetry SDK as a user would write it: a root span per run (three
  attributes, a ``uuid4`` run id), the official OpenAI instrumentation, three ``add_event`` calls
  and an outcome attribute, ``BatchSpanProcessor`` (queue 16,384, delay 1 s, as alphatrace) and the
  same collector-format file exporter;
* ``alphatrace``: ``configure_telemetry`` (embedded file exporter, redaction, loss accounting, the
  export hand-off), the run wrapper (``AgentRunWrapper``) and ``emit_alpha_signal``.

Each variant is a ``Variant``: ``one_run()`` does a run, ``drain()`` waits until every span ended
so far has left the queue, ``export_thread()`` is the thread that exports (None when writes happen
on the agent's thread), ``counts()`` says where the spans went.

Reads no environment variables (the benchmarks clear ``OTEL_*`` before building a variant).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel import semconv
from services.ai_analysis import AIAnalysis, LLMSettings, build_openai_client
from services.pricing import PriceTable
from services.simulated_llm import SIMULATED_BASE_URL

AS_OF = "2018-03-01"
FEATURES = {"SPX": {"momentum_20d": 0.01, "momentum_60d": 0.04, "zscore_20d": 0.5, "vol_20d": 0.12, "regime": "trend_up"}}
SIGNALS = [
    {
        "symbol": s,
        "direction": "up",
        "prob_up": 0.6,
        "confidence": 0.3,
        "ensemble_score_final": 0.25,
        "regime": "trend_up",
        "horizon": 5,
        "as_of": AS_OF,
    }
    for s in ("SPX", "IXIC", "WTI")
]
VARIANTS = ("bare", "seed_jsonl", "otel_plain", "alphatrace", "alphatrace_no_metrics")
SPANS_PER_RUN = 2  # the run's root span and the LLM call's span (the signals are events on the root)


def plain_signal_event(s: dict) -> dict:
    """A signal as plain OTel code would put it on a span event (built per event, as such code does)."""
    return {
        semconv.ALPHA_SYMBOL: s["symbol"],
        semconv.ALPHA_DIRECTION: s["direction"],
        semconv.ALPHA_PROB_UP: s["prob_up"],
        semconv.ALPHA_CONFIDENCE: s["confidence"],
        semconv.ALPHA_SCORE_FINAL: s["ensemble_score_final"],
        semconv.ALPHA_REGIME: s["regime"],
        semconv.ALPHA_HORIZON: s["horizon"],
        semconv.ALPHA_AS_OF: s["as_of"],
    }


def openai_analysis() -> AIAnalysis:
    settings = LLMSettings(provider="simulated", model="gpt-4o-mini", base_url=SIMULATED_BASE_URL, api_key="simulated-no-key")
    return AIAnalysis(build_openai_client(settings), settings, PriceTable.load())


def batch_export_thread() -> threading.Thread | None:
    """The SDK batch processor's export thread (one provider per benchmark process)."""
    return next((t for t in threading.enumerate() if t.name == "OtelBatchSpanRecordProcessor"), None)


class Variant:
    name = ""
    exports_off_thread = False

    def one_run(self) -> None:
        raise NotImplementedError

    def drain(self, timeout: float = 60.0) -> None:
        """Wait (sleeping) until every span ended so far has been exported or counted lost."""

    def export_thread(self) -> threading.Thread | None:
        return batch_export_thread() if self.exports_off_thread else None

    def counts(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class Bare(Variant):
    name = "bare"

    def __init__(self, folder: Path) -> None:
        self.analysis = openai_analysis()

    def one_run(self) -> None:
        self.analysis.analyze(FEATURES, AS_OF)


# --- the seed's guide, as written there (telemetry/context.py, telemetry/collector.py,
# services/agent_run_wrapper.py, alpha/emit.py) ---------------------------------------------
_current_run: ContextVar[Any] = ContextVar("current_run", default=None)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _SeedRun:
    def __init__(self, agent: str, run_id: str, events: Path) -> None:
        self.agent, self.run_id, self.events = agent, run_id, events
        self.t0 = time.time()
        self.tokens_in = self.tokens_out = self.errors = 0
        self.cost_usd = 0.0

    def add_llm_usage(self, tokens_in: int, tokens_out: int, cost_usd: float = 0.0) -> None:
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_usd += cost_usd

    def flush(self) -> None:
        self.events.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "ts": _now(),
            "agent": self.agent,
            "run_id": self.run_id,
            "latency_ms": int((time.time() - self.t0) * 1000),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": round(self.cost_usd, 6),
            "errors": self.errors,
        }
        with open(self.events, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class SeedJsonl(Variant):
    name = "seed_jsonl"

    def __init__(self, folder: Path) -> None:
        self.analysis = openai_analysis()
        self.events = folder / "telemetry" / "events.jsonl"
        self.alpha = folder / "alpha" / "events.jsonl"

    def _emit_alpha_signal(self, result: dict, agent_name: str) -> None:
        self.alpha.parent.mkdir(parents=True, exist_ok=True)
        event = {
            "ts": _now(),
            "agent": agent_name,
            "symbol": result.get("symbol"),
            "direction": result.get("direction"),
            "prob_up": result.get("prob_up"),
            "confidence": result.get("confidence"),
            "score_final": result.get("ensemble_score_final"),
            "regime": result.get("regime"),
        }
        with open(self.alpha, "a", encoding="utf-8") as f:
            f.write(json.dumps(event) + "\n")

    def _run_agent(self, agent_name: str) -> None:
        self.analysis.analyze(FEATURES, AS_OF)
        run = _current_run.get()
        if run:  # the seed's ai_analysis: usage from the response after each call
            run.add_llm_usage(tokens_in=158, tokens_out=32, cost_usd=0.0)
        for signal in SIGNALS:
            self._emit_alpha_signal(signal, agent_name)

    def one_run(self) -> None:
        run = _SeedRun(agent="bench", run_id=str(uuid.uuid4()), events=self.events)
        _current_run.set(run)
        try:
            self._run_agent("bench")
        except Exception:
            run.errors += 1
            raise
        finally:
            run.flush()
            _current_run.set(None)


# --- OpenTelemetry variants ---------------------------------------------------------------------


class CountingExporter(SpanExporter):
    """Counts the spans handed to ``inner`` (for the plain SDK, which counts nothing itself)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.finished = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.exported += len(spans)
        self.finished += 1
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def _wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)


class OtelPlain(Variant):
    name = "otel_plain"
    exports_off_thread = True

    def __init__(self, folder: Path) -> None:
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from otel.file_exporter import CollectorFileExporter

        self.provider = TracerProvider(resource=Resource.create({"service.name": "bench"}), shutdown_on_exit=False)
        self.exporter = CountingExporter(CollectorFileExporter(folder / "traces-plain.jsonl"))
        self.processor = BatchSpanProcessor(self.exporter, max_queue_size=16384, schedule_delay_millis=1000, max_export_batch_size=512)
        self.provider.add_span_processor(self.processor)
        self.instrumentor = OpenAIInstrumentor()
        self.instrumentor.instrument(tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer("bench")
        self.analysis = openai_analysis()
        self.runs = 0

    def one_run(self) -> None:
        attributes = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "bench", semconv.AGENT_RUN_ID: str(uuid.uuid4())}
        with self.tracer.start_as_current_span("invoke_agent bench", attributes=attributes) as span:
            self.analysis.analyze(FEATURES, AS_OF)
            for s in SIGNALS:
                span.add_event(semconv.EVENT_ALPHA_SIGNAL, plain_signal_event(s))
            span.set_attribute(semconv.AGENT_RUN_OUTCOME, "ok")
        self.runs += 1

    def drain(self, timeout: float = 60.0) -> None:
        _wait_until(lambda: self.exporter.exported >= self.runs * SPANS_PER_RUN, timeout)

    def counts(self) -> dict[str, int]:
        ended = self.runs * SPANS_PER_RUN
        return {"ended": ended, "exported": self.exporter.exported, "lost": ended - self.exporter.exported}

    def close(self) -> None:
        self.instrumentor.uninstrument()
        self.provider.shutdown()


class Alphatrace(Variant):
    name = "alphatrace"
    exports_off_thread = True

    env: tuple[tuple[str, str], ...] = ()  # the default: metrics to the embedded file beside the traces

    def __init__(self, folder: Path, export_handoff: bool = True) -> None:
        from alpha.emit import emit_alpha_signal
        from otel.provider import configure_telemetry
        from services.agent_run_wrapper import AgentRunWrapper

        options = {} if export_handoff else {"export_handoff": False}  # earlier trees have no such option
        self.telemetry = configure_telemetry(trace_file=folder / "traces.jsonl", llm_simulated=True, env=dict(self.env), **options)
        self.wrapper = AgentRunWrapper(self.telemetry.tracer(), accounting=self.telemetry.accounting)
        analysis = openai_analysis()

        def agent() -> None:
            analysis.analyze(FEATURES, AS_OF)
            emit_alpha_signal(SIGNALS, "bench")

        self._agent = agent

    def one_run(self) -> None:
        self.wrapper.run("bench", self._agent, as_of=AS_OF)

    def drain(self, timeout: float = 60.0) -> None:
        def done() -> bool:
            snap = self.telemetry.accounting.snapshot()
            return snap.exported + snap.export_failed + snap.dropped >= snap.ended

        _wait_until(done, timeout)

    def counts(self) -> dict[str, int]:
        snap = self.telemetry.accounting.snapshot()
        out = {"ended": snap.ended, "exported": snap.exported, "lost": snap.dropped + snap.export_failed}
        if getattr(self.telemetry, "handoff", None) is not None:
            stats = self.telemetry.handoff.stats
            out.update(handoff_waits=stats.waits, handoff_ms=round(stats.waited_seconds * 1000), handoff_stuck=stats.stuck)
        return out

    def close(self) -> None:
        self.telemetry.shutdown(timeout_seconds=30)


class AlphatraceNoMetrics(Alphatrace):
    """alphatrace with metrics off (``OTEL_METRICS_EXPORTER=none``): the difference to ``alphatrace``
    is what the metrics cost a run (the instrumentation's histograms on the agent's thread, the agent
    metrics on the export thread)."""

    name = "alphatrace_no_metrics"
    env = (("OTEL_METRICS_EXPORTER", "none"),)


def make_variant(name: str, folder: Path, **options: Any) -> Variant:
    classes = {
        "bare": Bare,
        "seed_jsonl": SeedJsonl,
        "otel_plain": OtelPlain,
        "alphatrace": Alphatrace,
        "alphatrace_no_metrics": AlphatraceNoMetrics,
    }
    return classes[name](folder, **options)
