"""The alpha signals a build has read: the last one per (agent, symbol, as-of day), kept compactly.

Scoring (``alpha.quality.score_signals``) counts one signal per (agent, symbol, as-of date): the last
one recorded. A ``SignalStore`` (one per agent) keeps exactly that while spans are read, so memory
grows with the distinct (symbol, as-of day) pairs an agent signalled (a few thousand a year for the
shipped fleet), not with the number of signals (three per run, every few minutes when live).

"Last" is the largest ``(event time, span fingerprint, event position in the span)``: the event time
first, then the span's 64-bit id fingerprint (``fingerprints.span_fingerprint``, the same value that
deduplicates spans) and the event's position, so the winner does not depend on the order in which
files, lines or parallel parts are read, and two stores over disjoint spans merge into exactly the
store over their union. A span read twice (exporter retry) is dropped before its events get here.

Each kept signal is one fixed-size row of a ``bytearray`` (``ROW``, 77 bytes; with the dict entry
that finds it, about 200 bytes per distinct key): the key ``symbol id << 22 | day ordinal``, event
time, span fingerprint, position, ``prob_up``, ``score_final``, horizon, direction and tradable
flags, and the trace and span ids (24 raw bytes; ids that are not 32 + 16 hex digits are kept as
strings on the side). A later signal overwrites its key's row with one ``struct.pack_into``. Symbols
are interned per agent (at most ``MAX_DISTINCT``; more fold into ``(other)``, as in the rest of the
report).

Reads no environment variables.
"""

from __future__ import annotations

import datetime as dt
import struct
from typing import Any

from alpha.records import SignalRecord
from meta_supervisor.reading.otlp_schema import as_float, as_str
from meta_supervisor.tally.bounds import MAX_DISTINCT, OTHER_LABEL
from otel import semconv

_SYMBOL = semconv.ALPHA_SYMBOL
_DIRECTION = semconv.ALPHA_DIRECTION
_PROB_UP = semconv.ALPHA_PROB_UP
_SCORE = semconv.ALPHA_SCORE_FINAL
_HORIZON = semconv.ALPHA_HORIZON
_AS_OF = semconv.ALPHA_AS_OF
_TRADABLE = semconv.ALPHA_TRADABLE

DIRECTIONS = semconv.DIRECTIONS
DIRECTION_CODE = {direction: code for code, direction in enumerate(DIRECTIONS)}
TRADABLE_SHIFT = 2  # flags: bits 0-1 direction code, bits 2-3 tradable (0 unknown, 1 false, 2 true)
TRADABLE_VALUE = (None, False, True)
DAY_BITS = 22  # date(9999, 12, 31).toordinal() < 2**22
DAY_MASK = (1 << DAY_BITS) - 1
NO_IDS = bytes(24)
MAX_HORIZON = (1 << 63) - 1
# key, event time, span fingerprint, position in the span, prob_up, score_final, horizon, flags, ids
ROW = struct.Struct("<QQQIddqB24s")
ROW_SIZE = ROW.size
RANK = struct.Struct("<QQI")  # (event time, span fingerprint, position): at offset RANK_AT of a row
RANK_AT = 8
KEY = struct.Struct("<Q")


def span_ids(trace_id: str, span_id: str) -> bytes | tuple[str, str]:
    """The ids of a span as 24 raw bytes, or as the strings themselves when they are not hex ids."""
    if len(trace_id) == 32 and len(span_id) == 16:
        try:
            return bytes.fromhex(trace_id + span_id)
        except ValueError:
            pass
    return (trace_id, span_id)


class SignalStore:
    """One agent's kept signals; ``total`` counts every usable signal offered (kept or superseded),
    ``unusable`` the ``alphatrace.alpha.signal`` events that lack what scoring needs (a valid symbol, direction,
    prob_up in [0, 1], finite score, horizon >= 1, ISO as-of date)."""

    __slots__ = ("_index", "odd_ids", "rows", "symbol_ids", "symbols", "total", "unusable")

    def __init__(self) -> None:
        self.symbols: list[str] = []
        self.symbol_ids: dict[str, int] = {}
        self._index: dict[int, int] | None = {}
        self.rows = bytearray()
        self.odd_ids: dict[int, tuple[str, str]] = {}
        self.total = 0
        self.unusable = 0

    def __len__(self) -> int:
        return len(self.rows) // ROW_SIZE

    def index(self) -> dict[int, int]:
        """key -> slot (rebuilt from the rows after loading)."""
        if self._index is None:
            rows = self.rows
            self._index = {KEY.unpack_from(rows, at)[0]: at // ROW_SIZE for at in range(0, len(rows), ROW_SIZE)}
        return self._index

    def symbol_id(self, symbol: str) -> int:
        """The interned id of ``symbol`` (already a bounded label); ``(other)`` beyond MAX_DISTINCT."""
        found = self.symbol_ids.get(symbol)
        if found is not None:
            return found
        if len(self.symbols) >= MAX_DISTINCT:
            symbol = OTHER_LABEL
            found = self.symbol_ids.get(symbol)
            if found is not None:
                return found
        found = self.symbol_ids[symbol] = len(self.symbols)
        self.symbols.append(symbol)
        return found

    def _put(self, key, time_ns, fp, position, prob_up, score, horizon, flags, ids) -> None:
        """Keep a signal if it is the last one of its key so far (``alpha_events`` inlines this)."""
        slot = self.index().get(key)
        if slot is None:
            self.append(key, time_ns, fp, position, prob_up, score, horizon, flags, ids)
        elif (time_ns, fp, position) > RANK.unpack_from(self.rows, slot * ROW_SIZE + RANK_AT):
            self.write(slot, key, time_ns, fp, position, prob_up, score, horizon, flags, ids)

    def append(self, key, time_ns, fp, position, prob_up, score, horizon, flags, ids) -> None:
        """A row for ``key``, which has none yet."""
        slot = self.index()[key] = len(self.rows) // ROW_SIZE
        self.rows += NO_ROW
        self.write(slot, key, time_ns, fp, position, prob_up, score, horizon, flags, ids)

    def write(self, slot, key, time_ns, fp, position, prob_up, score, horizon, flags, ids) -> None:
        if type(ids) is bytes:
            ROW.pack_into(self.rows, slot * ROW_SIZE, key, time_ns, fp, position, prob_up, score, horizon, flags, ids)
            if self.odd_ids:
                self.odd_ids.pop(slot, None)
        else:
            ROW.pack_into(self.rows, slot * ROW_SIZE, key, time_ns, fp, position, prob_up, score, horizon, flags, NO_IDS)
            self.odd_ids[slot] = ids

    def merge(self, other: SignalStore) -> None:
        """Add another store's signals (over other spans): exactly the store over both."""
        self.total += other.total
        self.unusable += other.unusable
        remap = [self.symbol_id(name) for name in other.symbols]
        for slot, (key, time_ns, fp, position, prob_up, score, horizon, flags, ids) in enumerate(ROW.iter_unpack(other.rows)):
            key = (remap[key >> DAY_BITS] << DAY_BITS) | (key & DAY_MASK)
            self._put(key, time_ns, fp, position, prob_up, score, horizon, flags, other.odd_ids.get(slot, ids))

    def records(self, agent: str) -> list[SignalRecord]:
        """The kept signals as ``SignalRecord``s, in slot order (scoring sorts them)."""
        out = []
        symbols, odd = self.symbols, self.odd_ids
        for slot, (key, time_ns, _fp, _position, prob_up, score, horizon, flags, ids) in enumerate(ROW.iter_unpack(self.rows)):
            pair = odd.get(slot)
            if pair is None:
                pair = (ids[:16].hex(), ids[16:].hex())
            out.append(
                SignalRecord(
                    agent,
                    symbols[key >> DAY_BITS],
                    dt.date.fromordinal(key & DAY_MASK),
                    DIRECTIONS[flags & 3],
                    prob_up,
                    score,
                    horizon,
                    TRADABLE_VALUE[flags >> TRADABLE_SHIFT],
                    pair[0],
                    pair[1],
                    time_ns,
                )
            )
        return out

    # --- saved state and pickling (parallel parts) -------------------------------------------------

    def to_state(self) -> tuple[dict[str, Any], bytes]:
        """JSON-able counts and names, and the rows as one blob."""
        data = {
            "count": len(self),
            "symbols": self.symbols,
            "total": self.total,
            "unusable": self.unusable,
            "odd_ids": [[slot, trace, span] for slot, (trace, span) in sorted(self.odd_ids.items())],
        }
        return data, bytes(self.rows)

    @classmethod
    def from_state(cls, data: dict[str, Any], blob: bytes) -> SignalStore:
        store = cls.__new__(cls)
        store._load(data, blob)
        return store

    def _load(self, data: dict[str, Any], blob: bytes) -> None:
        """Every field from a ``to_state``; ValueError when the rows do not match their count."""
        if len(blob) != data["count"] * ROW_SIZE:
            raise ValueError(f"signal state holds {len(blob)} bytes, not {data['count']} rows")
        self.rows = bytearray(blob)
        self.symbols = list(data["symbols"])
        self.symbol_ids = {name: i for i, name in enumerate(self.symbols)}
        self.odd_ids = {slot: (trace, span) for slot, trace, span in data["odd_ids"]}
        self.total = data["total"]
        self.unusable = data["unusable"]
        self._index = None

    def __getstate__(self):
        return self.to_state()

    def __setstate__(self, state) -> None:
        self._load(*state)  # in place: no store made and copied field by field (1,000 agents a part)


NO_ROW = bytes(ROW_SIZE)


# --- reading an alphatrace.alpha.signal event whatever its attribute order (span_aggregator has the fast path) ---


def signal_values(attributes: list) -> tuple | None:
    """(prob_up, score, horizon, as_of, tradable) of an alphatrace.alpha.signal event whatever the attribute
    order (first occurrence of a key counts), or None when a number or the as-of date is missing."""
    found: dict = {}
    for kv in attributes:
        if kv.key not in found:
            found[kv.key] = kv.value
    prob_up = as_float(found.get(_PROB_UP))  # NaN or infinite: rejected by the caller's range checks
    score = as_float(found.get(_SCORE))
    horizon = found.get(_HORIZON)
    as_of = found.get(_AS_OF)
    if prob_up is None or score is None or horizon is None or as_of is None:
        return None
    horizon = horizon.intValue
    as_of = as_of.stringValue
    if horizon is None or as_of is None:
        return None
    tradable = found.get(_TRADABLE)
    return prob_up, score, horizon, as_of, tradable.boolValue if tradable is not None else None


def symbol_direction(attributes: list) -> tuple[str | None, str | None]:
    """Symbol and direction of an alpha event; of a repeated key the first occurrence counts."""
    symbol = direction = None
    seen_symbol = seen_direction = False
    for kv in attributes:
        key = kv.key
        if key == _SYMBOL and not seen_symbol:
            symbol, seen_symbol = as_str(kv.value), True
        elif key == _DIRECTION and not seen_direction:
            direction, seen_direction = as_str(kv.value), True
    return symbol, direction
