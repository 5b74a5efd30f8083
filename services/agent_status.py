"""Each agent's status, ``shadow`` or ``live``: configuration, not code.

An agent starts with the ``status`` of its ``[agents.NAME]`` table in ``agents/agents.toml`` (default
``live``). The supervisor's policy (or a person) records a change in
``meta_supervisor/state/agent_status.json``::

    {"llm_analyst": {"status": "live", "by": "supervisor", "at": "...", "reason": "...", ...}}

which wins over the config. A shadow agent runs and is scored, but its signals are flagged not
tradable (``alphatrace.alpha.tradable=false``). The file is re-read when it changes; a malformed file (an empty or
whitespace-only one, one that is not a regular file or is over ``MAX_STATUS_FILE_BYTES``, which is
refused unread) keeps the last good state and is logged once, and is never rewritten. As for the kill
switch, a run that sees a changed file reads and parses it holding no lock that other runs wait on.

Environment: ``ALPHATRACE_AGENT_STATUS_FILE`` (default ``meta_supervisor/state/agent_status.json``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.config_error import ConfigError
from services.state_files import SmallFileError, locked_for_update, read_small_file, write_atomically
from services.terminal_text import term

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_AGENT_STATUS_FILE = "ALPHATRACE_AGENT_STATUS_FILE"
DEFAULT_AGENT_STATUS_FILE = PROJECT_ROOT / "meta_supervisor" / "state" / "agent_status.json"
SHADOW = "shadow"
LIVE = "live"
STATUSES = (SHADOW, LIVE)
MAX_STATUS_FILE_BYTES = 1 << 20  # 1 MiB, thousands of agents with the supervisor's figures; larger is refused unread

logger = logging.getLogger(__name__)


class AgentStatusError(ConfigError):
    pass


@dataclass(frozen=True)
class StatusEntry:
    agent: str
    status: str
    reason: str = ""
    by: str = ""
    at: str = ""
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "by": self.by, "at": self.at, **self.details}


def agent_status_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get(ENV_AGENT_STATUS_FILE) or DEFAULT_AGENT_STATUS_FILE)


def load_agent_status(path: str | os.PathLike | None = None) -> dict[str, StatusEntry]:
    target = agent_status_path(path)
    try:
        text = read_small_file(target, MAX_STATUS_FILE_BYTES, "agent status file")
    except SmallFileError as exc:
        raise AgentStatusError(str(exc)) from None
    if text is None:
        return {}
    if not text.strip():  # a truncated save, as for the kill switch: not "no entries", never rewritten
        raise AgentStatusError(f"agent status file {target} is empty; write {{}} (no recorded change) or delete the file")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise AgentStatusError(f"agent status file {target} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise AgentStatusError(f"agent status file {target}: expected an object keyed by agent name")
    entries = {}
    for name, detail in raw.items():
        if not isinstance(detail, dict) or detail.get("status") not in STATUSES:
            raise AgentStatusError(f'agent status file {target}: {name!r} needs "status": "shadow" or "live"')
        known = {key: str(detail.get(key, "")) for key in ("reason", "by", "at")}
        extra = {k: v for k, v in detail.items() if k not in ("status", *known)}
        entries[name] = StatusEntry(name, detail["status"], details=extra, **known)
    return entries


def set_agent_status(
    agent: str,
    status: str,
    reason: str,
    by: str,
    details: dict[str, Any] | None = None,
    path: str | os.PathLike | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> StatusEntry:
    """Record ``agent``'s new status atomically, keeping every other entry."""
    if status not in STATUSES:
        raise ConfigError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    target = agent_status_path(path)
    entry = StatusEntry(agent, status, reason, by, now().astimezone(UTC).isoformat().replace("+00:00", "Z"), details or {})
    with locked_for_update(target):
        entries = {**load_agent_status(target), agent: entry}
        body = {name: item.to_json() for name, item in sorted(entries.items())}
        write_atomically(target, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return entry


class AgentStatusBook:
    """The effective status per agent: the status file over the configured default."""

    def __init__(self, configured: dict[str, str], path: str | os.PathLike | None = None) -> None:
        self.path = agent_status_path(path)
        self._configured = dict(configured)
        self._lock = threading.Lock()  # guards the fields below; never held while reading the file
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, StatusEntry] = {}
        self._logged_error: str | None = None
        self._next_read = 0  # reads are numbered when they start; an older read never replaces a newer
        self._applied_read = -1

    def status_of(self, agent: str) -> str:
        entry = self._refresh().get(agent)
        return entry.status if entry else self._configured.get(agent, LIVE)

    def _refresh(self) -> dict[str, StatusEntry]:
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = None
        except OSError:
            stamp = (-1, -1, -1)  # cannot stat: the read reports why
        with self._lock:
            if stamp == self._stamp:
                return self._entries
            number, self._next_read = self._next_read, self._next_read + 1
        entries: dict[str, StatusEntry] | None = None
        error = None
        try:
            entries = load_agent_status(self.path) if stamp else {}
        except AgentStatusError as exc:
            error = str(exc)
        log = None
        with self._lock:
            if number > self._applied_read:
                self._applied_read, self._stamp = number, stamp
                if entries is not None:
                    self._entries = entries
                if error != self._logged_error:
                    self._logged_error = log = error
            current = self._entries
        if log is not None:
            logger.error("%s; keeping the last good statuses", term(log))
        return current
