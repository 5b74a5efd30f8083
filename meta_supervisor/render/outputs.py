"""Write the report files: ``meta_report.json``, ``meta_report.md`` and ``meta_report.html``.

Each file is written with ``services.state_files.write_atomically`` (temp file, fsync, rename; the
folder fsynced once after the last rename), so a reader (a dashboard, a CI step) sees the previous
report or the new one, never half of one, also after a power loss. (One folder fsync for the three
files, not one each: a build with nothing new writes only these, and each fsync can wait for other
writes to the disk, 2-19 ms each on a busy machine.) The JSON is written piece by piece, never whole in memory (a
report of 1,000 agents is ~16 MB of text, ~100 MB as the standard encoder's list of pieces). The
report command has the HTML of a report of many agents (``HTML_ASIDE_AGENTS``) rendered and written
by a forked process meanwhile (``html_aside``): the second core is idle by then (~50 ms of 1,000 agents).

The JSON text is ``json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)``'s, byte for
byte, made ~5x faster (``indented_json_pieces``): with ``indent`` the standard library's encoder is
its pure-Python one (~1 s for 1,000 agents), so each small piece of the report (an agent's section)
is encoded by orjson (``OPT_INDENT_2``: the standard library's layout) and kept only when orjson's
compact text of it equals the standard library's C encoder's compact text of it, i.e. when every
number, string and key is written the same (orjson writes some floats otherwise: ``1e-05`` as
``0.00001``; it refuses integers beyond 64 bits and keys that are not strings); otherwise that piece
is encoded by the standard library's indenting encoder, as before. With the compiled core, whether
the two texts are the same is known from one walk of the value (``alphatrace_native.orjson_writes_as_json``:
its numbers, strings and keys are ones both write alike), without making the standard library's text;
a value it cannot vouch for is compared as above.

Environment: ``ALPHATRACE_NATIVE`` (``meta_supervisor.native_core``: ``off`` leaves the compiled check out).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from meta_supervisor.forked import call_forked, fork_is_safe
from meta_supervisor.native_core import json_check
from services.state_files import SharedValues, fsync_folder, write_atomically

REPORT_JSON = "meta_report.json"
REPORT_MD = "meta_report.md"
REPORT_HTML = "meta_report.html"


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)  # the C encoder
_INDENTED = json.JSONEncoder(indent=2, ensure_ascii=False, allow_nan=False)  # the pure-Python one
_encode_key = json.encoder.encode_basestring  # what both use for a str key (ensure_ascii=False)
_LOOK_UP = object()  # indented_json_pieces' default: ask the compiled core for its check
WIDE = 64  # a dict this wide is written entry by entry at any depth (the 1,000 agents of a section)
CHUNK = 16  # a wide dict's entries encoded together (``_wide_pieces``): 16 agents' sections, ~130 kB of text


def indented_json_pieces(value: Any, level: int = 0, plain: Any = _LOOK_UP) -> Iterator[str]:
    """``json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)``'s text (indented as if at
    depth ``level``) as pieces of at most one small value each: the report, its sections, and the
    entries of a wide dict (``WIDE``) are opened here; each other value is one piece
    (``_indented``). ``plain``: the compiled core's ``orjson_writes_as_json`` or None (looked up
    when not given)."""
    if plain is _LOOK_UP:
        plain = json_check()
    if type(value) is dict and value and (level < 2 or len(value) >= WIDE) and all(type(key) is str for key in value):
        if len(value) >= WIDE:
            yield from _wide_pieces(value, level, plain)
            return
        inner = "\n" + "  " * (level + 1)
        opening = "{" + inner
        for key, item in value.items():
            yield f"{opening}{_encode_key(key)}: "
            yield from indented_json_pieces(item, level + 1, plain)
            opening = "," + inner
        yield "\n" + "  " * level + "}"
    else:
        yield _indented(value, level, plain)


def _wide_pieces(value: dict, level: int, plain: Any) -> Iterator[str]:
    """A wide dict's text at depth ``level`` (``indented_json_pieces``), ``CHUNK`` entries a piece:
    the entries that share no value with an earlier one are encoded together, ``CHUNK`` at a time,
    by orjson when the compiled core vouches for them (one walk and one encoding for 16 agents, not
    one each: 1,000 agents), each otherwise; an entry that shares one is written key by key
    (``_shared_entry``)."""
    shared = SharedValues()
    inner = "\n" + "  " * (level + 1)
    close = 2 * level + 2  # the "\n" + indent + "}" ending a chunk's text
    first = True
    pending: dict[str, Any] = {}

    def flush() -> Iterator[str]:
        nonlocal first
        if plain is not None and plain(pending):
            with contextlib.suppress(orjson.JSONEncodeError):  # an integer beyond 64 bits, a lone surrogate
                text = _nested_text(pending, level)
                yield ("{" if first else ",") + text[1:-close]
                first = False
                pending.clear()
                return
        for key, item in pending.items():
            yield f"{'{' if first else ','}{inner}{_encode_key(key)}: "
            yield from indented_json_pieces(item, level + 1, plain)
            first = False
        pending.clear()

    for key, item in value.items():
        if shared.repeats(item):
            if pending:
                yield from flush()
            yield f"{'{' if first else ','}{inner}{_encode_key(key)}: "
            yield from _shared_entry(item, level + 1, shared, plain)
            first = False
        else:
            pending[key] = item
            if len(pending) >= CHUNK:
                yield from flush()
    if pending:
        yield from flush()
    yield "\n" + "  " * level + "}"


def _shared_entry(entry: dict, level: int, shared: SharedValues, plain: Any) -> Iterator[str]:
    """An entry of a wide dict at depth ``level`` written key by key (``indented_json_pieces``'s
    layout), the containers it shares with other entries encoded once (``SharedValues``: the empty
    alpha-quality horizons of every agent without signals)."""
    inner = "\n" + "  " * (level + 1)
    opening = "{" + inner
    for key, item in entry.items():
        head = f"{opening}{_encode_key(key)}: "
        if shared.shared(item):
            yield head + shared.text(item, lambda value: _indented(value, level + 1, plain))
        else:
            text = _simple_text(item)
            if text is None:
                yield head
                yield from indented_json_pieces(item, level + 1, plain)
            else:  # most of an alpha-quality entry's values (1,000 agents: ~5,000 values)
                yield head + text
        opening = "," + inner
    yield "\n" + "  " * level + "}"


def _simple_text(value: Any) -> str | None:
    """The JSON text of a value that every encoder here writes alike, made without one: an int, a
    str (``json``'s own ``encode_basestring``), null, a bool, an empty list or dict; else None."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)  # what json writes for an int
    if kind is str:
        return _encode_key(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if (kind is list or kind is dict) and not value:
        return "[]" if kind is list else "{}"
    return None


def _indented(value: Any, level: int, plain: Any = None) -> str:
    """One value's indented text at depth ``level``: orjson's when its compact text is the standard
    library's (so are its numbers, strings and keys, and ``OPT_INDENT_2`` lays them out as
    ``indent=2`` does), else the standard library's. Whether it is, ``plain`` (the compiled core's
    walk of the value) says without making the standard library's text; without it, or when it
    cannot tell, both compact texts are made and compared. A JSON text holds no raw newline but
    those of its layout, so indenting it deeper is adding spaces after each newline."""
    text = None
    if plain is not None and plain(value):  # the same text, known without making the standard library's
        with contextlib.suppress(orjson.JSONEncodeError):  # an integer beyond 64 bits, a lone surrogate
            if not level:
                return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode("utf-8")
            return _nested_text(value, level)
    if text is None:
        expected = _COMPACT.encode(value)  # raises as json.dumps does (NaN, a type it cannot encode)
        try:
            same = orjson.dumps(value) == expected.encode("utf-8")
        except (orjson.JSONEncodeError, UnicodeEncodeError):
            same = False
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode("utf-8") if same else "".join(_INDENTED.iterencode(value))
    return text.replace("\n", "\n" + "  " * level) if level and "\n" in text else text


def _nested_text(value: Any, level: int) -> str:
    """orjson's indented text of ``value`` at depth ``level``, indented by orjson itself: ``value``
    is encoded inside ``level`` one-item lists, whose brackets (and the first line's indent) are
    then cut off, ``level * (level + 3)`` bytes before and ``level * (level + 1)`` after (a copy of
    the text, not a second pass adding spaces after each newline: 1,000 agents, ~16 MB of text)."""
    for _ in range(level):
        value = [value]
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2)
    return str(memoryview(text)[level * (level + 3) : len(text) - level * (level + 1)], "utf-8")


def report_json_pieces(report: dict[str, Any]) -> Iterator[str]:
    """``meta_report.json`` as pieces, to be written as they come (``indented_json_pieces``): the
    whole text of a report of many agents is several times the dict's size while it is joined."""
    return itertools.chain(indented_json_pieces(report), ("\n",))


def report_json(report: dict[str, Any]) -> str:
    """``meta_report.json``'s text (what ``write_report`` writes, piece by piece)."""
    return "".join(report_json_pieces(report))


_FILES = (("json", REPORT_JSON), ("md", REPORT_MD), ("html", REPORT_HTML))


def output_paths(out_dir: Path, formats: tuple[str, ...] = ("json", "md", "html")) -> list[Path]:
    """The files ``write_report`` writes for ``formats``, in the order it writes them."""
    return [out_dir / name for kind, name in _FILES if kind in formats]


HTML_ASIDE_AGENTS = 200  # from this many agents the HTML is rendered by a forked process (~50 us an agent; a fork ~5 ms)


def write_report(
    report: dict[str, Any],
    out_dir: Path,
    formats: tuple[str, ...] = ("json", "md", "html"),
    written: dict | None = None,
    html_aside: bool = False,
) -> list[Path]:
    """Write the requested formats into ``out_dir``; returns the paths written. ``written``: filled
    with each path's stat as written (``write_atomically``'s), for the report record. The renames are
    durable together: the folder is fsynced once, after the last. ``html_aside``: a report of many
    agents (``HTML_ASIDE_AGENTS``) has its HTML rendered and written by a forked process while this
    one writes the others (``meta_supervisor.forked``: its error is raised here as if written here)."""
    paths = output_paths(out_dir, formats)
    html = out_dir / REPORT_HTML
    aside = None
    if html_aside and html in paths and len(paths) > 1 and len(report.get("agents") or ()) >= HTML_ASIDE_AGENTS and fork_is_safe():
        out_dir.mkdir(parents=True, exist_ok=True)
        aside = call_forked(lambda: _write_one(report, html), f"writing {html}")
    stats = {}
    try:
        for path in paths:
            if aside is None or path != html:
                stats[path] = _write_one(report, path)
        if aside is not None:
            stats[html] = aside.result()
    except BaseException:
        if aside is not None:  # this process failed: the other ends as it would (killed, it would leave its temp file)
            with contextlib.suppress(OSError, RuntimeError):
                aside.result()
        raise
    if written is not None:
        written.update((path, stats[path]) for path in paths)
    if paths:
        fsync_folder(out_dir)
    return paths


def _write_one(report: dict[str, Any], path: Path) -> os.stat_result:
    if path.name == REPORT_JSON:
        pieces = report_json_pieces(report)
    elif path.name == REPORT_MD:
        from meta_supervisor.render.markdown import render_markdown

        pieces = render_markdown(report)
    else:
        from meta_supervisor.render.html import html_pieces

        pieces = html_pieces(report)
    return write_atomically(path, pieces, sync_folder=False)
