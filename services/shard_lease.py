"""A lease per shard: at most one live scheduler at a time runs a shard's agents.

A scheduler holds the lease of every shard whose agents it runs (``lease_names``): ``--shard east``
holds ``east``; a scheduler without a shard holds every shard its fleet assigns plus ``NO_SHARD`` for
the agents assigned to none, so it cannot run beside a sharded scheduler of the same fleet either.
Leases are taken all at once at start-up, or not at all: a second scheduler for a shard is refused
with a ``ConfigError`` naming the shard, who holds it (host, pid, ``service.instance.id``, since
when) and what to do. A replay (``--replay``) takes no lease: it is a batch over past days into its
own trace file, not the live schedule (docs/several-hosts.md).

The seam ``LeaseStore`` has two implementations:

* ``RedisLeaseStore``: one key per shard in the shared store (``alphatrace:lease:shard:<name>``),
  value the holder's JSON, with a TTL. Taking is ``SET key value NX PX ttl`` for all keys in one Lua
  script (all or none); renewing is the same script per key (a key still ours gets a new TTL, one
  expired is taken again if nobody else took it, one another process holds is reported); releasing
  deletes only keys whose value is still ours (compare-and-delete in Lua).
* ``FileLeaseStore``: a lock file per shard next to the kill-switch file
  (``<kill file>.lease.<name>``), held with ``flock`` for the life of the process: the OS releases it
  when the process dies, so it never expires and needs no renewal.

``ShardLease`` holds the leases: ``acquire`` at start-up, a daemon thread renewing every
``renew_s`` (store only), ``allows(name)`` asked before each run, ``release`` on clean shutdown.
The rule (``allows``): a lease counts as held until ``ttl_s`` after the last renewal that the
store confirmed, measured from before that renewal was sent, so this process gives it up no later
than the store expires it. While the store is unreachable for less than that, runs go on; past it,
or when another process holds the key, no new run of that shard's agents starts (logged once, one
alert), runs in progress finish, and each renewal tries to take the lease back (it succeeds once
nobody holds it: the other scheduler stopped, or the store restarted empty), logged once.

Environment: ``ALPHATRACE_LEASE_TTL_SECONDS`` (default 30) and ``ALPHATRACE_LEASE_RENEW_SECONDS``
(default a third of the TTL; at most half of it); a bad value is a ``ConfigError``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from services.alerts import ALERT_LEASE_LOST, Alert, AlertSink, NoAlerts
from services.alerts import stamp as alert_stamp
from services.config_error import ConfigError, env_number
from services.kill_switch_store import KEY_PREFIX, RedisSource, StoreUnavailable
from services.state_files import LockTimeout, exclusive_lock

logger = logging.getLogger("alphatrace.lease")

ENV_LEASE_TTL = "ALPHATRACE_LEASE_TTL_SECONDS"
ENV_LEASE_RENEW = "ALPHATRACE_LEASE_RENEW_SECONDS"
DEFAULT_TTL_S = 30.0
NO_SHARD = "(no shard)"  # the lease of the agents assigned to no shard (a shard name cannot have a space)
LEASE_KEY = KEY_PREFIX + "lease:shard:{name}"
MAX_HOLDER_BYTES = 4096

# KEYS: the leases; ARGV: our value, ttl in ms, '1' for all or none. Each key not held by another
# process is set to our value with the TTL (SET NX PX, or a renewal when it is ours already); with
# all-or-none, nothing is set when one is held by another. Returns per key '' (ours now) or the
# other holder's value.
_HOLD_LUA = """
local others, refused = {}, false
for i, key in ipairs(KEYS) do
  local value = redis.call('GET', key)
  if value and value ~= ARGV[1] then others[i] = value; refused = true else others[i] = '' end
end
if refused and ARGV[3] == '1' then return others end
for i, key in ipairs(KEYS) do
  if others[i] == '' then redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
end
return others
"""

# KEYS: the leases; ARGV: our value. Deletes only the keys still ours; returns how many.
_RELEASE_LUA = """
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then released = released + redis.call('DEL', key) end
end
return released
"""


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a lease: the value stored with it."""

    host: str
    pid: int
    instance: str  # the process's service.instance.id, as on its spans
    since: str  # ISO 8601 UTC

    @classmethod
    def of_this_process(cls, instance: str, now: datetime | None = None) -> LeaseHolder:
        since = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(socket.gethostname(), os.getpid(), instance, since)

    def value(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def describe_value(value: str) -> str:
        """A stored value as a person reads it; whatever it is, never an exception."""
        try:
            holder = LeaseHolder(**json.loads(value))
        except (ValueError, TypeError):
            return value[:120]  # not ours to parse (an older or hand-made value): shown as it is
        return f"host {holder.host}, pid {holder.pid} (service.instance.id {holder.instance}), since {holder.since}"


def lease_name(shard: str | None) -> str:
    """The lease an agent's runs need: its shard's (``None``: ``NO_SHARD``)."""
    return shard or NO_SHARD


def lease_names(shards: Iterable[str | None]) -> list[str]:
    """The leases a scheduler holds: those of the agents it runs."""
    return sorted({lease_name(shard) for shard in shards})


def lease_timing(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(ttl, renew interval) in seconds from the environment; a ``ConfigError`` for a bad value."""
    env = os.environ if env is None else env
    ttl = env_number(env, ENV_LEASE_TTL, DEFAULT_TTL_S, whole=False, unit="seconds", above=0)
    assert ttl is not None
    renew = env_number(env, ENV_LEASE_RENEW, ttl / 3, whole=False, unit="seconds", above=0)
    assert renew is not None
    if renew > ttl / 2:
        raise ConfigError(
            f"{ENV_LEASE_RENEW}={renew:g} must be at most half of the lease's TTL ({ENV_LEASE_TTL}={ttl:g}), "
            "so a renewal that fails once is tried again before the lease expires"
        )
    return ttl, renew


class LeaseStore:
    """Where leases live. ``hold`` takes or renews and returns ``{name: holder value}`` for the leases
    another process holds (``StoreUnavailable`` when the store cannot answer); ``expires``: whether a
    lease lapses without renewal (a store) or lasts as long as the process (a lock file)."""

    expires = True

    def where(self) -> str:
        raise NotImplementedError

    def describe(self, name: str) -> str:
        raise NotImplementedError

    def hold(self, names: list[str], value: str, ttl_s: float, all_or_none: bool) -> dict[str, str]:
        raise NotImplementedError

    def release(self, names: list[str], value: str) -> None:
        raise NotImplementedError


class RedisLeaseStore(LeaseStore):
    """A key per lease in the shared store (its own connection: renewals never wait behind runs)."""

    def __init__(self, store: RedisSource) -> None:
        self.store = store

    def where(self) -> str:
        return f"the shared store {self.store.describe()}"

    def describe(self, name: str) -> str:
        return f"key {LEASE_KEY.format(name=name)} in {self.store.describe()}"

    def hold(self, names: list[str], value: str, ttl_s: float, all_or_none: bool) -> dict[str, str]:
        keys = [LEASE_KEY.format(name=name) for name in names]
        ttl_ms = max(1, math.ceil(ttl_s * 1000))
        others = self.store.run_script("lease", _HOLD_LUA, keys, [value, ttl_ms, "1" if all_or_none else "0"])
        return {name: other for name, other in zip(names, others, strict=True) if other}

    def release(self, names: list[str], value: str) -> None:
        self.store.run_script("lease release", _RELEASE_LUA, [LEASE_KEY.format(name=name) for name in names], [value])
        self.store.close()


class FileLeaseStore(LeaseStore):
    """A lock file per lease beside ``kill_file``, held (``flock``) until release or the process ends."""

    expires = False

    def __init__(self, kill_file: Path) -> None:
        self.kill_file = Path(kill_file)
        self._held = contextlib.ExitStack()
        self._names: list[str] = []

    def path(self, name: str) -> Path:
        return self.kill_file.with_name(f"{self.kill_file.name}.lease.{name.replace(' ', '_')}")

    def where(self) -> str:
        return f"lock files beside {self.kill_file}"

    def describe(self, name: str) -> str:
        return f"lock file {self.path(name)}"

    def hold(self, names: list[str], value: str, ttl_s: float, all_or_none: bool) -> dict[str, str]:
        if self._names == names:
            return {}  # held since acquire: a lock file never lapses
        others: dict[str, str] = {}
        taken = contextlib.ExitStack()
        for name in names:
            path = self.path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                taken.enter_context(exclusive_lock(path, timeout=0))
            except LockTimeout:
                others[name] = _holder_in(path)
                continue
            with open(path, "r+", encoding="utf-8") as file:  # the pid first, as exclusive_lock's readers expect
                file.write(f"{os.getpid()} {value}\n")
        if others:
            taken.close()
            return others
        self._held, self._names = taken, list(names)
        return {}

    def release(self, names: list[str], value: str) -> None:
        self._names = []
        self._held.close()  # the lock files stay: deleting one would race a scheduler opening it


def _holder_in(path: Path) -> str:
    """The holder's value written into its lock file (``{pid} {value}``), or its pid alone."""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            text = file.read(MAX_HOLDER_BYTES).strip()
    except OSError:
        text = ""
    pid, _, value = text.partition(" ")
    return value or (f"pid {pid} (nothing more recorded yet)" if pid else "another process (nothing recorded yet)")


class ShardLease:
    """The leases one scheduler holds; ``clock`` is monotonic seconds (a fake one in tests)."""

    def __init__(
        self,
        store: LeaseStore,
        names: Iterable[str],
        holder: LeaseHolder,
        ttl_s: float = DEFAULT_TTL_S,
        renew_s: float = DEFAULT_TTL_S / 3,
        clock: Callable[[], float] = time.monotonic,
        alerts: AlertSink | None = None,
    ) -> None:
        self.store = store
        self.names = sorted(set(names))
        self.holder = holder
        self.ttl_s, self.renew_s = ttl_s, renew_s
        self._value = holder.value()
        self._clock = clock
        self._alerts = alerts or NoAlerts()
        # name -> until when (clock) it counts as ours; written by the renewing thread, read by runs
        self._valid_until: dict[str, float] = dict.fromkeys(self.names, -math.inf)
        self._held = set()  # the names last logged as held (the thread's view, for log-once)
        self._store_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def describe(self) -> str:
        how = f"TTL {self.ttl_s:g} s, renewed every {self.renew_s:g} s" if self.store.expires else "held until this process exits"
        return f"{', '.join(self.names)} ({self.store.where()}; {how})"

    def allows(self, name: str) -> bool:
        """Whether a run of an agent of lease ``name`` may start now (asked before every run)."""
        return self._clock() < self._valid_until.get(name, -math.inf)

    def acquire(self) -> None:
        """All the leases or none: a ``ConfigError`` naming the first one held by another process, its
        holder and what to do, or the store that could not be asked."""
        sent = self._clock()
        try:
            others = self.store.hold(self.names, self._value, self.ttl_s, all_or_none=True)
        except StoreUnavailable as exc:
            raise ConfigError(
                f"cannot take the shard lease ({exc}): a live scheduler does not start without it, whatever "
                "ALPHATRACE_KILL_SWITCH_OFFLINE_START says (a --replay does); start the store, then this scheduler"
            ) from None
        if others:
            name = sorted(others)[0]
            wait = f"or, if it died, start this one again once its lease expires (at most {self.ttl_s:g} s after it stopped renewing)"
            fix = wait if self.store.expires else "(its lock is released when it exits)"
            raise ConfigError(
                f"shard {name!r} is already run by another scheduler: {LeaseHolder.describe_value(others[name])} "
                f"({self.store.describe(name)}); stop that scheduler {fix}"
            )
        until = sent + self.ttl_s if self.store.expires else math.inf
        self._valid_until = dict.fromkeys(self.names, until)
        self._held = set(self.names)

    def renew(self) -> None:
        """One renewal (the thread's step): confirmed leases get a new TTL, lapsed ones are taken
        back when free; a loss and a recovery are each logged once."""
        sent = self._clock()
        try:
            others = self.store.hold(self.names, self._value, self.ttl_s, all_or_none=False)
        except StoreUnavailable as exc:
            others = None
            if self._store_error is None:
                logger.warning("lease: %s; the shard lease holds until its TTL (%g s) runs out, runs go on meanwhile", exc, self.ttl_s)
            self._store_error = str(exc)
        else:
            if self._store_error is not None:
                logger.info("lease: the store answers again")
            self._store_error = None
            for name in self.names:
                self._valid_until[name] = -math.inf if name in others else sent + self.ttl_s
        for name in self.names:
            if self.allows(name) and name not in self._held:
                self._held.add(name)
                logger.warning("lease: shard %r is held by this scheduler again; its agents' runs start again", name)
            elif not self.allows(name) and name in self._held:
                self._held.discard(name)
                if others is not None and name in others:
                    why = f"held by {LeaseHolder.describe_value(others[name])}"
                else:
                    why = f"not renewed for {self.ttl_s:g} s: {self._store_error}"
                self._lost(name, why)

    def _lost(self, name: str, why: str) -> None:
        summary = (
            f"shard {name!r}: this scheduler lost its lease ({why}); no new run of its agents starts until it holds the "
            "lease again (runs in progress finish), so no agent runs twice"
        )
        logger.error("lease: %s", summary)
        figures = {"shard": name, "host": self.holder.host, "pid": self.holder.pid, "service.instance.id": self.holder.instance}
        self._alerts.send(Alert(ALERT_LEASE_LOST, "*", summary, figures, at=alert_stamp(), dedup=name))

    def start_renewing(self) -> None:
        """The daemon thread renewing every ``renew_s`` (a lease that never expires needs none)."""
        if not self.store.expires or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._renew_until_stopped, name="alphatrace-lease", daemon=True)
        self._thread.start()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self.renew()
            except Exception:  # never let the thread die silently: the lease would lapse unexplained
                logger.exception("lease: renewal failed; tried again in %g s", self.renew_s)

    def release(self) -> None:
        """Clean shutdown: stop renewing and give the leases back (only those still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.renew_s))
        self._valid_until = dict.fromkeys(self.names, -math.inf)
        try:
            self.store.release(self.names, self._value)
        except StoreUnavailable as exc:
            logger.warning("lease: could not release it (%s); it expires on its own within %g s", exc, self.ttl_s)


def shard_lease(
    names: Iterable[str],
    store: RedisSource | None,
    kill_file: Path,
    instance: str,
    alerts: AlertSink | None = None,
    env: Mapping[str, str] | None = None,
) -> ShardLease:
    """The lease the settings call for: in the shared store when one is configured (its own
    connection to the same URL), else lock files beside ``kill_file``."""
    ttl_s, renew_s = lease_timing(env)
    lease_store: LeaseStore = FileLeaseStore(kill_file) if store is None else RedisLeaseStore(RedisSource(store.url, retry_after_s=0.0))
    return ShardLease(lease_store, names, LeaseHolder.of_this_process(instance), ttl_s, renew_s, alerts=alerts)
