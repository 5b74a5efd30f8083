"""Alerts that reach a person: a webhook notifier that never blocks or slows its caller.

An ``Alert`` says which agent, what happened (``cause``: ``supervisor.retire``, ``kill_switch.bad_edit``,
``telemetry.loss``, ``budget.exceeded``, ``scheduler.lease_lost``, ...), the figures behind it and,
when there is a run to look at, a Jaeger link. ``dedup`` narrows the deduplication below cause and agent (a budget stop: the
budget and the day).
``AlertSink`` is the seam (``NoAlerts`` does nothing; ``WebhookAlerts`` posts); ``alerts_from_env``
picks one at start-up.

``WebhookAlerts`` hands each alert to its own thread through a bounded queue (``send`` returns at
once; when the queue is full the alert is dropped and counted), posts it as a generic JSON payload or,
for Slack-compatible incoming webhooks, as ``{"text": ...}``, retries with backoff for a bounded time,
sends one alert per cause and agent per period (the rest are counted as suppressed), and logs a failed
delivery once until one succeeds again. Every text goes through ``otel.redaction.redact`` (no API key,
masked or whole, in an alert). The URL often holds a secret (Slack's does, in its path): it is never
logged, put in an exception, a span or a report; logs say "the alert webhook".

Environment: ``ALPHATRACE_ALERT_WEBHOOK_URL`` (unset: no alerts), ``ALPHATRACE_ALERT_FORMAT``
(``json``, default, or ``slack``), ``ALPHATRACE_ALERT_DEDUP_SECONDS`` (3600). A bad value is a
``ConfigError``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx2

from otel.redaction import redact
from services.config_error import ConfigError, env_number

logger = logging.getLogger("alphatrace.alerts")

ENV_WEBHOOK_URL = "ALPHATRACE_ALERT_WEBHOOK_URL"
ENV_FORMAT = "ALPHATRACE_ALERT_FORMAT"
ENV_DEDUP_SECONDS = "ALPHATRACE_ALERT_DEDUP_SECONDS"
FORMATS = ("json", "slack")
# The causes (one alert per cause and agent per period); "*" as the agent: the whole fleet.
ALERT_SUPERVISOR_RETIRE = "supervisor.retire"
ALERT_SUPERVISOR_PROMOTE = "supervisor.promote"
ALERT_KILL_SWITCH_BAD_EDIT = "kill_switch.bad_edit"
ALERT_TELEMETRY_LOSS = "telemetry.loss"
ALERT_BUDGET_EXCEEDED = "budget.exceeded"  # a budget stopped a run (services/budgets.py)
ALERT_LEASE_LOST = "scheduler.lease_lost"  # a scheduler stopped starting a shard's runs (services/shard_lease.py)
DEFAULT_DEDUP_SECONDS = 3600.0
QUEUE_SIZE = 256
# Delivery: attempts 0.5 s, 1 s, 2 s, 4 s, 8 s apart, never past DELIVERY_DEADLINE_SECONDS in all.
FIRST_BACKOFF_SECONDS = 0.5
DELIVERY_DEADLINE_SECONDS = 30.0
REQUEST_TIMEOUT_SECONDS = 5.0

# One method: POST a body to the webhook and return the HTTP status (raise on a transport error).
Post = Callable[[str, bytes, Mapping[str, str]], int]


@dataclass(frozen=True)
class Alert:
    cause: str
    agent: str
    summary: str
    figures: Mapping[str, Any] = field(default_factory=dict)
    jaeger_url: str | None = None
    at: str = ""
    dedup: str = ""  # within a cause and agent, what makes two alerts different (not sent)

    def payload(self) -> dict[str, Any]:
        """The generic JSON payload, every text redacted."""
        return {
            "source": "alphatrace",
            "cause": self.cause,
            "agent": redact(self.agent),
            "summary": redact(self.summary),
            "figures": {redact(str(k)): (redact(v) if isinstance(v, str) else v) for k, v in self.figures.items()},
            "jaeger_url": self.jaeger_url,
            "at": self.at,
        }

    def text(self) -> str:
        """One Slack-compatible message: ``[alphatrace] cause agent: summary (figures) <link>``."""
        data = self.payload()
        figures = ", ".join(f"{k}={v}" for k, v in data["figures"].items())
        line = f"[alphatrace] {data['cause']} {data['agent']}: {data['summary']}"
        if figures:
            line += f" ({figures})"
        if data["jaeger_url"]:
            line += f" <{data['jaeger_url']}|trace>"
        return line


@dataclass
class AlertStats:
    """Counts since start: sent, failed (given up), suppressed (same cause and agent within the
    period), dropped (the queue was full)."""

    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    dropped: int = 0


class AlertSink:
    """Where alerts go. The base class drops them: no webhook configured."""

    def send(self, alert: Alert) -> None:
        """Hand over an alert; never blocks, never raises."""

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Deliver what is queued, for at most ``timeout_seconds``."""

    @property
    def stats(self) -> AlertStats:
        return AlertStats()


NoAlerts = AlertSink


def httpx_post(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """The real transport: one POST with a bounded timeout, no redirects (a redirect could carry the
    body elsewhere)."""
    response = httpx2.post(url, content=body, headers=dict(headers), timeout=REQUEST_TIMEOUT_SECONDS, follow_redirects=False)
    return response.status_code


class WebhookAlerts(AlertSink):
    def __init__(
        self,
        url: str,
        *,
        format: str = "json",
        dedup_seconds: float = DEFAULT_DEDUP_SECONDS,
        post: Post = httpx_post,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        deadline_seconds: float = DELIVERY_DEADLINE_SECONDS,
        first_backoff_seconds: float = FIRST_BACKOFF_SECONDS,
    ):
        if format not in FORMATS:
            raise ConfigError(f"{ENV_FORMAT}={format!r} is not an alert format; use one of {', '.join(FORMATS)}")
        self._url = url
        self._format = format
        self._dedup_seconds = dedup_seconds
        self._post = post
        self._monotonic = monotonic
        self._sleep = sleep
        self._deadline_seconds = deadline_seconds
        self._first_backoff = first_backoff_seconds
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._last_sent: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()  # stats and the dedup table: send() runs on any thread
        self._stats = AlertStats()
        self._failing = False
        self._thread = threading.Thread(target=self._deliver_forever, name="alphatrace-alerts", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:  # never the URL
        return f"WebhookAlerts(format={self._format!r})"

    @property
    def stats(self) -> AlertStats:
        with self._lock:
            return AlertStats(**vars(self._stats))

    def send(self, alert: Alert) -> None:
        key = (alert.cause, alert.agent, alert.dedup)
        now = self._monotonic()
        with self._lock:
            last = self._last_sent.get(key)
            if last is not None and now - last < self._dedup_seconds:
                self._stats.suppressed += 1
                return
            self._last_sent[key] = now
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            with self._lock:
                self._stats.dropped += 1

    def close(self, timeout_seconds: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout_seconds)
        except queue.Full:
            return
        self._thread.join(timeout_seconds)

    def _body(self, alert: Alert) -> bytes:
        data = {"text": alert.text()} if self._format == "slack" else alert.payload()
        return json.dumps(data, sort_keys=True).encode()

    def _deliver_forever(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        body = self._body(alert)
        headers = {"Content-Type": "application/json", "User-Agent": "alphatrace-alerts"}
        started = self._monotonic()
        backoff = self._first_backoff
        problem = ""
        while True:
            try:
                status = self._post(self._url, body, headers)
                if 200 <= status < 300:
                    self._delivered()
                    return
                problem = f"HTTP {status}"
                retry = status == 429 or status >= 500  # a 4xx other than 429 will not get better
            except Exception as exc:  # any transport failure: never into the caller
                problem = type(exc).__name__  # not str(exc): httpx puts the URL in its messages
                retry = True
            if not retry or self._monotonic() - started + backoff > self._deadline_seconds:
                break
            self._sleep(backoff)
            backoff *= 2
        with self._lock:
            self._stats.failed += 1
            first = not self._failing
            self._failing = True
        if first:
            logger.warning(
                "the alert webhook did not take an alert (%s, cause %s); further failures are counted, not logged", problem, alert.cause
            )

    def _delivered(self) -> None:
        with self._lock:
            self._stats.sent += 1
            recovered = self._failing
            self._failing = False
        if recovered:
            logger.info("the alert webhook takes alerts again")


def alerts_from_env(env: Mapping[str, str], post: Post = httpx_post) -> AlertSink:
    """``WebhookAlerts`` when ``ALPHATRACE_ALERT_WEBHOOK_URL`` is set, else ``NoAlerts``; a bad value
    is a ``ConfigError`` that never quotes the URL."""
    url = (env.get(ENV_WEBHOOK_URL) or "").strip()
    if not url:
        return NoAlerts()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{ENV_WEBHOOK_URL} must be an http(s) URL (its value is not shown: it may hold a secret)")
    format = (env.get(ENV_FORMAT) or "json").strip().lower()
    dedup = env_number(env, ENV_DEDUP_SECONDS, DEFAULT_DEDUP_SECONDS, whole=False, unit="seconds", minimum=0)
    return WebhookAlerts(url, format=format, dedup_seconds=float(dedup), post=post)


def stamp(now: datetime | None = None) -> str:
    """An alert's time, UTC, to the second."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
