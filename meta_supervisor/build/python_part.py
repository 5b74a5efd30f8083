"""The Python reader of a part of a JSON-lines file: the reference implementation of ``parts.PartReader``.

Reads ``[start, stop)`` into a fresh aggregator with the shape reader (``reading.shapes``) and the
aggregator (``tally.span_aggregator``), and returns its tallies as a ``PartResult``. It never declines.

Reads no environment variables (``reading.formats`` reads the line cap).
"""

from __future__ import annotations

import itertools
import pickle
from array import array
from pathlib import Path

from meta_supervisor.build.part_result import PartResult
from meta_supervisor.reading.inputs import expected_spans
from meta_supervisor.reading.shapes import RecordDecoder, read_json_lines
from meta_supervisor.tally.span_aggregator import SpanAggregator


def read_part_python(path: Path, start: int, stop: int | None, options_tuple, first_number: int = 0) -> PartResult:
    """Read ``[start, stop)`` of a JSON-lines file into a fresh aggregator: the reference reader of a part."""
    prices, since_ns, until_ns, collect_signals, max_open_runs = options_tuple
    aggregator = SpanAggregator(
        prices,
        since_ns,
        until_ns,
        expected_spans=expected_spans(path, start, stop),
        collect_signals=collect_signals,
        max_open_runs=max_open_runs,
    )
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        result = read_json_lines(
            handle, RecordDecoder(aggregator, str(path)), first_number, None if stop is None else stop - start, start=start
        )
    closed = aggregator.closed_runs
    state = pickle.dumps(
        (aggregator.inputs, aggregator.agents, aggregator.agent_order, aggregator.pending, sorted(aggregator._dead)),
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    return PartResult(
        consumed=result.consumed,
        records=result.records,
        partial_tail=result.partial_tail,
        aggregator_state=state,
        span_fps=array("Q", filter(None, aggregator.seen.slots)),
        closed_keys=array("Q", itertools.compress(closed.keys, closed.keys)),
        closed_states=bytes(itertools.compress(closed.states, closed.keys)),
    )
