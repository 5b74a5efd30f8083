"""Text from spans made safe in the report's Markdown (a GitHub comment) and HTML page: the one
Markdown escaper (``md_escape``) and the bidirectional-control rule (``bidi_visible``), used by the
alpha-quality section (``alpha/quality_render.py``) and the report's renderers (``meta_supervisor/render/``).
The terminal's escaper is ``services/terminal_text.py``.

Reads no environment variables.
"""

from __future__ import annotations

import re
from typing import Any

# Text from spans, in a GitHub comment: GitHub links ``@name`` (and notifies that person), ``#1``,
# ``GH-1``, ``owner/repo#1`` and URLs (and cross-references the issue) only when the sign is straight
# before the name or number, so a zero-width space after the sign leaves the text readable and inert.
# Bidirectional controls (which can make text display in another order than it is written: "Trojan
# Source") are shown as their code point instead, in Markdown and HTML alike.
INERT = "\u200b"
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_BIDI_SHOWN = {ord(c): f"[U+{ord(c):04X}]" for c in BIDI_CONTROLS}
_LINKABLE = re.compile(r"(?i)\bgh-(?=\d)|:(?=//)|\bwww(?=\.)")
_MD_SPECIALS = {ord(c): "\\" + c for c in "\\`*_{}[]|~$"}  # $: GitHub renders $…$ as math
_MD_ESCAPES = (
    _MD_SPECIALS
    | {ord("<"): "&lt;", ord(">"): "&gt;", ord("&"): "&amp;", ord("@"): "@" + INERT, ord("#"): "#" + INERT}
    | {code: shown.translate(_MD_SPECIALS) for code, shown in _BIDI_SHOWN.items()}
)


def bidi_visible(text: str) -> str:
    """``text`` with every bidirectional control shown as ``[U+202E]`` (the HTML page, after escaping)."""
    # a scan first: ``translate`` looks every character up in the table (a page of 1,000 agents: 0.2 s);
    # an ASCII text has none, and ``in`` finds one character several times faster than a class's search
    if text.isascii() or not any(control in text for control in BIDI_CONTROLS):
        return text
    return text.translate(_BIDI_SHOWN)


def md_escape(value: Any, limit: int | None = None) -> str:
    """Plain text safe in a Markdown table cell or list item, also for the HTML GitHub renders in
    Markdown: one line (whitespace runs become one space), ``& < >`` as entities, the Markdown specials
    backslash-escaped, mentions, issue references and URLs inert, bidirectional controls shown; then cut
    to at most ``limit`` characters of escaped text, ending in an ellipsis, never inside an escape. The
    one escaper of the report's Markdown; agent and symbol names come from spans."""
    text = " ".join(("" if value is None else str(value)).split())
    if limit is not None:
        text = text[: limit + 1]  # every character escapes to at least one
    signs = {m.end() - 1 for m in _LINKABLE.finditer(text)}  # an inert mark goes with its sign
    pieces = [_MD_ESCAPES.get(ord(c), c) + (INERT if i in signs else "") for i, c in enumerate(text)]
    escaped = "".join(pieces)
    if limit is None or len(escaped) <= limit:
        return escaped
    out, size = [], 0
    for piece in pieces:
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out) + "\u2026"
