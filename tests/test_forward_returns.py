"""Forward returns on hand-made prices (tests/fixtures/alpha/README.md): weekends, missing days, each
symbol's own calendar, the last day of data, a configurable today."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from alpha.forward_returns import NO_DATA, PENDING, SCORED, ForwardReturns, forward_return
from services.market_data import CsvMarketData

PRICES = Path(__file__).parent / "fixtures" / "alpha" / "prices"


@pytest.fixture(scope="module")
def market() -> CsvMarketData:
    return CsvMarketData(PRICES)


def d(day: int, month: int = 1) -> date:
    return date(2024, month, day)


@pytest.mark.parametrize(
    ("symbol", "as_of", "horizon", "expected", "entry", "exit"),
    [
        ("AAA", d(2), 1, 110 / 100 - 1, d(2), d(3)),  # plain next day: +10 %
        ("AAA", d(2), 5, 100 / 100 - 1, d(2), d(9)),  # 5 trading days across the weekend: exactly 0
        ("AAA", d(5), 1, 90 / 120 - 1, d(5), d(8)),  # Friday -> Monday
        ("AAA", d(6), 1, 90 / 120 - 1, d(5), d(8)),  # Saturday as-of uses Friday's close
        ("AAA", d(7), 2, 100 / 120 - 1, d(5), d(9)),  # Sunday, two days: Monday, Tuesday
        ("AAA", d(9), 1, 105 / 100 - 1, d(9), d(11)),  # the missing Wednesday is not a trading day
        ("AAA", d(10), 1, 105 / 100 - 1, d(9), d(11)),  # as-of on the missing day uses the day before
        ("AAA", d(9), 2, 126 / 100 - 1, d(9), d(12)),  # ends on the last day of data
        ("AAA", d(11), 1, 126 / 105 - 1, d(11), d(12)),
        ("BBB", d(4), 1, 60 / 40 - 1, d(3), d(5)),  # BBB's own calendar: no 4 January
        ("BBB", d(8), 1, 54 / 45 - 1, d(8), d(10)),  # BBB trades on the 10th, AAA does not
        ("BBB", d(9), 2, 27 / 45 - 1, d(8), d(11)),
        ("GAP", d(2), 1, 12 / 10 - 1, d(2), d(1, 3)),  # a two-month hole: the search window widens
        ("GAP", d(2), 2, 15 / 10 - 1, d(2), d(4, 3)),
    ],
)
def test_scored_forward_returns_computed_by_hand(market, symbol, as_of, horizon, expected, entry, exit):
    result = forward_return(market, symbol, as_of, horizon)
    assert result.status == SCORED
    assert result.value == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert (result.entry_day, result.exit_day) == (entry, exit)


@pytest.mark.parametrize(
    ("symbol", "as_of", "horizon"),
    [
        ("AAA", d(12), 1),  # the last day of data: its next day has not happened
        ("AAA", d(9), 3),  # runs past the last day
        ("AAA", d(20), 1),  # as-of after the data: entry is the last bar, nothing after it
        ("BBB", d(12), 1),  # BBB's data end on the 11th
        ("GAP", d(2), 3),
    ],
)
def test_beyond_the_data_is_pending(market, symbol, as_of, horizon):
    result = forward_return(market, symbol, as_of, horizon)
    assert result.status == PENDING
    assert result.value is None


def test_today_holds_back_returns_that_end_after_it(market):
    held = forward_return(market, "AAA", d(8), 1, today=d(8))
    assert (held.status, held.value, held.entry_day, held.exit_day) == (PENDING, None, d(8), d(9))
    scored = forward_return(market, "AAA", d(8), 1, today=d(9))
    assert scored.status == SCORED
    assert scored.value == pytest.approx(100 / 90 - 1)


def test_no_data_before_the_first_bar_or_for_an_unknown_symbol(market):
    assert forward_return(market, "AAA", d(1), 1).status == NO_DATA
    assert forward_return(market, "ZZZ", d(5), 1).status == NO_DATA


def test_horizon_must_be_positive(market):
    with pytest.raises(ValueError, match="at least 1"):
        forward_return(market, "AAA", d(2), 0)


def test_memo_returns_the_same_answer_once_computed(market):
    returns = ForwardReturns(market, today=d(9))
    first = returns.get("AAA", d(5), 1)
    assert returns.get("AAA", d(5), 1) is first
    assert first.value == pytest.approx(-0.25)
    assert returns.get("AAA", d(9), 1).status == PENDING  # exit 11 January is after today
