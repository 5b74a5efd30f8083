"""The market-data seam: daily bars per symbol, never beyond the as-of date the caller names.

``CsvMarketData`` reads one ``<SYMBOL>.csv`` per instrument (header ``date,open,high,low,close,volume``,
ISO dates) from a folder: the real history shipped in ``agents/data/`` (provenance in
``docs/data.md``) or the user's own files in the same shape. Files are read once, lazily. Only the
symbols the folder lists (``symbols()``, read once) are loaded: symbols may come from span data, which
anyone can write, so a symbol such as ``../../x`` is "no market data" (``ConfigError``), never a path.
``require`` is the start-up check of a universe: every symbol has a readable file (read now, so a bad
file or a typo in a symbol stops start-up instead of failing every run).

Environment: ``ALPHATRACE_MARKET_DATA`` (folder of CSV files; default ``agents/data``).
"""

from __future__ import annotations

import bisect
import csv
import math
import os
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Protocol

from services.config_error import ConfigError, did_you_mean

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_MARKET_DATA = "ALPHATRACE_MARKET_DATA"
DEFAULT_MARKET_DATA = PROJECT_ROOT / "agents" / "data"


@dataclass(frozen=True)
class Bar:
    day: date
    close: float


class MarketData(Protocol):
    def symbols(self) -> list[str]: ...

    def closes(self, symbol: str, as_of: date, lookback: int) -> list[Bar]:
        """Up to ``lookback`` bars ending on or before ``as_of``, oldest first."""
        ...

    def trading_days(self, symbol: str, start: date, end: date | None = None) -> list[date]: ...


class CsvMarketData:
    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.folder = Path(folder or os.environ.get(ENV_MARKET_DATA) or DEFAULT_MARKET_DATA)
        from_env = not folder and bool(os.environ.get(ENV_MARKET_DATA))
        self.setting = f"{ENV_MARKET_DATA}={self.folder}" if from_env else f"market data folder {self.folder}"
        if not self.folder.is_dir():
            raise ConfigError(f"market data folder {self.folder} does not exist (set {ENV_MARKET_DATA})")
        self._series: dict[str, tuple[list[date], list[float]]] = {}
        self._known: frozenset[str] | None = None
        self._lock = threading.Lock()

    def symbols(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.csv"))

    def require(self, symbols: tuple[str, ...] | list[str], where: str) -> None:
        """Start-up: each of ``symbols`` (the setting ``where`` lists them) has a readable file, read now;
        otherwise a one-line ``ConfigError`` naming the setting, the value and the fix."""
        known = self.symbols()
        if not known:
            raise ConfigError(
                f"{self.setting} has no <SYMBOL>.csv files; point {ENV_MARKET_DATA} at a folder of daily bars "
                f"(date,close columns; {DEFAULT_MARKET_DATA} ships real history) or unset it"
            )
        for symbol in symbols:
            if symbol not in known:
                raise ConfigError(
                    f"{where} lists {symbol!r}, which has no market data in {self.setting} (no {symbol}.csv); "
                    f"{did_you_mean(symbol, known)}remove it from the universe or add the file"
                )
            self._load(symbol)

    def _load(self, symbol: str) -> tuple[list[date], list[float]]:
        with self._lock:
            cached = self._series.get(symbol)
            if cached is not None:
                return cached
            if self._known is None:
                self._known = frozenset(self.symbols())
            if symbol not in self._known:
                raise ConfigError(f"no market data for {symbol!r}: not one of the {len(self._known)} symbols in {self.folder}")
            path = self.folder / f"{symbol}.csv"
            if not path.is_file():
                raise ConfigError(f"no market data for {symbol!r}: {path} is missing")
            days: list[date] = []
            closes: list[float] = []
            with open(path, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if reader.fieldnames is None or "date" not in reader.fieldnames or "close" not in reader.fieldnames:
                    raise ConfigError(f"{path}: expected a header with at least 'date' and 'close'")
                for line_no, row in enumerate(reader, start=2):
                    try:
                        day = date.fromisoformat(row["date"])
                        close = float(row["close"])
                    except (TypeError, ValueError):
                        raise ConfigError(f"{path}:{line_no}: bad date or close {row.get('date')!r}, {row.get('close')!r}") from None
                    if not math.isfinite(close) or close <= 0:
                        raise ConfigError(f"{path}:{line_no}: close must be a positive number, got {close}")
                    if days and day <= days[-1]:
                        raise ConfigError(f"{path}:{line_no}: dates must be strictly ascending ({day} after {days[-1]})")
                    days.append(day)
                    closes.append(close)
            self._series[symbol] = (days, closes)
            return days, closes

    def closes(self, symbol: str, as_of: date, lookback: int) -> list[Bar]:
        days, closes = self._load(symbol)
        end = bisect.bisect_right(days, as_of)
        start = max(0, end - lookback)
        return [Bar(days[i], closes[i]) for i in range(start, end)]

    def trading_days(self, symbol: str, start: date, end: date | None = None) -> list[date]:
        days, _ = self._load(symbol)
        lo = bisect.bisect_left(days, start)
        hi = len(days) if end is None else bisect.bisect_right(days, end)
        return days[lo:hi]
