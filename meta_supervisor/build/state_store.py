"""The incremental state on disk: generations of binary tables, the JSON that names them, the lock.

One state set per option key (``state_key``) in the state folder:

* ``report-<key>.json``: the last build's tallies and file cursors; it names its *generation* (the
  binary tables ``report-<key>-<generation>.<table>.bin`` it goes with) and its *checkpoint* (the
  generation holding the state just before the last input file, see ``incremental``). It is
  replaced last and atomically, so a crash mid-save leaves the previous state (and its checkpoint,
  whose files are only deleted after the replace) usable;
* ``report-<key>-<generation>.*.bin``: the dedup table (8 bytes a slot), the closed-run table, the
  sorted latencies and the kept alpha signals, written straight from their arrays. Each JSON records
  the size and BLAKE2b digest of every table it names, checked on load: a damaged or half-written
  table means a rebuild, never a wrong report; so does a summary that cannot be true
  (``state_checks``: ``load_summary`` and ``load_checkpoint`` raise ``ValueError``; each agent's
  tally is read from the JSON only as it is made, and checked against ``TallyState``). Tables are
  fsynced before the JSON naming them is written (``write_atomically``), so a power loss leaves
  the previous state or the new one, whole. A generation whose writing fails (a full disk) is
  removed at once, and so are the temp files of writes a killed build left;
* ``report-<key>-<generation>.checkpoint.json``: a checkpoint's own summary (same fields as the
  main JSON). A checkpoint is an ordinary generation: when the last state itself becomes the
  checkpoint (a new active file after a rotation) its tables are kept, not copied.

Generations other than the current one and its checkpoint are deleted after each save; the state
sets of option keys not used recently go (``KEEP_STATES``), unless another build holds their lock.

``report-<key>.lock`` is held (``services.state_files.exclusive_lock``) while a build reads and
writes the state of its key; it holds the holder's pid. A build waits for it at most
``ALPHATRACE_STATE_LOCK_TIMEOUT`` seconds (read by ``lock_timeout``, for the CLI; default 600).
``state_key`` reads the line cap (``ALPHATRACE_MAX_LINE_BYTES``, ``reading.formats.max_line_bytes``):
a state read with another cap counted other lines as bad.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import msgspec

from meta_supervisor.blake2 import blake2b
from meta_supervisor.build.options import BuildOptions, new_aggregator, to_ns
from meta_supervisor.build.part_result import CHUNK_ITEMS
from meta_supervisor.build.state_checks import SPILLED_TABLES, summary_problem
from meta_supervisor.native_core import json_check
from meta_supervisor.reading.formats import max_line_bytes
from meta_supervisor.tally.aggregates import AgentTally, InputTally, Tallies, TallyState
from meta_supervisor.tally.bounds import P_DEFERRED
from meta_supervisor.tally.fingerprints import FingerprintMap, FingerprintSet
from meta_supervisor.tally.latency_runs import RunFile, SortedRun, sorted_chunks
from services.state_files import LockTimeout, exclusive_lock, json_pieces, write_atomically
from settings.config_error import env_number

STATE_FORMAT = 16  # 16: the tables' spilled tiers (seen-spilled, closed-spilled*: spill_plan)
# 5: table digests and the checkpoint before the last file; 6: span entries carry a content check
# and a saved offset is never past the saved size; 7: runs per as-of day; 8: LLM calls per operation, tool calls;
# 9: evicted open runs, the evicted run state; 10: open runs keep deferred calls (agent_counts); 11: spans under
# the alphatrace.* names read too (a state of an older reader may have read them as unknown keys); 12: tool
# calls joined to runs (open runs count them, closed runs' states carry TOOLS_UNANNOUNCED), calls per
# run and stops per agent; 13: inputs.tail_sampled_spans; 14: inputs.host_processes (the per-host table);
# 15: inputs.evaluation_spans
KEEP_STATES = 4  # state sets (one per combination of options) kept; the least recently used go
ENV_LOCK_TIMEOUT = "ALPHATRACE_STATE_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 600.0  # seconds; a full build of a year of traces takes a few minutes at most
_MAIN_NAME = re.compile(r"^report-([0-9a-f]{16})\.json$")


def _encoded(later):
    """``json`` ``default``: an agent's tally state, made only when the encoder reaches it, so the
    states of 1,000 agents (~13 MB of lists) are never all made at once."""
    if callable(later):
        return later()
    raise TypeError(f"Object of type {type(later).__name__} is not JSON serializable")


def state_key(options: BuildOptions, state_format: int = STATE_FORMAT) -> str:
    prices = options.prices
    price_text = json.dumps(
        {"version": getattr(prices, "version", None), "models": {k: vars(v) for k, v in sorted(getattr(prices, "models", {}).items())}},
        sort_keys=True,
    )
    fields = {
        "inputs": sorted(os.path.abspath(os.path.expanduser(spec)) for spec in options.inputs),
        "since": to_ns(options.since),
        "until": to_ns(options.until),
        "alpha_signals": options.alpha_signals,
        "prices": blake2b(price_text.encode(), digest_size=16).hexdigest(),
        "format": state_format,
    }
    if state_format == STATE_FORMAT:  # (older formats' keys as they were made: ``_older_format`` finds them)
        # what is counted depends on these too: a line over the cap is a bad line, an evicted open run unchecked
        fields.update(line_cap=max_line_bytes(), open_runs=options.max_open_runs)
    material = json.dumps(fields, sort_keys=True)
    return blake2b(material.encode(), digest_size=8).hexdigest()


def lock_timeout(environ=os.environ) -> float:
    """``ALPHATRACE_STATE_LOCK_TIMEOUT``: seconds a build waits for another build of the same
    options to release the state (default 600); ``ConfigError`` when it is not a number >= 0."""
    return env_number(environ, ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT, whole=False, unit="seconds", minimum=0)


@contextlib.contextmanager
def locked(state_dir: Path, key: str, timeout: float | None = None, on_wait=None):
    """The state lock of one option key: one build at a time reads and writes its state. Waits at
    most ``timeout`` seconds (None: ``DEFAULT_LOCK_TIMEOUT``), then ``LockTimeout`` naming the holder."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(state_dir / f"report-{key}.lock", DEFAULT_LOCK_TIMEOUT if timeout is None else timeout, on_wait):
        yield


def locked_for(options: BuildOptions, key: str):
    """``locked`` for a build of ``options`` (its state folder and lock timeout), telling
    ``options.notify``, when set, whom it waits for: the one wording of the wait, whoever waits."""
    timeout = options.lock_timeout if options.lock_timeout is not None else DEFAULT_LOCK_TIMEOUT

    def notice(holder: str) -> None:
        options.notify(f"waiting up to {timeout:g} s for the incremental state in {options.state_dir}: {holder} uses it")

    return locked(options.state_dir, key, options.lock_timeout, notice if options.notify is not None else None)


def new_generation() -> str:
    """A new generation's name: 12 random hex digits."""
    return os.urandom(6).hex()


_SET_FILE = re.compile(r"^\.?report-([0-9a-f]{16})[.-]")  # a state set's files, locks and temp files


def remove_old_location(old_dir: Path) -> int:
    """Delete the report's caches from the folder they were kept in before ``locations.DEFAULT_CACHE_DIR``
    (``meta_supervisor/state/``, beside the files people edit): each option key's state set with its
    alpha cache, lock and temp files, unless a build (an older checkout's) holds its lock. Nothing
    else in the folder is touched; the new folder is filled by the next build (a full one). Returns
    how many sets were removed."""
    try:
        keys = {match.group(1) for path in old_dir.iterdir() if (match := _SET_FILE.match(path.name))}
    except OSError:  # no such folder (a fresh checkout), or not readable: nothing to tidy
        return 0
    for key in sorted(keys):
        SavedState(old_dir, key)._remove_set(key)
    return len(keys)


class SavedState:
    def __init__(self, state_dir: Path, key: str) -> None:
        self.dir = state_dir
        self.key = key
        self.json_path = state_dir / f"report-{key}.json"

    # --- reading ----------------------------------------------------------------------------------

    def load_summary(self, options: BuildOptions) -> tuple[dict | None, bytes, str]:
        """(summary, its raw text, "") or (None, b"", why there is none to use); ``ValueError`` when
        there is one but it is damaged or inconsistent (``state_checks``). Each agent's tally is
        left as its JSON text until it is made (``summary_text``)."""
        try:
            text = self.json_path.read_bytes()
        except FileNotFoundError:
            return None, b"", self._older_format(options) or "no saved state"
        except (OSError, ValueError) as exc:
            raise ValueError(f"saved state unreadable ({exc})") from None
        return self._checked(text, STATE_FORMAT, self.key, "saved state"), text, ""

    @staticmethod
    def _checked(text: bytes, state_format: int, key: str, what: str) -> dict:
        try:
            data = summary_text(text)
        except ValueError as exc:
            raise ValueError(f"{what} unreadable ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != state_format or data.get("key") != key:
            raise ValueError(f"{what} is not of format {state_format} for this key")
        problem = summary_problem(data)
        if problem:
            raise ValueError(f"{what} inconsistent: {problem}")
        return data

    def _older_format(self, options: BuildOptions) -> str:
        """Why there is no state when one of an older format exists for the same options (then removed:
        this version never reads it)."""
        for old in range(STATE_FORMAT - 1, 0, -1):
            key = state_key(options, old)
            if (self.dir / f"report-{key}.json").exists():
                self._remove_set(key)
                return f"the saved state is of an older format ({old}; this version writes {STATE_FORMAT}): rebuilt in full"
        return ""

    def load_checkpoint(self, generation: str) -> dict:
        data = self._checked(self._checkpoint_path(generation).read_bytes(), STATE_FORMAT, self.key, "checkpoint")
        if data.get("generation") != generation:
            raise ValueError(f"checkpoint {generation} names generation {data.get('generation')!r}")
        return data

    def _bin(self, generation: str, name: str) -> Path:
        return self.dir / f"report-{self.key}-{generation}.{name}.bin"

    def _table(self, generation: str, name: str, digests: dict) -> _Table:
        return _Table(self._bin(generation, name), digests, name)

    def _checkpoint_path(self, generation: str) -> Path:
        return self.dir / f"report-{self.key}-{generation}.checkpoint.json"

    def _read_bin(self, data: dict, name: str) -> bytes:
        """A table, checked against the size and digest its JSON recorded."""
        path = self._bin(data["generation"], name)
        raw = path.read_bytes()
        size, digest = data["digests"][name]
        if len(raw) != size or blake2b(raw, digest_size=16).hexdigest() != digest:
            raise ValueError(f"{path.name} does not match the digest saved with it (damaged or incomplete)")
        return raw

    def load_aggregator(self, data: dict, options: BuildOptions):
        """The aggregator as the build that wrote ``data`` left it (tables and latencies included)."""
        aggregator = new_aggregator(options)
        aggregator.seen = FingerprintSet.from_bytes(self._read_bin(data, "seen"), data["seen_count"])
        aggregator.closed_runs = FingerprintMap.from_bytes(
            self._read_bin(data, "closed"), self._read_bin(data, "closed-states"), data["closed_count"]
        )
        self._load_spilled(data, aggregator)
        latencies = self._latency_file(data)
        signals = self._signal_blob(data)
        aggregator.inputs = InputTally.from_state(data["inputs"])
        keys: dict = {}  # the agents' keys, kept once (AgentTally.from_state)
        for name in data["agent_order"]:
            entry = data["agents"][name]
            start, end = entry["latency_bytes"]
            state = decoded(entry["tally"], TallyState)
            tally = aggregator.agents[name] = AgentTally.from_state(state, b"", _signals_of(entry, signals), keys)
            if end > start:  # read back from the file when needed, a chunk at a time (``latency_runs``)
                tally.latency_runs = (SortedRun(latencies, start, (end - start) // 8),)
            aggregator.agent_index[name] = len(aggregator.agent_order)
            aggregator.agent_order.append(name)
        aggregator.pending = {key: _pending_from_json(entry) for key, entry in data["pending"].items()}
        aggregator._dead = set(data.get("open_unchecked_runs", ()))  # counted by the first sweep as before
        aggregator.pending_added(len(aggregator.pending))  # looked at by the first bound_open_runs()
        return aggregator

    def _latency_file(self, data: dict):
        """The saved latencies' table, open (its digest checked a chunk at a time): each agent's
        sorted slice of it is a run of its tally, never read whole into memory."""
        for _ in self._chunks(data, "latencies"):
            pass
        return RunFile(os.open(self._bin(data["generation"], "latencies"), os.O_RDONLY))  # closed with the last run

    def _load_spilled(self, data: dict, aggregator) -> None:
        """Bound the loaded tables as the build's plan says, and give them back their spilled
        tiers: each saved spilled table read a chunk at a time (never whole in memory) into a run,
        its digest checked as it is read (a mismatch: ``ValueError``, a rebuild)."""
        seen, closed = aggregator.seen, aggregator.closed_runs
        seen.expected += data["seen_spilled"]  # the filters sized for what they will hold
        closed.expected += data["closed_spilled"]
        seen.bound(aggregator.spill)
        closed.bound(aggregator.spill)
        for name, tier, count, split in (
            ("seen-spilled", seen.runs, data["seen_spilled"], False),
            ("closed-spilled", closed.runs, data["closed_spilled"], True),
        ):
            if not count:
                continue
            if tier is None:
                raise ValueError("the saved state's tables spilled to disk: only the native core reads them back")
            keys = self._chunks(data, name)
            values = self._chunks(data, "closed-spilled-states", 1) if split else None
            for chunk in keys:
                tier.load(chunk, next(values) if split else None)
            if split:
                next(values, None)  # its digest checked
            tier.loaded()
        if closed.runs is not None:
            closed.runs.shadowed = data["closed_shadowed"]

    def _chunks(self, data: dict, name: str, item: int = 8):
        """A table's bytes in chunks of ``part_result.CHUNK_ITEMS`` items; its digest checked at the end."""
        path = self._bin(data["generation"], name)
        size, digest = data["digests"][name]
        check, read = blake2b(digest_size=16), 0
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK_ITEMS * item):
                check.update(chunk)
                read += len(chunk)
                yield chunk
        if read != size or check.hexdigest() != digest:
            raise ValueError(f"{path.name} does not match the digest saved with it (damaged or incomplete)")

    def _signal_blob(self, data: dict) -> bytes | None:
        return self._read_bin(data, "signals") if data.get("signals") else None

    def light_tallies(self, data: dict) -> Tallies:
        """Tallies and open runs without the big tables: all a report needs when nothing changed
        (the kept alpha signals are read: the report scores them)."""
        signals = self._signal_blob(data)
        keys: dict = {}  # the agents' keys, kept once (AgentTally.from_state)
        agents = data["agents"]
        return Tallies(
            agents={
                name: AgentTally.from_state(decoded(agents[name]["tally"], TallyState), b"", _signals_of(agents[name], signals), keys)
                for name in data["agent_order"]
            },
            inputs=InputTally.from_state(data["inputs"]),
            pending={key: _pending_from_json(entry) for key, entry in data["pending"].items()},
            latency_summaries={name: data["agents"][name]["latency"] for name in data["agent_order"]},
        )

    # --- writing ----------------------------------------------------------------------------------

    def _write_generation(
        self, aggregator, cursors, summaries: dict | None, keep: frozenset = frozenset(), generation: str | None = None
    ) -> dict:
        """Write the binary tables of a new generation (straight from their arrays, no copies);
        returns the JSON-able summary naming them. ``cursors``: the files the aggregator covers;
        ``keep``: generations not yet named by the summary on disk that must stay; ``generation``: its
        name (None: a new one). On any failure (a full disk) the generation's files are removed
        before the error goes on."""
        generation = generation or new_generation()
        # room first: what a killed build left (a full disk); not what the build writes under the new
        # generation's name meanwhile (the alpha cache, beside a save in a forked process)
        self._remove_stale(self._named() | keep, writing=generation)
        try:
            return self._write_tables(generation, aggregator, cursors, summaries)
        except BaseException:
            self.discard(generation)
            raise

    def discard(self, generation: str) -> None:
        """Remove what was written of a generation no summary names (best effort). One the summary
        names after all is kept: a save can fail after the summary's rename (the folder's fsync),
        or its process be killed after it, and the state it named is whole."""
        if generation in self._named():
            return
        for path in self.dir.glob(f"report-{self.key}-{generation}.*"):
            with contextlib.suppress(OSError):
                path.unlink()

    def _write_tables(self, generation: str, aggregator, cursors, summaries: dict | None) -> dict:
        """The summary's ``agents[name]["tally"]`` is the tally's ``to_state`` method, called by
        ``_encoded`` as the JSON is written (serialise it at once: the tally may change after)."""
        digests: dict[str, list] = {}
        agents = {}
        with self._table(generation, "latencies", digests) as table:
            for name in aggregator.agent_order:
                tally = aggregator.agents[name]
                start = table.size
                for values in sorted_chunks(tally):  # resident and spilled, merged a chunk at a time
                    table.write(values)
                # made when the JSON is written, agent by agent (``_encoded``): not all agents' at once
                agents[name] = {"tally": tally.to_state, "latency_bytes": [start, table.size]}
                if summaries is not None:
                    agents[name]["latency"] = summaries[name]
        if aggregator.collect_signals:
            with self._table(generation, "signals", digests) as table:
                for name in aggregator.agent_order:
                    store = aggregator.agents[name].signals
                    if store is None:
                        continue
                    state, blob = store.to_state()
                    agents[name]["signals"] = state
                    agents[name]["signal_bytes"] = [table.size, table.size + len(blob)]
                    table.write(blob)
        for name, blob in (
            ("seen", aggregator.seen.slots),
            ("closed", aggregator.closed_runs.keys),
            ("closed-states", aggregator.closed_runs.states),
        ):
            with self._table(generation, name, digests) as table:
                table.write(blob)
        spilled = self._write_spilled(generation, aggregator, digests)
        return {
            "format": STATE_FORMAT,
            "key": self.key,
            "generation": generation,
            "files": [cursor.to_state() for cursor in cursors.values()],
            "inputs": aggregator.inputs.to_state(),
            "agent_order": aggregator.agent_order,
            "agents": agents,
            "pending": {key: _pending_to_json(entry) for key, entry in aggregator.pending.items()},
            # runs closed as unchecked with children since the last sweep (a checkpoint's; none after settle())
            **({"open_unchecked_runs": sorted(aggregator._dead)} if aggregator._dead else {}),
            "seen_count": aggregator.seen.count,
            "closed_count": aggregator.closed_runs.count,
            **spilled,
            "signals": aggregator.collect_signals,
            "digests": digests,
        }

    def _write_spilled(self, generation: str, aggregator, digests: dict) -> dict:
        """The tables' spilled tiers (empty when they have none), written by the core in key order;
        returns their counts for the summary."""
        seen, closed = aggregator.seen.runs, aggregator.closed_runs.runs
        paths = [self._bin(generation, name) for name in SPILLED_TABLES]
        with open(paths[0], "wb") as entries, open(paths[1], "wb") as keys, open(paths[2], "wb") as states:
            seen_count = seen.export(entries.fileno(), -1) if seen is not None else 0
            closed_count = closed.export(keys.fileno(), states.fileno()) if closed is not None else 0
            for handle in (entries, keys, states):
                os.fsync(handle.fileno())  # on disk before the JSON naming them is
        for name, path in zip(SPILLED_TABLES, paths, strict=True):
            digests[name] = _digest_of(path)
        shadowed = closed.shadowed if closed is not None else 0
        return {"seen_spilled": seen_count, "closed_spilled": closed_count, "closed_shadowed": shadowed}

    def write_checkpoint(self, aggregator, cursors) -> tuple[str, int, float]:
        """Save the aggregator as it is now (before the last file) as a checkpoint generation;
        returns (generation, bytes written, seconds). Its JSON is serialised at once: the tallies
        keep changing as the last file is read."""
        started = time.perf_counter()
        data = self._write_generation(aggregator, cursors, None)
        text = json.dumps(data, separators=(",", ":"), allow_nan=True, default=_encoded)
        try:
            write_atomically(self._checkpoint_path(data["generation"]), text)
        except BaseException:
            self.discard(data["generation"])
            raise
        size = len(text) + sum(size for size, _ in data["digests"].values())
        return data["generation"], size, time.perf_counter() - started

    def adopt_as_checkpoint(self, text: bytes, generation: str) -> None:
        """Make the last state (its main JSON text, its tables kept as they are) a checkpoint."""
        path = self._checkpoint_path(generation)
        if not path.exists():
            write_atomically(path, text)

    def save(self, aggregator, cursors, summaries: dict[str, dict], checkpoint: str | None, generation: str | None = None) -> str:
        """Write a new generation (named ``generation``, or a new name), then the JSON naming it and
        ``checkpoint`` (a generation, "" for the empty state, None for none); drop every other
        generation. Returns the new generation."""
        data = self._write_generation(aggregator, cursors, summaries, frozenset({checkpoint}), generation)
        data["checkpoint"] = checkpoint
        try:
            write_atomically(
                self.json_path, json_pieces(data, depth=2, plain=json_check(), allow_nan=True, default=_encoded)
            )  # agent by agent, never whole
        except BaseException:
            self.discard(data["generation"])
            raise
        self._remove_stale({data["generation"], checkpoint}, current=data["generation"], writing=data["generation"])
        with contextlib.suppress(OSError):  # tidying up: the new state is saved already
            self._prune_other_keys()
        return data["generation"]

    def _named(self) -> set:
        """The generations the saved summary names: its own and its checkpoint (only those two fields
        decoded: the summary of 1,000 agents is ~15 MB as Python objects, at the build's peak here)."""
        try:
            names = msgspec.json.decode(self.json_path.read_text(encoding="utf-8"), type=_Generations)
        except (OSError, ValueError):
            return set()
        return {names.generation, names.checkpoint}

    def _remove_stale(self, keep: set, current: str | None = None, writing: str | None = None) -> None:
        """Delete the files of generations not in ``keep`` (a killed or failed build's, or replaced
        ones) and the temp files of writes a killed build left: none is under way, the lock is held,
        but for ``writing``'s (the generation being saved, whose alpha cache the build may be writing
        beside a save in a forked process: ``build.save_aside``). With ``current``: a checkpoint
        keeps its tables and summary, not what was derived from it as a last state (its alpha cache)."""
        prefix = f"report-{self.key}-"
        for stale in [*self.dir.glob(f"{prefix}*"), *self.dir.glob(f".report-{self.key}*.tmp")]:
            temp = stale.name.startswith(".")
            generation, _, kind = stale.name[len(prefix) + temp :].partition(".")
            if writing is not None and generation == writing:
                continue
            derived = current is not None and generation != current and kind == "alpha.bin"
            if temp or generation not in keep or derived:
                with contextlib.suppress(OSError):
                    stale.unlink()

    def _prune_other_keys(self) -> None:
        """Drop the state of option sets not used recently (e.g. one-off ``--input`` builds)."""
        summaries = []
        for path in self.dir.glob("report-*.json"):
            match = _MAIN_NAME.match(path.name)
            if match is None:
                continue  # a checkpoint's summary: part of its key's set
            with contextlib.suppress(FileNotFoundError):
                summaries.append((path.stat().st_mtime, match.group(1)))
        summaries.sort(reverse=True)
        for _, key in summaries[KEEP_STATES:]:
            if key != self.key:
                self._remove_set(key)

    def _remove_set(self, key: str) -> None:
        """Delete one option key's whole state, unless a build is using it (holds its lock)."""
        lock_path = self.dir / f"report-{key}.lock"
        with contextlib.suppress(LockTimeout), exclusive_lock(lock_path, timeout=0):
            stale_files = [self.dir / f"report-{key}.json", *self.dir.glob(f"report-{key}-*"), *self.dir.glob(f".report-{key}*.tmp")]
            for stale in [*stale_files, lock_path]:
                with contextlib.suppress(OSError):
                    stale.unlink()


class _Generations(msgspec.Struct):
    """The two fields of a saved summary ``_named`` needs; the rest is skipped, not decoded."""

    generation: str | None = None
    checkpoint: str | None = None


class _Table:
    """A binary table file being written: its size and digest are recorded for the load check."""

    def __init__(self, path: Path, digests: dict, name: str) -> None:
        self.path, self.digests, self.name = path, digests, name
        self.size = 0
        self._hash = blake2b(digest_size=16)

    def __enter__(self) -> _Table:
        self._handle = open(self.path, "wb")  # closed in __exit__
        return self

    def write(self, blob) -> None:
        view = memoryview(blob).cast("B")
        self._handle.write(view)
        self._hash.update(view)
        self.size += len(view)

    def __exit__(self, kind, *exc) -> None:
        try:
            if kind is None:  # on disk before the JSON naming it is (that write then syncs the folder)
                self._handle.flush()
                os.fsync(self._handle.fileno())
        finally:
            self._handle.close()
        self.digests[self.name] = [self.size, self._hash.hexdigest()]


def _digest_of(path: Path) -> list:
    """[size, BLAKE2b digest] of a table file, read a chunk at a time."""
    check, size = blake2b(digest_size=16), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            check.update(chunk)
            size += len(chunk)
    return [size, check.hexdigest()]


def _signals_of(entry: dict, blob: bytes | None):
    """The agent's saved ``SignalStore``, or None when the state keeps no signals."""
    if blob is None or "signals" not in entry:
        return None
    from meta_supervisor.tally.signal_store import SignalStore

    start, end = entry["signal_bytes"]
    return SignalStore.from_state(decoded(entry["signals"]), blob[start:end])


_LATER = frozenset({"tally", "signals"})  # an agent's fields kept as JSON text until used (``decoded``)


def summary_text(text: bytes) -> dict:
    """A saved summary's JSON as ``json.loads`` makes it, except that each agent's ``tally`` and
    ``signals`` stay ``msgspec.Raw`` (a slice of ``text``, not a copy) until ``decoded``: the
    tallies of 1,000 agents over 30 days are ~4.5 MB of JSON and ~30 MB as Python objects at
    once, but one agent's at a time is a few kB. A summary msgspec does not read (a NaN or an
    infinity, which ``json`` writes with ``allow_nan``; or not JSON) is read by ``json``, whole."""
    try:
        data = msgspec.json.decode(text, type=dict[str, msgspec.Raw])
        for key, value in data.items():
            if key != "agents":
                data[key] = msgspec.json.decode(value)
                continue
            agents = msgspec.json.decode(value, type=dict[str, dict[str, msgspec.Raw]])
            data[key] = {
                name: {field: inner if field in _LATER else msgspec.json.decode(inner) for field, inner in entry.items()}
                for name, entry in agents.items()
            }
        return data
    except msgspec.DecodeError:
        return json.loads(text)


def decoded(value, shape: Any = Any):
    """An agent's field as ``json.loads`` makes it (``value`` itself, or the JSON it was left as),
    checked against ``shape`` (e.g. ``TallyState``): ``ValueError`` when it is not of it."""
    if type(value) is not msgspec.Raw:
        return msgspec.convert(value, shape)
    try:
        return msgspec.json.decode(value, type=shape)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError:  # a NaN or an infinity (written by ``json``): as ``json`` reads them
        return msgspec.convert(json.loads(bytes(value)), shape)


def _pending_to_json(entry: list) -> list:
    return [*entry[:3], list(entry[3]) if entry[3] is not None else None, *entry[4:]]


def _pending_from_json(entry: list) -> list:
    deferred = entry[P_DEFERRED]
    return [
        *entry[:3],
        tuple(entry[3]) if entry[3] is not None else None,
        *entry[4:P_DEFERRED],
        [tuple(record) for record in deferred] if deferred is not None else None,
        *entry[P_DEFERRED + 1 :],
    ]
