"""Text from spans and state files made safe to print on a terminal: the one escaper of terminal lines.

Agent names come from spans, and names, reasons and people from the kill-switch and status files: an
ANSI escape in one could recolour, move the cursor or clear the screen, a newline or carriage return
could forge a decision line. ``term`` shows every character that is not printable (C0 and C1 controls,
DEL, line and paragraph separators, bidi and other format controls, lone surrogates) as a Python-style
escape (``\\x1b``, ``\\n``, ``\\u202e``), so a value stays on its line and what it hides is visible.
Every line ``python -m meta_supervisor.supervise`` and ``python -m services.kill_switch`` print, and the
kill switch's log lines, pass their values through it; the report's Markdown and HTML have their own
escapers (``services.markup_text.md_escape``, ``html.escape``).

Reads no environment variables.
"""

from __future__ import annotations

from typing import Any


def _escape(ch: str) -> str:
    return ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")


def term(value: Any) -> str:
    """``value`` as text with every non-printable character escaped; ``None`` is empty."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return "".join(_escape(ch) for ch in text)
