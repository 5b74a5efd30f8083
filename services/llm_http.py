"""The HTTP seam under the ``openai`` client: what a provider sends back is made safe before the SDK
turns it into an exception, a span or a log line.

``GuardedHTTPClient`` is the ``httpx2.Client`` (the SDK's defaults) handed to ``openai.OpenAI(http_client=...)`` (with the
network, the simulated model or a test's transport underneath; environment proxies still apply).

* An error answer (status 4xx/5xx): its body often echoes the key (``Incorrect API key provided:
  sk-...``, or OpenAI's masked form) or the request (the prompt's features). With content capture off
  (the default) the body is replaced by a content-free summary: ``{"error": {"message": "the LLM
  server's error body (187 bytes) is withheld: content capture is off", "type": ..., "code": ...}}``
  (the SDK prefixes ``Error code: 401 - ``), keeping ``type`` and ``code`` only when they are short identifiers. With capture
  on the body is kept, redacted (``otel.redaction``). Status and headers are kept, so the SDK's error
  classes and its retries (``retry-after``) work as before. The current (LLM) span gets
  ``alphatrace.llm.error.body_length`` (of the last error answer) and, for every answer,
  ``http.response.status_code`` (the last one wins: 200 after a retried 429).
* A requested stream: an error the server sends inside it (an SSE ``data:`` line whose JSON has an
  ``error``, which the SDK raises as ``openai.APIError`` with the server's message) is withheld the
  same way when capture is off (``_SafeEventStream``): its message replaced by a content-free
  summary, ``type`` and ``code`` kept when they are short identifiers; every other line passes as it
  came. With capture on the line is kept, redacted.
* An unrequested stream: a ``text/event-stream`` answer to a request that did not ask to stream
  raises ``UnrequestedStreamError`` (an ``openai.APIResponseValidationError``, which the SDK passes
  on without retrying), so the LLM span and the run fail with a clear error type, not an
  ``AttributeError`` on a ``str``.

Environment: ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` (via ``otel.redaction``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx2
import openai
from opentelemetry import trace

from otel import semconv
from otel.redaction import content_capture_enabled, redact

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_DROPPED_HEADERS = ("content-length", "content-encoding", "transfer-encoding", "content-type")


class UnrequestedStreamError(openai.APIResponseValidationError):
    """The server answered a non-streaming chat request with a server-sent-event stream."""

    def __init__(self, response: httpx2.Response) -> None:
        super().__init__(
            response,
            None,
            message=(
                f"the LLM server answered a non-streaming request with a text/event-stream (SSE) stream "
                f"(HTTP {response.status_code}); alphatrace needs a single JSON chat completion: turn "
                "streaming off on the server or its proxy"
            ),
        )


def _identifier(value: Any) -> str | None:
    if isinstance(value, str) and _IDENTIFIER.match(value) and redact(value) == value:
        return value
    return None


def error_summary(status: int, body: bytes) -> dict[str, Any]:
    """The content-free body that replaces a provider's error body when capture is off."""
    kind = code = None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        kind, code = _identifier(error.get("type")), _identifier(error.get("code"))
    message = f"the LLM server's error body ({len(body)} bytes) is withheld: content capture is off"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _safe_event_line(line: bytes) -> bytes:
    """One SSE line as the SDK may see it: an error event's message withheld (capture off) or
    redacted (capture on); any other line unchanged."""
    if not line.startswith(b"data:"):
        return line
    payload = line[5:].strip()
    if not payload.startswith(b"{") or b'"error"' not in payload:
        return line
    try:
        parsed = json.loads(payload)
    except ValueError:
        return line
    if not isinstance(parsed, dict) or not parsed.get("error"):
        return line
    if content_capture_enabled():
        return b"data: " + redact(payload.decode("utf-8", errors="replace")).encode("utf-8")
    summary = error_summary(200, payload)
    summary["error"]["message"] = f"the LLM server's streamed error ({len(payload)} bytes) is withheld: content capture is off"
    return b"data: " + json.dumps(summary).encode("utf-8")


class _SafeEventStream(httpx2.SyncByteStream):
    """A requested event stream, line by line through ``_safe_event_line`` (lines split across
    chunks are joined first); closing it closes the server's answer."""

    def __init__(self, response: httpx2.Response) -> None:
        self._response = response

    def __iter__(self):
        pending = b""
        for chunk in self._response.iter_bytes():
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                yield b"".join(_safe_event_line(line) + b"\n" for line in lines)
        if pending:
            yield _safe_event_line(pending)

    def close(self) -> None:
        self._response.close()


def _wants_stream(request: httpx2.Request) -> bool:
    try:
        body = json.loads(request.content or b"{}")
    except (ValueError, httpx2.RequestNotRead):
        return False
    return isinstance(body, dict) and body.get("stream") is True


def _mark_current_span(status: int, error_body_length: int | None = None) -> None:
    """On the LLM span (current while the SDK sends): the last answer's status, an error body's length."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, status)
        if error_body_length is not None:
            span.set_attribute(semconv.LLM_ERROR_BODY_LENGTH, error_body_length)


def guard_response(request: httpx2.Request, response: httpx2.Response) -> httpx2.Response:
    """``response`` as the SDK may see it: a safe error body, or ``UnrequestedStreamError``."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.status_code < 400:
        _mark_current_span(response.status_code)
        if content_type == "text/event-stream":
            if not _wants_stream(request):
                response.close()
                raise UnrequestedStreamError(response)
            headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
            headers.append(("content-type", "text/event-stream"))
            return httpx2.Response(
                response.status_code, headers=headers, stream=_SafeEventStream(response), request=request, extensions=response.extensions
            )
        return response
    body = response.read()
    response.close()
    _mark_current_span(response.status_code, len(body))
    if content_capture_enabled():
        content = redact(body.decode("utf-8", errors="replace")).encode("utf-8")
        media_type = response.headers.get("content-type", "application/json")
    else:
        content = json.dumps(error_summary(response.status_code, body)).encode("utf-8")
        media_type = "application/json"
    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _DROPPED_HEADERS]
    headers.append(("content-type", media_type))
    return httpx2.Response(response.status_code, headers=headers, content=content, request=request, extensions=response.extensions)


class GuardedHTTPClient(openai.DefaultHttpxClient):
    """The SDK's own default ``httpx2.Client`` (its limits, redirects), every answer through ``guard_response``."""

    def send(self, request: httpx2.Request, **kwargs: Any) -> httpx2.Response:
        return guard_response(request, super().send(request, **kwargs))
