"""Alpha quality: every signal scored against what its symbol did next, per agent, horizon and symbol.

``score_signals(signals, market, costs, ...)`` is a pure function over ``SignalRecord``s, a
``MarketData`` and per-agent cost totals; it returns the report's ``alpha_quality`` section, a
JSON-serialisable dict with stable keys (``docs/alpha-quality.md`` defines every figure). In short,
per agent and horizon ``h`` (trading days, default 1, 5 and 10):

* forward returns from ``alpha.forward_returns`` (``pending`` ones are counted, never scored);
* **hit rate**: ``up`` right when the return is > 0, ``down`` right when it is < 0; a zero return is a
  miss; ``flat`` signals make no directional call and are left out (counted as ``flat``);
* **IC, cross-sectional** (as Alphalens): Spearman rank correlation of ``score_final`` with forward
  returns across symbols on each as-of date with at least ``min_cross_section`` symbols, then the
  mean, sample std and t-stat (mean / std * sqrt(dates)) of those daily ICs, and the Newey-West (HAC)
  t-stat with ``h - 1`` lags (``t_stat_hac``): daily ICs of ``h``-day returns overlap, which inflates
  the plain t-stat; the HAC one is what a decision should use;
* **IC, per-symbol time series**: Spearman over time per symbol with at least ``min_time_series``
  scored signals, then mean, std and t-stat across symbols (what a small universe can support), and
  the HAC t-stat with 0 lags (the observations are symbols, not overlapping days);
* **Brier score** of ``prob_up`` against "the return was > 0", a calibration table in ten bins;
* mean forward return of the ``up`` (long) and ``down`` (short) signals.

One signal per (agent, symbol, as-of date) counts: the last one recorded (``duplicates_dropped`` says
how many were superseded, e.g. by live runs every few minutes). Cost efficiency: cost per scored
signal at the primary horizon and IC per dollar (IC / cost per scored signal), ``None`` when the
agent cost nothing priced. Renderers: ``render_markdown`` / ``render_html`` (``alpha.quality_render``).

Reads no environment variables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from alpha.evaluations import outcome_label
from alpha.forward_returns import NO_DATA, PENDING, ForwardReturns
from alpha.quality_render import render_html, render_markdown
from alpha.records import SignalRecord
from otel.semconv import LABEL_HIT
from services.market_data import MarketData

__all__ = [
    "dedupe",
    "hac_min_obs",
    "ic_summary",
    "newey_west_t_stat",
    "primary_ic",
    "render_html",
    "render_markdown",
    "score_signals",
    "spearman",
]

SCHEMA_VERSION = 1
DEFAULT_HORIZONS = (1, 5, 10)
DEFAULT_PRIMARY_HORIZON = 5
DEFAULT_MIN_CROSS_SECTION = 5
DEFAULT_MIN_TIME_SERIES = 20
CALIBRATION_BINS = 10
IC_KINDS = ("cross_sectional", "time_series")
IC_LABELS = {
    "cross_sectional": "cross-sectional IC (Spearman across symbols per as-of date, then mean over dates)",
    "time_series": "per-symbol time-series IC (Spearman over dates per symbol, then mean over symbols)",
}


# --- statistics ------------------------------------------------------------------------------


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n with ties given their average rank (as ``scipy.stats.rankdata``)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        average = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = average
        i = j + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman rank correlation; ``None`` with fewer than 2 pairs or when either side is constant."""
    n = len(xs)
    if n != len(ys):
        raise ValueError("spearman needs two sequences of the same length")
    if n < 2:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def _varies(values: Sequence[float]) -> bool:
    """Finite values, not all equal: what any t-stat needs (equal values give no t-stat, not 1e16 from rounding)."""
    return bool(values) and all(math.isfinite(v) for v in values) and min(values) != max(values)


def hac_min_obs(lags: int) -> int:
    """Observations a Newey-West t-stat with ``lags`` lags needs: twice its window (``lags + 1``)."""
    return 2 * (lags + 1)


def newey_west_t_stat(values: Sequence[float], lags: int) -> float | None:
    """The t-stat of the mean of ``values`` (in time order) with a Newey-West (HAC) standard error:
    Bartlett kernel, weights ``w_j = 1 - j / (lags + 1)``, and the small-sample factor ``n / (n - 1)``:

        S = sum_t e_t^2 + 2 * sum_(j=1..lags) w_j * sum_t e_t * e_(t-j),  e_t = x_t - mean
        t = mean / sqrt(S / (n * (n - 1)))

    That is ``statsmodels`` ``OLS(values, ones).fit(cov_type="HAC", cov_kwds={"maxlags": lags,
    "use_correction": True})``'s t-value (statsmodels' default, ``use_correction=False``, divides by
    ``n^2``: a t-stat larger by ``sqrt(n / (n - 1))``). With the factor, 0 lags gives back the plain
    t-stat (mean / std * sqrt(n)). With ``h``-day forward returns scored every day, neighbouring values
    share ``h - 1`` days of return, so ``lags = h - 1`` covers the overlap. ``None`` with fewer than
    ``hac_min_obs(lags)`` values, a non-finite one, or no variation."""
    if lags < 0:
        raise ValueError(f"lags must be >= 0, got {lags}")
    n = len(values)
    if n < hac_min_obs(lags) or not _varies(values):
        return None
    mean = sum(values) / n
    e = [v - mean for v in values]
    s = sum(x * x for x in e)
    for j in range(1, lags + 1):
        s += 2.0 * (1.0 - j / (lags + 1)) * sum(e[t] * e[t - j] for t in range(j, n))
    return mean * math.sqrt(n * (n - 1) / s) if s > 0 else None


def ic_summary(values: Sequence[float], hac_lags: int = 0) -> dict[str, Any]:
    """Mean, sample std (ddof 1), t-stat (mean / std * sqrt(n), as ``scipy.stats.ttest_1samp``), the
    Newey-West t-stat with ``hac_lags`` lags (``newey_west_t_stat``: the one valid for overlapping
    forward returns) and n. Constant values have no t-stat (``None``), nor do non-finite ones."""
    n = len(values)
    mean = sum(values) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n >= 2 and mean is not None else None
    t_stat = mean / std * math.sqrt(n) if std and _varies(values) else None
    t_hac = newey_west_t_stat(values, hac_lags)
    return {"mean": mean, "std": std, "t_stat": t_stat, "t_stat_hac": t_hac, "hac_lags": hac_lags, "n": n}


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


# --- scoring ---------------------------------------------------------------------------------


def dedupe(signals: Iterable[SignalRecord]) -> tuple[list[SignalRecord], int]:
    """One signal per (agent, symbol, as_of): the last recorded (by event time, then input order)."""
    latest: dict[tuple[str, str, date], tuple[int, int, SignalRecord]] = {}
    total = 0
    for index, signal in enumerate(signals):
        total += 1
        key = (signal.agent, signal.symbol, signal.as_of)
        rank = (signal.time_unix_nano, index)
        held = latest.get(key)
        if held is None or rank >= held[:2]:
            latest[key] = (*rank, signal)
    kept = sorted((item[2] for item in latest.values()), key=lambda s: (s.agent, s.as_of, s.symbol))
    return kept, total - len(kept)


def _directional(rows: Sequence[tuple[SignalRecord, float]]) -> dict[str, Any]:
    directional = [(s, r) for s, r in rows if s.direction != "flat"]
    hits = sum(1 for s, r in directional if outcome_label(s.direction, r) == LABEL_HIT)  # the one hit rule
    longs = [r for s, r in rows if s.direction == "up"]
    shorts = [r for s, r in rows if s.direction == "down"]
    mean_long, mean_short = _mean(longs), _mean(shorts)
    return {
        "scored": len(rows),
        "directional": len(directional),
        "flat": len(rows) - len(directional),
        "hits": hits,
        "hit_rate": hits / len(directional) if directional else None,
        "brier": _mean([(s.prob_up - (1.0 if r > 0 else 0.0)) ** 2 for s, r in rows]),
        "up_rate": _mean([1.0 if r > 0 else 0.0 for _, r in rows]),
        "long_count": len(longs),
        "short_count": len(shorts),
        "mean_return_long": mean_long,
        "mean_return_short": mean_short,
        "long_short_spread": mean_long - mean_short if mean_long is not None and mean_short is not None else None,
    }


def _calibration(rows: Sequence[tuple[SignalRecord, float]], bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    grouped: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for s, r in rows:
        grouped[min(bins - 1, max(0, int(s.prob_up * bins)))].append((s.prob_up, 1.0 if r > 0 else 0.0))
    return [
        {
            "lo": round(i / bins, 6),
            "hi": round((i + 1) / bins, 6),
            "count": len(cell),
            "mean_prob_up": _mean([p for p, _ in cell]),
            "observed_up_rate": _mean([o for _, o in cell]),
        }
        for i, cell in enumerate(grouped)
    ]


def _cross_sectional(rows: Sequence[tuple[SignalRecord, float]], min_symbols: int, horizon: int) -> dict[str, Any]:
    by_date: dict[date, list[tuple[float, float]]] = defaultdict(list)
    for s, r in rows:
        by_date[s.as_of].append((s.score_final, r))
    daily: dict[str, float] = {}
    undefined = too_few = 0
    for day in sorted(by_date):
        pairs = by_date[day]
        if len(pairs) < min_symbols:
            too_few += 1
            continue
        ic = spearman([p[0] for p in pairs], [p[1] for p in pairs])
        if ic is None:
            undefined += 1
        else:
            daily[day.isoformat()] = ic
    hac = ic_summary(list(daily.values()), hac_lags=horizon - 1)  # consecutive dates' returns share h - 1 days
    return {**hac, "dates_too_few_symbols": too_few, "dates_undefined": undefined, "daily": daily}


def _time_series(rows: Sequence[tuple[SignalRecord, float]], min_obs: int) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    by_symbol: dict[str, list[tuple[date, float, float]]] = defaultdict(list)
    for s, r in rows:
        by_symbol[s.symbol].append((s.as_of, s.score_final, r))
    per_symbol: dict[str, dict[str, Any]] = {}
    for symbol in sorted(by_symbol):
        series = sorted(by_symbol[symbol])
        ic = spearman([x[1] for x in series], [x[2] for x in series]) if len(series) >= min_obs else None
        per_symbol[symbol] = {"ic": ic, "n": len(series)}
    values = [item["ic"] for item in per_symbol.values() if item["ic"] is not None]
    # observations are symbols, each over the whole window, not overlapping days: no lag to cover
    too_few = sum(1 for i in per_symbol.values() if i["n"] < min_obs)
    return {**ic_summary(values, hac_lags=0), "symbols_too_few_signals": too_few}, per_symbol


def _horizon_section(
    signals: Sequence[SignalRecord], returns: ForwardReturns, h: int, min_cross_section: int, min_time_series: int
) -> dict[str, Any]:
    rows: list[tuple[SignalRecord, float]] = []
    pending = no_data = 0
    for s in signals:
        fr = returns.get(s.symbol, s.as_of, h)
        if fr.status == PENDING:
            pending += 1
        elif fr.status == NO_DATA:
            no_data += 1
        else:
            rows.append((s, fr.value))
    ts_summary, ts_by_symbol = _time_series(rows, min_time_series)
    by_symbol_rows: dict[str, list[tuple[SignalRecord, float]]] = defaultdict(list)
    for s, r in rows:
        by_symbol_rows[s.symbol].append((s, r))
    symbols = sorted({s.symbol for s in signals})
    by_symbol = {}
    for symbol in symbols:
        cell = _directional(by_symbol_rows.get(symbol, []))
        cell["ic_time_series"] = ts_by_symbol.get(symbol, {}).get("ic")
        by_symbol[symbol] = cell
    return {
        "signals": len(signals),
        "pending": pending,
        "no_data": no_data,
        **_directional(rows),
        "ic_cross_sectional": _cross_sectional(rows, min_cross_section, h),
        "ic_time_series": ts_summary,
        "calibration": _calibration(rows),
        "by_symbol": by_symbol,
    }


def primary_ic(agent_section: Mapping[str, Any], horizon: int, kind: str = "auto", min_dates: int = 10) -> dict[str, Any]:
    """The IC a judgement uses: ``kind`` ``cross_sectional`` / ``time_series``, or ``auto``
    (cross-sectional when it has at least ``min_dates`` dates, else time-series)."""
    cell = agent_section["horizons"].get(str(horizon))
    if cell is None:
        return {"kind": None, "mean": None, "t_stat": None, "t_stat_hac": None, "hac_lags": None, "n": 0}
    if kind == "auto":
        kind = "cross_sectional" if cell["ic_cross_sectional"]["n"] >= min_dates else "time_series"
    summary = cell[f"ic_{kind}"]
    return {"kind": kind, **{key: summary[key] for key in ("mean", "t_stat", "t_stat_hac", "hac_lags", "n")}}


def score_signals(
    signals: Iterable[SignalRecord],
    market: MarketData,
    costs: Mapping[str, float] | None = None,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
    today: date | None = None,
    primary_horizon: int = DEFAULT_PRIMARY_HORIZON,
    min_cross_section: int = DEFAULT_MIN_CROSS_SECTION,
    min_time_series: int = DEFAULT_MIN_TIME_SERIES,
    ic_kind: str = "auto",
    superseded: int = 0,
) -> dict[str, Any]:
    """The ``alpha_quality`` section (see the module doc and ``docs/alpha-quality.md``).

    ``superseded``: duplicates a reader already dropped before the call (the report keeps only the
    last signal per agent, symbol and as-of date while reading); counted in ``signals`` and
    ``duplicates_dropped`` as if they had been passed in."""
    horizons = sorted({int(h) for h in horizons})
    if not horizons or horizons[0] < 1:
        raise ValueError(f"horizons must be positive whole numbers of trading days, got {horizons}")
    if primary_horizon not in horizons:
        raise ValueError(f"primary horizon {primary_horizon} is not one of the horizons {horizons}")
    costs = dict(costs or {})
    kept, dropped = dedupe(signals)
    dropped += superseded
    returns = ForwardReturns(market, today)
    by_agent: dict[str, list[SignalRecord]] = defaultdict(list)
    for s in kept:
        by_agent[s.agent].append(s)
    agents: dict[str, Any] = {}
    no_signals: dict[str, Any] | None = None  # the horizons of an agent without signals: made once, shared
    for agent in sorted(set(by_agent) | set(costs)):
        mine = by_agent.get(agent, [])
        if mine or no_signals is None:
            cells = {str(h): _horizon_section(mine, returns, h, min_cross_section, min_time_series) for h in horizons}
            if not mine:
                no_signals = cells
        else:
            # Every agent that only cost money (no signal kept, e.g. none scorable) has the same empty
            # cells: one object for all of them, not ~15 kB of dicts each (1,000 agents: ~15 MB).
            # The section is read-only once made (pages and the cache copy what they change).
            cells = no_signals
        section: dict[str, Any] = {
            "signals": len(mine),
            "tradable_signals": sum(1 for s in mine if s.tradable),
            "symbols": sorted({s.symbol for s in mine}),
            "first_as_of": min((s.as_of for s in mine), default=None),
            "last_as_of": max((s.as_of for s in mine), default=None),
            "horizons": cells,
        }
        for key in ("first_as_of", "last_as_of"):
            section[key] = section[key].isoformat() if section[key] else None
        cost = float(costs.get(agent, 0.0))
        scored = section["horizons"][str(primary_horizon)]["scored"]
        ic = primary_ic(section, primary_horizon, ic_kind)
        per_signal = cost / scored if scored else None
        section["cost"] = {
            "cost_usd": cost,
            "scored_signals": scored,
            "cost_per_scored_signal_usd": per_signal,
            "ic": ic["mean"],
            "ic_kind": ic["kind"],
            "ic_per_dollar": ic["mean"] / per_signal if per_signal and ic["mean"] is not None else None,
        }
        agents[agent] = section
    return {
        "schema_version": SCHEMA_VERSION,
        "horizons": horizons,
        "primary_horizon": primary_horizon,
        "today": today.isoformat() if today else None,
        "min_cross_section": min_cross_section,
        "min_time_series": min_time_series,
        "ic_kind": ic_kind,
        "ic_labels": dict(IC_LABELS),
        "signals": len(kept) + dropped,
        "duplicates_dropped": dropped,
        "agents": agents,
    }
