"""Run and signal records for the supervisor's policy, read by the report's reader.

``read_records(specs)`` resolves trace files, folders or globs like the report does
(``inputs``: rotated backups before the active file), reads every shape the collector writes
(JSON lines, framed protobuf or JSON, zstd; ``file_reader`` / ``shapes``), drops spans seen
twice (exporter retries), and returns ``alpha.records.Records``: one ``RunRecord`` per run root span
and the last ``SignalRecord`` per (agent, symbol, as-of date) (``signal_store``; scoring keeps only
that one anyway). Unreadable lines are counted in ``bad_lines``, ``alphatrace.alpha.signal`` events that cannot
be scored in ``bad_signals``.

Reads no environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alpha.records import Records
from meta_supervisor.reading.inputs import resolve_inputs


@dataclass
class ReadRecords:
    records: Records
    files: list[Path] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # inputs that do not exist, files that could not be read


def trace_specs(path: Path) -> list[str]:
    """A trace file and its rotated backups (``traces-*.jsonl`` next to ``traces.jsonl``), the pattern
    only when it matches a file (having none is the normal case, not worth a message); a folder as is."""
    if path.is_dir():
        return [str(path)]
    backups = str(path.with_name(f"{path.stem}-*{path.suffix}"))
    return [str(path), backups] if resolve_inputs([backups])[0] else [str(path)]


def read_records(specs: list[str]) -> ReadRecords:
    from meta_supervisor.build.file_reader import read_trace_file
    from meta_supervisor.tally.span_aggregator import SpanAggregator

    files, messages = resolve_inputs(specs)
    aggregator = SpanAggregator(None, collect_signals=True, collect_runs=True)
    for path in files:
        cursor = read_trace_file(path, aggregator)
        if cursor.error:
            messages.append(cursor.error)
    signals = []
    unusable = 0
    for name in sorted(aggregator.agents):
        store = aggregator.agents[name].signals
        signals.extend(store.records(name))
        unusable += store.unusable
    records = Records(runs=aggregator.run_records, signals=signals, bad_lines=aggregator.inputs.bad_lines, bad_signals=unusable)
    return ReadRecords(records, files, messages)
