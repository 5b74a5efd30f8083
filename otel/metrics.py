"""The MeterProvider beside the tracer provider: where metrics go, and the embedded metrics file.

``configure_telemetry`` (``otel/provider.py``) builds one with the same resource as the tracer
provider and hands it to the official OpenAI instrumentation (``gen_ai.client.token.usage``,
``gen_ai.client.operation.duration``) and to alphatrace's own agent metrics (``otel/span_metrics.py``).

Where metrics go follows where spans go, as the standard variables say:

* ``OTEL_METRICS_EXPORTER``: ``otlp`` | ``console`` | ``none``, or alphatrace's ``file``. Unset, it is
  ``file`` when spans go to the embedded trace file and ``otlp`` when they go to a collector (so the
  collector's metrics pipeline gets them), ``none`` otherwise.
* ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` (a URL) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base, plus
  ``/v1/metrics`` over http/protobuf); ``OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`` /
  ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, default, or ``grpc``); the exporters read their
  headers, timeout and compression variables themselves.
* ``OTEL_METRIC_EXPORT_INTERVAL`` (ms, the SDK's default 60000) and ``OTEL_METRIC_EXPORT_TIMEOUT``,
  read by the SDK's periodic reader; whatever is left is written at shutdown.

``ALPHATRACE_METRICS_FILE``: the embedded metrics file, default ``metrics/metrics.jsonl`` beside the trace
file: in a folder of its own, so that a report reading the trace file's folder never meets metrics.
It is written the way the collector's file exporter writes metrics (one OTLP/JSON
``ExportMetricsServiceRequest`` per line, cumulative temporality) through the trace file's own writer
(``otel/file_exporter.py``: one ``write()`` per line, torn lines repaired, failures logged and counted,
never raised), so the same readers and guarantees apply.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource

from otel.file_exporter import CollectorFileExporter
from otel.internal_errors import report_internal_error
from settings.config_error import ConfigError

logger = logging.getLogger(__name__)

ENV_METRICS_FILE = "ALPHATRACE_METRICS_FILE"
METRICS_FILE = Path("metrics") / "metrics.jsonl"  # relative to the trace file's folder
_EXPORTERS = ("file", "otlp", "console", "none")
_PROTOCOLS = ("http/protobuf", "grpc")


@dataclass(frozen=True)
class MetricsChoice:
    kind: str  # file | otlp | console | none
    protocol: str = ""
    endpoint: str | None = None  # the full URL (or gRPC target); None: the exporter's default
    metrics_file: Path | None = None

    def describe(self) -> str:
        if self.kind == "file":
            return f"embedded metrics file -> {self.metrics_file}"
        if self.kind == "otlp":
            return f"OTLP {self.protocol} -> {self.endpoint or 'the SDK default endpoint'}"
        return self.kind


def choose_metrics_export(traces_kind: str, trace_file: Path | None, env: Mapping[str, str] | None = None) -> MetricsChoice:
    """Where metrics go: ``OTEL_METRICS_EXPORTER``, else after the spans (``traces_kind``)."""
    env = os.environ if env is None else env
    kind = (env.get("OTEL_METRICS_EXPORTER") or "").strip().lower()
    if not kind:
        kind = traces_kind if traces_kind in ("file", "otlp") else "none"
    if kind not in _EXPORTERS:
        raise ConfigError(f"OTEL_METRICS_EXPORTER={kind!r} is not one of {', '.join(_EXPORTERS)}")
    if kind == "file":
        named = env.get(ENV_METRICS_FILE)
        beside = (trace_file.parent if trace_file is not None else Path("telemetry")) / METRICS_FILE
        return MetricsChoice("file", metrics_file=Path(named) if named else beside)
    if kind != "otlp":
        return MetricsChoice(kind)
    protocol = (env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol not in _PROTOCOLS:
        raise ConfigError(f"OTLP metrics protocol {protocol!r} is not one of {', '.join(_PROTOCOLS)}")
    endpoint = env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or None
    if endpoint is None and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        base = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        endpoint = base.rstrip("/") + "/v1/metrics" if protocol == "http/protobuf" else base
    return MetricsChoice("otlp", protocol, endpoint)


def _hex_ids(value: Any) -> Any:
    """OTLP/JSON writes trace and span ids as hex; protobuf's JSON mapping writes bytes as base64."""
    if isinstance(value, dict):
        return {
            k: (base64.b64decode(v).hex() if k in ("traceId", "spanId") and isinstance(v, str) else _hex_ids(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(v) for v in value]
    return value


def encode_metrics_line(data: MetricsData) -> tuple[bytes, int]:
    """One OTLP/JSON line (as the collector's file exporter writes metrics) and its data points."""
    message = MessageToDict(encode_metrics(data), use_integers_for_enums=True)
    points = sum(
        len(metric.get(kind, {}).get("dataPoints", ()))
        for resource in message.get("resourceMetrics", ())
        for scope in resource.get("scopeMetrics", ())
        for metric in scope.get("metrics", ())
        for kind in ("sum", "gauge", "histogram", "exponentialHistogram", "summary")
    )
    return json.dumps(_hex_ids(message), separators=(",", ":")).encode("utf-8") + b"\n", points


class MetricsFileExporter(MetricExporter):
    """Cumulative metrics to a file, one OTLP/JSON line per collection, through the trace file's writer."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = Path(path)
        self._file = CollectorFileExporter(self.path, noun="metric points")

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            line, points = encode_metrics_line(metrics_data)
        except Exception:
            report_internal_error(logger, "could not encode metrics")
            return MetricExportResult.FAILURE
        if points == 0:
            return MetricExportResult.SUCCESS
        return MetricExportResult.SUCCESS if self._file.write_line(line, points) else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._file.shutdown()


def build_metric_exporter(choice: MetricsChoice) -> MetricExporter | None:
    if choice.kind == "file":
        return MetricsFileExporter(choice.metrics_file)
    if choice.kind == "console":
        return ConsoleMetricExporter()
    if choice.kind == "otlp":
        if choice.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

            return GrpcExporter(endpoint=choice.endpoint)
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        return HttpExporter(endpoint=choice.endpoint)
    return None


def build_meter_provider(resource: Resource, exporter: MetricExporter | None, disabled: bool = False) -> MeterProvider:
    """A provider exporting periodically to ``exporter`` (none: instruments that record nothing)."""
    readers = [] if exporter is None or disabled else [PeriodicExportingMetricReader(exporter)]
    return MeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
