"""Small, deterministic market data and fleet configs for scheduler tests (the demo uses real data)."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

START = date(2018, 1, 1)


def business_days(start: date, count: int) -> list[date]:
    days, day = [], start
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def write_market(folder: Path, days: int = 90) -> list[date]:
    """SPX drifts up, WTI drifts down, both with a deterministic wiggle."""
    folder.mkdir(parents=True, exist_ok=True)
    calendar = business_days(START, days)
    for symbol, drift in (("SPX", 0.002), ("WTI", -0.003)):
        rows = ["date,open,high,low,close,volume"]
        price = 100.0
        for i, day in enumerate(calendar):
            price *= 1 + drift + 0.01 * math.sin(i * 1.3)
            rows.append(f"{day.isoformat()},,,,{price:.4f},")
        (folder / f"{symbol}.csv").write_text("\n".join(rows) + "\n")
    return calendar


FLEET_TOML = """
[fleet]
universe = ["SPX", "WTI"]
max_workers = 8
misfire_grace_seconds = 30

[replay]
start = "{start}"
cycles = 3

[llm]
provider = "simulated"
model = "gpt-4o-mini"

[agents.momentum]
interval_seconds = 0.05

[agents.mean_reversion]
interval_seconds = 0.05

[agents.llm_analyst]
interval_seconds = 0.05

[agents.ensemble]
interval_seconds = 0.05
"""


def write_fleet(path: Path, start: date) -> Path:
    path.write_text(FLEET_TOML.format(start=start.isoformat()))
    return path
