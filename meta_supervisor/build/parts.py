"""The one seam for "read a part": bytes ``[start, stop)`` of a JSON-lines file -> its tallies, or declined.

A ``PartReader`` is handed the part and the build's options (``SpanAggregator.part_options``) and
returns a ``PartResult`` (``part_result``: the part's tallies and fingerprints, mergeable into the
build's aggregator by ``merge.merge_part``), or None when it declines the part. Two implementations:

* ``native_reader.read_part``: the compiled core (``native/``), when installed; it declines whatever
  it cannot read exactly as Python does (a corrupt or oddly typed line, a full table, a line over
  the cap), so it changes the speed of a build, never its report;
* ``python_part.read_part_python``: the reference, which never declines.

``read_part`` asks them in that order. (When the build's aggregator is still empty the native core
may also fill its tables in place, ``native_reader.read_into``: the same reader, minus a merge.)

Reads no environment variables (``native_core`` reads ``ALPHATRACE_NATIVE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from meta_supervisor.build import native_reader, python_part
from meta_supervisor.build.part_result import PartResult


class PartReader(Protocol):
    def __call__(self, path: Path, start: int, stop: int | None, options_tuple: tuple, first_number: int = 0) -> PartResult | None:
        """The part's ``PartResult``, or None: declined (another reader reads it)."""


def readers() -> tuple[PartReader, ...]:
    """The implementations, the first that takes a part reading it: native (may decline), then Python."""
    return (native_reader.read_part, python_part.read_part_python)


def read_part(path: Path, start: int, stop: int | None, options_tuple: tuple, first_number: int = 0, handoff=None) -> PartResult:
    """The part read by the first reader that takes it (the Python reader takes every part).
    ``handoff`` (``part_result.Handoff``): the native reader bounds its tables and hands them over
    through those files (the Python reader's part is arrays, as always)."""
    for reader in readers():
        if reader is native_reader.read_part and handoff is not None:
            part = native_reader.read_part(path, start, stop, options_tuple, first_number, handoff=handoff)
        else:
            part = reader(path, start, stop, options_tuple, first_number)
        if part is not None:
            return part
    raise AssertionError("the Python reader declined a part")  # pragma: no cover - it never does
