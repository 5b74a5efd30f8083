"""Stable 64-bit fingerprints of span and run identities, and compact open-addressing tables of them.

A Python ``set`` of a million ints costs about 70 MB; the tables here keep one ``array('Q')`` slot per
entry (8 bytes, at most 70% full), so the dedup set for a year of spans stays within the report's
memory budget and can be written to and read back from the incremental state as raw bytes.

Fingerprints must not depend on the process (``hash()`` of a ``str`` is salted per process), so they
are computed from the hex ids themselves, or with BLAKE2b for anything that is not the expected hex.
Slot values 0 (empty) and 1 (deleted) are reserved; fingerprints are always >= 2.

The span set keeps one word per span, its *entry*: the high 56 bits of the id fingerprint and, in the
low 8 bits, a check of what the span says (``content_check``). Two entries with the same id part are
the same span; if their checks differ too, the second copy is a conflicting duplicate (same ids,
other content), else an exact one (an exporter retry). 56 bits of id make a false "same span" unlikely
(about 7e-6 for a million spans, 7e-4 for ten million); 8 bits of check miss one conflicting copy
in 256.

With a ``SpillPlan`` (and the native core installed) a table is bounded: its resident slots stop
growing at the plan's size and, when full, are spilled as a sorted run to the build's cache folder
(``native/src/spill.rs``: a Bloom filter and a page index stay in memory, lookups of a filter
positive read one page with ``pread``) and start empty again. Every answer stays exact: a lookup
asks the resident table, then the runs. Without the core the tables grow in memory as before.

Reads no environment variables (``ALPHATRACE_RESIDENT_SPANS`` is read by ``build.spill_plan``).
"""

from __future__ import annotations

from array import array
from typing import NamedTuple

from meta_supervisor import native_core
from meta_supervisor.blake2 import blake2b

MASK64 = (1 << 64) - 1
_K_SPAN = 0x9E3779B97F4A7C15
_K_TRACE = 0xC2B2AE3D27D4EB4F
_K_TRACE_HIGH = 0x165667B19E3779F9
EMPTY = 0
DELETED = 1
_MIN_SLOTS = 1 << 10


def _blake64(text: str) -> int:
    value = int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    return value if value > DELETED else value + 2


def span_fingerprint(trace_id: str, span_id: str) -> int:
    """Fingerprint of (traceId, spanId); 32 and 16 hex digits take the fast path."""
    if len(trace_id) == 32 and len(span_id) == 16:
        try:
            t = int(trace_id, 16)
            s = int(span_id, 16)
        except ValueError:
            pass
        else:
            value = ((t & MASK64) * _K_TRACE ^ (t >> 64) * _K_TRACE_HIGH ^ s * _K_SPAN) & MASK64
            return value if value > DELETED else value + 2
    return _blake64(f"{trace_id}\x00{span_id}")


def run_fingerprint(run_key: str) -> int:
    """Fingerprint of a run id (uuid4 strings take the fast path) or of a trace id."""
    if len(run_key) == 36 and run_key[8] == "-":
        try:
            x = int(run_key.replace("-", ""), 16)
        except ValueError:
            pass
        else:
            value = ((x & MASK64) * _K_SPAN ^ (x >> 64) * _K_TRACE) & MASK64
            return value if value > DELETED else value + 2
    return _blake64("run\x00" + run_key)


CHECK_BITS = 8
CHECK_MASK = (1 << CHECK_BITS) - 1
ID_MASK = MASK64 ^ CHECK_MASK


def content_check(start: int, end: int, span) -> int:
    """8 bits of what a span says beyond its ids: the top byte of ``hash()`` of the tuple of its start
    and end times as the report reads them (``start``, ``end``: the integer, 0 when unreadable or
    beyond 64 bits), its status code (-1 without a status) and the lengths of its status message and
    name (in characters), of its attributes and of its events. The hash of a tuple of ints is not
    salted per process (only that of text is): CPython's xxHash-based tuple hash over ints reduced
    modulo 2^61 - 1, which the native core computes too (``native/src/content.rs``)."""
    status = span.status
    code, message = (-1, 0) if status is None else (status.code, len(status.message))
    return hash((start, end, code, message, len(span.name), len(span.attributes), len(span.events))) >> 56 & CHECK_MASK


def span_entry(fp: int, check: int) -> int:
    """The span set's word for a span: the id part of ``fp`` (never 0) and its content check."""
    return (fp & ID_MASK or 1 << CHECK_BITS) | check


MAX_LOAD = 0.7


class SpillPlan(NamedTuple):
    """Where a build's tables spill (a folder that exists) and how many span entries a table keeps
    in memory before it does (the closed-run table keeps half as many runs)."""

    folder: str
    resident_spans: int


def _spill_tier(plan: SpillPlan | None, expected: int, resident: int):
    """(the native tier, the resident cap in slots) for a plan, or (None, None). The tier's filter
    is first sized for the keys of ``expected`` past the resident part (0: by need, doubled as
    keys spill)."""
    if plan is None:
        return None, None
    native = _native()
    if native is None or not hasattr(native, "SpillRuns"):
        return None, None
    # the filter is sized for the keys expected to spill: those past the resident part
    return native.SpillRuns(plan.folder, max(expected - resident, 0)), _slots_for(resident)


def _is_q(values) -> bool:
    """An array('Q') or a memoryview of unsigned 64-bit values: what the native table loops take."""
    return (values.typecode if isinstance(values, array) else getattr(values, "format", "")) == "Q"


def _native():
    """The native core's table loops, or None."""
    return native_core.core()


def _grown(size: int, needed: int) -> int:
    """``size`` doubled until a table of it holds ``needed`` entries (as growing one by one would)."""
    while int(size * MAX_LOAD) < needed:
        size *= 2
    return size


def slots_for(entries: int) -> int:
    """Slots of a table that holds ``entries`` at most ``MAX_LOAD`` full."""
    return max(_MIN_SLOTS, int(entries / MAX_LOAD) + 1)


_slots_for = slots_for


class FingerprintSet:
    """An insert-only set of span entries (``span_entry``), one per span id: ``add`` returns 0 for a
    new id, else the entry already there (equal to the new one for an exact duplicate).

    Open addressing with linear probing from ``id part % size`` in one ``array('Q')``; any table size
    (not only powers of two), so the table is sized close to what it holds: at most 70% full,
    doubled when it gets there.
    """

    __slots__ = ("cap", "count", "expected", "limit", "plan", "runs", "size", "slots")

    def __init__(self, expected: int = 0, plan: SpillPlan | None = None) -> None:
        self.plan, self.expected = plan, expected
        self.runs, self.cap = _spill_tier(plan, expected, plan.resident_spans if plan else 0)
        self._allocate(_slots_for(expected) if self.cap is None else min(_slots_for(expected), self.cap))
        self.count = 0

    def _allocate(self, size: int) -> None:
        self.slots = array("Q", bytes(8 * size))
        self.size = size
        self.limit = int(size * MAX_LOAD)

    def __len__(self) -> int:
        return self.count + (len(self.runs) if self.runs is not None else 0)

    def spilled(self, entry: int) -> int:
        """The spilled entry with ``entry``'s id, or 0 (not spilled, or no spilled tier)."""
        if self.runs is None:
            return 0
        check = self.runs.get(entry >> CHECK_BITS)
        return 0 if check < 0 else (entry >> CHECK_BITS) << CHECK_BITS | check

    def _slot(self, entry: int) -> int:
        """Where the entry of ``entry``'s id is, or the empty slot where it would go."""
        slots, size = self.slots, self.size
        i = (entry >> CHECK_BITS) % size
        while True:
            value = slots[i]
            if value == EMPTY or value ^ entry <= CHECK_MASK:
                return i
            i += 1
            if i == size:
                i = 0

    def __contains__(self, entry: int) -> bool:
        """Whether ``entry``'s id is here (whatever its content check)."""
        return self.slots[self._slot(entry)] != EMPTY or self.spilled(entry) != 0

    def add(self, entry: int) -> int:
        i = self._slot(entry)
        value = self.slots[i]
        if value == EMPTY and self.runs is not None:
            value = self.spilled(entry)
        if value == EMPTY:
            self.slots[i] = entry
            self.count += 1
            if self.count > self.limit:
                self._grow()
        return value

    def first_present(self, entries) -> int:
        """The index of the first of ``entries`` whose id is already here, or -1 (nothing changes)."""
        if not len(entries):
            return -1
        native = _native()
        if native is not None and _is_q(entries):
            return native.set_first_present(self.slots, entries, self.runs)
        for index, entry in enumerate(entries):
            if entry in self:
                return index
        return -1

    def add_all(self, entries) -> None:
        """Add ``entries``, none of whose ids is here yet (``first_present`` said so): ``add`` in a
        loop, or in the native core when it is installed (the same table either way)."""
        if not len(entries):
            return
        native = _native()
        if native is None or not _is_q(entries):
            for entry in entries:
                self.add(entry)
            return
        needed = self.count + len(entries)
        if needed > self.limit:
            size = _grown(self.size, needed)
            if self.cap is not None:
                size = min(size, max(self.cap, self.size))
            if size > self.size:
                old = self.slots
                self._allocate(size)
                self.count = native.set_rehash(old, self.slots)
        if self.runs is None:
            self.count += native.set_add_all(self.slots, entries)
        else:  # spilled when full, as ``add`` does
            self.count = native.set_add_all_spilling(self.slots, entries, self.runs, self.count, self.limit)

    def clear(self) -> None:
        self._allocate(self.size)
        self.count = 0
        if self.runs is not None:
            self.runs, self.cap = _spill_tier(self.plan, self.expected, self.plan.resident_spans)

    def spill(self) -> None:
        """Move the resident entries to the spilled tier (there must be one)."""
        self.runs.spill_set(self.slots)
        self.count = 0

    def values(self) -> array:
        """The resident entries, densely (in table order; a test's view: the spilled ones are not here)."""
        return array("Q", (v for v in self.slots if v > DELETED))

    def _grow(self) -> None:
        if self.cap is not None and self.size * 2 > self.cap:
            self.spill()
            return
        old = self.slots
        self._allocate(self.size * 2)
        self.count = 0
        slots = self.slots
        for value in old:
            if value > DELETED:
                slots[self._slot(value)] = value
                self.count += 1

    def to_bytes(self) -> bytes:
        return self.slots.tobytes()

    def bound(self, plan: SpillPlan | None) -> None:
        """Give a table read back (``from_bytes``) the plan's spilled tier (``__init__`` does it for a new one)."""
        self.plan = plan
        self.runs, self.cap = _spill_tier(plan, self.expected, plan.resident_spans if plan else 0)

    @classmethod
    def from_bytes(cls, raw: bytes, count: int) -> FingerprintSet:
        table = cls.__new__(cls)
        table.plan = table.runs = table.cap = None
        table.expected = count
        table.slots = array("Q")
        table.slots.frombytes(raw)
        table.size = len(table.slots)
        if table.size < _MIN_SLOTS or count > table.size:
            raise ValueError(f"fingerprint table of {table.size} slots cannot hold {count}")
        table.count = count
        table.limit = int(table.size * MAX_LOAD)
        return table


class FingerprintMap:
    """Fingerprint -> small int (1..255): the state of every closed run, for exact run joins."""

    __slots__ = ("cap", "count", "expected", "keys", "limit", "plan", "runs", "size", "states")

    def __init__(self, expected: int = 0, plan: SpillPlan | None = None) -> None:
        self.plan, self.expected = plan, expected
        # the spilled tier's filter sized by need (0), not for ``expected``: a build's closed runs are
        # a fraction of its spans (1 in 17 in the worst row), and ``expected`` is sized for
        # the slots of the resident table, not for what spills past them (2.5 MB of filter for 44,000
        # spilled closed runs at 5 M spans)
        self.runs, self.cap = _spill_tier(plan, 0, plan.resident_spans // 2 if plan else 0)
        self._allocate(_slots_for(expected) if self.cap is None else min(_slots_for(expected), self.cap))
        self.count = 0

    def _allocate(self, size: int) -> None:
        self.keys = array("Q", bytes(8 * size))
        self.states = bytearray(size)
        self.size = size
        self.limit = int(size * MAX_LOAD)

    def __len__(self) -> int:
        if self.runs is None:
            return self.count
        return self.count - self.runs.shadowed + len(self.runs)

    def _slot(self, fp: int) -> int:
        """Where ``fp`` is, or the empty slot where it would go (linear probing)."""
        keys, size = self.keys, self.size
        i = fp % size
        while True:
            value = keys[i]
            if value == fp or value == EMPTY:
                return i
            i += 1
            if i == size:
                i = 0

    def get(self, fp: int, default: int = -1) -> int:
        i = self._slot(fp)
        if self.keys[i] == fp:
            return self.states[i]
        if self.runs is not None:
            state = self.runs.get(fp)
            if state >= 0:
                return state
        return default

    def set(self, fp: int, state: int) -> None:
        i = self._slot(fp)
        if self.keys[i] == fp:
            self.states[i] = state
            return
        if self.runs is not None and self.runs.get(fp) >= 0:
            self.runs.shadowed += 1  # the resident copy is the newer: it wins when spilled
        self._fill(i, fp, state)

    def insert_new(self, fp: int, state: int) -> bool:
        """Insert ``fp`` with ``state`` unless present; False (and no change) if it was."""
        i = self._slot(fp)
        if self.keys[i] == fp or (self.runs is not None and self.runs.get(fp) >= 0):
            return False
        self._fill(i, fp, state)
        return True

    def _fill(self, i: int, fp: int, state: int) -> None:
        self.keys[i] = fp
        self.states[i] = state
        self.count += 1
        if self.count > self.limit:
            self._grow()

    def clear(self) -> None:
        self._allocate(self.size)
        self.count = 0
        if self.runs is not None:
            self.runs, self.cap = _spill_tier(self.plan, 0, self.plan.resident_spans // 2)

    def spill(self) -> None:
        """Move the resident entries to the spilled tier (there must be one)."""
        self.runs.spill_map(self.keys, self.states)
        self.count = 0

    def any_set(self, fps: array) -> bool:
        """Whether one of ``fps`` is here with a state other than 0."""
        native = _native()
        if native is not None and len(fps):
            return native.map_any_set(self.keys, self.states, fps, self.runs)
        return any(self.get(fp, 0) for fp in fps)

    def set_all(self, fps: array, states: bytes) -> None:
        """``set`` for each pair of ``fps`` and ``states``."""
        native = _native()
        if native is None or not len(fps):
            for fp, state in zip(fps, states):
                self.set(fp, state)
            return
        if self.runs is not None:  # ``set`` for each, spilled when full
            self.count = native.map_set_all_spilling(self.keys, self.states, fps, states, self.runs, self.count, self.limit)
            return
        needed = self.count + len(fps)
        if needed <= self.limit:
            self.count = native.map_set_all(self.keys, self.states, fps, states, self.count)
            return
        old_keys, old_states = self.keys, self.states
        self._allocate(_grown(self.size, needed))
        self.count = native.map_set_all(self.keys, self.states, fps, states, 0, old_keys, old_states)

    def items(self):
        """The resident (fingerprint, state) pairs (a test's view: the spilled ones are not here)."""
        states = self.states
        for i, value in enumerate(self.keys):
            if value > DELETED:
                yield value, states[i]

    def _grow(self) -> None:
        if self.cap is not None and self.size * 2 > self.cap:
            self.spill()
            return
        old_keys, old_states = self.keys, self.states
        self._allocate(self.size * 2)
        self.count = 0
        for i, value in enumerate(old_keys):
            if value > DELETED:
                self.set(value, old_states[i])

    def to_bytes(self) -> tuple[bytes, bytes]:
        return self.keys.tobytes(), bytes(self.states)

    def bound(self, plan: SpillPlan | None) -> None:
        """``FingerprintSet.bound``."""
        self.plan = plan
        self.runs, self.cap = _spill_tier(plan, 0, plan.resident_spans // 2 if plan else 0)

    @classmethod
    def from_bytes(cls, keys_raw: bytes, states_raw: bytes, count: int) -> FingerprintMap:
        table = cls.__new__(cls)
        table.plan = table.runs = table.cap = None
        table.expected = count
        table.keys = array("Q")
        table.keys.frombytes(keys_raw)
        table.size = len(table.keys)
        if table.size < _MIN_SLOTS or len(states_raw) != table.size or count > table.size:
            raise ValueError("run table is damaged")
        table.states = bytearray(states_raw)
        table.count = count
        table.limit = int(table.size * MAX_LOAD)
        return table
