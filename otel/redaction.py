"""The one redaction rule for text that leaves the process: spans, logs, the report and its state.

``redact(text)`` replaces with ``[REDACTED]``:

* the configured API key, whole: ``OPENAI_API_KEY`` (read at each call) and every value handed to
  ``register_secret`` (the LLM client registers its key), when at least 8 characters long;
* masked forms of such a key: its first 8 characters, then up to 200 key-like or mask characters,
  then its last 4 (OpenAI's ``Incorrect API key provided: sk-proj-****...abcd``, whatever the mask
  character); any token holding a mask run (``***``, ``•••``, ``...``, ``…``) that starts with the
  key's first 4 characters or ends with its last 4 (``sk-...abcd``, ``gw_l*****``); and the key's
  first 12 characters with whatever follows them (a key cut short by a length limit);
* ``Bearer <token>`` (a token of 8+ characters, so "the bearer of bad news" is kept) and
  ``api_key=<value>`` / ``"api-key": "<value>"`` style pairs and a URL's password
  (``https://user:<password>@host``): the token, value or password;
* any ``sk-``-style secret: ``sk-`` not preceded by a letter, digit, ``_`` or ``-`` and followed by at
  least 6 key or mask characters (so ``risk-free`` and ``sk-learn`` are kept, ``sk-ant-...``,
  ``sk-proj-...`` and ``sk-abc12***wxyz`` are not).

It is applied where text becomes telemetry: the LLM client's error bodies (``services/llm_http.py``),
the run wrapper's recorded exceptions, every span at export (``otel/redacting_exporter.py``), the
handlers the scheduler installs (``RedactingFilter``) and the report's error texts. It is a leaf:
standard library only, imported by ``otel``, ``services`` and ``meta_supervisor``.

``content_capture_enabled`` says whether ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
opts in to prompt and completion text (the instrumentation's modes ``span_only``, ``event_only``,
``span_and_event``; anything else, the default included, is off).

Environment: ``OPENAI_API_KEY``, ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections.abc import Mapping

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8
ENV_API_KEY = "OPENAI_API_KEY"
ENV_CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_CAPTURE_MODES = frozenset({"SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT"})

_KEY_CHARS = r"A-Za-z0-9_\-"
_MASK_CHARS = r"*•….#"
_TOKEN = rf"[{_KEY_CHARS}{_MASK_CHARS}+/=]"
_MASK_RUN = re.compile(r"(?:[*•#]{3,}|\.{3,}|…)")
_GENERIC = (
    (re.compile(rf"(?<![A-Za-z0-9_\-])sk-[{_KEY_CHARS}{_MASK_CHARS}]{{6,}}"), lambda m: _keep_full_stop(m.group(0))),
    (re.compile(rf"\b(Bearer|bearer|BEARER)(\s+)[A-Za-z0-9._~+/{_KEY_CHARS}{_MASK_CHARS}]{{8,}}=*"), rf"\1\2{REDACTED}"),
    (re.compile(r"(://[^/\s:@]+:)[^/\s@]+@"), rf"\1{REDACTED}@"),
    (re.compile(r"(?i)\b((?:x-)?api[_-]?key)([\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"), rf"\1\2{REDACTED}"),
)


def _keep_full_stop(token: str) -> str:
    return REDACTED + "." if token.endswith(".") and not token.endswith("..") else REDACTED


_WORD = re.compile(rf"{_TOKEN}+")  # one pass over the words; a mask run is looked for inside each

_registered: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact ``value`` (and its masked forms) from now on in this process."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _registered.add(value)


def known_secrets(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    env = os.environ if env is None else env
    with _lock:
        secrets = set(_registered)
    key = (env.get(ENV_API_KEY) or "").strip()
    if len(key) >= MIN_SECRET_LENGTH:
        secrets.add(key)
    return tuple(sorted(secrets, key=len, reverse=True))


@functools.lru_cache(maxsize=16)
def _secret_patterns(secret: str) -> tuple[re.Pattern[str], ...]:
    patterns = [re.escape(secret)]
    if len(secret) >= 16:
        patterns.append(re.escape(secret[:8]) + rf"[{_KEY_CHARS}{_MASK_CHARS}]{{0,200}}?" + re.escape(secret[-4:]))
    if len(secret) >= 12:
        patterns.append(re.escape(secret[:12]) + rf"[{_KEY_CHARS}]*")
    return tuple(re.compile(p) for p in patterns)


def _masks(secrets: tuple[str, ...]):
    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if not _MASK_RUN.search(token):
            return token
        core = token.rstrip(".…")  # a sentence's full stop, or a trailing ellipsis
        for secret in secrets:
            if token.startswith(secret[:4]) or (len(core) >= 4 and core.endswith(secret[-4:])):
                return _keep_full_stop(token)
        return token

    return replace


def redact(text: str, secrets: tuple[str, ...] | None = None) -> str:
    """``text`` with every key form above replaced by ``[REDACTED]``; never raises on a str.

    Fast when there is nothing to redact (the usual case at export): one scan for the generic
    patterns' anchors and a substring test of each key's first and last 4 characters."""
    if not text:
        return text
    secrets = known_secrets() if secrets is None else secrets
    near = [secret for secret in secrets if secret[:4] in text or secret[-4:] in text]
    lowered = text.lower()
    suspect = "sk-" in text or "bearer" in lowered or "key" in lowered or "@" in text  # the generic patterns' anchors
    if not near and not suspect:
        return text
    for secret in near:
        for pattern in _secret_patterns(secret):
            text = pattern.sub(REDACTED, text)
    if near and _MASK_RUN.search(text):
        text = _WORD.sub(_masks(tuple(near)), text)
    if suspect:
        for pattern, replacement in _GENERIC:
            text = pattern.sub(replacement, text)
    return text


class RedactionMemo:
    """``redact`` over one tuple of secrets, remembering its answers: the strings spans carry repeat
    (an agent's name, a model, ``"ok"``), so a repeated one costs a set or dictionary lookup.
    ``redact`` is a pure function of the text and the secrets, so a memo is only ever used with the
    secrets it was made for (``otel/redacting_exporter.py`` makes a new one when they change). Only
    plain ``str`` texts are remembered (a subclass may hash or compare unlike its text). Bounded: each
    table is cleared when it holds ``max_entries``; texts longer than ``max_length`` (tracebacks) are
    not kept."""

    def __init__(self, secrets: tuple[str, ...], max_entries: int = 8192, max_length: int = 512, remember: bool = True) -> None:
        self.secrets = secrets
        self.clean: set[str] = set()  # texts with nothing to redact
        self.redacted: dict[str, str] = {}  # texts that change, and what they become
        self._max_entries = max_entries if remember else 0
        self._max_length = max_length

    def __call__(self, text: str) -> str:
        if type(text) is not str:
            return redact(text, self.secrets)
        if text in self.clean:
            return text
        known = self.redacted.get(text)
        if known is not None:
            return known
        result = redact(text, self.secrets)
        if self._max_entries and len(text) <= self._max_length:
            table = self.clean if result == text else self.redacted
            if len(table) >= self._max_entries:
                table.clear()
            if table is self.clean:
                self.clean.add(text)
            else:
                self.redacted[text] = result
        return result


def content_capture_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether prompt and completion text may be recorded (the instrumentation's opt-in)."""
    env = os.environ if env is None else env
    return (env.get(ENV_CAPTURE_CONTENT) or "").strip().upper() in _CAPTURE_MODES


class RedactingFilter(logging.Filter):
    """Redacts a record's message, arguments, traceback and stack before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info:
                text = record.exc_text or logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
                record.exc_text = redact(text)
            elif record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        except Exception:  # a record that cannot be formatted is logged as the logging module would
            pass
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add a ``RedactingFilter`` to every handler of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
