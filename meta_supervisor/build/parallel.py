"""Use every core on a large JSON-lines file: split it at line boundaries, read the parts in parallel.

The parent process reads the first part into the build's aggregator (so the result stays that of a
sequential read: saved state first, then the file in order); each other part is read by a forked
child into a fresh aggregator and sent back as compact arrays. Parts are then merged in file order,
and a merge is accepted only if it is exactly what reading that part sequentially would have given:
no span of the part was seen before (a retried batch across the cut), and no run of the part was
already closed or waiting in the parent in a way a join could not reproduce, and no bounded table
would pass its limit. Otherwise that part is simply read again in the parent. So splitting changes
the speed, never the report.

Each child reads its part through the one seam for a part (``parts.read_part``: the native core
when it is installed and takes the part, else the Python reader); the parent's own part is read by
the native core straight into the build's tables when it can (``native_reader.read_native``), else
by the Python reader. The merge rules are ``merge.merge_part``.

A large whole-file zstd stream of JSON lines is read in two parts too (``read_zstd_in_parallel``),
when the native core is installed and the build's aggregator is still empty: the child decompresses
the stream up to the cut (a frame cannot be entered in the middle) and reads the rest, the parent
reads up to the cut, and the two parts meet at the same line start. A stream of many frames (as the
collector's file exporter writes them) is cut where a frame starts near the middle instead: the
child decodes from that frame on, the parent up to it, each only its own half. The child sends its
part's tallies one agent at a time as it makes them, and the parent merges each as it arrives
(``streamed_tallies``); a child lost in the middle of them has the parent's aggregator emptied and
the stream read again in one go.

Children are forked (``multiprocessing`` "fork" context) and only when the process has no other
thread; framed files, other compressed files, small files, and ``workers=1`` are read
sequentially. A child
dies with its parent (``die_with_parent``) and never holds the parent's state lock (its copy is
closed at the fork, ``services.state_files``): a killed build leaves nothing that blocks the next.

Reads no environment variables (``native_core`` reads ``ALPHATRACE_NATIVE``).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
from pathlib import Path

from meta_supervisor.build import merge, native_reader, parts
from meta_supervisor.build.file_reader import read_trace_file
from meta_supervisor.build.heap_trim import release_free_memory
from meta_supervisor.build.native_reader import read_native
from meta_supervisor.build.part_result import Handoff, PartResult
from meta_supervisor.build.streamed_tallies import PartLost, widen_pipe
from meta_supervisor.forked import die_with_parent, fork_is_safe
from meta_supervisor.reading.cursor import FileCursor
from meta_supervisor.reading.inputs import HEAD_BYTES, expected_spans, head_digest, identity_of, open_regular, zstd_decompressed_size
from meta_supervisor.reading.shapes import (
    FORMAT_JSON_LINES,
    RecordDecoder,
    read_json_lines,
    read_past_newline,
    skip_rest_of_line,
    sniff,
)
from meta_supervisor.tally import latency_runs
from meta_supervisor.tally.fingerprints import FingerprintMap, FingerprintSet
from meta_supervisor.tally.span_aggregator import SpanAggregator

MIN_SPLIT_BYTES = 48 << 20


def worker_count(requested: int) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def worth_splitting(path: Path, cursor: FileCursor | None, workers: int) -> bool:
    if worker_count(workers) < 2 or not fork_is_safe():
        return False
    try:
        size = os.path.getsize(path)
        with open_regular(path) as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    start = cursor.offset if cursor is not None else 0
    return sniff(head, size) == FORMAT_JSON_LINES and size - start >= MIN_SPLIT_BYTES


def split_points(path: Path, start: int, end: int, parts: int) -> list[int]:
    """Offsets just after a newline, so each part holds whole lines: [start, p1, ..., end]."""
    points = [start]
    with open(path, "rb") as handle:
        for k in range(1, parts):
            target = start + (end - start) * k // parts
            handle.seek(max(target, points[-1]))
            position = handle.tell()
            length, found = read_past_newline(handle, 1 << 16)
            position = position + length if found else end
            if position < end:
                points.append(position)
    points.append(end)
    return points


def drop_parent_tables(aggregator: SpanAggregator) -> None:
    """In a forked worker: let go of the build's span tables, copied at the fork with the rest of the
    parent (a worker reads into tables of its own). Their pages are the parent's, shared, but they
    count in the worker's RSS too (1 M spans: ~20 MB of its ~70 MB peak) until it unmaps them."""
    aggregator.seen = FingerprintSet()
    aggregator.closed_runs = FingerprintMap()
    release_free_memory()


def _child(connection, path, start, stop, options_tuple, parent: int, aggregator: SpanAggregator, handoff: Handoff | None = None) -> None:
    die_with_parent(parent)
    drop_parent_tables(aggregator)
    try:
        result = parts.read_part(path, start, stop, options_tuple, handoff=handoff)
    except BaseException as exc:  # reported to the parent, which then reads the part itself
        connection.send_bytes(pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}")))
    else:
        result.send(connection, handoff)
    finally:
        connection.close()


def read_in_parallel(path: Path, aggregator: SpanAggregator, options, advance, cursor: FileCursor | None = None) -> FileCursor:
    ident = identity_of(path)
    out = FileCursor(
        path=str(path), device=ident.device, inode=ident.inode, size=ident.size, mtime_ns=ident.mtime_ns, format=FORMAT_JSON_LINES
    )
    out.offset = cursor.offset if cursor is not None else 0
    out.records = cursor.records if cursor is not None else 0
    with open_regular(path) as handle:
        out.head_length = len(handle.read(HEAD_BYTES))
        out.offset += skip_rest_of_line(handle, out.offset, advance)  # the rest of a line over the cap
    out.head_digest = head_digest(path, out.head_length)
    parts = worker_count(options.workers)
    points = split_points(path, out.offset, ident.size, parts)
    options_tuple = aggregator.part_options()
    context = multiprocessing.get_context("fork")
    children = []
    for k in range(1, len(points) - 1):
        receiver, sender = context.Pipe(duplex=False)
        stop = points[k + 1] if k + 2 < len(points) else None  # the last part reads to the end of the file
        handoff = _handoff(aggregator)
        arguments = (sender, path, points[k], stop, options_tuple, os.getpid(), aggregator, handoff)
        process = context.Process(target=_child, args=arguments, daemon=True)
        process.start()
        sender.close()
        children.append((receiver, process, points[k], stop, handoff))
    scale = len(points) - 1

    def scaled(count: int) -> None:
        if advance is not None:
            advance(count * scale)

    decoder = RecordDecoder(aggregator, str(path))
    first_stop = None if len(points) == 2 else points[1]
    expect_part(aggregator, expected_spans(path, points[0], first_stop))
    first = read_native(aggregator, path, points[0], first_stop, scaled, out.records)
    if first is None:
        with open(path, "rb", buffering=0) as handle:
            handle.seek(points[0])
            limit = None if first_stop is None else first_stop - points[0]
            first = read_json_lines(handle, decoder, out.records, limit, scaled, start=points[0])
    out.offset += first.consumed
    out.records += first.records
    out.partial_tail_bytes = first.partial_tail
    release_free_memory()  # what reading the first part freed, before the others' tallies come in (heap_trim)
    for receiver, process, start, stop, handoff in children:
        try:
            payload = PartResult.receive(receiver, handoff)
        except (EOFError, OSError, RuntimeError, pickle.UnpicklingError) as exc:
            payload = RuntimeError(str(exc))
        receiver.close()
        process.join()
        merged = isinstance(payload, PartResult) and merge.merge_part(aggregator, payload, str(path), out.records)
        if handoff is not None:
            handoff.close()
        if merged:
            part = payload
        else:
            with open(path, "rb", buffering=0) as handle:  # not mergeable exactly: read it here instead
                handle.seek(start)
                result = read_json_lines(handle, decoder, out.records, None if stop is None else stop - start, start=start)
            part = result
        out.offset += part.consumed
        out.records += part.records
        out.partial_tail_bytes = part.partial_tail
        del payload, part
        release_free_memory()  # the part's arrays, in the tables now: their pages back before the state is saved
    return out


def expect_part(aggregator: SpanAggregator, spans: int) -> None:
    """Size the span set's spilled filter for the part this process reads (``spans``), not for the
    whole file its table was sized for: the other parts' spans are added by their merge, left out
    of the filter (``merge.merge_part``). 5 M spans in two parts: ~2.8 MB of filter, not 5.3."""
    runs = aggregator.seen.runs
    if runs is not None and hasattr(runs, "expected"):
        runs.expected = spans + len(aggregator.seen)  # what may spill: all but the last resident ones


def _handoff(aggregator: SpanAggregator) -> Handoff | None:
    """The files a worker hands its part's tables over through, when the build's tables are bounded
    (``fingerprints.SpillPlan``) and the native core can bound the part's too."""
    if aggregator.seen.runs is None:
        return None
    return Handoff(aggregator.spill)


ZSTD_SPLIT_AT = 0.55  # the second part also decompresses the first to skip it: the first is a bit longer
# ... and longer still by what the first reads while the second makes and packs its tallies (~0.07 s
# for 1,000 agents, whatever the stream's size): decompressed bytes, at most a twentieth of the stream
# (docs/benchmarks.md "The second core after the read"; a share, 0.58, raised the 5 M-span peak)
ZSTD_WORKER_LEAD = 24 << 20
ZSTD_FRAME_SPLIT_AT = 0.5  # cut at a frame: each part decodes only its own, so halves of the compressed bytes


def worth_splitting_zstd(path: Path, cursor: FileCursor | None, workers: int) -> bool:
    """A whole-file zstd stream of JSON lines with ``MIN_SPLIT_BYTES`` or more left to read (its
    decompressed size estimated from its start), two workers or more, the native core installed:
    read in two parts in parallel (``read_zstd_in_parallel``)."""
    if worker_count(workers) < 2 or (cursor is not None and cursor.format != "zstd+" + FORMAT_JSON_LINES):
        return False
    total = zstd_decompressed_size(path)  # None at once for a file that is not zstd
    start = cursor.offset if cursor is not None else 0
    if total is None or total - start < MIN_SPLIT_BYTES:
        return False
    return fork_is_safe() and native_reader._zstd_core() is not None


def read_zstd_in_parallel(path: Path, aggregator: SpanAggregator, options, advance, cursor: FileCursor | None = None) -> FileCursor:
    """A whole-file zstd stream of JSON lines in two parts read at once: a forked child decompresses
    the stream up to about ``ZSTD_SPLIT_AT`` of what is left (its size estimated from its start)
    and reads from the first line start there to the end into tables of its own
    (``native_reader.read_zstd_from_line``), while this process reads up to that same line start into
    the build's tables (``native_reader.read_zstd_into`` with ``stop``); the child's part is then
    merged (``merge_part``). The result is that of reading the stream in one go
    (``file_reader.read_trace_file``), which is what happens instead when the aggregator is not
    empty, when either part is declined (this part's tables are cleared first: nothing of it was
    added yet), or when the stream ends before the cut; a child's part that cannot be merged
    exactly is read again from the cut by ``read_trace_file``."""
    if not aggregator.is_empty() or aggregator.run_records is not None:
        return read_trace_file(path, aggregator, cursor, advance)
    handoff = _handoff(aggregator)  # the child's part, its tables bounded, comes back through files
    try:
        return _read_zstd_halves(path, aggregator, advance, cursor, handoff)
    finally:
        if handoff is not None:
            handoff.close()


def _read_zstd_halves(path: Path, aggregator: SpanAggregator, advance, cursor: FileCursor | None, handoff: Handoff | None) -> FileCursor:
    """``read_zstd_in_parallel`` once it splits the stream."""
    ident = identity_of(path)
    out = FileCursor(
        path=str(path), device=ident.device, inode=ident.inode, size=ident.size, mtime_ns=ident.mtime_ns, format="zstd+" + FORMAT_JSON_LINES
    )
    out.offset = cursor.offset if cursor is not None else 0
    out.records = cursor.records if cursor is not None else 0
    with open_regular(path) as handle:
        out.head_length = len(handle.read(HEAD_BYTES))
    out.head_digest = head_digest(path, out.head_length)
    total = zstd_decompressed_size(path) or 0
    frame = _frame_near(path, ident.size) if out.offset == 0 and native_reader.frame_cut() else None
    if frame is None:  # the child decodes the stream from its start, dropping what is before the cut
        left = max(total - out.offset, 0)  # decompressed bytes still to read (estimated)
        cut = out.offset + int(left * ZSTD_SPLIT_AT) + min(ZSTD_WORKER_LEAD, left // 20)
        rest = expected_spans(path) * max(total - cut, 0) // max(total, 1)  # the child's tables, sized for its part
        child_at = cut
    else:  # the child decodes from that frame on: from the first line start at or after its first byte
        cut = None
        rest = expected_spans(path) * (ident.size - frame) // max(ident.size, 1)
        child_at = 1
    options_tuple = aggregator.part_options()
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    widen_pipe(sender.fileno())  # the worker's tallies run ahead of the merge (streamed_tallies)
    arguments = (sender, path, child_at, options_tuple, os.getpid(), rest, aggregator, handoff, frame)
    child = context.Process(target=_zstd_child, args=arguments, daemon=True)
    child.start()
    sender.close()

    def stop_child() -> None:
        # killed before its pipe is closed: a worker still sending its tallies (a merge refused)
        # would otherwise meet the closed pipe and print a broken pipe's traceback
        if child.is_alive():
            child.kill()
        child.join()
        receiver.close()

    progress, undo = native_reader.undoable(advance)
    expect_part(aggregator, expected_spans(path) - rest)
    first = native_reader.read_zstd_into(aggregator, path, out.offset, progress, stop=cut, frame_cut=frame)
    if first is None or not first[4]:
        stop_child()
        if first is None:  # declined: the stream is read in one go (and the core may decline it again)
            return read_trace_file(path, aggregator, cursor, advance)
    consumed, records, partial_tail, tallies, stopped, frame_start = first
    part = None
    if stopped:
        try:
            start = pickle.loads(receiver.recv_bytes())
            if isinstance(start, BaseException):
                raise start
            part = PartResult.receive(receiver, handoff)
        except (EOFError, OSError, RuntimeError, pickle.UnpicklingError):
            part = None
        # (the child's start counts from the frame's first byte when cut at a frame)
        if part is None or start + (frame_start or 0) != out.offset + consumed:  # not read: the stream in one go
            stop_child()
            aggregator.seen.clear()
            aggregator.closed_runs.clear()
            undo()
            return read_trace_file(path, aggregator, cursor, advance)
    aggregator.add_tallies(tallies, out.records)
    latency_runs.bound(aggregator)
    del first, tallies  # added (copied): not held through the merge below (peak RSS)
    out.offset += consumed
    out.records += records
    out.partial_tail_bytes = partial_tail
    if part is None:
        return out
    try:  # the worker's tallies merged as it sends them (streamed_tallies): it runs until they are in
        merged = merge.merge_part(aggregator, part, str(path), out.records)
    except (PartLost, OSError, pickle.UnpicklingError):  # the worker lost halfway through its tallies: none of it kept
        stop_child()
        aggregator.reset()
        undo()
        return read_trace_file(path, aggregator, cursor, advance)
    finally:
        stop_child()
    if not merged:  # the rest read again, in one go
        return read_trace_file(path, aggregator, out, advance)
    if advance is not None:
        advance(part.consumed)
    out.offset += part.consumed
    out.records += part.records
    out.partial_tail_bytes = part.partial_tail
    del part
    release_free_memory()  # the part's arrays, in the tables now: their pages back before the state is saved
    return out


def _frame_near(path: Path, size: int) -> int | None:
    """The compressed offset of the data frame's start nearest ``ZSTD_FRAME_SPLIT_AT`` of a zstd
    file, at most halfway from there to either end (the middle half of the file), or None (one
    frame there, as ``zstd`` on the command line writes a file: no cut). Found by walking the frames' and blocks' headers
    (``native_reader.frame_near``), not guessed from the bytes; the parent's decoder still checks
    that a frame does end right there (``read_zstd_into``'s ``frame_cut``), else it reads on to
    the end."""
    target = int(size * ZSTD_FRAME_SPLIT_AT)
    return native_reader.frame_near(path, target, target // 2, (target + size) // 2)


def _zstd_child(
    connection,
    path: Path,
    offset: int,
    options_tuple,
    parent: int,
    expected: int,
    aggregator: SpanAggregator,
    handoff: Handoff | None,
    frame: int | None = None,
) -> None:
    """The second part of ``read_zstd_in_parallel``: where it starts (from the frame's first byte,
    with ``frame``), then the ``PartResult``."""
    die_with_parent(parent)
    drop_parent_tables(aggregator)
    try:
        read = native_reader.read_zstd_from_line(path, offset, options_tuple, expected, handoff, seek=frame)
        if read is None:
            raise RuntimeError("the native core declined the second part of the zstd stream")
    except BaseException as exc:  # reported to the parent, which then reads the stream itself
        connection.send_bytes(pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}")))
    else:
        part, start = read
        connection.send_bytes(pickle.dumps(start))
        part.send(connection, handoff)
    finally:
        connection.close()
