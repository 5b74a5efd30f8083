"""Read collector file-exporter output in every shape it takes, from a byte offset, losing nothing.

Shapes, detected from the bytes (never from the file name):

* ``json-lines``: one OTLP/JSON ``ExportTraceServiceRequest`` per line (the default, and what the
  embedded exporter writes);
* ``framed``: each message preceded by its 4-byte big-endian length (``format: proto``, or any
  ``compression`` without the ``exporter.file.nativeCompression`` gate); each message is OTLP/JSON,
  protobuf, or either one compressed as its own zstd frame;
* ``zstd``: the whole file is a zstd stream (the native-compression gate) holding JSON lines, or
  framed messages for ``format: proto``.

A corrupt line or message is counted, reported with file and line (message) number, and skipped; a
line that is valid JSON but has the wrong shape is read span by span so that only the bad spans are
lost. An incomplete last record (the file is being written) is left for the next build and does not
fail this one: the returned offset stops before it.

Hostile bytes (``sniff``, ``read_framed``, ``read_json_lines``):

* framing is trusted only when it is plausible: a first length of zero, beyond ``MAX_FRAME``, or a
  message that does not start like one (a run of NULs, say) means the file is read as lines, and so
  does the rest of a framed file from a frame length beyond ``MAX_FRAME`` or from a zero length not
  followed by a plausible frame; lines after the junk are read, the junk up to the next newline is
  one bad line, except a leading run of NULs, which is one bad line and the rest of its line is read
  (a crash can leave NULs where the file was extended, and a restarted writer appends after them);
* a line longer than the line cap (``formats.max_line_bytes``: 64 MiB unless
  ``ALPHATRACE_MAX_LINE_BYTES`` says otherwise) is one bad line reported with its byte offset,
  skipped in blocks up to its newline (or the end of the file) without being held in memory: reading
  holds at most max(``BLOCK_SIZE``, cap + 1) bytes of a line (1.5 times that while its buffer grows).
  The native core is given the same cap and declines a part with a longer line.

Reads ``ALPHATRACE_MAX_LINE_BYTES`` (through ``formats.max_line_bytes``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from meta_supervisor.reading.formats import (
    ENV_MAX_LINE,
    FORMAT_EMPTY,
    FORMAT_FRAMED,
    FORMAT_JSON_LINES,
    MAX_FRAME,
    ZSTD_MAGIC,
    max_line_bytes,
)
from meta_supervisor.reading.otlp_schema import Event, ResourceKeyValue, Span, request_decoder
from meta_supervisor.reading.resource import is_tail_sampled, resource_facts

BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark: skipped at the start of a line (tools on Windows write one)
BLOCK_SIZE = 2 << 20


Progress = Callable[[int], None]  # called with the number of new bytes read


def without_bom(data):
    """``data`` without a UTF-8 byte order mark at its start (a line's JSON starts after it)."""
    return data[3:] if data[:3] == BOM else data


def plausible_frame(header: bytes, message: bytes) -> bool:
    """Whether a 4-byte length and the first bytes of its message look like a collector's frame: a
    length from 1 to ``MAX_FRAME`` and a message starting as OTLP/JSON, protobuf field 1, or zstd."""
    size = int.from_bytes(header, "big")
    start = message[:4]
    return 0 < size <= MAX_FRAME and bool(start) and (start[:1] in (b"{", b"\x0a") or ZSTD_MAGIC.startswith(start))


def sniff(head: bytes, size: int | None = None) -> str:
    """The shape of a file (or of a decompressed stream) from its first bytes (and its size, if known).

    Framed only when the first frame is plausible (``plausible_frame``; junk after it is
    ``read_framed``'s to handle). A first frame reaching beyond the end of the file is a message
    being written (the collector writes the length, then the message), unless ``head`` also holds a
    JSON line start (a newline, then ``{"resourceSpans"``): then its length is junk. Anything else, a
    run of NULs among it, is read as lines."""
    if not head:
        return FORMAT_EMPTY
    if head[:4] == ZSTD_MAGIC:
        return "zstd"
    if head[0] >= 0x09:  # text
        return FORMAT_JSON_LINES
    if not plausible_frame(head[:4], head[4:8]):
        return FORMAT_JSON_LINES
    if size is not None and 4 + int.from_bytes(head[:4], "big") > size and b'\n{"resourceSpans"' in head:
        return FORMAT_JSON_LINES
    return FORMAT_FRAMED


@dataclass
class ReadResult:
    consumed: int  # bytes (of the file, or of the decompressed stream) fully processed
    records: int  # lines or messages fully processed
    partial_tail: int  # bytes of an incomplete last record left for the next build
    lines_from: int | None = None  # read_framed: the offset from which the rest was read as lines


class RecordDecoder:
    """Turns one record (a JSON line or a framed message) into spans added to the aggregator."""

    def __init__(self, aggregator, file_label: str) -> None:
        self.aggregator = aggregator
        self.file_label = file_label
        self.request_decoder = request_decoder(aggregator.collect_signals)

    def json_record(self, data, number: int) -> None:
        data = without_bom(data)
        try:
            request = self.request_decoder.decode(data)
        except msgspec.ValidationError:
            self._lenient_json(data, number)
            return
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            if not bytes(data).strip():
                return
            self.aggregator.inputs.add_bad_line(self.file_label, number, f"not valid JSON: {exc}")
            return
        self.add(request, data, number)

    def add(self, request, data, number: int) -> None:
        """Aggregate a decoded request; a line with content but no ``resourceSpans`` is reported,
        never silently dropped (a damaged key looks exactly like that)."""
        if request.resourceSpans or len(data) <= 2:
            self.aggregator.add_request(request)
        else:
            self.aggregator.inputs.add_bad_line(self.file_label, number, "no resourceSpans: not a collector trace line")

    def framed_record(self, payload: bytes, number: int) -> None:
        if payload[:4] == ZSTD_MAGIC:
            try:
                payload = _decompress(payload)
            except Exception as exc:  # zstandard raises ZstdError; any failure is this record's
                self.aggregator.inputs.add_bad_line(self.file_label, number, f"bad zstd frame: {exc}")
                return
        stripped = payload.lstrip()
        if stripped[:1] == b"{":
            self.json_record(payload, number)
            return
        from meta_supervisor.reading.otlp_proto import ProtoError, decode_request

        try:
            request = decode_request(payload)
        except ProtoError as exc:
            self.aggregator.inputs.add_bad_line(self.file_label, number, f"not an OTLP protobuf message: {exc}")
            return
        self.aggregator.add_request(request)

    def _lenient_json(self, data, number: int) -> None:
        """Valid JSON, wrong shape somewhere: keep every span that can be read, count the rest."""
        inputs = self.aggregator.inputs
        try:
            document = msgspec.json.decode(data)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError) as exc:
            inputs.add_bad_line(self.file_label, number, f"not valid JSON: {exc}")
            return
        resource_spans = document.get("resourceSpans") if isinstance(document, dict) else None
        if not isinstance(resource_spans, list):
            inputs.add_bad_line(self.file_label, number, "not an ExportTraceServiceRequest (no resourceSpans list)")
            return
        problems = []
        for i, entry in enumerate(resource_spans):
            if not isinstance(entry, dict):
                problems.append(f"resourceSpans[{i}] is not an object")
                continue
            simulated, process, sampled = _lenient_resource(entry.get("resource"))
            scope_spans = entry.get("scopeSpans")
            if not isinstance(scope_spans, list):
                problems.append(f"resourceSpans[{i}].scopeSpans is not a list")
                continue
            for j, scope in enumerate(scope_spans):
                spans = scope.get("spans") if isinstance(scope, dict) else None
                if not isinstance(spans, list):
                    problems.append(f"resourceSpans[{i}].scopeSpans[{j}].spans is not a list")
                    continue
                good = []
                for k, raw in enumerate(spans):
                    try:
                        good.append(msgspec.convert(raw, Span[Event], strict=False))
                    except (msgspec.ValidationError, TypeError, RecursionError) as exc:
                        problems.append(f"span resourceSpans[{i}].scopeSpans[{j}].spans[{k}]: {exc}")
                if good:
                    if sampled:
                        inputs.tail_sampled_spans += len(good)
                    self.aggregator.add_spans(good, simulated, process)
        if problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            inputs.add_bad_spans(self.file_label, number, len(problems), "; ".join(problems[:3]) + more)


def _lenient_resource(resource) -> tuple[bool, tuple, bool]:
    """``resource_facts`` and ``is_tail_sampled`` of a resource read leniently: an unreadable
    attribute is skipped."""
    attributes = resource.get("attributes") if isinstance(resource, dict) else None
    readable = []
    for raw in attributes if isinstance(attributes, list) else ():
        try:
            readable.append(msgspec.convert(raw, ResourceKeyValue, strict=False))
        except (msgspec.ValidationError, TypeError, RecursionError):
            continue
    return (*resource_facts(readable), is_tail_sampled(readable))


def _decompress(payload: bytes) -> bytes:
    """One compressed message; more than MAX_FRAME bytes once decompressed is refused (a zstd bomb)."""
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(payload), read_across_frames=True)
    chunks, total = [], 0
    while True:
        chunk = reader.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_FRAME:
            raise ValueError(f"decompresses to more than {MAX_FRAME} bytes")
        chunks.append(chunk)


# --- JSON lines ------------------------------------------------------------------------------------


def read_json_lines(
    stream,
    decoder: RecordDecoder,
    first_number: int,
    limit: int | None = None,
    progress: Progress | None = None,
    start: int = 0,
    max_line: int | None = None,
) -> ReadResult:
    """Decode newline-terminated lines from ``stream`` (at most ``limit`` bytes; ``start`` is where
    the stream is in its file, for the offsets reported).

    The unterminated rest at the end is decoded only if it is a complete request on its own (the
    collector writes a message and its newline in two writes); otherwise it is a partial tail. A
    line longer than ``max_line`` (default ``max_line_bytes()``) is one bad line, skipped.
    """
    cap = max_line_bytes() if max_line is None else max_line
    buf = bytearray(BLOCK_SIZE)
    view = memoryview(buf)
    filled = 0
    consumed = 0
    number = first_number
    remaining = limit
    skipping = False  # in a line longer than the cap, already counted: dropping bytes up to its newline
    decode = decoder.request_decoder.decode
    add_request = decoder.aggregator.add_request
    while True:
        if filled == len(buf):  # one line longer than the buffer (and not the cap): a bigger buffer
            bigger = bytearray(2 * len(buf) if 2 * len(buf) < cap else cap + 1)  # never 2 x the cap at once
            bigger[:filled] = view[:filled]
            buf, view = bigger, memoryview(bigger)
        want = len(buf) - filled
        if remaining is not None:
            want = min(want, remaining)
        got = stream.readinto(view[filled : filled + want]) if want else 0
        if not got:
            break
        if remaining is not None:
            remaining -= got
        if progress is not None:
            progress(got)
        filled += got
        pos = 0
        find = buf.find
        if skipping:
            end = find(b"\n", 0, filled)
            if end < 0:
                consumed += filled
                filled = 0
                continue
            pos, skipping = end + 1, False
        while True:
            end = find(b"\n", pos, filled)
            if end < 0:
                break
            number += 1
            if end - pos > cap:
                _overlong_line(decoder, number, start + consumed + pos, cap)
            elif end > pos:
                line = view[pos:end]
                try:
                    request = decode(line)
                    if request.resourceSpans:
                        add_request(request)
                    else:
                        decoder.add(request, line, number)
                    # Freed now, not when the next line's request replaces it: the next decode then
                    # reuses this memory while it is still in cache (measured: ~0.5-0.9 µs a span).
                    del request
                except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
                    if line[:1] == b"\0":
                        line = _after_nuls(decoder, line, number, start + consumed + pos)
                    decoder.json_record(line, number)  # a line starting with a BOM too: it is read there
            pos = end + 1
        consumed += pos
        rest = filled - pos
        if rest > cap:  # no newline within the cap: one bad line, dropped up to its newline
            number += 1
            _overlong_line(decoder, number, start + consumed, cap)
            consumed += rest
            filled, skipping = 0, True
            continue
        if pos and rest:
            view[:rest] = bytes(view[pos:filled])
        filled = rest
    partial = 0
    if filled:
        tail = without_bom(bytes(view[:filled]))
        try:
            request = decoder.request_decoder.decode(tail)
        except msgspec.ValidationError:
            number += 1
            consumed += filled
            decoder.json_record(tail, number)
        except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
            if tail.strip():
                partial = filled
            else:
                consumed += filled
        else:
            number += 1
            consumed += filled
            decoder.aggregator.add_request(request)
    return ReadResult(consumed=consumed, records=number - first_number, partial_tail=partial)


def _overlong_line(decoder: RecordDecoder, number: int, offset: int, cap: int) -> None:
    decoder.aggregator.inputs.add_bad_line(
        decoder.file_label, number, f"line longer than the {cap}-byte cap ({ENV_MAX_LINE}) at byte {offset}: skipped"
    )


def _after_nuls(decoder: RecordDecoder, line, number: int, offset: int):
    """A line starting with a run of NULs (what a crash can leave before the lines written after a
    restart): if the rest is JSON, the run is one bad line and the rest is read as the line; else
    the whole line is the bad line."""
    data = bytes(line)
    rest = data.lstrip(b"\0")
    try:
        decoder.request_decoder.decode(rest)
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return line
    decoder.aggregator.inputs.add_bad_line(decoder.file_label, number, f"{len(data) - len(rest)} NUL bytes at byte {offset}: skipped")
    return rest


def read_past_newline(stream, block_size: int = BLOCK_SIZE) -> tuple[int, bool]:
    """(bytes from the stream's position up to and with the next newline, True), or (bytes to the
    end, False) when there is none; read in blocks, the stream left somewhere after them."""
    count = 0
    while True:
        block = stream.read(block_size)
        if not block:
            return count, False
        end = block.find(b"\n")
        if end >= 0:
            return count + end + 1, True
        count += len(block)


def skip_rest_of_line(stream, offset: int, progress: Progress | None = None) -> int:
    """Bytes of ``stream`` (a file, at ``offset``) up to and with the next newline when ``offset`` is
    not at a line start: the rest of a line longer than the cap that the last build counted and
    skipped up to the then end of the file (after a complete unterminated line, only its newline).
    Read in blocks; the stream is left after them."""
    if offset == 0:
        return 0
    stream.seek(offset - 1)
    if stream.read(1) == b"\n":
        return 0
    skipped, _ = read_past_newline(stream)
    stream.seek(offset + skipped)
    if progress is not None and skipped:
        progress(skipped)
    return skipped


# --- framed messages ---------------------------------------------------------------------------------


def read_framed(stream, decoder: RecordDecoder, first_number: int, progress: Progress | None = None, start: int = 0) -> ReadResult:
    """Decode 4-byte big-endian length-prefixed messages until the end of ``stream``.

    A frame length beyond ``MAX_FRAME``, or of zero not followed by a plausible frame (an empty
    message is legal, a run of NULs is not), ends the framing: the rest is read as lines
    (``ReadResult.lines_from`` says from where)."""
    consumed = 0
    number = first_number
    stream = Prepend(b"", stream)
    while True:
        header = _read_exactly(stream, 4)
        if len(header) < 4:
            return ReadResult(consumed, number - first_number, len(header))
        size = int.from_bytes(header, "big")
        if size == 0:
            ahead = _read_exactly(stream, 8)
            if 0 < len(ahead) < 8:  # the next frame is being written: decide next time
                return ReadResult(consumed, number - first_number, 4 + len(ahead))
            stream.push_back(ahead)
            if not ahead or plausible_frame(ahead[:4], ahead[4:]):
                number += 1
                consumed += 4
                if progress is not None:
                    progress(4)
                continue
        if size == 0 or size > MAX_FRAME:
            stream.push_back(header)
            lines = read_json_lines(stream, decoder, number, progress=progress, start=start + consumed)
            return ReadResult(consumed + lines.consumed, number + lines.records - first_number, lines.partial_tail, start + consumed)
        payload = _read_exactly(stream, size)
        if len(payload) < size:
            return ReadResult(consumed, number - first_number, 4 + len(payload))
        number += 1
        consumed += 4 + size
        if progress is not None:
            progress(4 + size)
        decoder.framed_record(payload, number)


def _read_exactly(stream, size: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class Prepend(io.RawIOBase):
    """A readable stream: ``head`` bytes first, then ``rest``; bytes read can be pushed back."""

    def __init__(self, head: bytes, rest) -> None:
        self._head = head
        self._rest = rest

    def push_back(self, data: bytes) -> None:
        self._head = data + self._head

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        if self._head:
            count = min(len(target), len(self._head))
            target[:count] = self._head[:count]
            self._head = self._head[count:]
            return count
        return self._rest.readinto(target)

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)
