"""The kill switch: a JSON file naming the agents that must not run, checked before every run.

Two forms are accepted in ``meta_supervisor/state/killed_agents.json``:

* the seed's plain list: ``["momentum", "llm_analyst"]``
* the rich form: ``{"momentum": {"reason": "...", "by": "alice", "at": "2026-11-24T10:00:00Z"}}``,
  where an entry may also say ``"state": "revived"`` (a person's revive, which the supervisor's policy
  does not override) and may carry more keys (the supervisor records its rule and figures).

A group- or world-writable file is trusted to kill but not to revive: a revive read from it is
refused with a warning and the agent stays killed.

The file is re-read whenever it changes (an edit takes effect on the next run, no restart). A missing
file means nobody is killed. A malformed file (not JSON, a wrong shape, empty or whitespace only, not
UTF-8, not a regular file, or over ``MAX_KILL_FILE_BYTES``, which is refused without being read) is a
``ConfigError`` at startup (the scheduler exits 2: an empty file may be a truncated kill list, so it
does not start as "nobody killed"); while running it keeps the last good state, is logged once and is
reported to the caller so the run span can carry it. A switch that never had a good state (a caller
that skipped ``load_strict``) treats an unreadable file as killing everyone. The file is read and
parsed outside the switch's lock, so a run never waits on another run's read. ``kill``/``revive``/
``clear`` and the supervisor refuse to rewrite a malformed file, and write atomically (temp file +
rename, under a lock file) so a concurrent reader never sees half a file and concurrent writers lose
no entry.

Command line::

    python -m services.kill_switch list
    python -m services.kill_switch kill momentum --reason "drawdown" [--by alice]
    python -m services.kill_switch revive momentum [--reason "fixed"]
    python -m services.kill_switch clear momentum

``kill`` and ``revive`` refuse a name that is not an agent of the fleet config (``--config``, else
``ALPHATRACE_FLEET_CONFIG``, else ``agents/agents.toml``), with "did you mean ...?": the entry would stop
nothing. ``--force`` writes it anyway (an agent about to be added). Entries record who wrote them:
``--by``, else the login name (``getpass.getuser()``); when there is none, ``--by`` is required.

What the command prints passes through ``services.terminal_text.term`` (no control character from the
file reaches the terminal raw).

Environment: ``ALPHATRACE_KILL_SWITCH_FILE`` (path of the kill-switch file; default
``meta_supervisor/state/killed_agents.json`` under the project root); the command line's ``kill`` and
``revive`` also read ``ALPHATRACE_FLEET_CONFIG`` (``services.fleet_config``) and the login name
(``LOGNAME``, ``USER``, ``LNAME``, ``USERNAME``, as ``getpass.getuser`` does).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.config_error import ConfigError, did_you_mean
from services.state_files import SmallFileError, locked_for_update, read_small_file, write_atomically
from services.terminal_text import term

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_KILL_SWITCH_FILE = "ALPHATRACE_KILL_SWITCH_FILE"
DEFAULT_KILL_SWITCH_FILE = PROJECT_ROOT / "meta_supervisor" / "state" / "killed_agents.json"
KILLED = DEFAULT_KILL_SWITCH_FILE  # the seed's name for the path
MAX_KILL_FILE_BYTES = 1 << 20  # 1 MiB, some 2,000 entries with the supervisor's figures; larger is refused unread

logger = logging.getLogger(__name__)


class KillSwitchError(ConfigError):
    """The kill-switch file cannot be read as either accepted form."""


KILLED_STATE = "killed"
REVIVED_STATE = "revived"
SUPERVISOR = "supervisor"


@dataclass(frozen=True)
class KillEntry:
    """One agent's line in the file. ``state`` is ``killed`` (the default) or ``revived``: a person's
    explicit revive, which the supervisor's policy must not override. ``details`` keeps any other keys
    (the supervisor's rule and figures) so a rewrite loses nothing."""

    agent: str
    reason: str = ""
    by: str = ""
    at: str = ""
    state: str = KILLED_STATE
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def killed(self) -> bool:
        return self.state == KILLED_STATE

    @property
    def by_person(self) -> bool:
        return self.by != SUPERVISOR

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"reason": self.reason, "by": self.by, "at": self.at}
        if self.state != KILLED_STATE:
            body["state"] = self.state
        body.update(self.details)
        return body


@dataclass(frozen=True)
class KillDecision:
    """What the switch says about one agent right now, and why the file could not be read, if so."""

    killed: bool
    entry: KillEntry | None = None
    file_error: str | None = None


def kill_switch_path(path: str | os.PathLike | None = None) -> Path:
    """Argument beats ``ALPHATRACE_KILL_SWITCH_FILE`` beats the default path."""
    return Path(path or os.environ.get(ENV_KILL_SWITCH_FILE) or DEFAULT_KILL_SWITCH_FILE)


def parse_kill_file(text: str, source: str = "kill-switch file") -> dict[str, KillEntry]:
    """Parse either accepted form; raise ``KillSwitchError`` with the reason otherwise. An empty or
    whitespace-only text is malformed (a truncated save), not "nobody killed": that is ``[]`` or ``{}``."""
    if not text.strip():
        raise KillSwitchError(f"{source} is empty; write [] (nobody killed) or delete the file, or restore its entries")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise KillSwitchError(f"{source} is not valid JSON ({exc}); expected a list of agent names or an object") from None
    entries: dict[str, KillEntry] = {}
    if isinstance(raw, list):
        for item in raw:
            if not isinstance(item, str) or not item:
                raise KillSwitchError(f"{source}: every list item must be an agent name (a non-empty string), got {item!r}")
            entries[item] = KillEntry(agent=item, reason="listed in kill-switch file")
        return entries
    if isinstance(raw, dict):
        for name, detail in raw.items():
            if not name:
                raise KillSwitchError(f"{source}: agent names must be non-empty")
            if detail is None:
                detail = {}
            if not isinstance(detail, dict):
                raise KillSwitchError(f"{source}: entry for {name!r} must be an object with reason/by/at, got {detail!r}")
            fields = {}
            for key in ("reason", "by", "at", "state"):
                value = detail.get(key, KILLED_STATE if key == "state" else "")
                if not isinstance(value, str):
                    raise KillSwitchError(f"{source}: {name!r}.{key} must be a string, got {value!r}")
                fields[key] = value
            if fields["state"] not in (KILLED_STATE, REVIVED_STATE):
                raise KillSwitchError(f"{source}: {name!r}.state must be 'killed' or 'revived', got {fields['state']!r}")
            extra = {k: v for k, v in detail.items() if k not in fields}
            entries[name] = KillEntry(agent=name, details=extra, **fields)
        return entries
    raise KillSwitchError(f"{source}: expected a list of agent names or an object keyed by agent name, got {type(raw).__name__}")


def read_kill_text(target: Path) -> str | None:
    """The file's text, ``None`` when it is missing; ``KillSwitchError`` when it is not a regular file,
    cannot be read, is not UTF-8 or is over ``MAX_KILL_FILE_BYTES`` (never read past the limit)."""
    try:
        return read_small_file(target, MAX_KILL_FILE_BYTES, "kill-switch file")
    except SmallFileError as exc:
        why = " (MAX_KILL_FILE_BYTES): a kill list that long is a mistake or an attack" if exc.too_large else ""
        raise KillSwitchError(f"{exc}{why}") from None


def load_kill_entries(path: str | os.PathLike | None = None) -> dict[str, KillEntry]:
    """The entries in the file now; a missing file means nobody is killed."""
    target = kill_switch_path(path)
    text = read_kill_text(target)
    if text is None:
        return {}
    return parse_kill_file(text, source=f"kill-switch file {target}")


_UNREAD = (-1, -1, -1, -1)  # the stamp before the first read: equal to no file's


class KillSwitch:
    """Reads the kill-switch file, re-reading it only when its identity, size, mtime or mode changes.

    ``load_strict`` is for startup (malformed, empty or too large is fatal); ``check`` is for every run
    (such a file keeps the last good state and is reported in the decision, logged once per distinct
    error). Before any good read (a caller that skipped ``load_strict``) an unreadable file kills every
    agent it is asked about: stopping is the safe direction.

    A run whose check sees a changed file reads and parses it itself, holding no lock; only the swap
    of the parsed state is under ``_lock``, so no run ever waits on another's parse.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = kill_switch_path(path)
        self._lock = threading.Lock()  # guards the fields below; never held while reading the file
        self._stamp: tuple[int, int, int, int] | None = _UNREAD
        self._entries: dict[str, KillEntry] = {}
        self._error: str | None = None
        self._good = False  # a good state has been read (a missing file counts)
        self._logged_error: str | None = None
        self._next_read = 0  # reads are numbered when they start; an older read never replaces a newer
        self._applied_read = -1

    def load_strict(self) -> dict[str, KillEntry]:
        self._refresh(strict=True)
        with self._lock:
            return dict(self._entries)

    def check(self, agent_name: str) -> KillDecision:
        entries, error, good = self._refresh(strict=False)
        if not good:
            entry = KillEntry(agent_name, f"kill-switch file unreadable and no last good state: {error}")
            return KillDecision(killed=True, entry=entry, file_error=error)
        entry = entries.get(agent_name)
        return KillDecision(killed=entry is not None and entry.killed, entry=entry, file_error=error)

    def entries(self) -> dict[str, KillEntry]:
        return dict(self._refresh(strict=False)[0])

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError:
            return (-1, -1, -1, 0)  # cannot stat: never a good stamp, so the read reports why
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)

    def _refresh(self, strict: bool) -> tuple[dict[str, KillEntry], str | None, bool]:
        """(entries, error, good) as of now: the file is read and parsed outside the lock."""
        stamp = self._stat()
        with self._lock:
            if stamp == self._stamp:
                return self._entries, self._error, self._good
            number, self._next_read = self._next_read, self._next_read + 1
            previous = self._entries
        try:
            entries = load_kill_entries(self.path) if stamp is not None else {}
        except KillSwitchError as exc:
            if strict:
                raise
            return self._swap(number, stamp, None, str(exc))
        error = None
        if stamp is not None and stamp[3] & 0o022:
            entries, error = self._refuse_revives(entries, previous, stamp[3])
        return self._swap(number, stamp, entries, error)

    def _swap(
        self, number: int, stamp: tuple[int, int, int, int] | None, entries: dict[str, KillEntry] | None, error: str | None
    ) -> tuple[dict[str, KillEntry], str | None, bool]:
        """Install a read's result unless a newer read already did; ``entries`` None keeps the last
        good state. Logs each distinct error once."""
        log = None
        with self._lock:
            if number > self._applied_read:
                self._applied_read = number
                self._stamp, self._error = stamp, error
                if entries is not None:
                    self._entries, self._good = entries, True
                if error != self._logged_error:
                    self._logged_error = error
                    log = error
            result = self._entries, self._error, self._good
        if log is not None and entries is None:
            logger.error("kill switch: %s; keeping the last good state (%d killed)", term(log), sum(e.killed for e in result[0].values()))
        elif log is not None:
            logger.warning("kill switch: %s", term(log))
        return result

    def _refuse_revives(
        self, entries: dict[str, KillEntry], previous: dict[str, KillEntry], mode: int
    ) -> tuple[dict[str, KillEntry], str | None]:
        """Anyone on the machine can write a group- or world-writable file: a revive read from it is
        not honoured (a kill is, since stopping an agent is the safe direction)."""
        kept = dict(entries)
        refused = []
        for name, entry in entries.items():
            if entry.state == REVIVED_STATE:
                kept[name] = KillEntry(name, f"revive refused: {entry.reason}".strip(), entry.by, entry.at)
                refused.append(name)
        for name, entry in previous.items():
            if entry.killed and name not in entries:
                kept[name] = entry
                refused.append(name)
        if not refused:
            return kept, None
        return kept, (
            f"{self.path} is group- or world-writable (mode {stat.filemode(mode)}); refusing to honour the revive of "
            f"{', '.join(sorted(refused))}, which stay killed. Fix with: chmod go-w {self.path}"
        )


_default_switch: KillSwitch | None = None
_default_lock = threading.Lock()


def is_killed(agent_name: str) -> bool:
    """The seed's check: is ``agent_name`` in the kill-switch file at the default path?"""
    global _default_switch
    with _default_lock:
        if _default_switch is None or _default_switch.path != kill_switch_path():
            _default_switch = KillSwitch()
    return _default_switch.check(agent_name).killed


# --- writing ------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def update_kill_file(
    change: Callable[[dict[str, KillEntry]], dict[str, KillEntry]],
    path: str | os.PathLike | None = None,
    before_write: Callable[[dict[str, KillEntry]], None] | None = None,
) -> dict[str, KillEntry]:
    """Read, change and rewrite the file under the lock; a malformed file is never overwritten.
    ``before_write`` runs under the lock with the changed entries, before the write: if it raises,
    nothing is written (the supervisor writes its audit record there)."""
    target = kill_switch_path(path)
    with locked_for_update(target):
        entries = change(load_kill_entries(target))
        if before_write is not None:
            before_write(entries)
        body = {name: entry.to_json() for name, entry in sorted(entries.items())}
        write_atomically(target, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return entries


def current_user() -> str:
    """Who is at the keyboard: the login name (``LOGNAME``/``USER``/..., else the password database)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no variable and no passwd entry for this uid (a bare container)
        raise ConfigError("cannot tell who you are (no login name for this user id); pass --by NAME") from None


def _stamped(agent_name: str, reason: str, by: str | None, state: str, now: Callable[[], datetime]) -> KillEntry:
    if not agent_name:
        raise ConfigError("agent name must be non-empty")
    return KillEntry(
        agent=agent_name,
        reason=reason,
        by=by or current_user(),
        at=now().astimezone(UTC).isoformat().replace("+00:00", "Z"),
        state=state,
    )


def kill(
    agent_name: str,
    reason: str,
    by: str | None = None,
    path: str | os.PathLike | None = None,
    now: Callable[[], datetime] = _utc_now,
) -> KillEntry:
    """Stop ``agent_name`` from its next run on."""
    entry = _stamped(agent_name, reason, by, KILLED_STATE, now)
    update_kill_file(lambda entries: {**entries, agent_name: entry}, path)
    return entry


def revive(
    agent_name: str,
    reason: str = "",
    by: str | None = None,
    path: str | os.PathLike | None = None,
    now: Callable[[], datetime] = _utc_now,
) -> KillEntry:
    """Let ``agent_name`` run again, recorded as a person's revive that the supervisor's policy will
    not override until the entry is cleared."""
    entry = _stamped(agent_name, reason, by, REVIVED_STATE, now)
    update_kill_file(lambda entries: {**entries, agent_name: entry}, path)
    return entry


def clear(agent_name: str, path: str | os.PathLike | None = None) -> bool:
    """Remove ``agent_name``'s entry (kill or revive) from the file; returns whether it was there."""
    found = False

    def drop(entries: dict[str, KillEntry]) -> dict[str, KillEntry]:
        nonlocal found
        found = agent_name in entries
        return {name: entry for name, entry in entries.items() if name != agent_name}

    update_kill_file(drop, path)
    return found


def check_in_fleet(agent_name: str, config: str | None) -> None:
    """``ConfigError`` unless ``agent_name`` is an agent of the fleet config (``services.fleet_config``)."""
    from services.fleet_config import load_fleet_config

    fleet = load_fleet_config(config)
    if agent_name not in fleet.agents:
        hint = did_you_mean(agent_name, fleet.agents)
        raise ConfigError(
            f"{agent_name!r} is not an agent of the fleet in {fleet.source} ({', '.join(sorted(fleet.agents))}), "
            f"so the entry would stop nothing; {hint}pass --force to write it anyway"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.kill_switch", description=__doc__.split("\n")[0])
    parser.add_argument("--file", help=f"kill-switch file (default: ${ENV_KILL_SWITCH_FILE} or {DEFAULT_KILL_SWITCH_FILE})")
    parser.add_argument(
        "--config", help="fleet config whose agents kill/revive accept (default: $ALPHATRACE_FLEET_CONFIG or agents/agents.toml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show killed agents")
    kill_cmd = sub.add_parser("kill", help="stop an agent from its next run on")
    kill_cmd.add_argument("agent")
    kill_cmd.add_argument("--reason", required=True)
    kill_cmd.add_argument("--by", default=None, help="who (default: your login name)")
    kill_cmd.add_argument("--force", action="store_true", help="write it even if the name is not an agent of the fleet")
    revive_cmd = sub.add_parser("revive", help="let a killed agent run again (the supervisor will not re-kill it)")
    revive_cmd.add_argument("agent")
    revive_cmd.add_argument("--reason", default="")
    revive_cmd.add_argument("--by", default=None, help="who (default: your login name)")
    revive_cmd.add_argument("--force", action="store_true", help="write it even if the name is not an agent of the fleet")
    clear_cmd = sub.add_parser("clear", help="remove an agent's entry, kill or revive, from the file")
    clear_cmd.add_argument("agent")
    args = parser.parse_args(argv)
    try:
        if args.command in ("kill", "revive") and not args.force:
            check_in_fleet(args.agent, args.config)
        if args.command == "list":
            entries = load_kill_entries(args.file)
            if not entries:
                print("no agent is killed")
            for entry in entries.values():
                print(f"{term(entry.agent)}\t{term(entry.state)}\treason='{term(entry.reason)}'\tby={term(entry.by)}\tat={term(entry.at)}")
        elif args.command == "kill":
            entry = kill(args.agent, args.reason, args.by, args.file)
            print(f"killed {term(entry.agent)} ({term(entry.reason)}); takes effect before its next run")
        elif args.command == "revive":
            entry = revive(args.agent, args.reason, args.by, args.file)
            print(f"revived {term(entry.agent)}; the supervisor will not re-kill it until: clear {term(entry.agent)}")
        else:
            found = clear(args.agent, args.file)
            print(f"cleared {term(args.agent)}" if found else f"{term(args.agent)} had no entry")
    except ConfigError as exc:
        print(f"error: {term(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
