"""The alpha events of a span: ``alphatrace.alpha.signal`` counted by symbol and direction and kept for
scoring, ``alphatrace.alpha.signal.invalid`` counted by reason, kill-switch read errors counted (an
old file's ``alpha.signal``, ... renamed first: ``reading.legacy_names``).

A mixin of ``span_aggregator.SpanAggregator`` (as ``consistency.ConsistencyCheck`` is): the aggregator calls
``_events`` for every span that has events; the state it touches lives on the aggregator (``_days``,
the agents' tallies and their ``signal_store.SignalStore``). Three signals a run make this the
largest share of the per-span work after decoding, so it is written for speed: the attributes are
read by position when they are in the order ``alpha.emit`` writes them (the any-order path in
``signal_store`` agrees), and keeping the last signal per key (``SignalStore._put``) is inlined.

Reads no environment variables.
"""

from __future__ import annotations

import datetime as dt

from meta_supervisor.reading.legacy_names import is_old_event, upgrade_event
from meta_supervisor.reading.otlp_schema import MAX_TIME_NS, Span, as_str
from meta_supervisor.tally.aggregates import AgentTally
from meta_supervisor.tally.bounds import DAY_ALPHA, DAY_ALPHA_INVALID, MAX_REASONS, bounded_key, label
from meta_supervisor.tally.signal_store import (
    DAY_BITS,
    DIRECTION_CODE,
    MAX_HORIZON,
    RANK,
    RANK_AT,
    ROW,
    ROW_SIZE,
    TRADABLE_SHIFT,
    signal_values,
    span_ids,
    symbol_direction,
)
from otel import semconv

_SIGNAL = semconv.EVENT_ALPHA_SIGNAL
_SYMBOL = semconv.ALPHA_SYMBOL
_DIRECTION = semconv.ALPHA_DIRECTION
_PROB_UP = semconv.ALPHA_PROB_UP
_CONFIDENCE = semconv.ALPHA_CONFIDENCE
_SCORE = semconv.ALPHA_SCORE_FINAL
_REGIME = semconv.ALPHA_REGIME
_HORIZON = semconv.ALPHA_HORIZON
_AS_OF = semconv.ALPHA_AS_OF
_TRADABLE = semconv.ALPHA_TRADABLE
_INF = float("inf")
_RANK_FROM = RANK.unpack_from
_ROW_INTO = ROW.pack_into
_HORIZONS: dict[str, int] = {}  # horizon text -> int (a handful of distinct values)
MAX_DAY_CACHE = 4096
NO_SYMBOL = "(no symbol)"
NO_DIRECTION = "(no direction)"


def iso_day_ordinal(text: str) -> int:
    """The ordinal of the ISO date in the first 10 characters of ``text``, 0 if it is not one."""
    try:
        return dt.date.fromisoformat(text[:10]).toordinal()
    except ValueError:
        return 0


class AlphaEvents:
    """``_events`` and the as-of date memo it shares with the run records; needs ``self._days``."""

    _days: dict

    def _day_ordinal(self, text) -> int:
        """The ordinal of an ISO date (its first 10 characters), 0 if it is not one; memoised."""
        day = self._days.get(text)
        if day is not None:
            return day
        day = iso_day_ordinal(text) if type(text) is str else 0
        if len(self._days) < MAX_DAY_CACHE:
            self._days[text] = day
        return day

    def _events(self, tally: AgentTally, span: Span, row: list[int], fp: int) -> None:
        alpha = tally.alpha
        store = tally.signals
        days = self._days
        ids = None
        position = -1
        for event in span.events:
            position += 1
            name = event.name
            if is_old_event(name):
                name = upgrade_event(event)
            if name == _SIGNAL:
                attributes = event.attributes
                # fast path: symbol and direction first, in that order (as alphatrace writes them);
                # a repeated key counts once, first occurrence (the general path agrees)
                if len(attributes) >= 2 and attributes[0].key == _SYMBOL and attributes[1].key == _DIRECTION:
                    symbol = attributes[0].value
                    symbol = symbol.stringValue if symbol is not None else None
                    direction = attributes[1].value
                    direction = direction.stringValue if direction is not None else None
                    fast = True
                else:
                    symbol, direction = symbol_direction(attributes)
                    fast = False
                key = (symbol, direction)
                if key in alpha:
                    alpha[key] += 1
                else:
                    key = bounded_key(alpha, (label(symbol, NO_SYMBOL), label(direction, NO_DIRECTION, 40)))
                    alpha[key] = alpha.get(key, 0) + 1
                row[DAY_ALPHA] += 1
                if store is None:
                    continue
                # --- the signal for scoring ---
                n = len(attributes)
                prob_up = None
                if fast and (n == 9 or n == 8):
                    # fast path: every field at the position alpha.emit writes it (the general path agrees)
                    try:
                        if (
                            attributes[2].key == _PROB_UP
                            and attributes[3].key == _CONFIDENCE
                            and attributes[4].key == _SCORE
                            and attributes[5].key == _REGIME
                            and attributes[6].key == _HORIZON
                            and attributes[7].key == _AS_OF
                            and (n == 8 or attributes[8].key == _TRADABLE)
                        ):
                            prob_up = attributes[2].value.doubleValue
                            score = attributes[4].value.doubleValue
                            horizon = attributes[6].value.intValue
                            as_of = attributes[7].value.stringValue
                            tradable = attributes[8].value.boolValue if n == 9 else None
                            if type(prob_up) is not float or type(score) is not float:
                                prob_up = None
                    except AttributeError:  # an attribute without a value
                        prob_up = None
                if prob_up is None:
                    # symbol, direction, prob_up, score, horizon and as-of: six keys at least
                    values = signal_values(attributes) if n >= 6 else None
                    if values is None:
                        store.unusable += 1
                        continue
                    prob_up, score, horizon, as_of, tradable = values
                code = DIRECTION_CODE.get(direction)
                if code is None or not symbol or not 0.0 <= prob_up <= 1.0 or not -_INF < score < _INF:
                    store.unusable += 1
                    continue
                if type(horizon) is not int:
                    text = horizon
                    horizon = _HORIZONS.get(text)
                    if horizon is None:
                        try:
                            horizon = int(text)
                        except (TypeError, ValueError):
                            store.unusable += 1
                            continue
                        if len(_HORIZONS) < 64 and type(text) is str:
                            _HORIZONS[text] = horizon
                if not 1 <= horizon <= MAX_HORIZON:
                    store.unusable += 1
                    continue
                day = days.get(as_of)
                if day is None:
                    day = self._day_ordinal(as_of)
                if not day:
                    store.unusable += 1
                    continue
                time_ns = event.timeUnixNano
                if type(time_ns) is not int:
                    try:
                        time_ns = int(time_ns)
                    except ValueError:
                        time_ns = 0
                if not 0 <= time_ns <= MAX_TIME_NS:
                    time_ns = 0
                if ids is None:
                    ids = span_ids(span.traceId, span.spanId)
                symbol_id = store.symbol_ids.get(symbol)
                if symbol_id is None:
                    symbol_id = store.symbol_id(label(symbol, NO_SYMBOL))
                # SignalStore._put() inlined: the last signal per key wins
                store.total += 1
                index = store._index
                if index is None:
                    index = store.index()
                key = symbol_id << DAY_BITS | day
                slot = index.get(key)
                flags = code | (0 if tradable is None else 2 if tradable else 1) << TRADABLE_SHIFT
                if slot is None:
                    store.append(key, time_ns, fp, position, prob_up, score, horizon, flags, ids)
                elif (time_ns, fp, position) > _RANK_FROM(store.rows, slot * ROW_SIZE + RANK_AT):
                    if type(ids) is bytes and not store.odd_ids:
                        _ROW_INTO(store.rows, slot * ROW_SIZE, key, time_ns, fp, position, prob_up, score, horizon, flags, ids)
                    else:
                        store.write(slot, key, time_ns, fp, position, prob_up, score, horizon, flags, ids)
            elif name == semconv.EVENT_ALPHA_SIGNAL_INVALID:
                reason = None
                for kv in event.attributes:
                    if kv.key == semconv.ALPHA_INVALID_REASON:
                        reason = as_str(kv.value)
                reasons = tally.invalid_reasons
                key = bounded_key(reasons, label(reason, "(no reason given)", 300), MAX_REASONS)
                reasons[key] = reasons.get(key, 0) + 1
                row[DAY_ALPHA_INVALID] += 1
            elif name == semconv.EVENT_KILL_SWITCH_ERROR:
                tally.kill_switch_errors += 1
