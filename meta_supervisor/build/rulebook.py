"""The rules the native core asks Python to apply, so that its answer is Python's own.

Rare or fiddly input (``int()`` of an odd string, an ISO date, a BLAKE2 fingerprint of an id that is
not the expected hex, a mismatch text, a price) is not decided in Rust: the core calls these, and
each is the very function the Python reader applies (``tally.alpha_events``, ``tally.fingerprints``,
``tally.consistency``, ``tally.signal_store``, ``reading.otlp_schema``). One rulebook for both readers.

Reads no environment variables.
"""

from __future__ import annotations

from meta_supervisor.reading.otlp_schema import ResourceValue, as_bool
from meta_supervisor.tally.alpha_events import iso_day_ordinal
from meta_supervisor.tally.consistency import mismatch_detail
from meta_supervisor.tally.fingerprints import run_fingerprint, span_fingerprint
from meta_supervisor.tally.signal_store import span_ids


class Rulebook:
    """What the native core asks of Python for rare input, so that the answer is Python's own."""

    def __init__(self, prices) -> None:
        self._prices = prices
        self.day_ordinal = iso_day_ordinal
        self.span_fingerprint = span_fingerprint
        self.run_fingerprint = run_fingerprint
        self.span_ids = span_ids
        self.mismatch_detail = mismatch_detail

    def price(self, model: str) -> tuple[float, float, float] | None:
        price = self._prices.price_for(model) if self._prices is not None else None
        return None if price is None else (price.input, price.cached_input, price.output)

    @staticmethod
    def int_text(text: str) -> int | None:
        try:
            return int(text)
        except ValueError:
            return None

    @staticmethod
    def truthy(text: str) -> bool:
        return as_bool(ResourceValue(stringValue=text))
