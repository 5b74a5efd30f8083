"""The compiled core's ``orjson_writes_as_json`` (``native/src/json_check.rs``): the report's JSON
(``render/outputs.py``) skips making the standard library's text of a value the core vouches for,
so what it vouches for must be exactly what orjson writes as ``json`` does (issue 13).

Whenever the check says yes for a value, orjson's compact text equals ``json.dumps``'s (or orjson
raises, and the writer falls back); with ``ascii_only`` also ``ensure_ascii=True``'s. The report's
text is ``json.dumps(indent=2)``'s with and without the check. The HTML page's ``bidi_visible``
(its quick paths) shows every bidirectional control. Nothing here measures a time.
"""

from __future__ import annotations

import enum
import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meta_supervisor import native_core
from meta_supervisor.render.outputs import indented_json_pieces
from services.markup_text import BIDI_CONTROLS, bidi_visible
from services.state_files import json_pieces


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(native_core.ENV, raising=False)
    found = native_core.json_check()
    if found is None:
        pytest.fail("the native core (with orjson_writes_as_json) is not installed: run make native")
    return found


def compact(value, ensure_ascii: bool) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=False).encode("utf-8")


def agrees(check, value) -> None:
    """Wherever the check vouches for ``value``, orjson writes it as json.dumps does (or raises)."""
    for ascii_only in (False, True):
        if not check(value, ascii_only):
            continue
        try:
            text = orjson.dumps(value)
        except orjson.JSONEncodeError:
            continue  # an integer beyond 64 bits, a lone surrogate: the writer falls back
        assert text == compact(value, ensure_ascii=ascii_only), value


class Level(enum.IntEnum):
    HIGH = 1


class Name(str):
    pass


def test_what_it_vouches_for_and_what_not(check) -> None:
    for value in (None, True, 0, -(2**63), 2**64 - 1, 'é\n"\x1f\u2028', 0.0, -0.0, 1e-4, -1e-4, 9999999999999998.0, 0.1, [], {}):
        assert check(value) and check({"k": [value]}), value
        agrees(check, value)
    for value in (
        9.99e-5,
        1e-7,
        1e16,
        -1e16,
        1e300,
        5e-324,
        math.nan,
        math.inf,
        -math.inf,
        (1, 2),
        {1: "a"},
        Level.HIGH,
        Name("x"),
        {Name("k"): 1},
        object(),
    ):
        assert not check(value) and not check({"k": [value]}), value
    assert check("ascii", True) and not check("é", True) and not check({"é": 1}, True) and check({"é": 1})
    assert check("\x7f") and not check("a\x7fb", True)  # DEL: ensure_ascii writes \\u007f
    nested: list = []
    for _ in range(100):
        nested = [nested]
    assert not check(nested)  # deeper than the walk goes: compared by encoding instead


leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.floats(min_value=1e-6, max_value=1e-3)
    | st.floats(min_value=1e15, max_value=1e17)
    | st.text(max_size=6)
    | st.text(st.characters(max_codepoint=0x7F), max_size=6)
)
values = st.recursive(
    leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=4), max_leaves=20
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_it_vouches_only_for_what_orjson_writes_as_json_does(value) -> None:
    check = native_core.json_check()
    assert check is not None, "the native core is not installed: run make native"
    agrees(check, value)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=4), values, min_size=1, max_size=6))
def test_the_report_text_is_json_dumps_with_and_without_the_check(report) -> None:
    try:
        expected = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        for plain in (native_core.json_check(), None):
            with pytest.raises(ValueError):
                "".join(indented_json_pieces(report, plain=plain))
        return
    for plain in (native_core.json_check(), None):
        assert "".join(indented_json_pieces(report, plain=plain)) == expected


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=4), values, min_size=1, max_size=6), st.integers(1, 3), st.booleans())
def test_compact_pieces_are_json_dumps_with_and_without_the_check(value, depth, ensure_ascii) -> None:
    """The state's and the alpha cache's text (``state_files.json_pieces``), NaN allowed as the state allows it."""
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii, allow_nan=True)
    for plain in (native_core.json_check(), None):
        assert "".join(json_pieces(value, depth, plain=plain, ensure_ascii=ensure_ascii, allow_nan=True)) == expected


def test_compact_pieces_with_other_options_leave_orjson_out(check) -> None:
    value = {"b": [1, 2.5, 1e-7], "a": {"y": 1, "x": "é", "z": frozenset({"w"})}}
    for options in ({"default": sorted}, {"default": sorted, "check_circular": False}, {"default": sorted, "ensure_ascii": False}):
        assert "".join(json_pieces(value, 1, plain=check, **options)) == json.dumps(value, separators=(",", ":"), **options)
    with pytest.raises(ValueError):
        "".join(json_pieces({"n": [math.nan]}, 1, plain=check, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(["a", "<", "\u2013", "\u00e9", "\u65e5", "\U0001f680", *BIDI_CONTROLS])))
def test_bidi_controls_are_shown_in_any_text(text) -> None:
    """``bidi_visible``'s quick paths (ASCII, no control found) give what mapping every character gives."""
    assert bidi_visible(text) == text.translate({ord(c): f"[U+{ord(c):04X}]" for c in BIDI_CONTROLS})
