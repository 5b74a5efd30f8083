"""Where the kill switch's state comes from: the seam ``KillStateSource`` and its two implementations.

* ``FileSource``: the local kill-switch file (the default; one host).
* ``RedisSource``: a shared Redis store (a fleet on several hosts, docs/several-hosts.md). The file
  stays what a person edits; its text is published to the store (``publish``) by the kill/revive/clear
  command line, the supervisor's writes and ``python -m services.kill_switch sync``; every scheduler
  reads the store.

A source answers two questions: ``stamp()`` (cheap, asked before every run: what identifies the state
now) and ``read()`` (the state's text and file mode, asked only when the stamp changed). Parsing and
the trust rule (a group- or world-writable file may kill but not revive) stay in
``services.kill_switch``, the same for both sources: the store carries the file's mode with its text.

The store, under one prefix (``alphatrace:``):

* ``alphatrace:killswitch:state``, a hash: ``text`` (the file's JSON, ``{}`` for a missing file),
  ``mode`` (the file's mode bits), ``origin`` (host and path it was published from), ``at`` (when),
  ``version`` (incremented by every publish) and ``epoch`` (set once when the hash is created, so a
  store that lost its data and was published to again never looks like the old version);
* ``alphatrace:killswitch:changed``, a pub/sub channel: each publish sends the new version. The
  scheduler does not depend on it: before every run it reads the version and epoch (one ``HMGET``) and
  fetches the text only when they changed;
* ``alphatrace:budget:spend:<day>:<agent>`` and ``alphatrace:budget:spend:<day>:fleet``: a day's spend
  in USD (``RedisSource.add_spend``: atomic float increments with a TTL), and
  ``alphatrace:budget:largest:<day>:<agent>``, the agent's largest call that day. The budgets' ledger
  (``services/spend_ledger.py``) checks and reserves in one script (``reserve_spend``) and settles a
  call to what it cost in another (``settle_spend``).

A publish is one Lua script (new state, version and message together, atomically). Store calls use
short socket timeouts (``STORE_TIMEOUT_S``) and no retries, so an unreachable store costs a run at most
about that long; after a failure the store is not asked again for ``retry_after_s`` (the last known
state holds meanwhile). Failures raise ``StoreUnavailable``, whose message never contains the
password (``redact_url``).

Environment (``store_settings``; an argument beats the variable):

* ``ALPHATRACE_KILL_SWITCH_STORE``: ``redis://[:password@]host:port/db`` (or ``rediss://``,
  ``unix://``); unset means the local file only.
* ``ALPHATRACE_KILL_SWITCH_OFFLINE_START``: what a scheduler does when the store cannot be read at
  start-up, where it has no last known state: ``refuse`` (default: a configuration error, exit 2) or
  ``file`` (start from the local kill-switch file, marked as stale until the store answers).
* ``ALPHATRACE_BUDGET_ON_STORE_DOWN``: ``closed`` (default) or ``open``: what a budget check decides
  when the store cannot be read (``budget_on_store_down``, applied by ``services/budgets.py``).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from otel.redaction import register_secret
from services.config_error import ConfigError
from services.state_files import read_small_file

ENV_STORE = "ALPHATRACE_KILL_SWITCH_STORE"
ENV_OFFLINE_START = "ALPHATRACE_KILL_SWITCH_OFFLINE_START"
ENV_BUDGET_ON_STORE_DOWN = "ALPHATRACE_BUDGET_ON_STORE_DOWN"
OFFLINE_REFUSE, OFFLINE_FILE = "refuse", "file"
FAIL_CLOSED, FAIL_OPEN = "closed", "open"

KEY_PREFIX = "alphatrace:"
STATE_KEY = KEY_PREFIX + "killswitch:state"
CHANGED_CHANNEL = KEY_PREFIX + "killswitch:changed"
SPEND_KEY = KEY_PREFIX + "budget:spend:{day}:{agent}"
LARGEST_KEY = KEY_PREFIX + "budget:largest:{day}:{agent}"
FLEET_SPEND = "fleet"  # the fleet-wide total's key, beside the agents' (no agent may have this name in a budget)
SPEND_TTL_S = 8 * 24 * 3600  # a day's spend is kept a week past the day, then expires on its own
STORE_TIMEOUT_S = 0.5  # connect and each reply; a run never waits longer on the store
RETRY_AFTER_S = 1.0  # after a failure, the last known state holds this long before the store is asked again
MISSING_FILE_TEXT = "{}"  # what a missing file publishes: nobody killed
_SCHEMES = ("redis", "rediss", "unix")


class StoreUnavailable(Exception):
    """The store could not be read or written (down, timed out, refused the password, or holds no
    state yet). The message names the store with its password redacted."""


@dataclass(frozen=True)
class SourceState:
    """One read of the state: the stamp it had, the file's text (``None``: no file) and mode bits."""

    stamp: Hashable
    text: str | None
    mode: int
    origin: str  # where it was written: a path, or host:path for a published file


class KillStateSource:
    """Where the kill switch's state comes from. ``stamp`` is asked before every run and must be cheap;
    ``read`` only when the stamp changed. Both raise ``StoreUnavailable`` when a shared store cannot
    answer (a file source never does: its read errors are the file's, handled by the switch)."""

    shared = False  # True for a store: its outages are reported on the run span, not as a bad file

    def describe(self) -> str:
        raise NotImplementedError

    def stamp(self) -> Hashable:
        raise NotImplementedError

    def read(self, stamp: Hashable) -> SourceState:
        raise NotImplementedError

    def offline_start_file(self) -> Path | None:
        """The local file a scheduler may start from when the source cannot be read at start-up."""
        return None


class FileSource(KillStateSource):
    """The local kill-switch file: the stamp is its identity, size, mtime and mode (``None``: missing)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes

    def describe(self) -> str:
        return str(self.path)

    def stamp(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError:
            return (-1, -1, -1, 0)  # cannot stat: never a good stamp, so the read reports why
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)

    def read(self, stamp: Hashable) -> SourceState:
        """``SmallFileError`` when the file is not a regular file, unreadable, not UTF-8 or too large."""
        if stamp is None:
            return SourceState(stamp, None, 0, str(self.path))
        assert isinstance(stamp, tuple)
        text = read_small_file(self.path, self.max_bytes, "kill-switch file")
        return SourceState(stamp, text, stamp[3], str(self.path))


def redact_url(url: str) -> str:
    """The store's URL as it may be logged: any password (and user name) replaced by ``***``."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "(unparsable store URL)"


# KEYS[1] state hash; ARGV: text, mode, origin, at, channel, new epoch. Returns the new version.
_PUBLISH_LUA = """
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[6])
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'text', ARGV[1], 'mode', ARGV[2], 'origin', ARGV[3], 'at', ARGV[4])
redis.call('PUBLISH', ARGV[5], version)
return version
"""

# KEYS[1] the agent's key, KEYS[2] the fleet's; ARGV: amount, ttl. Returns both totals (as strings).
_SPEND_LUA = """
local agent = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
local fleet = redis.call('INCRBYFLOAT', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {agent, fleet}
"""


# KEYS: the agent's spend, the fleet's, the agent's largest call; ARGV: floor, agent limit, fleet limit
# (negative: none), ttl. The rule is services/spend_ledger.would_pass's: refused when spent has reached
# the limit or spent + estimate would pass it. Returns {passed, estimate, agent, fleet, refused_by} as
# strings (Redis would truncate a Lua number to an integer).
_RESERVE_LUA = """
local agent = tonumber(redis.call('GET', KEYS[1]) or '0')
local fleet = tonumber(redis.call('GET', KEYS[2]) or '0')
local estimate = math.max(tonumber(ARGV[1]), tonumber(redis.call('GET', KEYS[3]) or '0'))
local function would_pass(spent, limit)
  return limit >= 0 and (spent >= limit or spent + estimate > limit)
end
local shown = {string.format('%.17g', estimate), string.format('%.17g', agent), string.format('%.17g', fleet)}
if would_pass(agent, tonumber(ARGV[2])) then return {'0', shown[1], shown[2], shown[3], 'agent'} end
if would_pass(fleet, tonumber(ARGV[3])) then return {'0', shown[1], shown[2], shown[3], 'fleet'} end
if estimate > 0 then
  redis.call('INCRBYFLOAT', KEYS[1], shown[1])
  redis.call('INCRBYFLOAT', KEYS[2], shown[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
return {'1', shown[1], shown[2], shown[3], ''}
"""

# KEYS as _RESERVE_LUA's; ARGV: the change (actual - reserved), the call's cost, ttl.
_SETTLE_LUA = """
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('INCRBYFLOAT', KEYS[2], ARGV[1])
if tonumber(ARGV[2]) > tonumber(redis.call('GET', KEYS[3]) or '0') then redis.call('SET', KEYS[3], ARGV[2]) end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return 1
"""


class RedisSource(KillStateSource):
    """The shared store (Redis). ``retry_after_s`` bounds how often a down store is asked again;
    ``offline_start`` is ``refuse`` or ``file`` (with ``local_file``, the file a scheduler starts from)."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        offline_start: str = OFFLINE_REFUSE,
        local_file: Path | None = None,
        timeout_s: float = STORE_TIMEOUT_S,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        import redis  # imported here: a fleet on one host never needs the client
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.safe_url = redact_url(url)
        self._password = urlsplit(url).password or ""
        register_secret(self._password)  # and never in a log line or span, whatever carries it
        self.offline_start = offline_start
        self.local_file = local_file
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self._redis_errors = (redis.RedisError, OSError)
        # No retries: a retry would multiply the time a run waits on a store that is down.
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0), decode_responses=True
        )
        self._publish = self._client.register_script(_PUBLISH_LUA)
        self._spend = self._client.register_script(_SPEND_LUA)
        self._reserve = self._client.register_script(_RESERVE_LUA)
        self._settle = self._client.register_script(_SETTLE_LUA)
        self._scripts: dict[str, object] = {}  # run_script's, registered on first use

    def describe(self) -> str:
        return self.safe_url

    def close(self) -> None:
        self._client.close()

    def offline_start_file(self) -> Path | None:
        return self.local_file if self.offline_start == OFFLINE_FILE else None

    def _call(self, what: str, fn, *args, **kwargs):
        """One store call: ``StoreUnavailable`` on any failure, and none tried while backing off."""
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"store {self.safe_url} unreachable (not retried for {self.retry_after_s:g} s after a failure)")
        try:
            return fn(*args, **kwargs)
        except self._redis_errors as exc:
            self._down_until = time.monotonic() + self.retry_after_s
            detail = str(exc).replace(self._password, "***") if self._password else str(exc)
            raise StoreUnavailable(f"store {self.safe_url} {what} failed: {type(exc).__name__}: {detail}") from None

    def run_script(self, what: str, lua: str, keys: list[str], args: list) -> object:
        """A Lua script of another module (the shard lease) on this connection, under the same rules:
        short timeouts, no retries, ``StoreUnavailable`` with the password never shown."""
        script = self._scripts.get(lua)
        if script is None:
            script = self._scripts[lua] = self._client.register_script(lua)
        return self._call(what, script, keys=keys, args=args)

    def stamp(self) -> tuple[str, int]:
        epoch, version = self._call("read", self._client.hmget, STATE_KEY, ["epoch", "version"])
        if epoch is None or version is None:
            raise StoreUnavailable(
                f"store {self.safe_url} holds no kill-switch state (never published, or lost in a restart): "
                "run `python -m services.kill_switch sync` on the host where the file is edited"
            )
        return (epoch, int(version))

    def read(self, stamp: Hashable) -> SourceState:
        epoch, version, text, mode, origin = self._call(
            "read", self._client.hmget, STATE_KEY, ["epoch", "version", "text", "mode", "origin"]
        )
        if epoch is None or version is None or text is None:
            raise StoreUnavailable(f"store {self.safe_url} holds no kill-switch state: run `python -m services.kill_switch sync`")
        return SourceState((epoch, int(version)), text, int(mode or 0), origin or "")

    def publish(self, text: str | None, mode: int, path: Path) -> int:
        """Put a file's text (``None``: the file is missing) and mode in the store, bump the version and
        announce it, all in one script; returns the new version."""
        origin = f"{socket.gethostname()}:{path}"
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        body = MISSING_FILE_TEXT if text is None else text
        args = [body, str(mode), origin, at, CHANGED_CHANNEL, uuid.uuid4().hex]
        return int(self._call("publish", self._publish, keys=[STATE_KEY], args=args))

    def add_spend(self, agent: str, day: str, amount: float, ttl_s: int = SPEND_TTL_S) -> tuple[float, float]:
        """Add ``amount`` (USD) to ``agent``'s spend on ``day`` and to the fleet's, atomically across
        hosts; returns (agent's total, fleet's total) that day. Both keys expire ``ttl_s`` after the
        latest spend. ``StoreUnavailable`` when the store cannot be written: the caller applies
        ``budget_on_store_down``."""
        if agent == FLEET_SPEND:
            raise ValueError(f"{FLEET_SPEND!r} is the fleet total's key, not an agent")
        keys = [SPEND_KEY.format(day=day, agent=agent), SPEND_KEY.format(day=day, agent=FLEET_SPEND)]
        agent_total, fleet_total = self._call("spend", self._spend, keys=keys, args=[repr(float(amount)), int(ttl_s)])
        return float(agent_total), float(fleet_total)

    def _budget_keys(self, agent: str, day: str) -> list[str]:
        if agent == FLEET_SPEND:
            raise ValueError(f"{FLEET_SPEND!r} is the fleet total's key, not an agent")
        return [
            SPEND_KEY.format(day=day, agent=agent),
            SPEND_KEY.format(day=day, agent=FLEET_SPEND),
            LARGEST_KEY.format(day=day, agent=agent),
        ]

    def reserve_spend(
        self, agent: str, day: str, floor: float, agent_limit: float | None, fleet_limit: float | None, ttl_s: int = SPEND_TTL_S
    ) -> tuple[bool, float, float, float, str]:
        """Check ``agent``'s and the fleet's spend on ``day`` against their limits (``None``: none) and,
        when the next call fits, reserve its estimate (the larger of ``floor`` and the agent's largest
        call that day) on both, in one script. Returns (passed, estimate, agent's spend, fleet's spend
        before it, ``"agent"``/``"fleet"``/``""``: the limit that refused)."""
        limits = [repr(float(limit)) if limit is not None else "-1" for limit in (agent_limit, fleet_limit)]
        args = [repr(float(floor)), *limits, int(ttl_s)]
        passed, estimate, agent_spent, fleet_spent, refused = self._call(
            "budget check", self._reserve, keys=self._budget_keys(agent, day), args=args
        )
        return passed == "1", float(estimate), float(agent_spent), float(fleet_spent), refused

    def settle_spend(self, agent: str, day: str, change: float, call_usd: float, ttl_s: int = SPEND_TTL_S) -> None:
        """Add ``change`` (a call's cost minus its reservation) to the agent's and the fleet's spend and
        keep the agent's largest call, in one script."""
        args = [repr(float(change)), repr(float(call_usd)), int(ttl_s)]
        self._call("spend", self._settle, keys=self._budget_keys(agent, day), args=args)


def store_url(url: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """Argument beats ``ALPHATRACE_KILL_SWITCH_STORE``; ``None``: no store. A malformed URL is a
    ``ConfigError`` naming it with the password redacted."""
    env = os.environ if env is None else env
    raw = (url if url is not None else env.get(ENV_STORE) or "").strip()
    if not raw:
        return None
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{ENV_STORE}={redact_url(raw)!r} is not a URL; use redis://host:6379/0") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"{ENV_STORE}={redact_url(raw)!r}: scheme must be one of {', '.join(_SCHEMES)}, e.g. redis://127.0.0.1:6379/0")
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigError(f"{ENV_STORE}={redact_url(raw)!r} names no host; use redis://host:6379/0")
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigError(f"{ENV_STORE}={redact_url(raw)!r}: the database after the host must be a number, e.g. /0")
    del port  # parsed only to check it is a number in range
    return raw


def offline_start(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    raw = value if value is not None else env.get(ENV_OFFLINE_START) or OFFLINE_REFUSE
    choice = raw.strip().lower()
    if choice not in (OFFLINE_REFUSE, OFFLINE_FILE):
        raise ConfigError(f"{ENV_OFFLINE_START}={raw!r}: use {OFFLINE_REFUSE} (default) or {OFFLINE_FILE}")
    return choice


def budget_on_store_down(value: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``closed`` (default: a budget whose spend cannot be read stops the run) or ``open``."""
    env = os.environ if env is None else env
    raw = value if value is not None else env.get(ENV_BUDGET_ON_STORE_DOWN) or FAIL_CLOSED
    choice = raw.strip().lower()
    if choice not in (FAIL_CLOSED, FAIL_OPEN):
        raise ConfigError(f"{ENV_BUDGET_ON_STORE_DOWN}={raw!r}: use {FAIL_CLOSED} (default) or {FAIL_OPEN}")
    return choice


def kill_state_source(
    path: Path, max_bytes: int, url: str | None = None, offline: str | None = None, env: Mapping[str, str] | None = None
) -> KillStateSource:
    """The source the settings name: the store when one is configured, else the file at ``path``."""
    resolved = store_url(url, env)
    if resolved is None:
        return FileSource(path, max_bytes)
    return RedisSource(resolved, offline_start=offline_start(offline, env), local_file=path)


def publishing_store(url: str | None = None, env: Mapping[str, str] | None = None) -> RedisSource | None:
    """The store a writer of the file publishes to, if one is configured."""
    resolved = store_url(url, env)
    return None if resolved is None else RedisSource(resolved, retry_after_s=0.0)
