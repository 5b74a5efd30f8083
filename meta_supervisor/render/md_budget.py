"""The size budget of ``meta_report.md``, which is pasted as a GitHub pull-request comment.

GitHub refuses a comment longer than ``GITHUB_COMMENT_LIMIT`` (65,536) characters. Whether it counts
code points (the API) or UTF-16 code units (the browser) the page is measured in the larger of the two,
UTF-16 code units, with each line break counted as two (CRLF, as a browser sends it) (``size``), and
kept under ``MAX_PAGE_CHARS``, which leaves room for a wrapper a CI job may add around the report.

A page is fixed lines and ``Section`` s. A section's items (table rows, list items) are escaped
before they are measured, and a section keeps the first items that fit ``MAX_SECTION_CHARS`` (and its
own ``max_items``), then says how many it left out: "… and N more agents (see meta_report.html /
meta_report.json)". If the whole page is still too long, ``fit_page`` takes items off the sections in
``trim`` order (the first the most expendable), then leaves out whole sections from the last; lines are
only ever dropped whole, so no escape, link or table row is cut.

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

GITHUB_COMMENT_LIMIT = 65_536
MAX_PAGE_CHARS = 60_000
MAX_SECTION_CHARS = 15_000
ELLIPSIS = "\u2026"
REST_IN = "meta_report.html / meta_report.json"


def size(text: str) -> int:
    """``text``'s length in UTF-16 code units (at least its length in code points), a line break
    counted as two (a browser sends the comment with CRLF line breaks)."""
    return len(text.encode("utf-16-le")) // 2 + text.count("\n")


def _lines_size(lines: Sequence[str]) -> int:
    return sum(size(line) + 2 for line in lines)


@dataclass
class Section:
    """``head`` lines, then ``items`` (each a whole line, already escaped; ``kinds`` says which
    lines are items, the others, such as a second table's heading, go with the item before them),
    then ``tail`` lines. ``total`` is how many items there are in all (more than ``items`` holds when
    the renderer left some out already); the note says ``noun``."""

    key: str
    head: list[str]
    items: list[str]
    noun: str
    total: int | None = None
    tail: list[str] = field(default_factory=list)
    is_item: list[bool] | None = None
    shown: int = 0

    def __post_init__(self) -> None:
        flags = self.is_item if self.is_item is not None else [True] * len(self.items)
        if not any(flags):  # nothing to cut: the lines are fixed
            self.head, self.items, flags = [*self.head, *self.items], [], []
        self._ends = [i + 1 for i, flag in enumerate(flags) if flag]  # body lines kept with k items
        if self._ends:
            self._ends[-1] = len(self.items)  # all of them: what follows the last item too
        self.count = len(self._ends)
        self.total = self.count if self.total is None else max(self.total, self.count)
        self._prefix = [0]
        for line in self.items:
            self._prefix.append(self._prefix[-1] + size(line) + 2)
        self._fixed = _lines_size(self.head) + _lines_size(self.tail)

    def _note(self, k: int) -> list[str]:
        left = self.total - k
        return ["", f"{ELLIPSIS} and {left:,} more {self.noun} (see {REST_IN})"] if left else []

    def size_with(self, k: int) -> int:
        body = self._prefix[self._ends[k - 1]] if k else 0
        return self._fixed + body + _lines_size(self._note(k))

    def lines(self, k: int | None = None) -> list[str]:
        k = self.shown if k is None else k
        body = self.items[: self._ends[k - 1]] if k else []
        return [*self.head, *body, *self._note(k), *self.tail]

    def fit(self, budget: int) -> int:
        """Keep the most items (up to those shown now) that fit ``budget``; the size that takes."""
        while self.shown and self.size_with(self.shown) > budget:
            self.shown -= 1
        return self.size_with(self.shown)


def fit_page(top: list[str], sections: Sequence[Section], bottom: list[str], trim: Sequence[str]) -> str:
    """The page: ``top``, the sections in order, ``bottom``; each section within MAX_SECTION_CHARS,
    the whole within MAX_PAGE_CHARS (see the module's docstring)."""
    for section in sections:
        section.shown = section.count
        section.fit(MAX_SECTION_CHARS)
    fixed = _lines_size(top) + _lines_size(bottom)
    total = fixed + sum(s.size_with(s.shown) for s in sections)
    by_key = {s.key: s for s in sections}
    for key in trim:
        if total <= MAX_PAGE_CHARS:
            break
        if key in by_key:  # a page may lack a section
            before = by_key[key].size_with(by_key[key].shown)
            total += by_key[key].fit(before - (total - MAX_PAGE_CHARS)) - before
    kept = list(sections)
    note = f"{ELLIPSIS} and {{}} more sections (see {REST_IN})"
    noted = size(note) + 8  # the note, its count and a blank line
    while kept and total + (noted if len(kept) < len(sections) else 0) > MAX_PAGE_CHARS:  # fixed lines too long
        total -= kept[-1].size_with(kept[-1].shown)
        kept.pop()
    if len(kept) < len(sections):
        bottom = [note.format(len(sections) - len(kept)), "", *bottom]
    lines = [*top, *(line for s in kept for line in s.lines()), *bottom]
    return _guard(lines)


def _guard(lines: list[str]) -> str:
    """The last resort: whole lines from the top while they fit, then a note."""
    text = "\n".join(lines)
    if size(text) <= MAX_PAGE_CHARS:
        return text
    note = f"{ELLIPSIS} (the rest is in {REST_IN})"
    out, used = [], size(note)
    for line in lines:
        used += size(line) + 2
        if used > MAX_PAGE_CHARS:
            break
        out.append(line)
    return "\n".join([*out, note])
