"""Alpha signals as span events on the run's root span (the seed's ``emit_alpha_signal``).

A result is one signal (a dict) or a list of them, in the seed's schema: ``symbol``, ``direction``,
``prob_up``, ``confidence``, ``ensemble_score_final``, ``regime``, plus ``horizon`` (trading days) and
``as_of`` (date of the data it was computed on). A signal from a shadow agent carries
``alphatrace.alpha.tradable=false`` (a live agent's ``true``); a signal of a live run on stale data
(``services/data_freshness.py``, ``on_stale="last_bar"``) carries ``alphatrace.alpha.stale=true`` and
is not tradable. A combiner's signal may name the members it blended and those missing
(``members``, ``members_missing``: lists of agent names), recorded as ``alphatrace.alpha.members`` /
``alphatrace.alpha.members.missing``. A valid signal becomes an ``alphatrace.alpha.signal`` event; an
invalid one (missing field, ``prob_up`` outside [0, 1], unknown direction, NaN, wrong type) becomes an
``alphatrace.alpha.signal.invalid`` event with the reason. Emitting never raises into the agent.

Reads no environment variables.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from opentelemetry import trace

from otel import semconv
from otel.internal_errors import report_internal_error
from otel.run_context import get_current_run

logger = logging.getLogger(__name__)

_REQUIRED = ("symbol", "direction", "prob_up", "confidence", "ensemble_score_final", "regime")
_MAX_TEXT = 128
_MAX_MEMBERS = 32
_warned_outside_run = False


class InvalidSignal(ValueError):
    pass


def _number(signal: Mapping[str, Any], key: str, low: float | None = None, high: float | None = None) -> float:
    value = signal[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSignal(f"{key} must be a number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidSignal(f"{key} must be finite, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InvalidSignal(f"{key}={value} is outside [{low}, {high}]")
    return value


def _text(signal: Mapping[str, Any], key: str) -> str:
    value = signal[key]
    if not isinstance(value, str) or not value.strip():
        raise InvalidSignal(f"{key} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise InvalidSignal(f"{key} is longer than {_MAX_TEXT} characters")
    return value


def _as_of(value: Any) -> str:
    if type(value) is str:
        known = _as_of_dates.get(value)  # every signal of a run, and of a day, has the same as-of date
        if known is not None:
            return known
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            text = date.fromisoformat(value[:10]).isoformat()
        except ValueError:
            pass
        else:
            if type(value) is str:
                if len(_as_of_dates) >= _MAX_AS_OF_DATES:
                    _as_of_dates.clear()
                _as_of_dates[value] = text
            return text
    raise InvalidSignal(f"as_of must be an ISO date, got {value!r}")


_as_of_dates: dict[str, str] = {}  # as-of text -> its ISO date, bounded
_MAX_AS_OF_DATES = 4096


def _plain_text(value: Any) -> bool:
    """A str that ``_text`` accepts as it is."""
    return type(value) is str and 0 < len(value) <= _MAX_TEXT and not value.isspace()


def _unit(value: Any) -> bool:
    """A float or int in [0, 1] (NaN fails the comparison)."""
    kind = type(value)
    return (kind is float or kind is int) and 0 <= value <= 1


def _fast_attributes(signal: Any, default_as_of: str | None) -> dict[str, Any] | None:
    """The attributes of a plainly valid signal (a dict of exact types), with as few checks as
    ``signal_attributes`` needs for it; None for anything else, which ``signal_attributes`` then
    checks in full (and names what is wrong)."""
    if type(signal) is not dict:
        return None
    get = signal.get
    symbol, direction, regime = get("symbol"), get("direction"), get("regime")
    prob_up, confidence, score = get("prob_up"), get("confidence"), get("ensemble_score_final")
    horizon = get("horizon", 1)
    score_kind = type(score)
    if not (
        _plain_text(symbol)
        and _plain_text(regime)
        and type(direction) is str
        and direction in _DIRECTIONS
        and _unit(prob_up)
        and _unit(confidence)
        and (score_kind is int or (score_kind is float and math.isfinite(score)))
        and type(horizon) is int
        and horizon >= 1
    ):
        return None
    as_of = get("as_of", default_as_of)
    known = _as_of_dates.get(as_of) if type(as_of) is str else None
    if known is None:
        return None
    return {
        semconv.ALPHA_SYMBOL: symbol,
        semconv.ALPHA_DIRECTION: direction,
        semconv.ALPHA_PROB_UP: float(prob_up),
        semconv.ALPHA_CONFIDENCE: float(confidence),
        semconv.ALPHA_SCORE_FINAL: float(score),
        semconv.ALPHA_REGIME: regime,
        semconv.ALPHA_HORIZON: horizon,
        semconv.ALPHA_AS_OF: known,
    }


_DIRECTIONS = frozenset(semconv.DIRECTIONS)


def signal_attributes(signal: Any, default_as_of: str | None = None) -> dict[str, Any]:
    """The ``alphatrace.alpha.*`` attributes of a valid signal; raises ``InvalidSignal`` with the reason."""
    fast = _fast_attributes(signal, default_as_of)
    return fast if fast is not None else checked_attributes(signal, default_as_of)


def checked_attributes(signal: Any, default_as_of: str | None = None) -> dict[str, Any]:
    """``signal_attributes`` checking everything in order, so the reason names the first problem."""
    if not isinstance(signal, Mapping):
        raise InvalidSignal(f"a signal must be a mapping, got {type(signal).__name__}")
    missing = [key for key in _REQUIRED if signal.get(key) is None]
    if missing:
        raise InvalidSignal(f"missing field(s): {', '.join(missing)}")
    direction = signal["direction"]
    if direction not in semconv.DIRECTIONS:
        raise InvalidSignal(f"direction must be one of {'|'.join(semconv.DIRECTIONS)}, got {direction!r}"[:200])
    horizon = signal.get("horizon", 1)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise InvalidSignal(f"horizon must be a positive whole number of trading days, got {horizon!r}"[:200])
    as_of = signal.get("as_of", default_as_of)
    if as_of is None:
        raise InvalidSignal("missing field(s): as_of")
    return {
        semconv.ALPHA_SYMBOL: _text(signal, "symbol"),
        semconv.ALPHA_DIRECTION: direction,
        semconv.ALPHA_PROB_UP: _number(signal, "prob_up", 0.0, 1.0),
        semconv.ALPHA_CONFIDENCE: _number(signal, "confidence", 0.0, 1.0),
        semconv.ALPHA_SCORE_FINAL: _number(signal, "ensemble_score_final"),
        semconv.ALPHA_REGIME: _text(signal, "regime"),
        semconv.ALPHA_HORIZON: horizon,
        semconv.ALPHA_AS_OF: _as_of(as_of),
    }


def _members(signal: Mapping[str, Any]) -> dict[str, list[str]]:
    """A combiner's optional ``members`` / ``members_missing`` lists, as attributes (bounded)."""
    out = {}
    for field_name, key in (("members", semconv.ALPHA_MEMBERS), ("members_missing", semconv.ALPHA_MEMBERS_MISSING)):
        value = signal.get(field_name)
        if isinstance(value, (list, tuple)) and value:
            out[key] = [str(name)[:_MAX_TEXT] for name in value[:_MAX_MEMBERS]]
    return out


def _invalid_attributes(signal: Any, reason: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {semconv.ALPHA_INVALID_REASON: reason}
    if isinstance(signal, Mapping) and isinstance(signal.get("symbol"), str):
        attributes[semconv.ALPHA_SYMBOL] = signal["symbol"][:_MAX_TEXT]
    return attributes


def emit_alpha_signal(result: Any, agent_name: str, span: trace.Span | None = None) -> int:
    """Record every signal in ``result`` on the run's root span; returns how many were valid.

    ``agent_name`` is kept from the seed's signature; the span already carries it.
    """
    run = get_current_run()
    target = span or (run.span if run is not None else None) or trace.get_current_span()
    if not target.is_recording():
        global _warned_outside_run
        if not _warned_outside_run:  # once per process: a hot loop must not flood the log
            logger.warning("alpha signals from %s emitted outside a recording run span are not recorded", agent_name)
            _warned_outside_run = True
        return 0
    signals = result if isinstance(result, list) else [result]
    # On the run's root span, through the run: kept as checked plain values and attached on the
    # export thread when the root is finished there (otel/run_spans.py), else added now.
    add_event = run.add_root_event if run is not None and target is run.span else target.add_event
    valid = 0
    default_as_of = run.as_of if run is not None else None
    extra: dict[str, bool] = {}  # the same for every signal of the run
    if run is not None and run.status is not None:
        extra[semconv.ALPHA_TRADABLE] = run.status == "live" and run.stale_data is None
    if run is not None and run.stale_data is not None:
        extra[semconv.ALPHA_STALE] = True
    for signal in signals:
        try:
            try:
                attributes = signal_attributes(signal, default_as_of)
            except InvalidSignal as exc:
                add_event(semconv.EVENT_ALPHA_SIGNAL_INVALID, _invalid_attributes(signal, str(exc)))
                continue
            if extra:
                attributes.update(extra)
            if "members" in signal or "members_missing" in signal:
                attributes.update(_members(signal))
            add_event(semconv.EVENT_ALPHA_SIGNAL, attributes)
            valid += 1
        except Exception:
            report_internal_error(logger, f"could not record an alpha signal of {agent_name}")
    if run is not None:
        run.add_alpha_signals(valid)
    return valid
