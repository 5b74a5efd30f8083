"""A cache of the ``alpha_quality`` and ``worth`` sections beside the incremental state, for builds
with nothing new.

Scoring reads the market data and computes forward returns and rank correlations: a fraction of a
second on a year of signals, most of a build that finds nothing new to read (the worth section's
portfolios read the same market data: ~80 ms of CSV parsing for four scorable agents). The section is a pure
function of the kept signals and costs (fixed by the saved state's generation: a new generation is
written whenever anything new was read), the market data (each CSV's name, size and modification
time), ``today`` and the scoring code's version, so it is kept in
``report-<key>-<generation>.alpha.bin`` (JSON, despite the name: the state's own clean-up removes it
with the generation it belongs to) under a digest of all of that, and reused when the digest matches.
The ``worth`` section is kept in the same file under its own digest (``worth_key``): the same
material plus the fleet configuration it reads (capital, members, universe) and the agents named only
by the kill switch (each has a section of its own in the report, which ``worth`` may read as a
member's). Any doubt (no state, unknown market data, unreadable or other digest) means computing it again.

Environment: ``ALPHATRACE_NATIVE`` only, through ``meta_supervisor.native_core`` (the compiled JSON check of
``services.state_files.json_pieces``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import msgspec

from meta_supervisor.blake2 import blake2b
from meta_supervisor.native_core import json_check
from services.state_files import json_pieces, write_atomically

CACHE_VERSION = 3  # 2: the HAC t-stats; 3: the worth section too. Bump whenever either section's computation changes


def market_fingerprint(market: Any) -> list | None:
    """(name, size, mtime) of every CSV the market data reads; None when it is not a folder of CSVs."""
    folder = getattr(market, "folder", None)
    if folder is None:
        return None
    try:
        with os.scandir(folder) as entries:
            files = sorted((entry.name, entry.stat()) for entry in entries if entry.name.endswith(".csv"))
    except OSError:
        return None
    return [str(folder), *([name, stat.st_size, stat.st_mtime_ns] for name, stat in files)]


def cache_key(state: str, market: Any, today: dt.date, as_of: tuple = (None, None)) -> str | None:
    """``as_of``: the as-of window the signals are scored in (first, last day or None)."""
    fingerprint = market_fingerprint(market)
    if not state or fingerprint is None:
        return None
    window = [day.isoformat() if day else None for day in as_of]
    material = json.dumps([CACHE_VERSION, state, fingerprint, today.isoformat(), *([window] if any(as_of) else [])])
    return blake2b(material.encode(), digest_size=16).hexdigest()


def _path(state_dir: Path, state: str) -> Path:
    return Path(state_dir) / f"report-{state}.alpha.bin"


def worth_key(key: str | None, config: Any, kill_names: list[str] | None) -> str | None:
    """The ``worth`` section's digest: ``cache_key``'s material (``key``), the fleet configuration it
    reads and the names the kill switch adds to the report's agents (None: it could not be read)."""
    if key is None:
        return None
    material = json.dumps([key, repr(config), kill_names])
    return blake2b(material.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def load(state_dir: Path | None, state: str, key: str | None) -> dict | None:
    return load_sections(state_dir, state, key)[0]


def load_sections(state_dir: Path | None, state: str, key: str | None, worth: str | None = None) -> tuple[dict | None, dict | None]:
    """(``alpha_quality``, ``worth``) as cached under ``key`` and ``worth`` (``worth_key``); None for
    each one not cached (the file is read once)."""
    if state_dir is None or key is None:
        return None, None
    try:
        data = _decoded(_path(state_dir, state).read_bytes())
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("section"), dict):
        return None, None
    kept = data.get("worth")
    found = kept.get("section") if isinstance(kept, dict) and worth is not None and kept.get("key") == worth else None
    return data["section"], found if isinstance(found, dict) else None


def _decoded(text: bytes) -> Any:
    """The cache's JSON as ``json.loads`` makes it, but the agents' values that are the same text
    made once and shared, as the section computed afresh shares them (``save`` writes every
    occurrence of a shared value as the same text): 1,000 agents without signals have one empty
    horizons section, ~4 kB of JSON each, ~12 MB of Python objects when made 1,000 times. A
    cache msgspec does not read (a NaN or an infinity, which ``json`` writes) is read by ``json``."""
    try:
        top = msgspec.json.decode(text, type=dict[str, msgspec.Raw])
        data = {name: msgspec.json.decode(value) for name, value in top.items() if name != "section"}
        if "section" in top:
            section = data["section"] = msgspec.json.decode(top["section"], type=dict[str, msgspec.Raw])
            made: dict[bytes, Any] = {}  # a value's digest -> the value, made once
            for name, value in section.items():
                if name != "agents":
                    section[name] = msgspec.json.decode(value)
                    continue
                agents = msgspec.json.decode(value, type=dict[str, dict[str, msgspec.Raw]])
                section[name] = {agent: {field: _shared(inner, made) for field, inner in entry.items()} for agent, entry in agents.items()}
        return data
    except msgspec.DecodeError:
        return json.loads(text)


def _shared(value: msgspec.Raw, made: dict) -> Any:
    """``value`` decoded; a list or object the same text as one decoded before is that one."""
    raw = memoryview(value)
    if len(raw) < 3 or raw[0] not in b"[{":  # a number, a string, an empty container: not shared
        return msgspec.json.decode(value)
    digest = blake2b(raw, digest_size=16).digest()
    found = made.get(digest)
    if found is None:
        found = made[digest] = msgspec.json.decode(value)
    return found


def save(state_dir: Path | None, state: str, key: str | None, section: dict | None, worth: str | None = None, worth_section=None) -> None:
    """Keep ``section`` (``alpha_quality``) under ``key``, and ``worth_section`` under ``worth``
    when both are given (a null worth section is not kept: it costs nothing to make)."""
    if state_dir is None or key is None or section is None:
        return
    content: dict[str, Any] = {"key": key, "section": section}
    if worth is not None and worth_section is not None:
        content["worth"] = {"key": worth, "section": worth_section}
    try:
        # agent by agent (the section of 1,000 agents is ~9 MB of text): never whole in memory
        write_atomically(_path(state_dir, state), json_pieces(content, depth=3, plain=json_check()))
    except OSError:
        pass  # only a cache
