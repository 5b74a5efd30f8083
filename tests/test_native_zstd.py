"""The native core reads a whole-file zstd stream of JSON lines (``zstd+json-lines``) exactly as the
Python reader (``file_reader._read_zstd``) does, or declines and the Python reader reads it.

Every file is read twice through the real entry point, ``file_reader.read_trace_file``: with the
core (``ALPHATRACE_NATIVE=on``) and without (``off``), and the two results are compared whole: the
returned cursor (format, decompressed offset, records, partial tail, error) and a snapshot of the
aggregator (``test_native_core.snapshot``: counts, fingerprints, closed runs, tallies, open runs,
kept signals). Streams the core must take (one frame, many frames, many blocks, a skippable frame,
a stream cut short as a file being written is, a continued build) are checked to be taken by it;
streams it must leave to Python (a corrupt block, junk after a frame, a bad checksum, a line over
the line cap, a continued build whose offset is past the stream's end) are checked to be declined,
with the Python reader's report. End to end, builds of zstd files (full, and incremental while the
file grows) give the same report with and without the core. The native core is required here.
"""

from __future__ import annotations

import datetime as dt
import itertools
import pickle
import random
import shutil
from array import array
from pathlib import Path

import pytest
import zstandard

from bench import generate_workload
from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build import merge
from meta_supervisor.build import native_reader as native_part
from meta_supervisor.build import parallel as parallel_build
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.file_reader import read_trace_file
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.build.part_result import PartResult
from meta_supervisor.reading.cursor import FileCursor
from meta_supervisor.reading.formats import ENV_MAX_LINE, ZSTD_MAGIC
from meta_supervisor.reading.inputs import expected_spans
from meta_supervisor.tally.open_runs import MAX_OPEN_RUNS
from meta_supervisor.tally.span_aggregator import SpanAggregator
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import lines_for
from tests.native_cases import CANONICAL, mixed_runs
from tests.test_native_core import differences, snapshot

PRICES = PriceTable.load()
OPTIONS = (PRICES, None, None, True, MAX_OPEN_RUNS)
NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
MARKET = CsvMarketData(Path(__file__).parent / "fixtures" / "alpha" / "prices")
ZSTD_JSON_LINES = "zstd+json-lines"
FRAME_CUT = native_part.frame_cut


# --- the harness -------------------------------------------------------------------------------------


def aggregator_snapshot(aggregator: SpanAggregator, cursor: FileCursor) -> dict:
    """The aggregator as ``test_native_core.snapshot`` sees a part, and the cursor beside it."""
    closed = aggregator.closed_runs
    part = PartResult(
        consumed=cursor.offset,
        records=cursor.records,
        partial_tail=cursor.partial_tail_bytes,
        aggregator_state=pickle.dumps(
            (aggregator.inputs, aggregator.agents, aggregator.agent_order, aggregator.pending, sorted(aggregator._dead))
        ),
        span_fps=array("Q", filter(None, aggregator.seen.slots)),
        closed_keys=array("Q", itertools.compress(closed.keys, closed.keys)),
        closed_states=bytes(itertools.compress(closed.states, closed.keys)),
    )
    return {**snapshot(part), "cursor": cursor.to_state()}


class Spy:
    """Records what ``native_reader.read_native_zstd`` returned: a result (taken) or None (declined)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, bool]] = []  # (skip, taken)
        original = native_part.read_native_zstd

        def recording(aggregator, path, skip, progress, line_offset):
            result = original(aggregator, path, skip, progress, line_offset)
            if native_core.mode() != "off":  # only the reads with the core
                self.calls.append((skip, result is not None))
            return result

        monkeypatch.setattr(native_part, "read_native_zstd", recording)


def read_both(
    monkeypatch: pytest.MonkeyPatch, path: Path, cursor: FileCursor | None = None, options=OPTIONS, expected: int = 0
) -> tuple[dict, dict, list]:
    """(Python's snapshot, the core's snapshot, the core's calls) of ``read_trace_file(path, cursor)``
    into an aggregator whose tables are sized for ``expected`` spans (a build sizes them from
    ``inputs.expected_spans``; 0: the smallest tables, which the core grows out of)."""
    spy = Spy(monkeypatch)
    results = []
    for mode in ("off", "on"):
        monkeypatch.setenv(native_core.ENV, mode)
        prices, since_ns, until_ns, collect_signals, bound = options
        aggregator = SpanAggregator(
            prices, since_ns, until_ns, expected_spans=expected, collect_signals=collect_signals, max_open_runs=bound
        )
        start = None if cursor is None else FileCursor(**cursor.to_state())
        results.append(aggregator_snapshot(aggregator, read_trace_file(path, aggregator, start)))
    return results[0], results[1], spy.calls


def assert_taken_and_equal(
    monkeypatch: pytest.MonkeyPatch, path: Path, cursor: FileCursor | None = None, options=OPTIONS, expected: int = 0
) -> dict:
    python, native, calls = read_both(monkeypatch, path, cursor, options, expected)
    assert calls and all(taken for _, taken in calls), f"the native core declined {path.name}: {calls}"
    diff = differences(python, native)
    assert not diff, f"native differs from python on {path.name}:\n" + "\n".join(diff)
    return python


def assert_declined_and_equal(monkeypatch: pytest.MonkeyPatch, path: Path, cursor: FileCursor | None = None) -> dict:
    python, native, calls = read_both(monkeypatch, path, cursor)
    assert calls and not any(taken for _, taken in calls), f"the native core took {path.name}: {calls}"
    diff = differences(python, native)
    assert not diff, f"after the core declined, the result differs on {path.name}:\n" + "\n".join(diff)
    return python


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native_core.ENV, raising=False)
    if not native_core.available():
        pytest.fail("the native core is not installed: run make native")


def workload_lines(runs: int = 1500, seed: int = 7, tmp_path: Path | None = None) -> bytes:
    """The bench workload's bytes: lines of 512 spans (~0.7 MB each), ~1.8 MB per 1,000 runs."""
    assert tmp_path is not None
    path = tmp_path / f"workload-{runs}-{seed}.jsonl"
    generate_workload.generate(path, runs, seed=seed)
    return path.read_bytes()


def small_lines() -> bytes:
    """Many short lines: two spans a line, every kind of run."""
    return "".join(lines_for(mixed_runs(120), per_line=2)).encode()


def flushed_per_line(data: bytes, level: int = 3, checksum: bool = False) -> bytes:
    """One frame, a block flushed after every line (a writer that flushes each write)."""
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=checksum)
    chunks = []
    compressobj = compressor.compressobj()
    for line in data.splitlines(keepends=True):
        chunks.append(compressobj.compress(line))
        chunks.append(compressobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    chunks.append(compressobj.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))
    return b"".join(chunks)


def frames_at(data: bytes, cuts: list[int], checksum: bool = False) -> bytes:
    """One frame per piece of ``data`` cut at ``cuts`` (byte positions, mid-line as well)."""
    compressor = zstandard.ZstdCompressor(level=1, write_checksum=checksum)
    points = [0, *cuts, len(data)]
    return b"".join(compressor.compress(data[a:b]) for a, b in itertools.pairwise(points))


def skippable(payload: bytes) -> bytes:
    return (0x184D2A50).to_bytes(4, "little") + len(payload).to_bytes(4, "little") + payload


def zfile(tmp_path: Path, blob: bytes, name: str = "traces.jsonl.zst") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


# --- the same decoder --------------------------------------------------------------------------------


def test_core_bundles_the_libzstd_of_python_zstandard(native) -> None:
    """The core reads zstd only with the same libzstd as python-zstandard (the same bytes out of a
    damaged stream); a new python-zstandard needs the core's zstd-sys pinned to match (Cargo.toml)."""
    core = native_core.core()
    assert tuple(core.zstd_version()) == tuple(zstandard.ZSTD_VERSION)
    assert native_part.same_zstd(core)


def test_another_libzstd_is_left_to_python(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = zfile(tmp_path, zstandard.ZstdCompressor().compress(small_lines()))
    monkeypatch.setattr(zstandard, "ZSTD_VERSION", (1, 4, 0))
    assert native_part.read_zstd_part(path, 0, OPTIONS) is None
    monkeypatch.undo()
    assert native_part.read_zstd_part(path, 0, OPTIONS) is not None


# --- streams the core takes ----------------------------------------------------------------------------


def test_one_frame_of_the_bench_workload(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = workload_lines(tmp_path=tmp_path)
    assert len(data) > 3 << 20  # more than the core's chunks and its line buffer
    path = zfile(tmp_path, zstandard.ZstdCompressor(level=3).compress(data))
    python = assert_taken_and_equal(monkeypatch, path)
    assert python["inputs"]["spans"] == 3000 and python["closed_count"][0] == 1500
    assert python["cursor"]["format"] == ZSTD_JSON_LINES and python["cursor"]["offset"] == len(data)
    assert_taken_and_equal(monkeypatch, path, options=(None, None, None, False, MAX_OPEN_RUNS))


def test_tables_filled_in_place_or_grown_out_of_them(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Into an empty aggregator the core fills the build's tables in place; when the stream holds
    more spans than they were sized for, they grow in the core and are put back: the same result."""
    data = workload_lines(tmp_path=tmp_path)
    path = zfile(tmp_path, zstandard.ZstdCompressor(level=3).compress(data))
    in_place = []
    original = native_part._read_zstd

    def recording(*args, **kwargs):
        raw = original(*args, **kwargs)
        if raw is not None and "tables_in_place" in raw:
            in_place.append(raw["tables_in_place"])
        return raw

    monkeypatch.setattr(native_part, "_read_zstd", recording)
    sized = expected_spans(path)
    assert 3000 <= sized <= 4500  # the estimate from the stream's start: 3,000 spans, and headroom
    results = [assert_taken_and_equal(monkeypatch, path, expected=expected) for expected in (sized, 100)]
    assert in_place == [True, False]
    assert results[0] == results[1] and results[0]["inputs"]["spans"] == 3000


def test_the_size_estimate_of_a_zstd_stream(tmp_path: Path) -> None:
    """``inputs.expected_spans`` of a zstd file: from the compressed bytes per span of its
    start; a stream of no spans, or one that compresses beyond belief, gets no huge tables."""
    data = workload_lines(3000, tmp_path=tmp_path)
    path = zfile(tmp_path, zstandard.ZstdCompressor(level=3).compress(data))
    assert 6000 <= expected_spans(path) <= 6000 / 0.85 * 1.1
    bomb = zfile(tmp_path, zstandard.ZstdCompressor(level=19).compress(b'{"spanId":"x"}\n' * (8 << 20)), "bomb.zst")
    assert expected_spans(bomb) <= bomb.stat().st_size / 50 / 0.85 + 1
    junk = zfile(tmp_path, zstandard.ZstdCompressor().compress(b"no spans here\n" * 1000), "junk.zst")
    assert expected_spans(junk) == int(junk.stat().st_size / 1200 / 0.85)
    broken = zfile(tmp_path, zstandard.ZstdCompressor().compress(data)[:100] + b"\xff" * 100, "broken.zst")
    assert expected_spans(broken) == int(broken.stat().st_size / 1200 / 0.85)


@pytest.mark.parametrize("case", sorted(CANONICAL))
def test_canonical_input_compressed(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    lines = CANONICAL[case]()
    data = b"".join(item.encode() if isinstance(item, str) else item for item in lines)
    path = zfile(tmp_path, flushed_per_line(data))
    python = assert_taken_and_equal(monkeypatch, path)
    assert python["inputs"]["spans"] > 0 and python["cursor"]["offset"] == len(data)


def test_many_frames_cut_anywhere_with_a_skippable_frame(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = workload_lines(600, tmp_path=tmp_path) + small_lines()
    cuts = [1, 7, 4096, len(data) // 3, len(data) // 3 + 1, len(data) // 2, len(data) - 10]  # mid-line too
    empty = zstandard.ZstdCompressor().compress(b"")
    # the same lines twice (the second copy: retried exports, counted as duplicates)
    blob = frames_at(data, cuts, checksum=True) + empty + skippable(b"not json at all") + frames_at(data, cuts[2:5])
    python = assert_taken_and_equal(monkeypatch, zfile(tmp_path, blob))
    assert python["inputs"]["duplicate_spans"] == python["inputs"]["spans"] > 0
    assert python["cursor"]["offset"] == 2 * len(data) and python["cursor"]["records"] == 2 * data.count(b"\n")


def test_a_block_per_line_with_a_checksum(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = small_lines()
    python = assert_taken_and_equal(monkeypatch, zfile(tmp_path, flushed_per_line(data, level=19, checksum=True)))
    assert python["records"] == data.count(b"\n")


def test_window_and_options(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fixtures.report.otlp_builder import MS, T0
    from tests.native_cases import DAY_NS

    path = zfile(tmp_path, zstandard.ZstdCompressor().compress(small_lines()))
    for options in [
        (None, None, None, False, MAX_OPEN_RUNS),
        (PRICES, T0 + 20 * 3_600_000 * MS, None, True, MAX_OPEN_RUNS),
        (PRICES, T0 + 10 * DAY_NS, None, True, 8),  # a small bound: runs evicted alike
    ]:
        assert_taken_and_equal(monkeypatch, path, options=options)


# --- a stream cut short: a file being written ---------------------------------------------------------------


def test_a_stream_cut_short_anywhere(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file still being written ends mid-block, mid-frame header, mid-checksum: Python reads the
    complete blocks and leaves the unterminated last line as a partial tail; so does the core."""
    data = workload_lines(400, tmp_path=tmp_path) + small_lines()
    one_frame = flushed_per_line(data, checksum=True)
    frames = frames_at(data, [len(data) // 4, len(data) // 2, len(data) // 2 + 3])
    seen_tails = seen_records = 0
    for name, blob in (("blocks", one_frame), ("frames", frames)):
        # every 23rd byte near the start and the end, and a spread in between
        cuts = sorted({*range(1, 200, 23), *range(len(blob) - 200, len(blob), 23), *range(200, len(blob), len(blob) // 13)})
        for cut in cuts:
            path = zfile(tmp_path, blob[:cut], f"{name}-{cut}.zst")
            python, native_result, calls = read_both(monkeypatch, path)
            diff = differences(python, native_result)
            assert not diff, f"cut at {cut} of {len(blob)} ({name}):\n" + "\n".join(diff)
            if python["cursor"]["format"] == ZSTD_JSON_LINES:
                assert calls and all(taken for _, taken in calls), f"declined a stream cut at {cut} ({name})"
            assert python["inputs"]["bad_lines"] == 0 and python["cursor"]["error"] is None
            seen_tails += python["partial_tail"] > 0
            seen_records += 0 < python["records"] < data.count(b"\n")
    assert seen_tails > 10 and seen_records > 10  # the cuts did land mid-line and mid-stream


# --- the decoder's ring (zstd_ring.rs): blocks decoded where the lines are read ----------------------------


def framed(data: bytes, window_log: int) -> bytes:
    """One frame of ``data`` whose header announces a window of ``2 ** window_log`` bytes (compressed
    as a stream of unknown size, so the window is not shrunk to the content's), so blocks of at most
    that many bytes."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log, write_content_size=False)
    compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
    return compressor.compress(data) + compressor.flush()


def raw_frame(data: bytes, window_log: int = 17, block: int = 128 << 10) -> bytes:
    """One frame of ``data`` in raw (stored) blocks, written by hand: what a compressor emits for
    bytes it cannot shrink. Its header: no content size, no checksum, a window of ``2 ** window_log``."""
    header = ZSTD_MAGIC + bytes([0x00, (window_log - 10) << 3])
    blocks = []
    for at in range(0, max(len(data), 1), block):
        piece = data[at : at + block]
        last = at + block >= len(data)
        blocks.append((int(last) | len(piece) << 3).to_bytes(3, "little") + piece)  # type 0: raw
    return header + b"".join(blocks)


def test_frames_whose_windows_grow_and_shrink(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream of frames with windows of 1 KB (a ring of about 1 MB, wrapped several times, the
    decoder waiting for the reader to release what it still holds), 1 MB, 8 MB (a larger ring made
    while the reader still holds pieces of the smaller one) and 1 KB again: the same result as the
    Python reader's, every byte in its place (the lines of the later frames repeat the first's:
    counted as duplicates, whose fingerprints must match)."""
    data = workload_lines(1500, tmp_path=tmp_path) + small_lines()
    half = len(data) // 2
    pieces = [(data, 10), (data[:half], 20), (data[half:], 23), (small_lines(), 10)]
    frames = [framed(piece, window_log) for piece, window_log in pieces]
    assert [zstandard.get_frame_parameters(frame).window_size for frame in frames] == [1 << 10, 1 << 20, 1 << 23, 1 << 10]
    python = assert_taken_and_equal(monkeypatch, zfile(tmp_path, b"".join(frames)))
    assert python["cursor"]["offset"] == 2 * len(data) + len(small_lines())
    assert python["inputs"]["duplicate_spans"] > python["inputs"]["spans"] > 3000  # every span of the later frames again


def test_raw_blocks_and_a_raw_block_cut_short(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stored blocks are decoded as they are; a stream that ends inside one gives its bytes up to
    there, as zstd's streaming decoder gives them: the same lines and partial tail as the Python
    reader's, wherever the file ends past python-zstandard's first read of it (128 KB). (In a file
    no longer than that read, its reader, asked first for the 8 bytes that tell the format, gives
    none of the rest of a stored block once the file has ended: the core's unterminated tail is then
    every byte zstd decodes, which is what the two differ on.)"""
    data = small_lines()
    blob = raw_frame(data, block=4096)
    assert_taken_and_equal(monkeypatch, zfile(tmp_path, blob))
    first_read = zstandard.DECOMPRESSION_RECOMMENDED_INPUT_SIZE
    tails = 0
    for cut in sorted({first_read + 1, first_read + 4000, 140_000, 140_001, len(blob) // 2, len(blob) - 1}):
        python = assert_taken_and_equal(monkeypatch, zfile(tmp_path, blob[:cut], f"raw-{cut}.zst"))
        assert python["inputs"]["bad_lines"] == 0 and python["cursor"]["error"] is None
        tails += python["partial_tail"] > 0
    assert tails >= 5  # most cuts end mid-line: the decoded bytes of the cut block were kept
    for cut in (20, 100, 4105, 9000):
        _, native_result, calls = read_both(monkeypatch, zfile(tmp_path, blob[:cut], f"raw-{cut}.zst"))
        assert calls == [(0, True)]
        decoded = zstandard.ZstdDecompressor().decompressobj().decompress(blob[:cut])
        assert native_result["partial_tail"] + native_result["consumed"] == len(decoded) > 0
        assert cut > 4105 or len(decoded) == cut - 9  # a 6-byte frame header, a 3-byte block header


def test_a_window_beyond_the_default_limit_is_left_to_python(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame announcing a window past zstd's default limit (128 MiB) is refused by both decoders
    (no ring of that size is made): the core declines, and the Python reader reports the stream."""
    data = small_lines()
    first = zstandard.ZstdCompressor().compress(data)  # a usual frame, then one announcing 256 MiB
    python = assert_declined_and_equal(monkeypatch, zfile(tmp_path, first + raw_frame(data[:1000], window_log=28)))
    assert python["inputs"]["bad_lines"] == 1
    assert "Frame requires too much memory" in python["inputs"]["bad_line_examples"][0][2]
    within = zfile(tmp_path, raw_frame(data, window_log=27), "within.zst")  # at the limit: read
    assert_taken_and_equal(monkeypatch, within)


# --- streams the core leaves to Python ------------------------------------------------------------------------


def _block_headers(frame: bytes) -> list[int]:
    """The offsets of a zstd frame's block headers (3 bytes: last flag, type, size; RLE blocks hold one byte)."""
    offsets, at, last = [], zstandard.frame_header_size(frame), False
    while not last:
        header = int.from_bytes(frame[at : at + 3], "little")
        offsets.append(at)
        last, kind, size = header & 1, header >> 1 & 3, header >> 3
        at += 3 + (1 if kind == 1 else size)
    return offsets


def _corrupt_cases(data: bytes) -> dict[str, bytes]:
    blob = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(data)
    # the middle block's type made "reserved", which every decoder refuses (a byte flipped in a block's
    # data may instead decode to other text that only the checksum catches, depending on the data)
    flipped = bytearray(blob)
    flipped[_block_headers(blob)[len(_block_headers(blob)) // 2]] |= 0x06
    bad_sum = bytearray(blob)
    bad_sum[-1] ^= 0x01
    bad_header = bytearray(blob)
    bad_header[5] ^= 0xFF
    return {
        "a corrupt block": bytes(flipped),
        "a bad checksum": bytes(bad_sum),
        "junk after a frame": blob + b"this is not a zstd frame",
        "a bad second frame header": blob + blob[:4] + b"\xff" * 40,
        "a damaged frame header": bytes(bad_header),
    }


@pytest.mark.parametrize("case", sorted(_corrupt_cases(b"x")))
def test_a_corrupt_stream_is_left_to_python(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """Python reports the error as one bad line (numbered after the lines read before), keeps the
    spans of the lines it read before the error and does not move the cursor: the core declines any
    zstd error, so all of that is Python's own."""
    data = workload_lines(1500, tmp_path=tmp_path)
    path = zfile(tmp_path, _corrupt_cases(data)[case])
    if case == "a damaged frame header":  # the error at the first bytes, before the shape is known: no core
        python, native_result, calls = read_both(monkeypatch, path)
        assert not calls and not differences(python, native_result)
    else:
        python = assert_declined_and_equal(monkeypatch, path)
        assert python["cursor"]["format"] == ZSTD_JSON_LINES
    assert python["cursor"]["offset"] == 0
    assert python["inputs"]["bad_lines"] == 1
    assert python["inputs"]["bad_line_examples"][0][1:] == [1, python["inputs"]["bad_line_examples"][0][2]]
    assert python["inputs"]["bad_line_examples"][0][2].startswith("corrupt zstd stream: zstd decompress error: ")
    if case in ("a bad checksum", "junk after a frame"):  # the error after every line was decompressed
        assert python["inputs"]["spans"] > 0


def test_a_line_over_the_line_cap_is_left_to_python(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = 16384
    monkeypatch.setenv(ENV_MAX_LINE, str(cap))
    lines = lines_for(mixed_runs(12), per_line=2)
    padded = '{"pad":"' + "x" * cap + '",' + lines[1][1:]  # valid JSON with spans, longer than the cap
    data = "".join([lines[0], padded, *lines[2:], "y" * (3 * cap)]).encode()  # and an unterminated one
    path = zfile(tmp_path, zstandard.ZstdCompressor().compress(data))
    python = assert_declined_and_equal(monkeypatch, path)
    assert python["inputs"]["bad_lines"] == 2 and python["inputs"]["spans"] > 0
    assert all("cap" in error for _, _, error in python["inputs"]["bad_line_examples"])
    monkeypatch.setenv(ENV_MAX_LINE, str(len(padded.encode()) - 1))  # exactly the cap, the newline apart
    path = zfile(tmp_path, zstandard.ZstdCompressor().compress("".join([lines[0], padded, *lines[2:]]).encode()), "exact.zst")
    assert_taken_and_equal(monkeypatch, path)


def test_lines_longer_than_the_line_buffer(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines of 4,096 spans (~5.5 MB: the core's 2 MiB line buffer grows, fed by many decompressed
    chunks): taken and equal; with a line cap below their length, left to Python, which reports
    them."""
    path = tmp_path / "big-lines.jsonl"
    generate_workload.generate(path, 4500, seed=5, shape=generate_workload.Shape(spans_per_line=4096))
    data = path.read_bytes()
    assert data.index(b"\n") > 5 << 20 and data.count(b"\n") == 3
    compressed = zfile(tmp_path, zstandard.ZstdCompressor().compress(small_lines() + data + small_lines()))
    small = small_lines().count(b'"spanId"')  # the second copy: duplicates
    python = assert_taken_and_equal(monkeypatch, compressed, expected=expected_spans(compressed))
    assert python["inputs"]["spans"] == 9000 + small and python["inputs"]["duplicate_spans"] == small
    monkeypatch.setenv(ENV_MAX_LINE, str(3 << 20))
    python = assert_declined_and_equal(monkeypatch, compressed)
    assert python["inputs"]["bad_lines"] == 2 and python["inputs"]["spans"] == 9000 - 2 * 4096 + small


def test_a_bad_line_is_left_to_python(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = lines_for(mixed_runs(12), per_line=2)
    data = "".join([*lines[:3], "not json\n", *lines[3:]]).encode()
    python = assert_declined_and_equal(monkeypatch, zfile(tmp_path, zstandard.ZstdCompressor().compress(data)))
    assert python["inputs"]["bad_line_examples"][0][1] == 4  # its line number


# --- continued builds ----------------------------------------------------------------------------------------


def test_continuing_from_a_saved_offset(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python decompresses from the start again and skips the bytes read before: so does the core,
    from any offset (in a chunk, at a frame's end, the very end); an offset past the end is an error
    Python reports (the core declines)."""
    data = small_lines() + workload_lines(400, tmp_path=tmp_path)
    path = zfile(tmp_path, frames_at(data, [len(data) // 3]))
    newlines = [i + 1 for i, byte in enumerate(data) if byte == 0x0A]
    for index in (0, 1, 17, len(newlines) // 2, len(newlines) - 1):
        offset = newlines[index]
        cursor = FileCursor(path=str(path), offset=offset, records=index + 1, format=ZSTD_JSON_LINES)
        python, native_result, calls = read_both(monkeypatch, path, cursor)
        assert calls == [(offset, True)]
        assert not differences(python, native_result)
        assert python["cursor"]["offset"] == len(data) and python["cursor"]["records"] == len(newlines)
    past = FileCursor(path=str(path), offset=len(data) + 5, records=3, format=ZSTD_JSON_LINES)
    python = assert_declined_and_equal(monkeypatch, path, past)
    assert "ends before byte" in python["cursor"]["error"] and python["cursor"]["offset"] == len(data) + 5


def _report(paths: list[Path], state: Path | None) -> dict:
    data, _ = build_inputs(BuildOptions(inputs=[str(p) for p in paths], prices=PRICES, state_dir=state))
    return build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET)


def test_incremental_build_of_a_growing_zstd_file(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zstd file being written is read, then read on from its saved decompressed offset as it grows
    (the rest of a frame, then new frames): the same report with and without the core, and the
    same as a full build of the final file; the core reads every step."""
    data = workload_lines(300, tmp_path=tmp_path) + small_lines()
    first = flushed_per_line(data[: len(data) // 2])
    blob = first + frames_at(data[len(data) // 2 :], [1000])
    steps = [len(first) // 3, len(first) // 3 + 1, len(first), len(blob) - 7, len(blob)]
    reports: dict[str, list[dict]] = {}
    spy = Spy(monkeypatch)
    for mode in ("on", "off"):
        monkeypatch.setenv(native_core.ENV, mode)
        folder = tmp_path / "traces"  # the same paths both times: they are in the report
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        path = folder / "traces.jsonl.zst"
        state = folder / "state"
        with open(path, "wb") as handle:  # grown in place: the same file, appended to
            written = 0
            reports[mode] = []
            for step in steps:
                handle.write(blob[written:step])
                handle.flush()
                written = step
                reports[mode].append(_report([path], state))
    assert reports["on"] == reports["off"]
    skips = [skip for skip, _ in spy.calls]
    assert all(taken for _, taken in spy.calls) and len(spy.calls) == len(steps) and skips[0] == 0 and max(skips) > 0
    final = reports["off"][-1]
    assert final["inputs"]["spans"] > 600 and final["inputs"]["bad_lines"] == 0
    monkeypatch.setenv(native_core.ENV, "off")
    full = _report([tmp_path / "traces" / "traces.jsonl.zst"], None)
    assert {k: v for k, v in final.items() if k != "build"} == {k: v for k, v in full.items() if k != "build"}


def test_full_build_of_zstd_and_plain_files_together(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rotated backup compressed as one zstd stream, then the plain active file: the same report as
    the Python reader's; and a plain backup, then a zstd file repeating some of its spans (the
    core's part is not merged into the non-empty aggregator, and Python reads the file)."""
    data = workload_lines(300, tmp_path=tmp_path)
    again = small_lines() + data[: data.index(b"\n") + 1]  # a line again: duplicates across files
    compressed = zstandard.ZstdCompressor().compress(data)
    for first, second, taken in [(compressed, again, True), (again, compressed, False)]:
        folder = tmp_path / f"zstd-{'first' if taken else 'last'}"
        folder.mkdir()
        (folder / "traces-2026-01-01T00-00-00.000.jsonl").write_bytes(first)  # inputs are read in path order
        (folder / "traces.jsonl").write_bytes(second)
        spy = Spy(monkeypatch)
        reports = []
        for mode in ("on", "off"):
            monkeypatch.setenv(native_core.ENV, mode)
            reports.append(_report([folder], None))
        assert reports[0] == reports[1]
        assert spy.calls == [(0, taken)]
        assert reports[0]["inputs"]["duplicate_spans"] > 0 and reports[0]["inputs"]["bad_lines"] == 0


# --- a stream read in two parts at once (parallel_build.read_zstd_in_parallel) -----------------------------


class Split:
    """Forces the two-part read of every zstd file (any size, forking allowed) and records each:
    (the cut as a fraction of the stream's estimated size, whether the child's part was merged)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: float, frames: bool = True) -> None:
        monkeypatch.setattr(parallel_build, "MIN_SPLIT_BYTES", 1)
        monkeypatch.setattr(parallel_build, "fork_is_safe", lambda: True)  # the child only reads and decodes
        monkeypatch.setattr(parallel_build, "ZSTD_SPLIT_AT", at)
        monkeypatch.setattr(parallel_build, "ZSTD_WORKER_LEAD", 0)  # the cut exactly at ``at``
        monkeypatch.setattr(parallel_build, "ZSTD_FRAME_SPLIT_AT", at)  # of the compressed bytes
        # without: as with an older core, the child decodes the stream from its start
        monkeypatch.setattr(native_part, "frame_cut", FRAME_CUT if frames else lambda: False)
        self.merges: list[bool] = []
        self.splits = 0
        self.frames: list[int | None] = []  # where a frame-start cut was looked for: what was found
        original_merge, original_split = merge.merge_part, parallel_build.read_zstd_in_parallel
        original_frame = parallel_build._frame_near

        def framing(*args):
            found = original_frame(*args)
            self.frames.append(found)
            return found

        monkeypatch.setattr(parallel_build, "_frame_near", framing)

        def merging(*args, **kwargs):
            accepted = original_merge(*args, **kwargs)
            self.merges.append(accepted)
            return accepted

        def splitting(*args, **kwargs):
            self.splits += 1
            return original_split(*args, **kwargs)

        monkeypatch.setattr(merge, "merge_part", merging)
        monkeypatch.setattr(parallel_build, "read_zstd_in_parallel", splitting)


def _build_both(monkeypatch: pytest.MonkeyPatch, paths: list[Path], workers: int = 2) -> tuple[dict, dict]:
    """The report of a full build of ``paths`` with the core (``workers`` processes) and without."""
    reports = []
    for mode in ("on", "off"):
        monkeypatch.setenv(native_core.ENV, mode)
        data, _ = build_inputs(BuildOptions(inputs=[str(p) for p in paths], prices=PRICES, workers=workers))
        reports.append(build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET))
    return reports[0], reports[1]


@pytest.mark.parametrize("at", [0.02, 0.5, 0.97, 3.0])
def test_two_parts_at_once(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: float) -> None:
    """Cut near the start, in the middle, near the end, and beyond the end (the stream is shorter
    than its estimate: the first part reads it all): the same report as the Python reader's."""
    data = workload_lines(2000, tmp_path=tmp_path) + small_lines()
    path = zfile(tmp_path, frames_at(data, [len(data) // 3]))
    split = Split(monkeypatch, at)
    with_core, without = _build_both(monkeypatch, [path])
    assert with_core == without and with_core["inputs"]["spans"] > 4000
    assert split.splits == 1
    assert split.merges == ([] if at > 1 else [True])  # the child's part merged, or not needed


def collector_frames(data: bytes) -> bytes:
    """As the collector's file exporter writes JSON with ``compression: zstd`` (its native
    compression) and rotation: each export a frame of its own (klauspost's ``EncodeAll``, the
    content size in the header, a checksum), and the newline after it another one-byte frame."""
    compressor = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True)
    return b"".join(compressor.compress(line[:-1]) + compressor.compress(b"\n") for line in data.splitlines(keepends=True))


@pytest.mark.parametrize("at", [0.3, 0.5, 0.71])
def test_two_parts_of_many_frames_cut_mid_line(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at: float) -> None:
    """Multi-frame streams (a frame a flush, ending mid-line; a frame an export and one a newline, as
    the collector writes them), cut anywhere: the two parts meet at the same line start."""
    data = workload_lines(2000, tmp_path=tmp_path) + small_lines()
    flushes = [len(data) * k // 17 + k for k in range(1, 17)]  # every ~1/17th, mid-line
    for name, blob in (("flushes", frames_at(data, flushes, checksum=True)), ("exports", collector_frames(data))):
        path = zfile(tmp_path, blob, f"{name}.zst")
        for frames in (True, False):  # cut at a frame's start, or decoded by the child from the start
            split = Split(monkeypatch, at, frames)
            with_core, without = _build_both(monkeypatch, [path])
            assert with_core == without and with_core["inputs"]["spans"] > 4000, name
            assert split.splits == 1 and split.merges == [True], name
            assert bool(split.frames and split.frames[0] is not None) == frames, name


def test_a_frame_cut_that_is_not_a_frame_start(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame's magic number inside a frame's data (or any offset that is not a frame's start): the
    parent's decoder is not at a frame's end there, so it reads the whole stream itself; a cut at
    a real frame start splits it. The same report as the Python reader's either way."""
    data = workload_lines(2000, tmp_path=tmp_path) + small_lines()
    middle = data.index(b"\n", len(data) // 2) + 5  # a frame boundary mid-line
    blob = frames_at(data, [middle], checksum=True)
    second = len(zstandard.ZstdCompressor(level=1, write_checksum=True).compress(data[:middle]))
    assert blob[second : second + 4] == ZSTD_MAGIC
    path = zfile(tmp_path, blob)
    for offset, merged in ((second // 2, []), (second, [True])):
        split = Split(monkeypatch, 0.5)
        monkeypatch.setattr(parallel_build, "_frame_near", lambda path, size, offset=offset: offset)
        with_core, without = _build_both(monkeypatch, [path])
        assert with_core == without and with_core["inputs"]["spans"] > 4000
        assert split.splits == 1 and split.merges == merged, offset


# --- where frames start, from their headers (zstd_frames.rs, parallel._frame_near) --------------------------


def joined(pieces: list[tuple[bytes, bool]]) -> tuple[bytes, list[int]]:
    """The file of ``pieces`` (a frame's bytes, whether it holds data) and where its data frames start."""
    blob, starts = b"", []
    for frame, data in pieces:
        if data:
            starts.append(len(blob))
        blob += frame
    return blob, starts


def nearest(starts: list[int], target: int, low: int, high: int) -> int | None:
    inside = [start for start in starts if low <= start < high and start > 0]  # the file's start is no cut
    return min(inside, key=lambda start: (abs(start - target), start)) if inside else None


def layouts(data: bytes) -> dict[str, list[tuple[bytes, bool]]]:
    """Frame layouts a trace file has: the collector's (a frame an export, a one-byte frame its
    newline), a frame a flush ending mid-line (its last line goes on in the next frame), one frame
    (with and without its content size, a block a line), skippable frames between data frames, and
    raw and RLE blocks (incompressible bytes, a run of one byte) in a frame of their own."""
    level1 = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True)
    exports = [(level1.compress(line[:-1]), True) for line in data.splitlines(keepends=True)[:300]]
    collector = [piece for export in exports for piece in (export, (level1.compress(b"\n"), True))]
    flushes = [len(data) * k // 11 + k for k in range(1, 11)]
    points = [0, *flushes, len(data)]
    flushed = [(zstandard.ZstdCompressor(level=3).compress(data[a:b]), True) for a, b in itertools.pairwise(points)]
    noise = bytes(random.Random(7).randbytes(300_000))  # raw blocks: it does not compress
    return {
        "collector": collector,
        "flushes mid-line": flushed,
        "one frame": [(zstandard.ZstdCompressor(level=3, write_content_size=False).compress(data), True)],
        "one frame, a block a line": [(flushed_per_line(data, checksum=True), True)],
        "skippable": [flushed[0], (skippable(b"x" * 5000), False), flushed[1], (skippable(b""), False), *flushed[2:]],
        "raw and RLE blocks": [flushed[0], (level1.compress(noise), True), (level1.compress(b"\n" * 400_000), True), *flushed[1:]],
    }


def test_frame_starts_are_walked_from_the_headers(native, tmp_path: Path) -> None:
    """The frame start nearest a point, found from the frames' and blocks' headers, is the true one
    for every layout and every point; a one-frame file has none."""
    data = workload_lines(1500, tmp_path=tmp_path) + small_lines()
    for name, pieces in layouts(data).items():
        blob, starts = joined(pieces)
        path = zfile(tmp_path, blob, f"{name}.zst")
        assert len(zstandard.ZstdDecompressor().stream_reader(blob, read_across_frames=True).read()) >= len(data), name  # whole
        boundaries = list(itertools.accumulate(len(frame) for frame, _ in pieces))[:-1]  # a skippable frame's start too
        fractions = [int(len(blob) * fraction) for fraction in (0, 0.1, 0.3, 0.5, 0.52, 0.77, 0.95)]
        targets = fractions + boundaries[:: max(1, len(boundaries) // 25)]
        for target in targets:
            fraction = round(target / len(blob), 3)
            low, high = target // 2, (target + len(blob)) // 2
            found = native_part.frame_near(path, target, low, high)
            assert found == nearest(starts, target, low, high), (name, fraction)
            if name.startswith("one frame"):
                assert found is None
        if name == "raw and RLE blocks":
            kinds = {int.from_bytes(pieces[k][0][at : at + 3], "little") >> 1 & 3 for k in (1, 2) for at in _block_headers(pieces[k][0])}
            assert {0, 1} <= kinds  # raw and RLE blocks were walked over


def test_frame_starts_of_a_damaged_or_truncated_file(native, tmp_path: Path) -> None:
    """A file cut short, or damaged in a header: the walk offers only frame starts before the damage
    (of frames that end within the file), never one it cannot follow to; junk is no frame at all."""
    data = workload_lines(1500, tmp_path=tmp_path) + small_lines()
    blob, starts = joined(layouts(data)["flushes mid-line"])
    cases = {"empty": b"", "junk": b"not a zstd file at all" * 100, "magic only": ZSTD_MAGIC}
    for cut in (len(blob) // 2, starts[6] + 3, starts[6] + 20, len(blob) - 1):
        cases[f"cut at {cut}"] = blob[:cut]
    damaged = bytearray(blob)
    header = starts[6] + _block_headers(blob[starts[6] :])[1]  # a block header of the seventh frame
    damaged[header] |= 0x06  # its type made "reserved"
    cases["a reserved block type"] = bytes(damaged)
    oversized = bytearray(blob)
    oversized[header + 2] = 0xFF  # a block of ~2 MB: longer than any block may be
    cases["a block too long"] = bytes(oversized)
    ends = [*starts[1:], len(blob)]
    for name, case in cases.items():
        path = zfile(tmp_path, case, "damaged.zst")
        whole = [start for start, end in zip(starts, ends, strict=True) if end <= len(case)]  # frames that end in the file
        if name.startswith("a "):
            whole = starts[:6]  # the seventh frame cannot be followed to its end
        target = len(blob) // 2
        assert native_part.frame_near(path, target, 0, len(blob)) == nearest(whole, target, 0, len(blob)), name


def test_two_parts_of_a_damaged_stream_of_frames(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream of frames damaged after the cut, or cut short: the same report as the Python reader's
    (the damage counted as one bad line, or a partial tail), never a hang."""
    data = workload_lines(2000, tmp_path=tmp_path) + small_lines()
    blob, starts = joined(layouts(data)["flushes mid-line"])
    damaged = bytearray(blob)
    damaged[starts[8] + _block_headers(blob[starts[8] :])[0]] |= 0x06
    for name, case in (("damaged", bytes(damaged)), ("cut short", blob[: starts[9] + 1000])):
        path = zfile(tmp_path, case, f"{name}.zst")
        split = Split(monkeypatch, 0.5)
        with_core, without = _build_both(monkeypatch, [path])
        assert with_core == without, name
        assert split.splits == 1 and split.frames and split.frames[0] is not None, name
        if name == "damaged":
            assert with_core["inputs"]["bad_lines"] == 1
        else:
            assert with_core["inputs"]["partial_tails"] and split.merges == [True]


def test_one_frame_is_not_searched(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream of one frame (as ``zstd`` on the command line writes it): no frame start is found,
    the child decodes from the start, the same report."""
    data = workload_lines(2000, tmp_path=tmp_path) + small_lines()
    path = zfile(tmp_path, zstandard.ZstdCompressor(level=3).compress(data))
    split = Split(monkeypatch, 0.5)
    with_core, without = _build_both(monkeypatch, [path])
    assert with_core == without and with_core["inputs"]["spans"] > 4000
    assert split.frames == [None] and split.merges == [True]


def test_two_parts_of_a_stream_cut_short(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = workload_lines(2000, tmp_path=tmp_path)
    blob = flushed_per_line(data)
    path = zfile(tmp_path, blob[: len(blob) - 5000])
    split = Split(monkeypatch, 0.5)
    with_core, without = _build_both(monkeypatch, [path])
    assert with_core == without and with_core["inputs"]["partial_tails"]
    assert split.merges == [True]


def test_two_parts_when_the_second_is_declined(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A corrupt block, or a bad line, after the cut: the child declines, this process's part is
    undone, and the stream is read in one go (by Python in the end): Python's report."""
    data = workload_lines(4000, tmp_path=tmp_path)  # the corrupt block beyond the size estimate's sample
    corrupt = bytearray(zstandard.ZstdCompressor(level=3).compress(data))
    corrupt[len(corrupt) * 3 // 4] ^= 0xFF
    bad_line = zstandard.ZstdCompressor().compress(data + b"not json\n" + small_lines())
    for name, blob in (("corrupt", bytes(corrupt)), ("bad-line", bad_line)):
        path = zfile(tmp_path, blob, f"{name}.zst")
        split = Split(monkeypatch, 0.5)
        with_core, without = _build_both(monkeypatch, [path])
        assert with_core == without and with_core["inputs"]["bad_lines"] == 1, name
        assert split.splits == 1 and split.merges == [], name


def test_two_parts_that_cannot_be_merged(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The second half repeats spans of the first (a retried export): the child's part is not merged
    exactly, and the rest is read again from the cut."""
    data = workload_lines(1000, tmp_path=tmp_path)
    path = zfile(tmp_path, zstandard.ZstdCompressor().compress(data + data))
    split = Split(monkeypatch, 0.5)
    with_core, without = _build_both(monkeypatch, [path])
    assert with_core == without and with_core["inputs"]["duplicate_spans"] == 2000
    assert split.merges[0] is False


def test_no_two_parts_for_one_worker_a_small_stream_or_a_later_file(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = workload_lines(600, tmp_path=tmp_path)
    path = zfile(tmp_path, zstandard.ZstdCompressor().compress(data))
    monkeypatch.setattr(parallel_build, "fork_is_safe", lambda: True)
    assert not parallel_build.worth_splitting_zstd(path, None, 2)  # ~1 MB: below MIN_SPLIT_BYTES
    monkeypatch.setattr(parallel_build, "MIN_SPLIT_BYTES", 1)
    assert parallel_build.worth_splitting_zstd(path, None, 2)
    assert not parallel_build.worth_splitting_zstd(path, None, 1)
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(data)
    assert not parallel_build.worth_splitting_zstd(plain, None, 2)
    framed = FileCursor(path=str(path), offset=10, format="zstd+framed")
    assert not parallel_build.worth_splitting_zstd(path, framed, 2)
    # a later file: the aggregator is not empty, so the stream is read in one go (read apart and
    # merged, like the plain file's second part before it)
    split = Split(monkeypatch, 0.5)
    spy = Spy(monkeypatch)
    first = tmp_path / "traces-2026-01-01T00-00-00.000.jsonl"
    first.write_bytes(small_lines())
    later = zfile(tmp_path, zstandard.ZstdCompressor().compress(data), "traces.jsonl")
    with_core, without = _build_both(monkeypatch, [first, later])
    assert with_core == without and split.splits == 1 and spy.calls == [(0, True)]
    assert len(split.merges) == 3 and all(split.merges)  # the plain file's second part (twice), the zstd file
