"""Which files to read: ``--input`` specs (a file, a folder, or a glob) resolved to an ordered list.

Collector rotation renames the active file to ``traces-<timestamp>[-<reason>].jsonl`` and starts a new
one; sorting by path puts every backup before the active ``traces.jsonl`` (``-`` sorts before ``.``),
and the newer ``-size``/``-time`` reason suffix keeps that order. A folder means its regular,
non-hidden files; formats are detected from the bytes later, never from names.

Only regular files are read (``regular_file_problem``): a FIFO, a device such as ``/dev/zero``, a
socket or anything else that is not a regular file is never opened for reading (opening a FIFO
blocks until a writer comes; a device never ends). Named explicitly by ``--input`` it is a
configuration error (``ConfigError``: the command exits 2 and names it); met in a folder or a glob
it is skipped with a note naming it. ``open_regular`` opens a file without blocking and refuses it
if it is not regular by then (a file replaced between listing and reading).

A path named explicitly (``--input``) that does not exist is a ``ConfigError`` too (``require_inputs``,
checked before anything is read or written): a typo must not overwrite the report with an empty one.
The default trace file not written yet, an empty folder or a pattern matching nothing are notes.

A file is recognised across renames by its identity (device, inode) plus a digest of its first bytes,
so a rotated backup is not read twice and a replaced or truncated file is noticed.

Reads no environment variables (the CLI resolves ``ALPHATRACE_TRACE_FILE``).
"""

from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from meta_supervisor.blake2 import blake2b
from meta_supervisor.reading.formats import ZSTD_MAGIC
from otel.file_exporter import non_regular_kind
from settings.config_error import ConfigError

HEAD_BYTES = 4096
_IGNORED_SUFFIXES = (".lock", ".tmp", ".swp", ".partial")


@dataclass(frozen=True)
class FileIdentity:
    device: int
    inode: int
    size: int
    mtime_ns: int


def identity_of(path: Path) -> FileIdentity:
    st = os.stat(path)
    return FileIdentity(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def head_digest(path: Path, length: int) -> str:
    """BLAKE2b of the first ``length`` bytes (to tell an appended file from a replaced one)."""
    with open_regular(path) as handle:
        return blake2b(handle.read(length), digest_size=16).hexdigest()


def regular_file_problem(path: Path) -> str | None:
    """None for a regular file (a symbolic link to one included), else what it is instead."""
    try:
        return non_regular_kind(os.stat(path).st_mode)
    except OSError:
        return None  # gone or unreadable: reading it says so


def _refusal(path: Path | str, kind: str) -> str:
    return f"input {path} is {kind}, not a regular file: only regular files are read"


def open_regular(path: Path | str):
    """``open(path, "rb", buffering=0)`` for a regular file; anything else raises ``OSError``
    without blocking (opened with ``O_NONBLOCK``, then checked with ``fstat``)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        kind = non_regular_kind(os.fstat(fd).st_mode)
        if kind is not None:
            raise OSError(_refusal(path, kind))
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def _is_candidate(path: Path, messages: list[str]) -> bool:
    if path.name.startswith(".") or path.name.endswith(_IGNORED_SUFFIXES) or path.is_dir():
        return False
    kind = regular_file_problem(path)
    if kind is not None:
        messages.append(_refusal(path, kind) + " (skipped)")
        return False
    return path.exists()


def require_inputs(specs: list[str]) -> None:
    """Explicitly named inputs: a path that does not exist (a pattern is exempt: it may match nothing
    yet) raises ``ConfigError`` naming it and the fix."""
    for spec in specs:
        if not glob.has_magic(spec) and not os.path.lexists(Path(spec).expanduser()):
            raise ConfigError(f"--input {spec} does not exist; check the path, or leave --input out to read the default trace file")


def resolve_inputs(specs: list[str]) -> tuple[list[Path], list[str]]:
    """The files named by ``specs``, sorted by path and deduplicated; plus a message per empty spec
    and per skipped file that is not regular. A spec naming a file that is not regular (a FIFO, a
    device, a socket) raises ``ConfigError``."""
    found: dict[str, Path] = {}
    messages: list[str] = []
    for spec in specs:
        path = Path(spec).expanduser()
        matches: list[Path]
        if path.is_dir():
            matches = [child for child in sorted(path.iterdir()) if _is_candidate(child, messages)]
            if not matches:
                messages.append(f"input folder {spec} has no trace files")
        elif path.exists():
            kind = regular_file_problem(path)
            if kind is not None:
                raise ConfigError(_refusal(spec, kind))
            matches = [path]
        elif glob.has_magic(spec):
            candidates = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
            matches = [Path(p) for p in candidates if _is_candidate(Path(p), messages)]
            if not matches:
                messages.append(f"input pattern {spec} matches no files")
        else:
            matches = []
            messages.append(f"input {spec} does not exist (no spans have been written yet?)")
        for match in matches:
            found.setdefault(os.path.realpath(match), match)
    ordered = sorted(found.values(), key=lambda p: str(p))
    return ordered, messages


DEFAULT_BYTES_PER_SPAN = 1200  # a collector line of alphatrace spans; other shapes of file are not sampled
SPAN_HEADROOM = 0.85  # tables sized for ~18% more spans than the sample suggests: a later merge rarely grows them


def expected_spans(path: Path, start: int = 0, stop: int | None = None) -> int:
    """About how many spans bytes ``[start, stop)`` of a trace file hold, to size the fingerprint
    tables before reading: from the bytes per span of the whole JSON lines in the file's first 2 MB
    (a span is hundreds of bytes to several KB), or of a whole-file zstd stream's first 4 MB once
    decompressed (``_zstd_bytes_per_span``), else a default. Too high costs memory, too low a table
    growing while it is read."""
    try:
        ident = identity_of(path)
    except OSError:
        return 0
    size = ident.size if stop is None else stop
    return int(max(size - start, 0) / _bytes_per_span(str(path), ident) / SPAN_HEADROOM)


@functools.lru_cache(maxsize=64)
def _bytes_per_span(path: str, ident: FileIdentity) -> int:
    """Sampled once per file version (a build asks for each file, and each forked part again). For
    a whole-file zstd stream: bytes of the file per span (``_zstd_bytes_per_span``)."""
    try:
        with open_regular(path) as handle:
            head = handle.read(2 << 20)
            if head[:4] == ZSTD_MAGIC:
                return _zstd_bytes_per_span(_zstd_sample_of(path, ident))
            if head[:1] != b"{":
                return DEFAULT_BYTES_PER_SPAN
            # all the whole lines of the head, not the first alone: a file of one span a line
            # alternates short and long lines (an LLM span, its run's root with its events)
            end = head.rfind(b"\n")
            if end > 0:
                spans = head.count(b'"spanId"', 0, end)
            else:  # a line longer than the head: a batch's spans are grouped by scope, so all of it
                end, spans = _long_first_line(handle, head)
    except OSError:
        return DEFAULT_BYTES_PER_SPAN
    return min(max(end // spans, 200), 8000) if spans else DEFAULT_BYTES_PER_SPAN


LONG_LINE_SAMPLE = 64 << 20  # a first line read this far at most to size the tables


def _long_first_line(handle, head: bytes) -> tuple[int, int]:
    """(bytes, spans) of a first line longer than ``head`` (its first bytes), read on a chunk at a
    time (never whole) up to ``LONG_LINE_SAMPLE``; (0, 0) when it does not end by then."""
    key = b'"spanId"'
    length, spans, chunk = 0, 0, head
    while True:
        end = chunk.find(b"\n")
        spans += chunk.count(key, 0, len(chunk) if end < 0 else end)
        if end >= 0:
            return length + end, spans
        length += len(chunk)
        tail = chunk[-(len(key) - 1) :]  # a key cut by the chunk's end is counted with the next
        more = handle.read(2 << 20)
        if not more or length >= LONG_LINE_SAMPLE:
            return 0, 0
        length -= len(tail)
        chunk = tail + more


ZSTD_SAMPLE = 4 << 20  # decompressed bytes sampled from the start of a zstd stream
ZSTD_SAMPLE_READ = 16 << 10  # compressed bytes handed to the decoder at a time (the count's precision)
MIN_ZSTD_BYTES_PER_SPAN = 50  # at most ~24x compression of 1,200-byte spans: a zstd bomb sizes no huge table


def _zstd_bytes_per_span(sample) -> int:
    """Compressed bytes per span of a whole-file zstd stream, from its start (``_zstd_sample``): the
    decompressed size is not in the stream (a collector writes it as it goes), and the build's
    tables are sized from this before reading: too high costs memory, too low a table that grows.
    At least ``MIN_ZSTD_BYTES_PER_SPAN``; ``DEFAULT_BYTES_PER_SPAN`` when the start holds no span
    or is not a readable stream."""
    if sample is None or not sample[2]:
        return DEFAULT_BYTES_PER_SPAN
    compressed, _, spans, _ = sample
    return max(int(compressed / spans), MIN_ZSTD_BYTES_PER_SPAN)


def zstd_decompressed_size(path: Path) -> int | None:
    """About how many bytes a whole-file zstd stream of JSON lines decompresses to, from the
    compression of its start (``_zstd_sample``; at most ``MAX_ZSTD_RATIO`` times the file); None when
    it is not one (not zstd, not JSON, or unreadable)."""
    try:
        ident = identity_of(path)
        sample = _zstd_sample_of(str(path), ident)
    except OSError:
        return None
    if sample is None or sample[3][:1] != b"{":
        return None
    compressed, decompressed, _, _ = sample
    return int(ident.size * min(decompressed / compressed, MAX_ZSTD_RATIO))


MAX_ZSTD_RATIO = 50


@functools.lru_cache(maxsize=64)
def _zstd_sample_of(path: str, ident: FileIdentity):
    with open_regular(path) as handle:
        if handle.read(4) != ZSTD_MAGIC:
            return None
        return _zstd_sample(handle)


def _zstd_sample(handle) -> tuple[float, int, int, bytes] | None:
    """(compressed bytes, the decompressed bytes of the whole lines they hold (or of the first line,
    if longer), spans in those, the first bytes) of the start of a zstd stream: up to
    ``ZSTD_SAMPLE`` bytes decompressed, the compressed ones counted to ``ZSTD_SAMPLE_READ``. None
    when it is not a readable stream, or an empty one."""
    import zstandard

    class Counted:
        given = 0

        def read(self, size: int = -1) -> bytes:
            data = handle.read(ZSTD_SAMPLE_READ if size < 0 else min(size, ZSTD_SAMPLE_READ))
            self.given += len(data)
            return data

    handle.seek(0)
    source = Counted()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(source, read_size=ZSTD_SAMPLE_READ, read_across_frames=True)
        sample = reader.read(ZSTD_SAMPLE)
    except zstandard.ZstdError:
        return None
    if not sample:
        return None
    end = sample.rfind(b"\n") + 1 or len(sample)  # whole lines, or all of a line longer than the sample
    return source.given * end / len(sample), end, sample.count(b'"spanId"', 0, end), sample[:8]
