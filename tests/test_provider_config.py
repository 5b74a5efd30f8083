"""Where spans go, decided by the standard OTEL_* variables; bad values stop start-up clearly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

from otel.file_exporter import CollectorFileExporter
from otel.provider import DEFAULT_TRACE_FILE, build_exporter, build_resource, choose_export, configure_telemetry
from services.config_error import ConfigError


def test_default_is_the_embedded_file_exporter():
    choice = choose_export(env={})
    assert choice.kind == "file" and choice.trace_file == DEFAULT_TRACE_FILE
    assert DEFAULT_TRACE_FILE.parts[-2:] == ("telemetry", "traces.jsonl")
    assert isinstance(build_exporter(choice), CollectorFileExporter)


def test_trace_file_argument_beats_env_beats_default(tmp_path):
    assert choose_export(env={"ALPHATRACE_TRACE_FILE": "/x/env.jsonl"}).trace_file == Path("/x/env.jsonl")
    assert choose_export(tmp_path / "arg.jsonl", env={"ALPHATRACE_TRACE_FILE": "/x/env.jsonl"}).trace_file == tmp_path / "arg.jsonl"


def test_an_otlp_endpoint_selects_http_protobuf_by_default():
    choice = choose_export(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert (choice.kind, choice.protocol) == ("otlp", "http/protobuf")
    assert "127.0.0.1:4318" in choice.describe()


def test_grpc_when_the_protocol_says_so(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    choice = choose_export()
    assert choice.protocol == "grpc"
    exporter = build_exporter(choice)
    try:
        assert isinstance(exporter, GrpcExporter)
    finally:
        exporter.shutdown()


def test_traces_specific_variables_win(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    choice = choose_export()
    assert choice.protocol == "http/protobuf"
    assert isinstance(build_exporter(choice), HttpExporter)


@pytest.mark.parametrize("kind", ["none", "console", "file"])
def test_other_exporters(kind):
    assert choose_export(env={"OTEL_TRACES_EXPORTER": kind, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318"}).kind == kind


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin' is not supported"),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, "one exporter at a time"),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "'http/json' is not supported"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4318"}, "needs an http:// or https:// scheme"),
    ],
)
def test_bad_values_are_config_errors(env, message):
    with pytest.raises(ConfigError, match=message):
        choose_export(env=env)


def test_service_name_default_and_env_override(monkeypatch):
    resource = build_resource(llm_simulated=True)
    assert resource.attributes["service.name"] == "alphatrace"
    assert resource.attributes["service.version"]
    assert resource.attributes["alphatrace.llm.simulated"] is True
    monkeypatch.setenv("OTEL_SERVICE_NAME", "alpha-prod")
    assert build_resource().attributes["service.name"] == "alpha-prod"
    assert build_resource(service_name="explicit").attributes["service.name"] == "explicit"
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=quant")
    resource = build_resource()
    assert resource.attributes["service.name"] == "from-attrs" and resource.attributes["team"] == "quant"


def test_nothing_is_written_before_configure_and_shutdown_is_idempotent(tmp_path):
    target = tmp_path / "t" / "traces.jsonl"
    handle = configure_telemetry(trace_file=target, instrument_openai=False, env={})
    with handle.tracer().start_as_current_span("one"):
        pass
    assert handle.shutdown() is True
    assert handle.shutdown() is True
    assert target.read_text().count("\n") == 1


def test_explicit_env_mapping_decides_the_endpoint_not_the_process_env(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://process-env:4318")
    exporter = build_exporter(choose_export(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:14318"}))
    assert exporter._endpoint == "http://127.0.0.1:14318/v1/traces"
    specific = choose_export(env={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/custom/path"})
    assert specific.traces_endpoint == "http://127.0.0.1:1/custom/path"


def test_otlp_headers_are_parsed_and_validated():
    choice = choose_export(
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "Api-Key=abc%20def,tenant=q",
        }
    )
    exporter = build_exporter(choice)
    try:
        assert dict(exporter._headers) == {"api-key": "abc def", "tenant": "q"}
    finally:
        exporter.shutdown()
    with pytest.raises(ConfigError, match="key=value pairs"):
        build_exporter(choose_export(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:4318", "OTEL_EXPORTER_OTLP_HEADERS": "novalue"}))


def test_batch_settings_default_larger_than_the_sdk_and_follow_otel_bsp():
    from otel.provider import batch_processor
    from tests.test_span_accounting import GatedExporter

    default = batch_processor(GatedExporter(), env={})
    tuned = batch_processor(GatedExporter(), env={"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_SCHEDULE_DELAY": "20"})
    try:
        assert default._batch_processor._queue.maxlen == 16384
        assert default._batch_processor._schedule_delay_millis == 1000
        assert tuned._batch_processor._queue.maxlen == 100
        assert tuned._batch_processor._schedule_delay_millis == 20
    finally:
        default.shutdown()
        tuned.shutdown()
    for bad in (
        {"OTEL_BSP_MAX_QUEUE_SIZE": "lots"},
        {"OTEL_BSP_SCHEDULE_DELAY": "-1"},
        {"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"},
    ):
        with pytest.raises(ConfigError, match="OTEL_BSP_"):
            batch_processor(GatedExporter(), env=bad)


def test_a_trace_file_that_cannot_be_written_is_a_config_error_when_the_exporter_is_built(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    folder_as_file = tmp_path / "a-folder.jsonl"
    folder_as_file.mkdir()
    target = blocker / "telemetry" / "traces.jsonl"
    with pytest.raises(
        ConfigError, match=f"trace file {target} cannot be written .*; set ALPHATRACE_TRACE_FILE to a file in a writable folder"
    ):
        configure_telemetry(trace_file=target, instrument_openai=False, env={})
    with pytest.raises(ConfigError, match=f"trace file {folder_as_file} is a folder, not a regular file: .*set ALPHATRACE_TRACE_FILE"):
        configure_telemetry(trace_file=folder_as_file, instrument_openai=False, env={})
    fine = tmp_path / "new" / "traces.jsonl"
    configure_telemetry(trace_file=fine, instrument_openai=False, env={}).shutdown()
    assert fine.parent.is_dir() and not fine.exists()  # the folder is made; the file only with the first span


def test_a_trace_file_that_is_not_a_regular_file_is_refused_at_start_up(tmp_path):
    fifo = tmp_path / "traces.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match=r"is a FIFO \(named pipe\), not a regular file"):
        choose_export(env={"ALPHATRACE_TRACE_FILE": str(fifo)})
    with pytest.raises(ConfigError, match="is a character device"):
        choose_export("/dev/null", env={})
    assert choose_export(tmp_path / "new" / "traces.jsonl", env={}).kind == "file"  # not there yet: fine


@pytest.mark.parametrize("bad", ["0", "-1", "soon", "inf", "nan"])
def test_a_bad_stall_threshold_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="ALPHATRACE_EXPORT_STALL_SECONDS"):
        configure_telemetry(instrument_openai=False, env={"ALPHATRACE_EXPORT_STALL_SECONDS": bad})
