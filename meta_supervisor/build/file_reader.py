"""Read one trace file from where the last build stopped, whatever its shape, and say where it stopped.

``FileCursor`` is what the incremental state keeps per input file: its identity (device, inode and a
digest of its first bytes), its shape, and how far it has been read (bytes of the file, or of the
decompressed stream for a zstd-compressed file, which is decompressed again and skipped up to there:
a zstd stream cannot be resumed in the middle). ``read_trace_file`` continues from a cursor (or from
the start) and returns the new cursor. A framed file whose framing broke down (``read_framed`` read
its rest as lines) is recorded as JSON lines, and continued as lines. A JSON-lines file is continued
at a line start: the rest of a line longer than the cap, counted and skipped last time, is skipped.
Files are opened with ``inputs.open_regular`` (never a FIFO or a device). A zstd stream of
JSON lines is offered to the native core first (``native_reader.read_native_zstd``), which reads it
with this module's result or declines.

Environment: ``ALPHATRACE_MAX_LINE_BYTES`` (the line cap, ``reading.formats.max_line_bytes``).
"""

from __future__ import annotations

from pathlib import Path

from meta_supervisor.reading.cursor import FileCursor
from meta_supervisor.reading.formats import FORMAT_EMPTY, FORMAT_FRAMED, FORMAT_JSON_LINES
from meta_supervisor.reading.inputs import HEAD_BYTES, head_digest, identity_of, open_regular

SKIP_CHUNK = 4 << 20


def read_trace_file(path: Path, aggregator, cursor: FileCursor | None = None, progress=None) -> FileCursor:
    """Read ``path`` from ``cursor`` (or the start) into ``aggregator``; the returned cursor says where it stopped."""
    from meta_supervisor.reading.shapes import ReadResult, RecordDecoder, read_framed, read_json_lines, skip_rest_of_line, sniff

    label = str(path)
    ident = identity_of(path)
    out = FileCursor(path=label, device=ident.device, inode=ident.inode, size=ident.size, mtime_ns=ident.mtime_ns)
    if cursor is not None:
        out.offset, out.records, out.format = cursor.offset, cursor.records, cursor.format
    decoder = RecordDecoder(aggregator, label)
    try:
        with open_regular(path) as handle:
            head = handle.read(HEAD_BYTES)
            out.head_length = len(head)
            out.head_digest = head_digest(path, len(head)) if head else ""
            shape = sniff(head, ident.size)
            if shape == FORMAT_FRAMED and out.offset and out.format == FORMAT_JSON_LINES:
                shape = FORMAT_JSON_LINES  # its framing broke down last time: the rest is lines
            if shape == "zstd":
                result = _read_zstd(handle, decoder, out, progress)
            else:
                out.format = shape
                if shape == FORMAT_JSON_LINES:
                    from meta_supervisor.build.native_reader import read_native

                    out.offset += skip_rest_of_line(handle, out.offset, progress)
                    handle.seek(out.offset)
                    result = read_native(aggregator, path, out.offset, None, progress, out.records)
                    if result is None:
                        result = read_json_lines(handle, decoder, out.records, progress=progress, start=out.offset)
                elif shape == FORMAT_FRAMED:
                    handle.seek(out.offset)
                    result = read_framed(handle, decoder, out.records, progress=progress, start=out.offset)
                    if result.lines_from is not None:
                        out.format = FORMAT_JSON_LINES
                else:
                    result = ReadResult(0, 0, 0)
    except OSError as exc:
        out.error = f"cannot read {label}: {exc}"
        return out
    out.offset += result.consumed
    out.records += result.records
    out.partial_tail_bytes = result.partial_tail
    return out


def _read_zstd(handle, decoder, out: FileCursor, progress):
    import zstandard

    from meta_supervisor.reading.shapes import Prepend, ReadResult, read_framed, read_json_lines, sniff

    handle.seek(0)
    stream = zstandard.ZstdDecompressor().stream_reader(handle, read_across_frames=True)
    try:
        inner_head = stream.read(8) if out.offset == 0 else b""
        if out.offset == 0:
            out.format = "zstd+" + (sniff(inner_head) if inner_head else FORMAT_EMPTY)
        native = _read_zstd_native(decoder, out, progress)
        if native is not None:
            return native
        if out.offset == 0:
            rest = stream
            reader = Prepend(inner_head, rest)
        else:
            remaining = out.offset
            while remaining > 0:
                chunk = stream.read(min(SKIP_CHUNK, remaining))
                if not chunk:
                    raise OSError(f"the compressed stream ends before byte {out.offset} that was already read")
                remaining -= len(chunk)
            reader = stream
        inner = out.format.split("+", 1)[1]
        if inner == FORMAT_JSON_LINES:
            return read_json_lines(reader, decoder, out.records, progress=progress, start=out.offset)
        if inner == FORMAT_FRAMED:
            result = read_framed(reader, decoder, out.records, progress=progress, start=out.offset)
            if result.lines_from is not None:
                out.format = "zstd+" + FORMAT_JSON_LINES
            return result
        return ReadResult(0, 0, 0)
    except zstandard.ZstdError as exc:
        decoder.aggregator.inputs.add_bad_line(decoder.file_label, out.records + 1, f"corrupt zstd stream: {exc}")
        return ReadResult(0, 0, 0)


def _read_zstd_native(decoder, out: FileCursor, progress):
    """A stream of JSON lines read by the native core from ``out.offset`` (the decompressed bytes
    read before), with the Python reader's result (``native_reader.read_native_zstd``); None when
    it is not a stream of JSON lines, or the core is not used or declines: read it in Python then."""
    if out.format != "zstd+" + FORMAT_JSON_LINES:
        return None
    from meta_supervisor.build.native_reader import read_native_zstd

    return read_native_zstd(decoder.aggregator, Path(out.path), out.offset, progress, out.records)
