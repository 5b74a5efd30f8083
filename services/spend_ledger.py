"""The spend ledger: what each agent and the whole fleet spent on LLM calls in a UTC day, shared by
every run that checks a day budget, on one host or several. The seam ``SpendLedger`` and its two
implementations:

* ``FileSpendLedger``: one JSON file per UTC day in a folder (default ``meta_supervisor/state/spend/``),
  for a fleet on one host (or several sharing the folder on a file system with working ``flock``);
* ``RedisSpendLedger``: the shared store of ``services/kill_switch_store.py`` (a fleet on several
  hosts), atomic by Lua scripts.

Two operations, each atomic (under the day file's exclusive lock, or one script in the store):

* ``reserve(day, agent, floor_usd, agent_limit, fleet_limit)``, before a call: the call's estimate is
  the larger of ``floor_usd`` (the caller's largest call of this agent) and the agent's largest call
  recorded that day; the call is refused when the agent's or the fleet's spend has reached its limit,
  or adding the estimate would pass it (``would_pass``); otherwise the estimate is added to both
  spends at once. So two runs checking at the same moment cannot both pass on the same room: the
  second sees the first's reservation.
* ``settle(day, agent, reserved_usd, actual_usd, tokens, estimated)``, after the call: the reservation
  is replaced by what the call cost (``actual - reserved`` is added) and the call is recorded (its
  tokens, whether its cost is an estimate, the agent's largest call that day).

A reservation never settled (the process died mid-call) stays counted: the ledger errs on the side of
spending less. Spend is kept ``KEEP_DAYS`` days (older day files are removed as a new day starts; the
store's keys expire), so the ledger stays small. A ledger that cannot be read or written raises
``LedgerUnavailable``: the budgets then fail closed (a file ledger always; the store as
``budget_on_store_down`` says). A corrupt day file is never overwritten: the error names it and says
how to recover.

Environment: ``ALPHATRACE_SPEND_DIR`` (the file ledger's folder; ``spend_dir``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.kill_switch_store import RedisSource, StoreUnavailable
from services.state_files import LockTimeout, SmallFileError, exclusive_lock, read_small_file, write_atomically

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_SPEND_DIR = "ALPHATRACE_SPEND_DIR"
DEFAULT_SPEND_DIR = PROJECT_ROOT / "meta_supervisor" / "state" / "spend"
KEEP_DAYS = 8  # as the store's keys (kill_switch_store.SPEND_TTL_S): a week past the day
MAX_DAY_FILE_BYTES = 1 << 20  # some 5,000 agents; a larger file is refused unread
LOCK_TIMEOUT_S = 10.0  # a run waits at most this long for another run's check or record
FILE_FORMAT = 1
AGENT_LIMIT, FLEET_LIMIT = "agent", "fleet"  # which limit refused a reservation


def spend_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get(ENV_SPEND_DIR) or DEFAULT_SPEND_DIR)


def would_pass(spent: float, estimate: float, limit: float | None) -> bool:
    """The budget rule, written once (the store's script mirrors it): a call is refused when what
    was spent has reached the limit, or the call's estimate would take it past."""
    return limit is not None and (spent >= limit or spent + estimate > limit)


class LedgerUnavailable(Exception):
    """The ledger could not be read or written; the message says which and how to recover.
    ``shared``: it was the shared store (``budget_on_store_down`` applies), not a local file."""

    def __init__(self, message: str, shared: bool = False) -> None:
        super().__init__(message)
        self.shared = shared


@dataclass(frozen=True)
class Reservation:
    """A reserve's answer: ``passed`` (the estimate is now counted) or refused by ``refused_by``
    (``AGENT_LIMIT`` or ``FLEET_LIMIT``); the spends are those before this reservation."""

    passed: bool
    estimate: float
    agent_spent: float
    fleet_spent: float
    refused_by: str | None = None


class SpendLedger:
    """A day's spend per agent and for the fleet. ``shared``: a store other hosts use too."""

    shared = False

    def describe(self) -> str:
        raise NotImplementedError

    def reserve(self, day: str, agent: str, floor_usd: float, agent_limit: float | None, fleet_limit: float | None) -> Reservation:
        raise NotImplementedError

    def settle(self, day: str, agent: str, reserved_usd: float, actual_usd: float, tokens: int, estimated: bool) -> None:
        raise NotImplementedError


def _decide(agent_spent: float, fleet_spent: float, estimate: float, agent_limit: float | None, fleet_limit: float | None) -> Reservation:
    if would_pass(agent_spent, estimate, agent_limit):
        return Reservation(False, estimate, agent_spent, fleet_spent, AGENT_LIMIT)
    if would_pass(fleet_spent, estimate, fleet_limit):
        return Reservation(False, estimate, agent_spent, fleet_spent, FLEET_LIMIT)
    return Reservation(True, estimate, agent_spent, fleet_spent)


# --- one host: a JSON file per day ------------------------------------------------------------


class FileSpendLedger(SpendLedger):
    """``spend-<day>.json`` in ``folder``: ``{"format": 1, "day": ..., "agents": {name: {"usd",
    "tokens", "calls", "estimated_usd", "largest_call_usd"}}}``; the fleet's spend is the agents' sum.
    Each operation holds ``spend-<day>.json.lock`` (``flock``) around its read and its atomic write."""

    def __init__(self, folder: Path, keep_days: int = KEEP_DAYS, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.folder = Path(folder)
        self.keep_days = keep_days
        self.lock_timeout_s = lock_timeout_s

    def describe(self) -> str:
        return f"files in {self.folder}"

    def path(self, day: str) -> Path:
        return self.folder / f"spend-{day}.json"

    def reserve(self, day: str, agent: str, floor_usd: float, agent_limit: float | None, fleet_limit: float | None) -> Reservation:
        with self._locked(day) as (path, data):
            entry = data["agents"].get(agent, {})
            estimate = max(floor_usd, entry.get("largest_call_usd", 0.0))
            fleet = sum(item["usd"] for item in data["agents"].values())
            answer = _decide(entry.get("usd", 0.0), fleet, estimate, agent_limit, fleet_limit)
            if answer.passed and estimate > 0:
                _entry(data, agent)["usd"] += estimate
                self._write(path, data)
            return answer

    def settle(self, day: str, agent: str, reserved_usd: float, actual_usd: float, tokens: int, estimated: bool) -> None:
        with self._locked(day) as (path, data):
            entry = _entry(data, agent)
            entry["usd"] += actual_usd - reserved_usd
            entry["tokens"] += tokens
            entry["calls"] += 1
            if estimated:
                entry["estimated_usd"] += actual_usd
            entry["largest_call_usd"] = max(entry["largest_call_usd"], actual_usd)
            self._write(path, data)

    @contextlib.contextmanager
    def _locked(self, day: str) -> Iterator[tuple[Path, dict[str, Any]]]:
        """The day's lock held and its file read, as ``(path, data)``; a lock not had in time or a
        failed write is ``LedgerUnavailable``."""
        path = self.path(day)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(path.with_name(path.name + ".lock"), timeout=self.lock_timeout_s):
                yield path, self._read(path, day)
        except LockTimeout as exc:
            raise LedgerUnavailable(f"spend ledger {path}: {exc}") from None
        except OSError as exc:
            raise LedgerUnavailable(f"spend ledger {path} cannot be locked or written: {exc}") from None

    def _read(self, path: Path, day: str) -> dict[str, Any]:
        try:
            text = read_small_file(path, MAX_DAY_FILE_BYTES, "spend ledger")
        except SmallFileError as exc:
            raise LedgerUnavailable(f"{exc}; {self._recover(path)}") from None
        if text is None:
            return {"format": FILE_FORMAT, "day": day, "agents": {}}
        try:
            data = json.loads(text)
            _check_day_file(data, day)
        except ValueError as exc:
            raise LedgerUnavailable(f"spend ledger {path} is not a valid day file ({exc}); {self._recover(path)}") from None
        return data

    @staticmethod
    def _recover(path: Path) -> str:
        return (
            "budgets checked against it stop every call (fail closed) until it is fixed: repair it, or move it aside "
            f"to start the day from zero (its spend is then not counted) ({path.name} is left as it is)"
        )

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        new_day = not path.exists()
        write_atomically(path, json.dumps(data, sort_keys=True, separators=(",", ":")))
        if new_day:
            self._prune(path)

    def _prune(self, newest: Path) -> None:
        """Keep the ``keep_days`` latest day files (and their locks): the ledger stays bounded."""
        days = sorted(p for p in self.folder.glob("spend-*.json") if p.name <= newest.name)
        for old in days[: -self.keep_days]:
            for target in (old, old.with_name(old.name + ".lock")):
                try:
                    target.unlink()
                except FileNotFoundError:
                    pass


_FIELDS = ("usd", "tokens", "calls", "estimated_usd", "largest_call_usd")


def _entry(data: dict[str, Any], agent: str) -> dict[str, Any]:
    return data["agents"].setdefault(agent, {"usd": 0.0, "tokens": 0, "calls": 0, "estimated_usd": 0.0, "largest_call_usd": 0.0})


def _check_day_file(data: Any, day: str) -> None:
    """``ValueError`` saying what is wrong with a day file's shape."""
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT or data.get("day") != day:
        raise ValueError(f"expected format {FILE_FORMAT} for day {day}")
    agents = data.get("agents")
    if not isinstance(agents, dict):
        raise ValueError("'agents' is not an object")
    for name, entry in agents.items():
        if not isinstance(entry, dict) or set(entry) != set(_FIELDS):
            raise ValueError(f"agent {name!r} must have exactly {', '.join(_FIELDS)}")
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"agent {name!r}: {key} is not a number")


# --- several hosts: the shared store ------------------------------------------------------------


class RedisSpendLedger(SpendLedger):
    """The day's spend in the shared store (``RedisSource.reserve_spend`` / ``settle_spend``)."""

    shared = True

    def __init__(self, store: RedisSource) -> None:
        self.store = store

    def describe(self) -> str:
        return f"the shared store {self.store.describe()}"

    def reserve(self, day: str, agent: str, floor_usd: float, agent_limit: float | None, fleet_limit: float | None) -> Reservation:
        try:
            passed, estimate, agent_spent, fleet_spent, refused_by = self.store.reserve_spend(
                agent, day, floor_usd, agent_limit, fleet_limit
            )
        except StoreUnavailable as exc:
            raise LedgerUnavailable(str(exc), shared=True) from None
        return Reservation(passed, estimate, agent_spent, fleet_spent, refused_by or None)

    def settle(self, day: str, agent: str, reserved_usd: float, actual_usd: float, tokens: int, estimated: bool) -> None:
        try:
            self.store.settle_spend(agent, day, actual_usd - reserved_usd, actual_usd)
        except StoreUnavailable as exc:
            raise LedgerUnavailable(str(exc), shared=True) from None


def ledger_for(source: object, env: Mapping[str, str] | None = None) -> SpendLedger:
    """The store's ledger when the kill switch reads a shared store, else the files in ``spend_dir``."""
    if isinstance(source, RedisSource):
        return RedisSpendLedger(source)
    return FileSpendLedger(spend_dir(env))
