"""The shapes a trace file takes, and the caps a reader holds every record to: shared vocabulary.

A leaf, so the shape reader (``shapes``), the file reader (``build.file_reader``), the parallel and
native readers and the supervisor's command name a shape and a cap the same way.

The line cap (``max_line_bytes``): a JSON line longer than this is one bad line, skipped without
being held in memory (``shapes.read_json_lines``). The default, ``MAX_LINE`` = 64 MiB, is
above the largest line a collector writes: a batch of 8,192 spans (the batch processor's default
size) of up to ~8 KB each; a longer line is junk (a file of NULs, a binary file, a lost newline).

Environment: ``ALPHATRACE_MAX_LINE_BYTES``, the line cap in bytes (1024 to ``MAX_FRAME``; a bad
value is a ``ConfigError``).
"""

from __future__ import annotations

import os

from settings.config_error import env_number

FORMAT_EMPTY = "empty"
FORMAT_FRAMED = "framed"
FORMAT_JSON_LINES = "json-lines"
FORMAT_ZSTD_JSON_LINES = "zstd+json-lines"  # a whole-file zstd stream: "zstd+" and the shape inside
FORMAT_ZSTD_FRAMED = "zstd+framed"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

MAX_FRAME = 1 << 30  # the largest message (framed, or decompressed from one zstd frame) read
MAX_LINE = 64 << 20  # the line cap's default
MIN_LINE_CAP = 1024
ENV_MAX_LINE = "ALPHATRACE_MAX_LINE_BYTES"


def max_line_bytes() -> int:
    """The line cap: ``ALPHATRACE_MAX_LINE_BYTES`` when set, else ``MAX_LINE``."""
    return env_number(os.environ, ENV_MAX_LINE, MAX_LINE, unit="bytes", minimum=MIN_LINE_CAP, maximum=MAX_FRAME)
