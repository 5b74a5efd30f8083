"""The full build: every input file read from its start into one aggregator.

Large files of JSON lines, plain or one zstd stream (with the native core), are split across
processes (``parallel``); any other file is read by ``file_reader``. ``read_file_maybe_parallel`` is
also how an incremental build reads a file (``incremental``), from its cursor.

Reads no environment variables.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from meta_supervisor.build.options import BuildOptions, BuildStats, new_aggregator, progress_adapter
from meta_supervisor.reading.inputs import expected_spans

# the aggregator, the file reader and the parallel reader (msgspec, zstandard) are imported where
# spans are read, so that a build with nothing new to read does not pay for importing them.


def full_build(options: BuildOptions, files: list[Path], stats: BuildStats, before_last: Callable | None = None):
    """Read every file from the start; ``before_last(aggregator, cursors)`` is called just before the
    last file is read (the incremental state saves its checkpoint there)."""
    sizes = {}
    for path in files:
        try:
            sizes[path] = os.path.getsize(path)
        except OSError:
            sizes[path] = 0
    total = sum(sizes.values())
    aggregator = new_aggregator(options, expected_spans=sum(expected_spans(path) for path in files))
    advance = progress_adapter(options, total)
    cursors: dict = {}  # path -> reading.cursor.FileCursor
    for index, path in enumerate(files):
        if before_last is not None and index == len(files) - 1:
            before_last(aggregator, cursors)
        cursor = read_file_maybe_parallel(path, aggregator, options, advance)
        cursors[str(path)] = cursor
        stats.bytes_read += cursor.size
        stats.files_read += 1
    aggregator.settle()
    return aggregator, cursors


def read_file_maybe_parallel(path: Path, aggregator, options: BuildOptions, advance, cursor=None):
    from meta_supervisor.build.file_reader import read_trace_file
    from meta_supervisor.build.parallel import read_in_parallel, read_zstd_in_parallel, worth_splitting, worth_splitting_zstd

    if worth_splitting(path, cursor, options.workers):
        return _covering(read_in_parallel(path, aggregator, options, advance, cursor))
    if worth_splitting_zstd(path, cursor, options.workers):
        return _covering(read_zstd_in_parallel(path, aggregator, options, advance, cursor))
    return _covering(read_trace_file(path, aggregator, cursor, advance))


def _covering(cursor):
    """The file grew while it was read (its size is taken before): its recorded size then covers what
    was read, so a saved offset is never past the saved size (``state_checks`` holds states to it)."""
    if not cursor.format.startswith("zstd"):
        cursor.size = max(cursor.size, cursor.offset + cursor.partial_tail_bytes)
    return cursor
