#!/usr/bin/env python3
"""Re-create the market-data CSVs in ``agents/data/`` from the Python package wheels they were taken from.

Standard library only, no network: it reads the wheels (zip files) you downloaded yourself.

    pip download --no-deps --only-binary :all: arch==8.0.0 skfolio==1.12.2 -d /tmp/pkgs
    python agents/data/extract_sources.py /tmp/pkgs            # rewrite the CSVs, SOURCES.json, LICENSES/
    python agents/data/extract_sources.py /tmp/pkgs --check    # compare with what is committed, write nothing

Each data file inside a wheel is pinned by its SHA-256, so a different package version (or a
tampered wheel) is refused instead of silently producing different data. Values are copied as the
source text, never re-formatted or recomputed; the only changes are the date format (to ISO
``YYYY-MM-DD``), the column layout (``date,open,high,low,close,volume``) and dropping rows whose
value is missing in the source (FRED marks those with ``.``). See ``docs/data.md``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import itertools
import json
import math
import sys
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = ["date", "open", "high", "low", "close", "volume"]
MISSING = {"", ".", "nan", "NaN", "null", "NA"}


@dataclass(frozen=True)
class Package:
    name: str  # distribution name as on the package index
    version: str
    licence: str  # SPDX-style identifier
    licence_member: str  # path of the licence text inside the wheel
    licence_sha256: str
    licence_copy: str  # file name under agents/data/LICENSES/


ARCH = Package(
    "arch",
    "8.0.0",
    "NCSA",
    "arch-8.0.0.dist-info/licenses/LICENSE.md",
    "c6e622bd89db4e13315f4e91605ff96fcbb9012d78ee74e429855870b203eed6",
    "arch-8.0.0-LICENSE.md",
)
SKFOLIO = Package(
    "skfolio",
    "1.12.2",
    "BSD-3-Clause",
    "skfolio-1.12.2.dist-info/licenses/LICENSE",
    "07b8dfceb7b319e5145e7b1594d2cdaf94d924d78166d28951d4b360a4dc5844",
    "skfolio-1.12.2-LICENSE.txt",
)


@dataclass(frozen=True)
class Source:
    symbol: str
    name: str
    package: Package
    member: str  # path of the data file inside the wheel
    member_sha256: str
    kind: str  # "yahoo_ohlcv" (Date,Open,High,Low,Close,Adj Close,Volume), "close_column" (Date + one column per series)
    column: str  # the source column that becomes ``close`` ("Close" for yahoo_ohlcv)
    date_format: str
    upstream: str
    adjustment: str
    notes: str


SP500_MEMBER = ("arch/data/sp500/sp500.csv.gz", "1e028cbb9c400cc018c816ccc439b33c919387e726c3ed5ca2c05c82746059de")
NASDAQ_MEMBER = ("arch/data/nasdaq/nasdaq.csv.gz", "b2009535343ebb14e0aa11ed086788d2997a416ffe4f9450eed9a561ae30ac59")
WTI_MEMBER = ("arch/data/wti/wti.csv.gz", "b83498894138a65cdc14a67fc1716aa90b3cfda274f976bd3692cc3f1500084d")
VIX_MEMBER = ("arch/data/vix/vix.csv.gz", "410bd07360dc798f7206d681b8347c6150e7fbd8b05fb1ae29bbe2c9985d66ef")
SKF_MEMBER = ("skfolio/datasets/data/sp500_dataset.csv.gz", "ee21cac28befb1d0a739a9ceb22184f995394726aa0cfde9a21941d1ac04ac0d")

INDEX_NOTE = (
    "An index level, not a tradable instrument (trade it through futures or an ETF, which track it with costs and "
    "tracking error). Price index: dividends are not included. Volume is the exchange-reported aggregate share volume "
    "as given by the source. The source's 'Adj Close' column equals 'Close' on every row and is not carried over."
)
SKF_NOTE = (
    "Close only: the source has one adjusted closing price per day, so open, high, low and volume are empty. The price is "
    "split- and dividend-adjusted (by the data vendor, as of when the data set was made), so levels are not the prices "
    "quoted on the day, but day-to-day ratios approximate total returns. Values are rounded to 3 decimals in the source, "
    "which makes early returns coarse where the adjusted price is small. skfolio's docstring: 'provided solely for testing "
    "and example purposes ... stale ... not intended for investment, trading, or commercial use'."
)
SKF_UPSTREAM = "Not stated by skfolio (daily adjusted closing prices of 20 S&P 500 constituents)."


def _stock(symbol: str, name: str) -> Source:
    return Source(
        symbol, name, SKFOLIO, *SKF_MEMBER, "close_column", symbol, "%Y-%m-%d", SKF_UPSTREAM, "split- and dividend-adjusted", SKF_NOTE
    )


SOURCES: list[Source] = [
    Source(
        "SPX",
        "S&P 500 index",
        ARCH,
        *SP500_MEMBER,
        "yahoo_ohlcv",
        "Close",
        "%m/%d/%Y",
        "Not stated by arch; the column layout (Date,Open,High,Low,Close,Adj Close,Volume) is Yahoo Finance's historical-data export.",
        "none (index level)",
        INDEX_NOTE,
    ),
    Source(
        "IXIC",
        "NASDAQ Composite index",
        ARCH,
        *NASDAQ_MEMBER,
        "yahoo_ohlcv",
        "Close",
        "%m/%d/%Y",
        "Not stated by arch; the column layout (Date,Open,High,Low,Close,Adj Close,Volume) is Yahoo Finance's historical-data export.",
        "none (index level)",
        INDEX_NOTE + " This is the NASDAQ Composite (arch.data.nasdaq: 'NASDAQ Composite data'; 2208.05 on 1999-01-04), NOT the "
        "NASDAQ-100 (ticker NDX). Volume is 0 on 2015-05-12 and 2018-01-09 in the source (kept as given; almost certainly "
        "a gap in the source's volume feed, the prices on those days are normal).",
    ),
    Source(
        "WTI",
        "West Texas Intermediate crude oil spot price, Cushing, Oklahoma (USD per barrel)",
        ARCH,
        *WTI_MEMBER,
        "close_column",
        "DCOILWTICO",
        "%m/%d/%Y",
        "FRED series DCOILWTICO (arch: 'From the FRED database'), originally from the U.S. Energy Information Administration.",
        "none (spot price)",
        "Close only: one daily spot price, so open, high, low and volume are empty. A spot price assessment, not a futures "
        "contract: there is no roll. Days FRED marks as missing ('.', mostly U.S. holidays) are dropped. Its calendar is the "
        "spot market's, which differs from the NYSE calendar on a few days.",
    ),
    Source(
        "VIX",
        "Cboe Volatility Index (VIX)",
        ARCH,
        *VIX_MEMBER,
        "close_column",
        "vix",
        "%m/%d/%Y",
        "Not stated by arch ('historical VIX'); missing days are marked '.' as in FRED's export of series VIXCLS. VIX is "
        "computed and published by Cboe.",
        "none (index level)",
        "Close only: daily close, so open, high, low and volume are empty. An index of the 30-day implied volatility of S&P 500 "
        "options, in volatility points: not a price, not tradable (VIX futures and ETPs behave very differently from the "
        "index). Only 2014-01-03 to 2019-01-03. Days marked missing ('.', market holidays) are dropped.",
    ),
    _stock("AAPL", "Apple Inc. common stock"),
    _stock("MSFT", "Microsoft Corp. common stock"),
    _stock("JPM", "JPMorgan Chase & Co. common stock"),
    _stock("XOM", "Exxon Mobil Corp. common stock"),
    _stock("JNJ", "Johnson & Johnson common stock"),
    _stock("WMT", "Walmart Inc. common stock"),
]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def find_wheel(folder: Path, package: Package) -> Path:
    prefix = f"{package.name.replace('-', '_')}-{package.version}-"
    wheels = sorted(p for p in folder.glob("*.whl") if p.name.startswith(prefix))
    if not wheels:
        sys.exit(
            f"no {package.name}=={package.version} wheel in {folder}: pip download --no-deps --only-binary :all: "
            f"{package.name}=={package.version} -d {folder}"
        )
    return wheels[0]


def read_member(wheel: Path, member: str, expected_sha256: str) -> bytes:
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        sys.exit(f"{wheel.name}:{member}: sha256 {actual} is not the pinned {expected_sha256}")
    return data


def parse_date(text: str, fmt: str) -> str:
    return datetime.strptime(text, fmt).date().isoformat()


def positive(text: str, where: str) -> str:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{where}: not a positive finite number: {text!r}")
    return text


def convert(source: Source, raw_gz: bytes) -> tuple[list[list[str]], int]:
    """Rows in the output layout, plus how many source rows were dropped for a missing value."""
    reader = csv.reader(io.StringIO(gzip.decompress(raw_gz).decode("utf-8-sig")))
    header = next(reader)
    rows: list[list[str]] = []
    dropped = 0
    if source.kind == "yahoo_ohlcv":
        expected = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
        if header != expected:
            raise ValueError(f"{source.member}: header {header} is not {expected}")
        for line in reader:
            day, o, h, lo, c, adj, vol = line
            if any(v in MISSING for v in line):
                dropped += 1
                continue
            where = f"{source.member} {day}"
            if adj != c:
                raise ValueError(f"{where}: Adj Close {adj} differs from Close {c}; this converter drops Adj Close")
            fo, fh, fl, fc = (float(positive(v, where)) for v in (o, h, lo, c))
            if not (fh >= max(fo, fc, fl) and fl <= min(fo, fc)):
                raise ValueError(f"{where}: inconsistent OHLC {o},{h},{lo},{c}")
            if int(vol) < 0:
                raise ValueError(f"{where}: negative volume {vol}")
            rows.append([parse_date(day, source.date_format), o, h, lo, c, vol])
    elif source.kind == "close_column":
        col = header.index(source.column)
        for line in reader:
            day, value = line[0], line[col]
            if value in MISSING:
                dropped += 1
                continue
            rows.append([parse_date(day, source.date_format), "", "", "", positive(value, f"{source.member} {day}"), ""])
    else:
        raise ValueError(source.kind)
    days = [r[0] for r in rows]
    if any(date.fromisoformat(b) <= date.fromisoformat(a) for a, b in itertools.pairwise(days)):
        raise ValueError(f"{source.symbol}: dates are not strictly ascending")
    return rows, dropped


def render(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def build(wheel_dir: Path) -> dict[str, bytes]:
    """Every output file (path relative to agents/data/) and its bytes."""
    files: dict[str, bytes] = {}
    meta: dict[str, dict] = {}
    wheels = {pkg.name: find_wheel(wheel_dir, pkg) for pkg in (ARCH, SKFOLIO)}
    for pkg in (ARCH, SKFOLIO):
        files[f"LICENSES/{pkg.licence_copy}"] = read_member(wheels[pkg.name], pkg.licence_member, pkg.licence_sha256)
    for source in SOURCES:
        raw = read_member(wheels[source.package.name], source.member, source.member_sha256)
        rows, dropped = convert(source, raw)
        data = render(rows)
        files[f"{source.symbol}.csv"] = data
        columns = [c for i, c in enumerate(HEADER) if any(r[i] for r in rows)]
        meta[source.symbol] = {
            "name": source.name,
            "package": source.package.name,
            "package_version": source.package.version,
            "path_in_package": source.member,
            "source_file_sha256": source.member_sha256,
            "source_column": source.column,
            "licence": source.package.licence,
            "licence_file": f"LICENSES/{source.package.licence_copy}",
            "upstream_source": source.upstream,
            "adjustment": source.adjustment,
            "columns_present": columns,
            "first_date": rows[0][0],
            "last_date": rows[-1][0],
            "rows": len(rows),
            "rows_dropped_missing": dropped,
            "sha256": sha256_bytes(data),
            "notes": source.notes,
        }
    files["SOURCES.json"] = (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel_dir", type=Path, help="folder holding the arch and skfolio wheels")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    parser.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = parser.parse_args(argv)
    files = build(args.wheel_dir)
    differing = []
    for rel, data in files.items():
        path = args.out / rel
        if args.check:
            if not path.is_file() or path.read_bytes() != data:
                differing.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path} ({len(data)} bytes)")
    if args.check:
        for rel in differing:
            print(f"differs: {rel}")
        print(f"{len(files) - len(differing)} of {len(files)} files identical")
        return 1 if differing else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
