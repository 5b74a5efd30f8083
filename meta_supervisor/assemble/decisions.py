"""The report's ``supervisor`` section: the latest audited decision per agent, beside the kill switch.

A pure function of the audit log's records (``supervisor.audit.read_audit``, read by the command)
and the kill-switch entries. Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def decisions_section(records: Iterable[Mapping[str, Any]], kill_entries: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The latest audited decision per agent, and the kill-switch entries now (a person's revive
    beside the policy's held retirement). ``kill_entries``: ``{agent: KillEntry.to_json()}``."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        latest[record["agent"]] = record
    keys = ("at", "action", "would", "rule", "reason", "result", "applied", "status", "held_by", "figures")
    return {
        "agents": {agent: {key: latest[agent].get(key) for key in keys} for agent in sorted(latest)},
        "kill_switch": {agent: dict(entry) for agent, entry in sorted((kill_entries or {}).items())},
    }
