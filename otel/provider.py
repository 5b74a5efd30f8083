"""TracerProvider set-up: which exporter, which resource, the batch processor, flush and shutdown.

Nothing is created at import time; ``configure_telemetry`` builds a ``Telemetry`` handle the caller
owns and must ``shutdown()`` (an ``atexit`` hook is only a backstop). Arguments beat environment
variables, which beat defaults; a bad environment value is a ``ConfigError`` at startup.

Environment (standard OpenTelemetry variables, as the SDK documents them):

* ``OTEL_TRACES_EXPORTER``: ``otlp`` | ``console`` | ``none``, or alphatrace's ``file`` (the default
  when no OTLP endpoint is set).
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``: a collector; setting one
  selects ``otlp``.
* ``OTEL_EXPORTER_OTLP_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``: ``http/protobuf``
  (default) or ``grpc``.
* ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` (read by the SDK itself).
* ``OTEL_BSP_MAX_QUEUE_SIZE`` (alphatrace's default 16384, the SDK's 2048), ``OTEL_BSP_SCHEDULE_DELAY``
  (default 1000 ms, the SDK's 5000), ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``, ``OTEL_BSP_EXPORT_TIMEOUT``.
* ``OTEL_SDK_DISABLED=true``: no spans at all.

alphatrace's own: ``ALPHATRACE_TRACE_FILE`` (embedded exporter's file, default
``telemetry/traces.jsonl`` under the project root; it must be a regular file or not exist yet: a FIFO,
device or socket is a ``ConfigError``). Its folder is created and checked for writing when the
exporter is built (``check_trace_file``), so a path nobody can write stops start-up instead of
losing every span. ``ALPHATRACE_EXPORT_STALL_SECONDS`` (default 30: an export in progress this
long is warned about while running, see ``otel/span_accounting.py``).
"""

from __future__ import annotations

import atexit
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Tracer

from otel import semconv
from otel.export_handoff import ExportHandoff, export_handoff_for
from otel.file_exporter import CollectorFileExporter, special_file_kind
from otel.metrics import MetricsChoice, build_meter_provider, build_metric_exporter, choose_metrics_export
from otel.redacting_exporter import RedactingSpanExporter
from otel.run_context import RunAttributesSpanProcessor
from otel.run_spans import RunSpanProcessor
from otel.span_accounting import DEFAULT_STALL_SECONDS, CountingSpanExporter, SpanAccounting, Watchdog
from otel.span_metrics import AgentMetrics, SpanMetricsExporter
from settings.config_error import ConfigError, env_number

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_TRACE_FILE = "ALPHATRACE_TRACE_FILE"
ENV_EXPORT_STALL = "ALPHATRACE_EXPORT_STALL_SECONDS"
DEFAULT_TRACE_FILE = PROJECT_ROOT / "telemetry" / "traces.jsonl"
TRACER_NAME = "alphatrace"
_EXPORTERS = ("file", "otlp", "console", "none")
_PROTOCOLS = ("http/protobuf", "grpc")


def package_version() -> str:
    try:
        return metadata.version("alphatrace")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def trace_file_path(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(path or env.get(ENV_TRACE_FILE) or DEFAULT_TRACE_FILE)


def check_trace_file(path: Path) -> None:
    """Start-up: create the trace file's folder and make sure the file can be written (an existing file
    is opened for appending, nothing written; otherwise a temporary file is made and removed in the
    folder): ``ConfigError`` naming the path, the reason and the fix."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC))
        else:
            tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        default = "" if path == DEFAULT_TRACE_FILE else f", or unset it for {DEFAULT_TRACE_FILE}"
        raise ConfigError(
            f"trace file {path} cannot be written ({exc.strerror or exc}); set {ENV_TRACE_FILE} to a file in a writable folder{default}"
        ) from None


@dataclass(frozen=True)
class ExportChoice:
    kind: str
    protocol: str = ""
    endpoint: str = ""  # as given; for http/protobuf the exporter gets ``traces_endpoint``
    trace_file: Path | None = None
    endpoint_is_for_traces: bool = False
    headers: str = ""

    @property
    def traces_endpoint(self) -> str | None:
        """The URL the exporter posts to: the generic variable names a base, the traces one a URL."""
        if not self.endpoint:
            return None
        if self.protocol == "http/protobuf" and not self.endpoint_is_for_traces:
            return self.endpoint.rstrip("/") + "/v1/traces"
        return self.endpoint

    def describe(self) -> str:
        if self.kind == "file":
            return f"embedded file exporter -> {self.trace_file}"
        if self.kind == "otlp":
            return f"OTLP {self.protocol} -> {self.endpoint or 'the SDK default endpoint'}"
        return self.kind


def choose_export(trace_file: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> ExportChoice:
    """Decide where spans go from the standard variables; raise ``ConfigError`` on a bad value."""
    env = os.environ if env is None else env
    traces_endpoint = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or "").strip()
    endpoint = traces_endpoint or (env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "").strip()
    requested = (env.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if "," in requested:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={requested!r}: alphatrace supports one exporter at a time")
    if requested and requested not in _EXPORTERS:
        raise ConfigError(f"OTEL_TRACES_EXPORTER={requested!r} is not supported; use one of {', '.join(_EXPORTERS)}")
    kind = requested or ("otlp" if endpoint else "file")
    if kind == "file":
        path = trace_file_path(trace_file, env)
        special = special_file_kind(path)
        if special:
            raise ConfigError(
                f"trace file {path} is {special}, not a regular file: the embedded exporter appends to and repairs a "
                f"regular file (set {ENV_TRACE_FILE} to one, or use OTEL_TRACES_EXPORTER=console or an OTLP collector)"
            )
        return ExportChoice("file", trace_file=path)
    if kind != "otlp":
        return ExportChoice(kind)
    protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol not in _PROTOCOLS:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use one of {', '.join(_PROTOCOLS)}")
    if endpoint and not endpoint.startswith(("http://", "https://")) and protocol == "http/protobuf":
        raise ConfigError(f"OTLP endpoint {endpoint!r} needs an http:// or https:// scheme")
    headers = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
    return ExportChoice("otlp", protocol=protocol, endpoint=endpoint, endpoint_is_for_traces=bool(traces_endpoint), headers=headers)


def build_exporter(choice: ExportChoice) -> SpanExporter | None:
    if choice.kind == "file":
        check_trace_file(choice.trace_file)
        return CollectorFileExporter(choice.trace_file)
    if choice.kind == "console":
        return ConsoleSpanExporter()
    if choice.kind == "none":
        return None
    # The choice is passed explicitly so an ``env`` mapping given to ``configure_telemetry`` is what
    # counts; what is left unset (timeouts, compression, certificates) the exporters read themselves.
    headers = _parse_headers(choice.headers)
    if choice.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        endpoint = choice.traces_endpoint
        insecure = None
        if endpoint and endpoint.startswith("http://"):
            insecure = True
        return GrpcExporter(endpoint=endpoint, insecure=insecure, headers=headers)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=choice.traces_endpoint, headers=headers)


def _parse_headers(raw: str) -> dict[str, str] | None:
    """``key=value,key2=value2`` (URL-encoded values), as the OTLP exporter specification says."""
    if not raw.strip():
        return None
    from urllib.parse import unquote

    headers = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


def build_resource(service_name: str | None = None, llm_simulated: bool = False, extra: Mapping[str, object] | None = None) -> Resource:
    attributes: dict[str, object] = {SERVICE_VERSION: package_version(), semconv.RESOURCE_LLM_SIMULATED: llm_simulated}
    attributes.update(extra or {})
    if service_name:
        attributes[SERVICE_NAME] = service_name
    resource = Resource.create(attributes)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: semconv.SERVICE_NAME_DEFAULT}))
    return resource


# The SDK's 2048-span queue overflows within ~1.5 s of a busy fleet whenever the exporter stalls
# (collector restarting, frozen, absent): bench/collector_load.py lost 20-55% of spans with it and
# none with 16384. A 1 s schedule delay (SDK: 5 s) bounds what a SIGKILL of the app can lose.
DEFAULT_BSP_MAX_QUEUE_SIZE = 16384
DEFAULT_BSP_SCHEDULE_DELAY_MS = 1000


def _positive_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    return env_number(env, name, default, above=0)


def batch_processor(exporter: SpanExporter, env: Mapping[str, str] | None = None) -> BatchSpanProcessor:
    """The SDK's ``BatchSpanProcessor``; ``OTEL_BSP_*`` variables win over alphatrace's defaults."""
    env = os.environ if env is None else env
    queue = _positive_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_BSP_MAX_QUEUE_SIZE)
    batch = _positive_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", min(512, queue))
    if batch > queue:
        raise ConfigError(f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE={batch} must not exceed the queue size {queue}")
    return BatchSpanProcessor(
        exporter,
        max_queue_size=queue,
        schedule_delay_millis=_positive_int(env, "OTEL_BSP_SCHEDULE_DELAY", DEFAULT_BSP_SCHEDULE_DELAY_MS),
        max_export_batch_size=batch,
        export_timeout_millis=_positive_int(env, "OTEL_BSP_EXPORT_TIMEOUT", None),
    )


class Telemetry:
    """The configured provider and what it takes to flush and stop it cleanly."""

    def __init__(
        self,
        tracer_provider: TracerProvider,
        export: ExportChoice,
        exporter: SpanExporter | None,
        accounting: SpanAccounting | None = None,
        watchdog: Watchdog | None = None,
        handoff: ExportHandoff | None = None,
        meter_provider: MeterProvider | None = None,
        metrics: MetricsChoice | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider or MeterProvider(shutdown_on_exit=False)
        self.metrics = metrics or MetricsChoice("none")
        self.handoff = handoff  # None without a batch processor (or when turned off)
        self.export = export
        self.exporter = exporter
        self.accounting = accounting or SpanAccounting()
        self._watchdog = watchdog
        self._instrumentor = None
        self._shutdown_done = False
        self._lock = threading.Lock()

    def tracer(self, name: str = TRACER_NAME) -> Tracer:
        return self.tracer_provider.get_tracer(name, package_version())

    def meter(self, name: str = TRACER_NAME) -> Meter:
        return self.meter_provider.get_meter(name, package_version())

    def instrument_openai(self) -> None:
        """Turn on the official OpenAI instrumentation against these providers (undone by shutdown):
        its spans, and its ``gen_ai.client.*`` metrics."""
        from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

        instrumentor = OpenAIInstrumentor()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        instrumentor.instrument(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)
        self._instrumentor = instrumentor

    def force_flush(self, timeout_seconds: float = 10.0) -> bool:
        """Spans first (the agent metrics are recorded as they are exported), then metrics."""
        spans = self.tracer_provider.force_flush(int(timeout_seconds * 1000))
        return self.meter_provider.force_flush(int(timeout_seconds * 1000)) and spans

    def shutdown(self, timeout_seconds: float = 10.0) -> bool:
        """Flush and stop, waiting at most ``timeout_seconds`` (the SDK alone can block far longer
        when a collector is unreachable). Idempotent. Returns whether it finished in time."""
        with self._lock:
            if self._shutdown_done:
                return True
            self._shutdown_done = True
        if self._instrumentor is not None:
            self._instrumentor.uninstrument()
            self._instrumentor = None

        def stop() -> None:
            self.tracer_provider.shutdown()  # spans first: exporting them records the agent metrics
            self.meter_provider.shutdown()  # then the last collection of metrics

        worker = threading.Thread(target=stop, name="alphatrace-telemetry-shutdown", daemon=True)
        worker.start()
        worker.join(timeout_seconds)
        if self._watchdog is not None:
            self._watchdog.stop()
        snapshot = self.accounting.snapshot()
        if worker.is_alive():
            logger.error(
                "alphatrace: telemetry did not flush within %.1fs (%s); exiting anyway: %s",
                timeout_seconds,
                self.export.describe(),
                snapshot.describe(),
            )
            return False
        level = logging.WARNING if snapshot.lost else logging.INFO
        logger.log(level, "alphatrace telemetry: %s", snapshot.describe())
        return True


def configure_telemetry(
    *,
    exporter: SpanExporter | None = None,
    trace_file: str | os.PathLike | None = None,
    service_name: str | None = None,
    llm_simulated: bool = False,
    resource_attributes: Mapping[str, object] | None = None,
    id_generator: IdGenerator | None = None,
    processor_factory: Callable[[SpanExporter], SpanProcessor] | None = None,
    instrument_openai: bool = True,
    register_atexit: bool = False,
    env: Mapping[str, str] | None = None,
    export_handoff: bool = True,
    metric_reader: MetricReader | None = None,
) -> Telemetry:
    """Build the providers. ``exporter`` (e.g. an ``InMemorySpanExporter`` in tests) beats the env;
    with it, metrics go to ``metric_reader`` only (e.g. an ``InMemoryMetricReader``), else where
    ``otel/metrics.py`` says.
    ``export_handoff=False`` turns off the export hand-off (``otel/export_handoff.py``): for the
    benchmarks that show what it prevents."""
    env = os.environ if env is None else env
    stall_seconds = env_number(env, ENV_EXPORT_STALL, DEFAULT_STALL_SECONDS, whole=False, unit="seconds", above=0)
    processor_factory = processor_factory or (lambda span_exporter: batch_processor(span_exporter, env))
    if exporter is not None:
        choice = ExportChoice("custom")
    else:
        choice = choose_export(trace_file, env)
        exporter = build_exporter(choice)
    disabled = (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true"
    limits = SpanLimits()  # the SDK's default, from OTEL_*_LIMIT; kept for RunSpanProcessor
    resource = build_resource(service_name, llm_simulated, resource_attributes)
    metrics_choice = (
        MetricsChoice("custom" if metric_reader else "none")
        if choice.kind == "custom"
        else choose_metrics_export(choice.kind, choice.trace_file, env)
    )
    if metric_reader is not None or disabled:
        meter_provider = MeterProvider(resource=resource, metric_readers=[] if disabled else [metric_reader], shutdown_on_exit=False)
    else:
        meter_provider = build_meter_provider(resource, build_metric_exporter(metrics_choice))
    provider = TracerProvider(
        resource=resource,
        id_generator=id_generator,
        shutdown_on_exit=False,
        span_limits=limits,
    )
    label = type(exporter).__name__ if choice.kind == "custom" else choice.describe()
    accounting = SpanAccounting(stall_seconds=stall_seconds, exporter_label=label)
    watchdog = None
    handoff = None
    if exporter is not None and not disabled:
        # Every span is redacted (API keys and their masked forms, otel/redaction.py) before export.
        # Busy agent threads give the export thread its turn when the queue backs up (the hand-off
        # needs the batch processor's queue, so it is made once the processor exists).
        counting = CountingSpanExporter(exporter, accounting)
        agent_metrics = AgentMetrics(meter_provider.get_meter(TRACER_NAME, package_version()), accounting.losses)
        batching = processor_factory(RedactingSpanExporter(SpanMetricsExporter(counting, agent_metrics)))
        handoff = counting.handoff = export_handoff_for(batching) if export_handoff else None
        # One processor on the agent's thread: the run's ids on its spans, counting, the hand-off,
        # and run root spans finished on the export thread (otel/run_spans.py).
        provider.add_span_processor(RunSpanProcessor(batching, accounting, handoff, limits))
        watchdog = Watchdog(accounting, every_seconds=min(5.0, stall_seconds / 2)).start()
    else:
        provider.add_span_processor(RunAttributesSpanProcessor())
    telemetry = Telemetry(provider, choice, exporter, accounting, watchdog, handoff, meter_provider, metrics_choice)
    if instrument_openai:
        telemetry.instrument_openai()
    if register_atexit:
        atexit.register(telemetry.shutdown)
    return telemetry
