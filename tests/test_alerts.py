"""Alerts reach a person through a webhook (a real local HTTP server here): one per cause and agent
per period, retried when the sink fails, never blocking the caller, never carrying the API key, and
never putting the webhook's URL (which holds a secret) in a log line."""

from __future__ import annotations

import json
import logging

import pytest

from otel.redaction import register_secret
from services.alerts import ALERT_KILL_SWITCH_BAD_EDIT, Alert, AlertSink, WebhookAlerts, alerts_from_env, httpx_post
from services.config_error import ConfigError
from tests.fleet_fixtures import build_test_fleet
from tests.webhook_sink import URL_SECRET, WAIT, Sink

API_KEY = "sk-proj-ALERTCANARY0123456789abcdefghijklmnop"


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.close()


def _retire(agent="momentum", summary="retired: hit rate 0.31 < 0.45 over 40 scored signals"):
    return Alert(
        "supervisor.retire", agent, summary, {"hit_rate": 0.31, "scored": 40}, "http://127.0.0.1:16686/trace/ab12", "2026-12-06T05:00:00Z"
    )


def test_a_decision_arrives_as_json_with_the_agent_figures_and_jaeger_link(sink):
    alerts = WebhookAlerts(sink.url)
    alerts.send(_retire())
    alerts.close()
    assert sink.wait_for(1) == [
        {
            "source": "alphatrace",
            "cause": "supervisor.retire",
            "agent": "momentum",
            "summary": "retired: hit rate 0.31 < 0.45 over 40 scored signals",
            "figures": {"hit_rate": 0.31, "scored": 40},
            "jaeger_url": "http://127.0.0.1:16686/trace/ab12",
            "at": "2026-12-06T05:00:00Z",
        }
    ]
    assert alerts.stats.sent == 1


def test_slack_format_is_one_text_line(sink):
    alerts = WebhookAlerts(sink.url, format="slack")
    alerts.send(_retire())
    alerts.close()
    assert sink.wait_for(1) == [
        {
            "text": "[alphatrace] supervisor.retire momentum: retired: hit rate 0.31 < 0.45 over 40 scored signals "
            "(hit_rate=0.31, scored=40) <http://127.0.0.1:16686/trace/ab12|trace>"
        }
    ]


def test_one_alert_per_cause_and_agent_per_period(sink):
    now = [1000.0]
    alerts = WebhookAlerts(sink.url, dedup_seconds=3600, monotonic=lambda: now[0])
    for _ in range(5):
        alerts.send(_retire())
    alerts.send(_retire(agent="llm_analyst"))
    now[0] += 3601
    alerts.send(_retire())
    alerts.close()
    bodies = sink.wait_for(3)
    assert [b["agent"] for b in bodies] == ["momentum", "llm_analyst", "momentum"]
    assert (alerts.stats.sent, alerts.stats.suppressed) == (3, 4)


def test_a_failing_sink_is_retried_with_backoff_until_it_takes_the_alert(sink):
    sink.answers = [500, 503, 429]
    waits: list[float] = []
    alerts = WebhookAlerts(sink.url, sleep=waits.append)
    alerts.send(_retire())
    alerts.close()
    assert len(sink.wait_for(1)) == 1
    assert waits == [0.5, 1.0, 2.0]
    assert (alerts.stats.sent, alerts.stats.failed) == (1, 0)


def test_a_rejected_alert_is_not_retried_and_a_failure_is_logged_once_without_the_url(sink, caplog):
    sink.answers = [400, 404]
    alerts = WebhookAlerts(sink.url, sleep=lambda s: None)
    with caplog.at_level(logging.INFO, logger="alphatrace.alerts"):
        alerts.send(_retire())
        alerts.send(_retire(agent="llm_analyst"))
        alerts.send(_retire(agent="ensemble"))
        alerts.close()
    assert (alerts.stats.sent, alerts.stats.failed) == (1, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("did not take an alert (HTTP 400" in m for m in messages) == 1  # once, not per alert
    assert any("takes alerts again" in m for m in messages)
    assert not any(URL_SECRET in m or "127.0.0.1" in m for m in messages)
    assert URL_SECRET not in repr(alerts)


def test_an_unreachable_sink_gives_up_within_the_deadline_and_never_raises(caplog):
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    def refuse(url, body, headers):
        raise ConnectionRefusedError(f"cannot reach {url}")

    alerts = WebhookAlerts(f"https://hooks.example.invalid/services/{URL_SECRET}", post=refuse, sleep=sleep, monotonic=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="alphatrace.alerts"):
        alerts.send(_retire())
        alerts.close()
    assert alerts.stats.failed == 1 and alerts.stats.sent == 0
    assert 0 < clock[0] <= 30.0  # backoff stopped before the 30 s deadline
    assert [r.getMessage() for r in caplog.records] == [
        "the alert webhook did not take an alert (ConnectionRefusedError, cause supervisor.retire); "
        "further failures are counted, not logged"
    ]


def test_send_never_waits_for_the_sink(sink):
    sink.hold.clear()  # the sink answers nothing until released
    alerts = WebhookAlerts(sink.url)
    for agent in ("a", "b", "c"):
        alerts.send(_retire(agent=agent))  # returns although the first POST is still unanswered
    assert sink.bodies == []
    sink.hold.set()
    alerts.close(timeout_seconds=WAIT)
    assert [b["agent"] for b in sink.wait_for(3)] == ["a", "b", "c"]


def test_no_api_key_in_an_alert_even_when_the_summary_quotes_one(sink, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    register_secret(API_KEY)
    alerts = WebhookAlerts(sink.url, format="slack")
    alerts.send(Alert("telemetry.loss", "llm_analyst", f"export failed: 401 for key {API_KEY}", {"note": f"Bearer {API_KEY}"}))
    alerts.close()
    text = json.dumps(sink.wait_for(1))
    assert API_KEY not in text and API_KEY[-8:] not in text and "sk-proj-" not in text


def test_the_environment_picks_the_sink_and_a_bad_value_never_quotes_the_url(sink):
    assert type(alerts_from_env({})) is AlertSink
    chosen = alerts_from_env({"ALPHATRACE_ALERT_WEBHOOK_URL": sink.url, "ALPHATRACE_ALERT_FORMAT": "slack"}, post=httpx_post)
    assert isinstance(chosen, WebhookAlerts)
    chosen.close()
    with pytest.raises(ConfigError) as bad_url:
        alerts_from_env({"ALPHATRACE_ALERT_WEBHOOK_URL": f"hooks.example/{URL_SECRET}"})
    assert URL_SECRET not in str(bad_url.value)
    with pytest.raises(ConfigError, match="ALPHATRACE_ALERT_FORMAT='teams' is not an alert format"):
        alerts_from_env({"ALPHATRACE_ALERT_WEBHOOK_URL": sink.url, "ALPHATRACE_ALERT_FORMAT": "teams"})
    with pytest.raises(ConfigError, match="ALPHATRACE_ALERT_DEDUP_SECONDS"):
        alerts_from_env({"ALPHATRACE_ALERT_WEBHOOK_URL": sink.url, "ALPHATRACE_ALERT_DEDUP_SECONDS": "soon"})


def test_a_kill_switch_edit_that_cannot_be_read_reaches_the_webhook_once(world, telemetry, sink):
    alerts = WebhookAlerts(sink.url)
    fleet = build_test_fleet(world, telemetry, alerts=alerts)
    world["kill_file"].write_text('["momentum"]')
    fleet.run_cycle(world["calendar"][70])
    world["kill_file"].write_text('["momentum", ')  # a half-saved edit
    fleet.run_cycle(world["calendar"][71])  # four runs see it
    fleet.run_cycle(world["calendar"][72])
    fleet.shutdown()
    alerts.close()
    (body,) = sink.wait_for(1)
    assert body["cause"] == ALERT_KILL_SWITCH_BAD_EDIT and body["agent"] == "*"
    assert "the kill-switch file could not be read" in body["summary"] and "last good state holds" in body["summary"]
    assert body["figures"]["first_seen_by"] in {"momentum", "mean_reversion", "llm_analyst", "ensemble"}
    assert (alerts.stats.sent, alerts.stats.suppressed) == (1, 7)


class _RefusingExporter:
    """A collector that refuses every batch (down, or rejecting): every span fails to export."""

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.FAILURE

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


def test_lost_spans_reach_a_person_once_per_period_with_the_figures(sink, world):
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from otel.provider import configure_telemetry
    from services.simulated_llm import SimulatedLLMTransport

    telemetry = configure_telemetry(exporter=_RefusingExporter(), processor_factory=SimpleSpanProcessor, llm_simulated=True)
    alerts = WebhookAlerts(sink.url)
    try:
        fleet = build_test_fleet(world, telemetry, SimulatedLLMTransport(), alerts=alerts)
        fleet.run_cycle(world["calendar"][70])
        fleet.run_cycle(world["calendar"][71])  # more losses in the same period: no second alert
        fleet.shutdown()
        telemetry.accounting.warn_if_losing()  # what the watchdog does every few seconds
        [body] = sink.wait_for(1)
    finally:
        alerts.close()
        telemetry.shutdown()
    assert body["cause"] == "telemetry.loss" and body["agent"] == "*"
    assert body["summary"].startswith("telemetry is losing spans")
    assert body["figures"]["spans_export_failed"] > 0 and body["figures"]["spans_dropped"] == 0
    assert alerts.stats.sent == 1
