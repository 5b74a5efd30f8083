"""What ``supervise --apply`` does with the policy's decisions: the audit record first, then the changes.

Retirements go into the kill switch (``services.kill_switch``: merged under its lock, never overriding
a person's entry) and promotions into the agent status file (``services.agent_status``); a person's
change made after the decision was taken holds it (``held: ...``). ``apply_audited`` takes the
status file's lock, then the kill switch's, appends and fsyncs the audit lines with every result
known, and only then writes the two files: an audit log that cannot be written applies nothing.

Reads no environment variables (the command resolves every path).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from meta_supervisor.supervisor.audit import AuditWriteError, append_audit
from meta_supervisor.supervisor.policy import HOLD, KEEP, PROMOTE, RETIRE, Decision, Policy
from services.agent_status import LIVE, SHADOW, StatusEntry, agent_status_path, load_agent_status
from services.kill_switch import SUPERVISOR, KillEntry, kill_switch_path, update_kill_file
from services.state_files import locked_for_update, write_atomically


def stamp(now: Callable[[], datetime]) -> str:
    return now().astimezone(UTC).isoformat().replace("+00:00", "Z")


def _details(decision: Decision, policy: Policy) -> dict[str, Any]:
    figures = {k: v for k, v in decision.figures.items() if k != "last_run"}
    thresholds = {c.rule: c.threshold for c in decision.checks if c.met}
    window = {"first": figures.pop("window_first", None), "last": figures.pop("window_last", None)}
    return {"rule": decision.rule, "figures": figures, "thresholds": thresholds, "window": window, "policy": policy.source}


Hook = Callable[[dict[str, str]], None]


class ApplyError(Exception):
    """``--apply`` could not write a file; the message says what was applied and what was not."""


def apply_retirements(
    decisions: Sequence[Decision], policy: Policy, path: Any, now: Callable[[], datetime], before_write: Hook | None = None
) -> dict[str, str]:
    """Write the retirements in one locked read-change-write; returns the result per agent.
    ``before_write`` gets the results under the lock before the file is written (also when there is
    nothing to write); if it raises, nothing is written."""
    wanted = [d for d in decisions if d.action == RETIRE]
    results: dict[str, str] = {}
    if not wanted:
        if before_write is not None:
            before_write(results)
        return results
    at = stamp(now)

    def change(entries: dict[str, KillEntry]) -> dict[str, KillEntry]:
        results.clear()
        merged = dict(entries)
        for d in wanted:
            current = merged.get(d.agent)
            if current is None:
                merged[d.agent] = KillEntry(d.agent, f"supervisor: {d.reason}", SUPERVISOR, at, details=_details(d, policy))
                results[d.agent] = "written"
            elif not current.killed:
                results[d.agent] = f"held: revived by {current.by} at {current.at}"
            else:
                results[d.agent] = f"already killed by {current.by or 'unknown'}"
        return merged

    update_kill_file(change, path, None if before_write is None else lambda _entries: before_write(results))
    return results


def apply_promotions(
    decisions: Sequence[Decision], policy: Policy, path: Any, now: Callable[[], datetime], before_write: Hook | None = None
) -> dict[str, str]:
    """Set promoted agents ``live`` in the status file, re-checking a person's entry under the lock.
    ``before_write`` as for ``apply_retirements``."""
    wanted = [d for d in decisions if d.action == PROMOTE]
    results: dict[str, str] = {}
    if not wanted:
        if before_write is not None:
            before_write(results)
        return results
    target = agent_status_path(path)
    at = stamp(now)
    with locked_for_update(target):
        entries = load_agent_status(target)
        for d in wanted:
            current = entries.get(d.agent)
            if current is not None and current.by != SUPERVISOR and current.status == SHADOW:
                results[d.agent] = f"held: set to shadow by {current.by} at {current.at}"
                continue
            entries[d.agent] = StatusEntry(d.agent, LIVE, f"supervisor: {d.reason}", SUPERVISOR, at, _details(d, policy))
            results[d.agent] = "written"
        if before_write is not None:
            before_write(results)
        body = {name: item.to_json() for name, item in sorted(entries.items())}
        write_atomically(target, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return results


def audit_records(decisions: Sequence[Decision], results: dict[str, str], at: str, policy: Policy, applying: bool) -> list[dict[str, Any]]:
    """One audit line per decision (``meta_supervisor/supervisor/audit.py`` lists the keys)."""
    return [
        {
            **d.to_json(),
            "at": at,
            "applied": results.get(d.agent) == "written",
            "policy": policy.source,
            "dry_run": not applying,
            "result": results.get(d.agent, "no change" if d.action in (KEEP, HOLD) else "dry run"),
        }
        for d in decisions
    ]


def apply_audited(
    decisions: Sequence[Decision],
    policy: Policy,
    now: Callable[[], datetime],
    audit_log: str | None,
    kill_file: str | None,
    status_file: str | None,
) -> list[dict[str, Any]]:
    """``--apply``: the audit record first, then the changes. The status file's lock is taken, then the
    kill switch's; with both held and every result known, the audit lines are appended and fsynced,
    and only then are the two files written. An audit log that cannot be written (``AuditWriteError``)
    leaves both files untouched. Returns the audit lines written."""
    results: dict[str, str] = {}
    written: list[dict[str, Any]] = []

    def audit_first(retired: dict[str, str]) -> None:
        results.update(retired)
        written[:] = audit_records(decisions, results, stamp(now), policy, True)
        append_audit(written, audit_log)

    def then_retire(promoted: dict[str, str]) -> None:
        results.update(promoted)
        apply_retirements(decisions, policy, kill_switch_path(kill_file), now, audit_first)

    try:
        apply_promotions(decisions, policy, status_file, now, then_retire)
    except AuditWriteError as exc:
        raise ApplyError(f"{exc}; nothing was applied (the audit record is written first)") from None
    except OSError as exc:
        if not written:
            raise ApplyError(f"{exc}; nothing was applied") from None
        raise ApplyError(
            f"the audit log has this command's decisions, but a state file was not written ({exc}); "
            "--apply again re-decides on the files as they are"
        ) from None
    return written
