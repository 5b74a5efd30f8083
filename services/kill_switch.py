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
    python -m services.kill_switch --store redis://host:6379/0 sync [--watch]

With a shared store (``--store``, else ``ALPHATRACE_KILL_SWITCH_STORE``; ``services.kill_switch_store``)
``kill``/``revive``/``clear`` and every write through ``update_kill_file`` (the supervisor's) publish the
new file to the store under the file's lock; ``sync`` publishes a hand edit (``--watch``: whenever the
file changes, retrying while the store is down). A write whose publish fails leaves the file written
and is a ``KillStorePublishError`` (exit 2) naming ``sync``. A scheduler's ``KillSwitch`` then reads the
store, not its local file (``KillSwitch(source=...)``; docs/several-hosts.md says what wins and what
happens when the store is unreachable).

``kill`` and ``revive`` refuse a name that is not an agent of the fleet config (``--config``, else
``ALPHATRACE_FLEET_CONFIG``, else ``agents/agents.toml``), with "did you mean ...?": the entry would stop
nothing. ``--force`` writes it anyway (an agent about to be added). Entries record who wrote them:
``--by``, else the login name (``getpass.getuser()``); when there is none, ``--by`` is required.

What the command prints passes through ``services.terminal_text.term`` (no control character from the
file reaches the terminal raw).

Environment: ``ALPHATRACE_KILL_SWITCH_FILE`` (path of the kill-switch file; default
``meta_supervisor/state/killed_agents.json`` under the project root); the store's variables
(``services.kill_switch_store``); the command line's ``kill`` and ``revive`` also read
``ALPHATRACE_FLEET_CONFIG`` (``services.fleet_config``) and the login name
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
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.config_error import ConfigError, did_you_mean
from services.kill_switch_store import (
    ENV_OFFLINE_START,
    ENV_STORE,
    OFFLINE_FILE,
    FileSource,
    KillStateSource,
    RedisSource,
    StoreUnavailable,
    publishing_store,
    store_url,
)
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
    store_error: str | None = None  # the shared store could not be read: this is the last known state


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


def _file_error_message(exc: SmallFileError) -> str:
    why = " (MAX_KILL_FILE_BYTES): a kill list that long is a mistake or an attack" if exc.too_large else ""
    return f"{exc}{why}"


def read_kill_text(target: Path) -> str | None:
    """The file's text, ``None`` when it is missing; ``KillSwitchError`` when it is not a regular file,
    cannot be read, is not UTF-8 or is over ``MAX_KILL_FILE_BYTES`` (never read past the limit)."""
    try:
        return read_small_file(target, MAX_KILL_FILE_BYTES, "kill-switch file")
    except SmallFileError as exc:
        raise KillSwitchError(_file_error_message(exc)) from None


def load_kill_entries(path: str | os.PathLike | None = None) -> dict[str, KillEntry]:
    """The entries in the file now; a missing file means nobody is killed."""
    target = kill_switch_path(path)
    text = read_kill_text(target)
    if text is None:
        return {}
    return parse_kill_file(text, source=f"kill-switch file {target}")


_UNREAD = object()  # the stamp before the first read: equal to no source's


class KillSwitch:
    """Reads the kill-switch state from its source (``services.kill_switch_store``: the local file by
    default, or a shared store), re-reading it only when the source's stamp changes (the file's
    identity, size, mtime or mode; the store's epoch and version).

    ``load_strict`` is for startup (malformed, empty or too large is fatal; so is a store that cannot
    be read, unless the store's offline start says to start from the local file); ``check`` is for
    every run (such a state keeps the last good one and is reported in the decision, logged once per
    distinct error; a store that cannot be read keeps the last known state, reported in the decision
    as ``store_error`` and logged once per outage). Before any good read (a caller that skipped
    ``load_strict``) an unreadable state kills every agent it is asked about: stopping is the safe
    direction.

    A run whose check sees a changed stamp reads and parses the state itself, holding no lock; only the
    swap of the parsed state is under ``_lock``, so no run ever waits on another's parse.
    """

    def __init__(self, path: str | os.PathLike | None = None, source: KillStateSource | None = None) -> None:
        self.path = kill_switch_path(path)
        self.source = source if source is not None else FileSource(self.path, MAX_KILL_FILE_BYTES)
        self._lock = threading.Lock()  # guards the fields below; never held while reading the state
        self._stamp: Hashable = _UNREAD
        self._entries: dict[str, KillEntry] = {}
        self._error: str | None = None
        self._good = False  # a good state has been read (a missing file counts)
        self._logged_error: str | None = None
        self._store_error: str | None = None  # the store's outage, while it lasts
        self._next_read = 0  # reads are numbered when they start; an older read never replaces a newer
        self._applied_read = -1

    def load_strict(self) -> dict[str, KillEntry]:
        try:
            self._refresh(strict=True)
        except StoreUnavailable as exc:
            fallback = self.source.offline_start_file()
            if fallback is None:
                raise ConfigError(
                    f"kill switch: {exc}; a scheduler does not start without the fleet's kill list. Start the store, or set "
                    f"{ENV_OFFLINE_START}={OFFLINE_FILE} to start from the local file {fallback or self.path} until it answers"
                ) from None
            self._start_from_file(fallback, str(exc))
        with self._lock:
            return dict(self._entries)

    def _start_from_file(self, path: Path, why: str) -> None:
        """Offline start: the local file (read strictly) is the last known state until the store answers."""
        entries = load_kill_entries(path)
        error = None
        mode = FileSource(path, MAX_KILL_FILE_BYTES).stamp()
        if isinstance(mode, tuple) and mode[3] & 0o022:
            entries, error = self._refuse_revives(entries, {}, mode[3], str(path))
        with self._lock:
            self._entries, self._good, self._error = entries, True, error
            self._store_error = f"{why}; started from the local file {path}"
        killed = sum(e.killed for e in entries.values())
        logger.error("kill switch: %s; started from the local file %s (%d killed)", term(why), path, killed)

    def check(self, agent_name: str) -> KillDecision:
        entries, error, good, store_error = self._refresh(strict=False)
        if not good:
            why = error or store_error
            entry = KillEntry(agent_name, f"kill-switch state unreadable and no last good state: {why}")
            return KillDecision(killed=True, entry=entry, file_error=error, store_error=store_error)
        entry = entries.get(agent_name)
        return KillDecision(killed=entry is not None and entry.killed, entry=entry, file_error=error, store_error=store_error)

    def entries(self) -> dict[str, KillEntry]:
        return dict(self._refresh(strict=False)[0])

    def _refresh(self, strict: bool) -> tuple[dict[str, KillEntry], str | None, bool, str | None]:
        """(entries, error, good, store_error) as of now: the state is read and parsed outside the lock."""
        try:
            stamp = self.source.stamp()
        except StoreUnavailable as exc:
            if strict:
                raise
            return self._store_down(str(exc))
        with self._lock:
            if stamp == self._stamp and self._store_error is None:
                return self._entries, self._error, self._good, None
            number, self._next_read = self._next_read, self._next_read + 1
            previous = self._entries
        try:
            state = self.source.read(stamp)
            entries = {} if state.text is None else parse_kill_file(state.text, source=f"kill-switch file {state.origin}")
        except StoreUnavailable as exc:
            if strict:
                raise
            return self._store_down(str(exc))
        except (KillSwitchError, SmallFileError) as exc:
            message = _file_error_message(exc) if isinstance(exc, SmallFileError) else str(exc)
            if strict:
                raise KillSwitchError(message) from None
            return self._swap(number, stamp, None, message)
        error = None
        if state.text is not None and state.mode & 0o022:
            entries, error = self._refuse_revives(entries, previous, state.mode, state.origin)
        return self._swap(number, state.stamp, entries, error)

    def _store_down(self, why: str) -> tuple[dict[str, KillEntry], str | None, bool, str | None]:
        """The store cannot be read: the last known state holds; logged once per outage."""
        with self._lock:
            first = self._store_error is None
            self._store_error = why
            result = self._entries, self._error, self._good, why
        if first:
            logger.error(
                "kill switch: %s; keeping the last known state (%d killed) until it answers",
                term(why),
                sum(e.killed for e in result[0].values()),
            )
        return result

    def _swap(
        self, number: int, stamp: Hashable, entries: dict[str, KillEntry] | None, error: str | None
    ) -> tuple[dict[str, KillEntry], str | None, bool, str | None]:
        """Install a read's result unless a newer read already did; ``entries`` None keeps the last
        good state. Logs each distinct error once, and the store's return after an outage."""
        log = None
        back = False
        with self._lock:
            if number > self._applied_read:
                self._applied_read = number
                self._stamp, self._error = stamp, error
                back, self._store_error = self._store_error is not None, None
                if entries is not None:
                    self._entries, self._good = entries, True
                if error != self._logged_error:
                    self._logged_error = error
                    log = error
            result = self._entries, self._error, self._good, self._store_error
        if back:
            logger.warning("kill switch: store %s answers again; its state is in force", self.source.describe())
        if log is not None and entries is None:
            logger.error("kill switch: %s; keeping the last good state (%d killed)", term(log), sum(e.killed for e in result[0].values()))
        elif log is not None:
            logger.warning("kill switch: %s", term(log))
        return result

    def _refuse_revives(
        self, entries: dict[str, KillEntry], previous: dict[str, KillEntry], mode: int, origin: str
    ) -> tuple[dict[str, KillEntry], str | None]:
        """Anyone on the machine can write a group- or world-writable file: a revive read from it is
        not honoured (a kill is, since stopping an agent is the safe direction). The store carries the
        mode of the file it was published from, so the rule holds on every host."""
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
        file_path = origin.partition(":")[2] if self.source.shared else origin  # a published file's origin is host:path
        return kept, (
            f"{origin} is group- or world-writable (mode {stat.filemode(mode)}); refusing to honour the revive of "
            f"{', '.join(sorted(refused))}, which stay killed. Fix with: chmod go-w {file_path}"
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


class KillStorePublishError(ConfigError):
    """The file was written (or read) but its state could not be put in the shared store."""


def publish_file(target: Path, store: RedisSource) -> int:
    """Put the file's current state in the store (refusing a malformed file, which would stop the fleet
    from reading one); returns the store's new version. Call under the file's lock so that publishes
    happen in the order of the writes. ``KillStorePublishError`` when the store cannot be written."""
    text = read_kill_text(target)
    if text is not None:
        parse_kill_file(text, source=f"kill-switch file {target}")  # KillSwitchError: nothing published
    try:
        mode = os.stat(target).st_mode if text is not None else 0
        return store.publish(text, mode, target.resolve())
    except FileNotFoundError:
        return store.publish(None, 0, target.resolve())
    except StoreUnavailable as exc:
        raise KillStorePublishError(
            f"{exc}. The file {target} is written but the other hosts do not see it yet: run "
            f"`python -m services.kill_switch sync` once the store answers (`sync --watch` does it by itself)"
        ) from None


def update_kill_file(
    change: Callable[[dict[str, KillEntry]], dict[str, KillEntry]],
    path: str | os.PathLike | None = None,
    before_write: Callable[[dict[str, KillEntry]], None] | None = None,
    store: str | None = None,
) -> dict[str, KillEntry]:
    """Read, change and rewrite the file under the lock; a malformed file is never overwritten.
    ``before_write`` runs under the lock with the changed entries, before the write: if it raises,
    nothing is written (the supervisor writes its audit record there). When a shared store is
    configured (``store``, else ``ALPHATRACE_KILL_SWITCH_STORE``) the new state is published to it
    under the same lock; if that fails the file stays written and ``KillStorePublishError`` says so."""
    target = kill_switch_path(path)
    shared = publishing_store(store)
    try:
        with locked_for_update(target):
            entries = change(load_kill_entries(target))
            if before_write is not None:
                before_write(entries)
            body = {name: entry.to_json() for name, entry in sorted(entries.items())}
            write_atomically(target, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
            if shared is not None:
                publish_file(target, shared)
            return entries
    finally:
        if shared is not None:
            shared.close()


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
    store: str | None = None,
) -> KillEntry:
    """Stop ``agent_name`` from its next run on."""
    entry = _stamped(agent_name, reason, by, KILLED_STATE, now)
    update_kill_file(lambda entries: {**entries, agent_name: entry}, path, store=store)
    return entry


def revive(
    agent_name: str,
    reason: str = "",
    by: str | None = None,
    path: str | os.PathLike | None = None,
    now: Callable[[], datetime] = _utc_now,
    store: str | None = None,
) -> KillEntry:
    """Let ``agent_name`` run again, recorded as a person's revive that the supervisor's policy will
    not override until the entry is cleared."""
    entry = _stamped(agent_name, reason, by, REVIVED_STATE, now)
    update_kill_file(lambda entries: {**entries, agent_name: entry}, path, store=store)
    return entry


def clear(agent_name: str, path: str | os.PathLike | None = None, store: str | None = None) -> bool:
    """Remove ``agent_name``'s entry (kill or revive) from the file; returns whether it was there."""
    found = False

    def drop(entries: dict[str, KillEntry]) -> dict[str, KillEntry]:
        nonlocal found
        found = agent_name in entries
        return {name: entry for name, entry in entries.items() if name != agent_name}

    update_kill_file(drop, path, store=store)
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


def sync(path: str | os.PathLike | None = None, store: str | None = None) -> int:
    """Publish the file as it is now (a hand edit) to the shared store; returns the store's version."""
    shared = publishing_store(store)
    if shared is None:
        raise ConfigError(f"sync needs a shared store: pass --store redis://host:6379/0 or set {ENV_STORE}")
    target = kill_switch_path(path)
    try:
        with locked_for_update(target):
            return publish_file(target, shared)
    finally:
        shared.close()


def watch(
    path: str | os.PathLike | None = None,
    store: str | None = None,
    interval_s: float = 1.0,
    stop: threading.Event | None = None,
) -> None:
    """``sync --watch``: publish now, then whenever the file changes; while the store is down (or the
    file malformed) try again every ``interval_s`` until it is published. Logged once per outage."""
    if store_url(store) is None:
        raise ConfigError(f"sync --watch needs a shared store: pass --store redis://host:6379/0 or set {ENV_STORE}")
    target = kill_switch_path(path)
    source = FileSource(target, MAX_KILL_FILE_BYTES)
    stop = stop or threading.Event()
    published: Hashable = _UNREAD
    failing: str | None = None
    while not stop.is_set():
        stamp = source.stamp()
        if stamp != published:
            try:
                version = sync(target, store)
            except ConfigError as exc:
                if str(exc) != failing:
                    failing = str(exc)
                    logger.error("kill switch sync: %s; trying again every %g s", term(exc), interval_s)
            else:
                published, failing = stamp, None
                logger.info("kill switch sync: published %s to the store (version %d)", target, version)
        stop.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.kill_switch", description=__doc__.split("\n")[0])
    parser.add_argument("--file", help=f"kill-switch file (default: ${ENV_KILL_SWITCH_FILE} or {DEFAULT_KILL_SWITCH_FILE})")
    parser.add_argument(
        "--config", help="fleet config whose agents kill/revive accept (default: $ALPHATRACE_FLEET_CONFIG or agents/agents.toml)"
    )
    parser.add_argument("--store", help=f"shared store the file's state is published to (default: ${ENV_STORE}; unset: none)")
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
    sync_cmd = sub.add_parser("sync", help="publish the file (after a hand edit) to the shared store")
    sync_cmd.add_argument("--watch", action="store_true", help="keep running: publish whenever the file changes")
    sync_cmd.add_argument("--interval", type=float, default=1.0, help="--watch: seconds between looks at the file (default 1)")
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
        elif args.command == "sync" and args.watch:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
            try:
                watch(args.file, args.store, args.interval)
            except KeyboardInterrupt:
                return 0
        elif args.command == "sync":
            version = sync(args.file, args.store)
            print(f"published {term(kill_switch_path(args.file))} to the store (version {version})")
        elif args.command == "kill":
            entry = kill(args.agent, args.reason, args.by, args.file, store=args.store)
            print(f"killed {term(entry.agent)} ({term(entry.reason)}); takes effect before its next run")
        elif args.command == "revive":
            entry = revive(args.agent, args.reason, args.by, args.file, store=args.store)
            print(f"revived {term(entry.agent)}; the supervisor will not re-kill it until: clear {term(entry.agent)}")
        else:
            found = clear(args.agent, args.file, store=args.store)
            print(f"cleared {term(args.agent)}" if found else f"{term(args.agent)} had no entry")
    except ConfigError as exc:
        print(f"error: {term(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
