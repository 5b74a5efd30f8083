"""Security by default: no prompt or completion text and no API key in the trace file, the logs or
the report; services listen on loopback; a crash never leaves half a line in the trace file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel.file_exporter import CollectorFileExporter
from otel.provider import configure_telemetry
from tests.llm_transports import chat_completion

REPO = Path(__file__).resolve().parent.parent
FAKE_KEY = "sk-proj-ALPHATRACE-CANARY-9c2b7e1d4f"
CANARY_RATIONALE = "CANARY-RATIONALE-7731"

# A sitecustomize that gives the real openai client a transport answering like OpenAI, inside the
# scheduler's own process, so the whole path (key, prompt, completion) runs as in production.
SITECUSTOMIZE = """
import json, httpx2, openai
_original = openai.OpenAI.__init__
RECORDED = json.loads(%r)

def _answer(request):
    prompt = json.loads(request.read())["messages"][-1]["content"]
    symbols = sorted(json.loads(prompt.split("FEATURES_JSON:", 1)[1]))
    content = json.dumps({"signals": [{"symbol": s, "direction": "up", "prob_up": 0.6, "confidence": 0.5,
                                       "rationale": %r} for s in symbols]})
    body = dict(RECORDED)
    body["choices"] = [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
    return httpx2.Response(200, json=body)

def _init(self, *args, **kwargs):
    kwargs["http_client"] = httpx2.Client(transport=httpx2.MockTransport(_answer))
    _original(self, *args, **kwargs)

openai.OpenAI.__init__ = _init
""".replace("%r", repr(json.dumps(chat_completion("unused"))), 1).replace("%r", repr(CANARY_RATIONALE), 1)


# The same, but the server fails the way real ones do: a 401 whose body echoes the key (whole, in
# OpenAI's masked form, as the Bearer header) and the request, or a connection error naming the key.
FAILING_SITECUSTOMIZE = """
import json, os, httpx2
KEY = os.environ["OPENAI_API_KEY"]

def _answer(request):
    prompt = json.loads(request.read())["messages"][-1]["content"]
    if os.environ["CANARY_FAILURE"] == "connect":
        raise httpx2.ConnectError(f"proxy refused CONNECT: 'Authorization: Bearer {KEY}' ({KEY[:8]}****{KEY[-4:]})")
    message = (f"Incorrect API key provided: {KEY}. Yours: {KEY[:8]}{'*' * 24}{KEY[-4:]}. "
               f"Header: Bearer {KEY}. Request was: {prompt}")
    return httpx2.Response(401, json={"error": {"message": message, "type": "invalid_request_error", "code": KEY}})

httpx2.HTTPTransport.handle_request = lambda self, request: _answer(request)  # the network, nothing else
"""


def _run_fleet_with_real_key(world, tmp_path, extra_env=None, sitecustomize=SITECUSTOMIZE) -> tuple[str, Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(sitecustomize)
    trace_file = tmp_path / "traces.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ALPHATRACE_", "OPENAI_", "PYTEST_"))}
    env.update(
        {
            "PYTHONPATH": str(site),
            "OPENAI_API_KEY": FAKE_KEY,
            "ALPHATRACE_LLM_PROVIDER": "openai",
            "ALPHATRACE_LOG_LEVEL": "DEBUG",
            "ALPHATRACE_MARKET_DATA": str(world["tmp"] / "data"),
            "ALPHATRACE_KILL_SWITCH_FILE": str(world["kill_file"]),
            "ALPHATRACE_AGENT_STATUS_FILE": str(world["tmp"] / "agent_status.json"),
            "ALPHATRACE_TRACE_FILE": str(trace_file),
        }
    )
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, "scheduler.py", "--replay", "--days", "2", "--config", str(world["config"])],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr, trace_file


def test_no_key_prompt_or_completion_anywhere_by_default(world, tmp_path):
    logs, trace_file = _run_fleet_with_real_key(world, tmp_path)
    spans_text = trace_file.read_text()
    assert "gpt-4o-mini" in spans_text and "LLM: gpt-4o-mini" in logs  # the real-key path really ran
    out = tmp_path / "report"
    report = subprocess.run(
        [sys.executable, "meta_supervisor/build_meta_report.py", "--input", str(trace_file), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    outputs = {"trace file": spans_text, "logs": logs + report.stdout + report.stderr}
    outputs.update({p.name: p.read_text() for p in out.iterdir() if p.is_file()})
    for name, text in outputs.items():
        assert FAKE_KEY not in text, f"the API key leaked into {name}"
        assert FAKE_KEY[:12] not in text, f"part of the API key leaked into {name}"
        assert CANARY_RATIONALE not in text, f"the completion leaked into {name}"
        assert "momentum_60d" not in text, f"the prompt leaked into {name}"
        assert "cautious quantitative" not in text, f"the system prompt leaked into {name}"


def _build_report(trace_file: Path, out: Path) -> subprocess.CompletedProcess:
    command = ["meta_supervisor/build_meta_report.py", "--input", str(trace_file), "--out", str(out), "--state-dir", str(out / "state")]
    return subprocess.run([sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("failure", ["401", "connect"])
def test_a_provider_error_echoing_the_key_and_prompt_leaks_neither(world, tmp_path, failure):
    logs, trace_file = _run_fleet_with_real_key(world, tmp_path, {"CANARY_FAILURE": failure}, FAILING_SITECUSTOMIZE)
    spans_text = trace_file.read_text()
    expected = "openai.AuthenticationError" if failure == "401" else "openai.APIConnectionError"
    assert expected in spans_text and "agent llm_analyst failed" in logs  # the runs really failed, and were logged
    report = _build_report(trace_file, tmp_path / "report")
    assert report.returncode == 0, report.stderr
    outputs = {"trace file": spans_text, "logs": logs + report.stdout + report.stderr}
    outputs.update({str(p): p.read_bytes().decode("utf-8", "replace") for p in (tmp_path / "report").rglob("*") if p.is_file()})
    assert expected in outputs[str(tmp_path / "report" / "meta_report.md")]  # the failure is reported
    masked = [FAKE_KEY[:8] + "*" * 24 + FAKE_KEY[-4:], FAKE_KEY[:8] + "****" + FAKE_KEY[-4:], FAKE_KEY[-10:]]
    for name, text in outputs.items():
        for secret in [FAKE_KEY, FAKE_KEY[:12], f"Bearer {FAKE_KEY[:6]}", *masked]:
            assert secret not in text, f"the API key ({secret!r}) leaked into {name}"
        assert "momentum_60d" not in text, f"the prompt leaked into {name}"
        assert "cautious quantitative" not in text, f"the system prompt leaked into {name}"


def test_opt_in_captures_content_but_never_the_key(world, tmp_path):
    _, trace_file = _run_fleet_with_real_key(
        world,
        tmp_path,
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "span_only", "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental"},
    )
    text = trace_file.read_text()
    assert CANARY_RATIONALE in text and "momentum_60d" in text
    assert FAKE_KEY not in text


def test_every_listener_in_the_stack_configs_defaults_to_loopback():
    endpoints = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("endpoint", "host") and isinstance(value, str):
                    endpoints.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for config in (REPO / "collector-config.yaml", REPO / "collector" / "jaeger-config.yaml"):
        walk(yaml.safe_load(config.read_text()))
    defaults = [re.sub(r"\$\{env:[A-Z_]+:-([^}]*)\}", r"\1", e) for e in endpoints]
    listeners = [d for d in defaults if (":" in d and not d.startswith(("http://", "https://"))) or d == "127.0.0.1"]
    assert listeners, endpoints
    assert all(d.startswith("127.0.0.1") for d in listeners), defaults


CRASHING_WRITER = r"""
import sys, threading
sys.path.insert(0, {repo!r})
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from otel.file_exporter import CollectorFileExporter
from otel.provider import configure_telemetry
exporter = CollectorFileExporter({path!r})
handle = configure_telemetry(exporter=exporter, processor_factory=SimpleSpanProcessor, instrument_openai=False)
tracer = handle.tracer()
big = "x" * 200_000
def spin():
    while True:
        with tracer.start_as_current_span("invoke_agent crash", attributes={{"blob": big}}):
            pass
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
print("writing", flush=True)
threading.Event().wait()
"""


def test_a_crash_mid_write_leaves_no_half_line_once_writing_resumes(tmp_path, caplog):
    path = tmp_path / "traces.jsonl"
    with subprocess.Popen(
        [sys.executable, "-c", CRASHING_WRITER.format(repo=str(REPO), path=str(path))], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout.readline().strip() == "writing"
            deadline = time.monotonic() + 20
            while (not path.exists() or path.stat().st_size < 20_000_000) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
    killed_at = path.stat().st_size
    # The next run of the scheduler opens the file and appends.
    handle = configure_telemetry(exporter=CollectorFileExporter(path), processor_factory=SimpleSpanProcessor, instrument_openai=False)
    with handle.tracer().start_as_current_span("invoke_agent after_restart"):
        pass
    handle.shutdown()
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert len(lines) > 50
    for line in lines:
        assert json.loads(line)["resourceSpans"]
    assert b"after_restart" in lines[-1]
    cut = [r.getMessage() for r in caplog.records if "half-written line" in r.getMessage()]
    assert len(data) - len(lines[-1]) - 1 <= killed_at
    if cut:  # the kill usually lands mid-write with 200 kB lines; when it did, the fragment was removed
        assert "removed its" in cut[0]
