"""emit_alpha_signal's fast path (alpha/emit.py ``_fast_attributes``: a plainly valid signal checked
with as few operations as it needs, the as-of date parsed once) gives exactly what the full check
gives, and leaves everything else to it."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha import emit
from otel import semconv

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.integers(min_value=-2, max_value=3),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
texts = st.one_of(st.text(max_size=4), st.just(" "), st.just("x" * 129), st.just("x" * 128), st.integers(), st.none())
signals = st.fixed_dictionaries(
    {},
    optional={
        "symbol": texts,
        "direction": st.one_of(st.sampled_from(["up", "down", "flat", "sideways"]), st.just(["up"]), st.none()),
        "prob_up": numbers,
        "confidence": numbers,
        "ensemble_score_final": numbers,
        "regime": texts,
        "horizon": st.one_of(st.integers(min_value=-1, max_value=30), st.booleans(), st.floats(0, 5), st.none()),
        "as_of": st.one_of(st.sampled_from(["2018-03-01", "2018-03-01T16:00:00", "yesterday", "2018-02-30"]), st.none()),
    },
)


def _outcome(check, signal, default_as_of):
    try:
        return check(signal, default_as_of)
    except emit.InvalidSignal as exc:
        return ("invalid", str(exc))


@settings(max_examples=600, deadline=None)
@given(signals, st.sampled_from([None, "2018-03-01", "not a date"]))
def test_the_fast_path_gives_what_the_full_check_gives(signal, default_as_of):
    checked = _outcome(emit.checked_attributes, signal, default_as_of)
    fast = emit._fast_attributes(signal, default_as_of)
    if fast is not None:
        assert fast == checked
        assert all(type(fast[k]) is type(checked[k]) for k in fast)
    assert _outcome(emit.signal_attributes, signal, default_as_of) == checked


def test_a_valid_signal_takes_the_fast_path_once_its_date_is_known():
    signal = {
        "symbol": "SPX",
        "direction": "up",
        "prob_up": 1,
        "confidence": 0.3,
        "ensemble_score_final": -2,
        "regime": "trend_up",
        "as_of": "2031-07-04",
    }
    emit._as_of_dates.clear()
    assert emit._fast_attributes(signal, None) is None  # the date is parsed the first time
    first = emit.signal_attributes(signal)
    again = emit._fast_attributes(signal, None)
    assert again == first and again[semconv.ALPHA_PROB_UP] == 1.0 and isinstance(again[semconv.ALPHA_SCORE_FINAL], float)
    assert math.isclose(again[semconv.ALPHA_CONFIDENCE], 0.3) and again[semconv.ALPHA_HORIZON] == 1
