"""Incremental builds: per input file its identity and offset, and the aggregates, saved between runs.

State lives in the state folder (``meta_supervisor/state/`` by default) as ``report-<key>.json``
plus binary ``report-<key>-<generation>.*.bin`` files: the span-dedup table, the closed-run table,
the sorted run latencies and the kept alpha signals (``signal_store``). ``<key>`` is a digest of what
the numbers depend on (inputs, window, price table, whether alpha signals are kept), so a build with
other options never reuses the wrong state. The JSON names its
generation and is replaced last, atomically, so a crash mid-save leaves the previous state usable.

A build then:

* does nothing but report when no input changed (identity, size, mtime): only the JSON is read;
* reads only the appended bytes of grown files (renamed files, i.e. collector rotation, are found
  by identity and continued), on top of the saved aggregates, then saves them again;
* rebuilds from scratch when a file was truncated, replaced or removed, or the state is missing or
  unreadable: deduplication and run joins cross files, so one file's share cannot be subtracted
  exactly, and an exact report matters more than the time of a rare rebuild.

Reads no environment variables.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from array import array
from pathlib import Path

from meta_supervisor.aggregates import AgentTally, InputTally, Tallies
from meta_supervisor.fingerprints import FingerprintMap, FingerprintSet, blake2b
from meta_supervisor.report_build import (
    BuildOptions,
    BuildStats,
    _progress_adapter,
    full_build,
    new_aggregator,
    read_file_maybe_parallel,
    to_ns,
)
from meta_supervisor.report_model import latency_summary
from meta_supervisor.report_outputs import write_atomically
from meta_supervisor.trace_files import FileCursor, classify
from meta_supervisor.trace_inputs import identity_of

STATE_FORMAT = 4
KEEP_STATES = 4  # state sets (one per combination of options) kept; the least recently used go


def state_key(options: BuildOptions) -> str:
    prices = options.prices
    price_text = json.dumps(
        {"version": getattr(prices, "version", None), "models": {k: vars(v) for k, v in sorted(getattr(prices, "models", {}).items())}},
        sort_keys=True,
    )
    material = json.dumps(
        {
            "inputs": sorted(os.path.abspath(os.path.expanduser(spec)) for spec in options.inputs),
            "since": to_ns(options.since),
            "until": to_ns(options.until),
            "alpha_signals": options.alpha_signals,
            "prices": blake2b(price_text.encode(), digest_size=16).hexdigest(),
            "format": STATE_FORMAT,
        },
        sort_keys=True,
    )
    return blake2b(material.encode(), digest_size=8).hexdigest()


@contextlib.contextmanager
def _locked(state_dir: Path, key: str):
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / f"report-{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class SavedState:
    def __init__(self, state_dir: Path, key: str) -> None:
        self.dir = state_dir
        self.key = key
        self.json_path = state_dir / f"report-{key}.json"

    def load_summary(self) -> dict | None:
        try:
            data = json.loads(self.json_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or data.get("key") != self.key:
            return None
        return data

    def _bin(self, generation: str, name: str) -> Path:
        return self.dir / f"report-{self.key}-{generation}.{name}.bin"

    def load_aggregator(self, data: dict, options: BuildOptions):
        """The aggregator as the last build left it (tables and latencies included)."""
        generation = data["generation"]
        aggregator = new_aggregator(options)
        aggregator.seen = FingerprintSet.from_bytes(self._bin(generation, "seen").read_bytes(), data["seen_count"])
        aggregator.closed_runs = FingerprintMap.from_bytes(
            self._bin(generation, "closed").read_bytes(), self._bin(generation, "closed-states").read_bytes(), data["closed_count"]
        )
        latencies = self._bin(generation, "latencies").read_bytes()
        signals = self._signal_blob(data)
        aggregator.inputs = InputTally.from_state(data["inputs"])
        for name in data["agent_order"]:
            entry = data["agents"][name]
            start, end = entry["latency_bytes"]
            aggregator.agents[name] = AgentTally.from_state(entry["tally"], latencies[start:end], _signals_of(entry, signals))
            aggregator.agent_index[name] = len(aggregator.agent_order)
            aggregator.agent_order.append(name)
        aggregator.pending = {key: _pending_from_json(entry) for key, entry in data["pending"].items()}
        return aggregator

    def _signal_blob(self, data: dict) -> bytes | None:
        if not data.get("signals"):
            return None
        return self._bin(data["generation"], "signals").read_bytes()

    def save(self, aggregator, cursors: dict[str, FileCursor], summaries: dict[str, dict]) -> str:
        """Write the binary tables (straight from their arrays, no copies), then the JSON that names
        them; returns the new generation."""
        generation = os.urandom(6).hex()
        agents = {}
        offset = 0
        with open(self._bin(generation, "latencies"), "wb") as handle:
            for name in aggregator.agent_order:
                tally = aggregator.agents[name]
                tally.latencies_ns.tofile(handle)  # sorted by sort_latencies(): the next sort is cheap
                size = len(tally.latencies_ns) * tally.latencies_ns.itemsize
                agents[name] = {"tally": tally.to_state(), "latency_bytes": [offset, offset + size], "latency": summaries[name]}
                offset += size
        collect_signals = getattr(aggregator, "collect_signals", False)
        if collect_signals:
            offset = 0
            with open(self._bin(generation, "signals"), "wb") as handle:
                for name in aggregator.agent_order:
                    store = aggregator.agents[name].signals
                    if store is None:
                        continue
                    state, blob = store.to_state()
                    handle.write(blob)
                    agents[name]["signals"] = state
                    agents[name]["signal_bytes"] = [offset, offset + len(blob)]
                    offset += len(blob)
        _write_array(self._bin(generation, "seen"), aggregator.seen.slots)
        _write_array(self._bin(generation, "closed"), aggregator.closed_runs.keys)
        _write_array(self._bin(generation, "closed-states"), aggregator.closed_runs.states)
        data = {
            "format": STATE_FORMAT,
            "key": self.key,
            "generation": generation,
            "files": [cursor.to_state() for cursor in cursors.values()],
            "inputs": aggregator.inputs.to_state(),
            "agent_order": aggregator.agent_order,
            "agents": agents,
            "pending": {key: _pending_to_json(entry) for key, entry in aggregator.pending.items()},
            "seen_count": aggregator.seen.count,
            "closed_count": aggregator.closed_runs.count,
            "signals": collect_signals,
        }
        write_atomically(self.json_path, json.dumps(data, separators=(",", ":"), allow_nan=True))
        for stale in self.dir.glob(f"report-{self.key}-*.bin"):
            if f"-{generation}." not in stale.name:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        self._prune_other_keys()
        return generation

    def _prune_other_keys(self) -> None:
        """Drop the state of option sets not used recently (e.g. one-off ``--input`` builds)."""
        summaries = []
        for path in self.dir.glob("report-*.json"):
            with contextlib.suppress(FileNotFoundError):
                summaries.append((path.stat().st_mtime, path))
        summaries.sort(reverse=True)
        for _, path in summaries[KEEP_STATES:]:
            key = path.name[len("report-") : -len(".json")]
            if key == self.key:
                continue
            for stale in [path, *self.dir.glob(f"report-{key}-*.bin"), self.dir / f"report-{key}.lock"]:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()

    def light_tallies(self, data: dict) -> Tallies:
        """Tallies and open runs without the big tables: all a report needs when nothing changed
        (the kept alpha signals are read: the report scores them)."""
        signals = self._signal_blob(data)
        return Tallies(
            agents={
                name: AgentTally.from_state(data["agents"][name]["tally"], b"", _signals_of(data["agents"][name], signals))
                for name in data["agent_order"]
            },
            inputs=InputTally.from_state(data["inputs"]),
            pending={key: _pending_from_json(entry) for key, entry in data["pending"].items()},
            latency_summaries={name: data["agents"][name]["latency"] for name in data["agent_order"]},
        )


def _signals_of(entry: dict, blob: bytes | None):
    """The agent's saved ``SignalStore``, or None when the state keeps no signals."""
    if blob is None or "signals" not in entry:
        return None
    from meta_supervisor.signal_store import SignalStore

    start, end = entry["signal_bytes"]
    return SignalStore.from_state(entry["signals"], blob[start:end])


def _write_array(path: Path, blob) -> None:
    with open(path, "wb") as handle:
        handle.write(memoryview(blob).cast("B"))


def sort_latencies(aggregator) -> dict[str, dict]:
    """Sort each agent's latencies in place (once) and summarise them for the report."""
    summaries = {}
    for name, tally in aggregator.agents.items():
        tally.latencies_ns = array("q", sorted(tally.latencies_ns))
        summaries[name] = latency_summary(tally.latencies_ns, already_sorted=True)
    return summaries


def _pending_to_json(entry: list) -> list:
    return [*entry[:3], list(entry[3]) if entry[3] is not None else None, *entry[4:]]


def _pending_from_json(entry: list) -> list:
    return [*entry[:3], tuple(entry[3]) if entry[3] is not None else None, *entry[4:]]


def _plan(files: list[Path], saved: list[FileCursor]) -> tuple[dict[str, tuple[str, FileCursor | None]], str]:
    """Per current file: what to do ("skip", "continue", "new"); or the reason a rebuild is needed."""
    by_identity = {(cursor.device, cursor.inode): cursor for cursor in saved}
    plan: dict[str, tuple[str, FileCursor | None]] = {}
    used = set()
    for path in files:
        try:
            ident = identity_of(path)
        except OSError as exc:
            return {}, f"cannot stat {path}: {exc}"
        known = by_identity.get((ident.device, ident.inode))
        change = classify(path, known)
        if change.kind == "replaced":
            return {}, change.reason
        if known is not None:
            used.add((known.device, known.inode))
        plan[str(path)] = ("skip" if change.kind == "unchanged" else "continue" if change.kind == "grown" else "new", known)
    for cursor in saved:
        if (cursor.device, cursor.inode) not in used:
            return {}, f"{cursor.path} is no longer among the inputs (deleted or moved away)"
    return plan, ""


def incremental_build(options: BuildOptions, files: list[Path], stats: BuildStats):
    """The aggregator and file cursors for ``files``, reading as little as the saved state allows."""
    assert options.state_dir is not None
    saved_state = SavedState(options.state_dir, state_key(options))
    with _locked(options.state_dir, saved_state.key):
        data = None if options.force_full else saved_state.load_summary()
        if data is None:
            stats.rebuild_reason = "forced full build" if options.force_full else "no saved state"
            return _full_and_save(options, files, stats, saved_state)
        saved = [FileCursor.from_state(entry) for entry in data["files"]]
        plan, reason = _plan(files, saved)
        if reason:
            stats.rebuild_reason = f"rebuild: {reason}"
            return _full_and_save(options, files, stats, saved_state)
        if all(action == "skip" for action, _ in plan.values()):
            try:
                tallies = saved_state.light_tallies(data)
            except (OSError, ValueError, KeyError) as exc:
                stats.rebuild_reason = f"rebuild: saved state unreadable ({exc})"
                return _full_and_save(options, files, stats, saved_state)
            stats.mode = "unchanged"
            stats.state_dir, stats.state = options.state_dir, f"{saved_state.key}-{data['generation']}"
            with contextlib.suppress(OSError):
                os.utime(saved_state.json_path)  # recently used: kept by the pruning
            cursors = {str(path): _renamed(plan[str(path)][1], path) for path in files}
            return tallies, cursors
        try:
            aggregator = saved_state.load_aggregator(data, options)
        except (OSError, ValueError, KeyError) as exc:
            stats.rebuild_reason = f"rebuild: saved state unreadable ({exc})"
            return _full_and_save(options, files, stats, saved_state)
        stats.mode = "incremental"
        total = sum(max(identity_of(path).size - (plan[str(path)][1].size if plan[str(path)][1] else 0), 0) for path in files)
        advance = _progress_adapter(options, total)
        cursors = {}
        for path in files:
            action, known = plan[str(path)]
            if action == "skip":
                cursors[str(path)] = _renamed(known, path)
                continue
            cursor = read_file_maybe_parallel(path, aggregator, options, advance, known)
            stats.bytes_read += cursor.size - (known.size if known else 0)
            stats.files_read += 1
            cursors[str(path)] = cursor
        aggregator.settle()
        summaries = sort_latencies(aggregator)  # mostly sorted already: a merge of two runs
        generation = saved_state.save(aggregator, cursors, summaries)
        stats.state_dir, stats.state = options.state_dir, f"{saved_state.key}-{generation}"
        aggregator.latency_summaries = summaries
        return aggregator, cursors


def _renamed(cursor: FileCursor, path: Path) -> FileCursor:
    cursor.path = str(path)
    return cursor


def _full_and_save(options: BuildOptions, files: list[Path], stats: BuildStats, saved_state: SavedState):
    stats.mode = "full"
    aggregator, cursors = full_build(options, files, stats)
    summaries = sort_latencies(aggregator)
    generation = saved_state.save(aggregator, cursors, summaries)
    stats.state_dir, stats.state = options.state_dir, f"{saved_state.key}-{generation}"
    aggregator.latency_summaries = summaries
    return aggregator, cursors
