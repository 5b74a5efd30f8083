"""Hostile input files (issue 12, item 11): inputs that are not regular files, junk that looks like
framing, junk before valid lines, and lines longer than the line cap. Only regular files are read;
implausible framing is read as lines; lines after junk are kept; an overlong line is one bad line with
its file and offset, read with a bounded buffer.

A FIFO or a device could hang the build: those cases run the command in a subprocess with a timeout."""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from meta_supervisor.build.file_reader import read_trace_file
from meta_supervisor.cli import report as report_cli
from meta_supervisor.reading.formats import ENV_MAX_LINE
from meta_supervisor.reading.shapes import BLOCK_SIZE, FORMAT_FRAMED, FORMAT_JSON_LINES, RecordDecoder, read_json_lines, sniff
from meta_supervisor.tally.span_aggregator import SpanAggregator
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for
from tests.test_report_hostile import NOW, build

ROOT = Path(__file__).resolve().parent.parent
CAP = 4096  # the line cap these tests set (ALPHATRACE_MAX_LINE_BYTES), so that files stay small
TIMEOUT = 120  # seconds: far more than a build of these files takes; a hang fails instead of blocking


def good_lines(count: int = 3) -> list[bytes]:
    return [text.encode() for text in lines_for([Run("a", i, llm=[Llm()]) for i in range(1, count + 1)], per_line=2)]  # a run a line


def run_command(tmp_path: Path, *inputs: str) -> subprocess.CompletedProcess:
    """The report command in its own process (a build that blocks on a FIFO cannot hang the suite)."""
    argv = [sys.executable, str(ROOT / "meta_supervisor" / "build_meta_report.py")]
    argv += [arg for spec in inputs for arg in ("--input", spec)]
    argv += ["--out", str(tmp_path / "out"), "--no-state", "--quiet", "--no-alpha-quality", "--kill-file", str(tmp_path / "none.json")]
    env = {**os.environ, "ALPHATRACE_SUPERVISOR_AUDIT_FILE": str(tmp_path / "audit.jsonl")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, env=env)


def unix_socket(path: Path) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    return server


# --- regular files only ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_named_by_input_is_refused_not_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "traces.jsonl"
    os.mkfifo(fifo)
    done = run_command(tmp_path, str(fifo))  # opening it for reading would block: no writer ever comes
    assert done.returncode == 2
    assert f"input {fifo} is a FIFO (named pipe), not a regular file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_named_by_input_is_refused(tmp_path: Path) -> None:
    done = run_command(tmp_path, "/dev/zero")  # endless NULs: read as framing, it never ended
    assert done.returncode == 2
    assert "input /dev/zero is a character device, not a regular file" in done.stderr


def test_a_socket_named_by_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with unix_socket(tmp_path / "s"):
        code, _, _ = build(tmp_path, tmp_path / "s")
    assert code == 2
    assert f"input {tmp_path / 's'} is a socket, not a regular file" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_non_regular_files_in_a_folder_or_glob_are_skipped_with_a_note(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    (folder / "traces.jsonl").write_bytes(b"".join(good_lines()))
    os.mkfifo(folder / "traces-fifo.jsonl")
    (folder / "traces-zero.jsonl").symlink_to("/dev/zero")
    with unix_socket(folder / "traces-sock.jsonl"):
        for spec in (str(folder), str(folder / "traces*.jsonl")):
            done = run_command(tmp_path, spec)
            assert done.returncode == 0, done.stderr
            report = json.loads((tmp_path / "out" / "meta_report.json").read_text())
            assert report["inputs"]["spans"] == 6 and report["inputs"]["files"] == [str(folder / "traces.jsonl")]
            for name, kind in (("fifo", "a FIFO (named pipe)"), ("zero", "a character device"), ("sock", "a socket")):
                note = f"input {folder / f'traces-{name}.jsonl'} is {kind}, not a regular file: only regular files are read (skipped)"
                assert note in report["inputs"]["messages"]
                assert note in done.stderr


# --- implausible framing -------------------------------------------------------------------------------


def test_sniff_trusts_only_plausible_framing() -> None:
    message = b'{"resourceSpans":[]}'
    frame = struct.pack(">I", len(message)) + message
    assert sniff(frame * 3) == FORMAT_FRAMED
    assert sniff(struct.pack(">I", 300) + b"\x0a\x05", size=100) == FORMAT_FRAMED  # a first message being written
    assert sniff(b"\x00" * 4096) == FORMAT_JSON_LINES  # a run of NULs: zero-length frames
    assert sniff(b"\x00\x00\x00\x00" + frame) == FORMAT_JSON_LINES  # a zero-length frame
    assert sniff(b"\x01\x00\x00\x00" + b"junk") == FORMAT_JSON_LINES  # not the start of a message
    assert sniff(b"\x00\x00\x01") == FORMAT_JSON_LINES  # not even a length and a message start
    head = struct.pack(">I", 5000) + b'{"x"\n{"resourceSpans":[]}\n'
    assert sniff(head, size=len(head)) == FORMAT_JSON_LINES  # longer than the file, and lines follow
    assert sniff(head) == FORMAT_FRAMED  # (size unknown: a message being written)


def test_a_file_starting_with_nuls_is_read_as_lines(tmp_path: Path) -> None:
    lines = good_lines()
    path = tmp_path / "traces.jsonl"
    path.write_bytes(b"\x00" * 300_000 + b"\n" + b"".join(lines))
    code, report, _ = build(tmp_path, path)
    assert code == 0
    inputs = report["inputs"]
    assert inputs["spans"] == 6 and report["agents"]["a"]["runs"] == 3
    assert inputs["bad_lines"] == 1 and [(p["file"], p["line"]) for p in inputs["problems"]] == [(str(path), 1)]
    assert report["inputs"]["partial_tails"] == []


def test_junk_then_lines_keeps_every_line_after_the_junk(tmp_path: Path) -> None:
    lines = good_lines(4)
    path = tmp_path / "traces.jsonl"
    junk = b"\x00\x01\x02\x03" * 1500  # binary, no newline, longer than the sniffed head
    path.write_bytes(junk + lines[0] + b"".join(lines[1:]))  # the first line shares the junk's line
    code, report, _ = build(tmp_path, path)
    assert code == 0
    assert report["inputs"]["spans"] == 6 and report["inputs"]["bad_lines"] == 1
    assert [p["line"] for p in report["inputs"]["problems"]] == [1]


def test_lines_written_after_a_run_of_nuls_are_kept(tmp_path: Path) -> None:
    """A crash leaves NULs where the file had grown; the restarted collector appends after them: the
    NUL run is one bad line (with its offset), the line glued to it is read."""
    lines = good_lines(4)
    path = tmp_path / "traces.jsonl"
    path.write_bytes(lines[0] + lines[1] + b"\x00" * 70_000 + lines[2] + lines[3])
    code, report, _ = build(tmp_path, path)
    assert code == 0
    inputs = report["inputs"]
    assert inputs["spans"] == 8 and inputs["bad_lines"] == 1
    offset = len(lines[0]) + len(lines[1])
    assert inputs["problems"] == [{"file": str(path), "line": 3, "error": f"70000 NUL bytes at byte {offset}: skipped"}]


def test_a_zero_length_frame_in_a_framed_file_reads_the_rest_as_lines(tmp_path: Path) -> None:
    lines = good_lines(4)
    frames = b"".join(struct.pack(">I", len(text) - 1) + text[:-1] for text in lines[:2])  # JSON messages, framed
    path = tmp_path / "traces.bin"
    path.write_bytes(frames + b"\x00" * 1000 + b"\n" + b"".join(lines[2:]))
    aggregator = SpanAggregator(None)
    cursor = read_trace_file(path, aggregator)
    assert aggregator.inputs.spans == 8
    assert aggregator.inputs.bad_lines == 1 and aggregator.inputs.bad_line_examples[0][1] == 3
    assert (cursor.offset, cursor.partial_tail_bytes, cursor.format) == (path.stat().st_size, 0, FORMAT_JSON_LINES)
    # appended lines are read as lines next time (the rest of the file is no longer framed)
    more = good_lines(6)[4:]
    with open(path, "ab") as handle:
        handle.write(b"".join(more))
    cursor = read_trace_file(path, aggregator, cursor)
    assert aggregator.inputs.spans == 12 and aggregator.inputs.bad_lines == 1
    assert cursor.offset == path.stat().st_size


def test_an_empty_message_in_a_framed_file_is_not_junk(tmp_path: Path) -> None:
    """A zero length followed by a plausible frame is an empty message (legal protobuf): framing goes on."""
    lines = good_lines(3)
    frames = [struct.pack(">I", len(text) - 1) + text[:-1] for text in lines]
    path = tmp_path / "traces.bin"
    path.write_bytes(frames[0] + b"\x00" * 4 + frames[1] + frames[2] + b"\x00" * 4)
    aggregator = SpanAggregator(None)
    cursor = read_trace_file(path, aggregator)
    assert (aggregator.inputs.spans, aggregator.inputs.bad_lines, cursor.format, cursor.records) == (6, 0, FORMAT_FRAMED, 5)
    assert (cursor.offset, cursor.partial_tail_bytes) == (path.stat().st_size, 0)


# --- the line cap ----------------------------------------------------------------------------------------


class ReadIntoSizes(io.RawIOBase):
    """A stream remembering the largest buffer it was asked to fill (the reader's line buffer)."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)
        self.largest = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        self.largest = max(self.largest, len(target))
        return self.inner.readinto(target)


def test_a_line_longer_than_the_cap_is_one_bad_line_with_its_offset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MAX_LINE, str(CAP))
    *lines, extra = good_lines(4)
    long_line = b'{"pad":"' + b"x" * (3 * BLOCK_SIZE) + b'",' + extra[1:]  # valid, with spans, but too long
    path = tmp_path / "traces.jsonl"
    path.write_bytes(lines[0] + long_line + lines[1] + b"y" * (CAP + 1) + b"\n" + lines[2])
    code, report, _ = build(tmp_path, path)
    assert code == 0
    inputs = report["inputs"]
    assert inputs["spans"] == 6 and inputs["bad_lines"] == 2
    offsets = (len(lines[0]), len(lines[0]) + len(long_line) + len(lines[1]))
    assert [(p["file"], p["line"]) for p in inputs["problems"]] == [(str(path), 2), (str(path), 4)]
    for problem, offset in zip(inputs["problems"], offsets, strict=True):
        assert problem["error"] == f"line longer than the {CAP}-byte cap ({ENV_MAX_LINE}) at byte {offset}: skipped"
    # a line of exactly the cap is read
    exact = b'{"pad":"' + b"x" * (CAP - len(extra) - 8) + b'",' + extra[1:]
    assert len(exact) == CAP + 1  # with its newline
    path.write_bytes(exact + lines[0])
    code, report, _ = build(tmp_path, path)
    assert report["inputs"]["bad_lines"] == 0 and report["inputs"]["spans"] == 4


def test_a_large_file_without_a_newline_is_one_bad_line_in_bounded_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 500 MB file without a newline, scaled down with the cap: one bad line (not "no spans yet",
    not a partial tail), and the reader's buffer never grows past the block size."""
    monkeypatch.setenv(ENV_MAX_LINE, str(CAP))
    data = b"z" * (5 * BLOCK_SIZE + 123)
    stream = ReadIntoSizes(data)
    aggregator = SpanAggregator(None)
    result = read_json_lines(stream, RecordDecoder(aggregator, "big.jsonl"), 0)
    assert (result.consumed, result.records, result.partial_tail) == (len(data), 1, 0)
    assert aggregator.inputs.bad_lines == 1 and aggregator.inputs.bad_line_examples[0][:2] == ("big.jsonl", 1)
    assert stream.largest <= BLOCK_SIZE
    # the same through the command, and the rest of the line, appended later, is not a second bad line
    path = tmp_path / "traces.jsonl"
    path.write_bytes(data)
    state = ["--state-dir", str(tmp_path / "state")]
    out = tmp_path / "out"
    argv = ["--input", str(path), "--out", str(out), "--quiet", "--no-alpha-quality", "--kill-file", str(tmp_path / "k"), *state]
    assert report_cli.main(argv, now=lambda: NOW) == 0
    inputs = json.loads((out / "meta_report.json").read_text())["inputs"]
    assert inputs["bad_lines"] == 1 and inputs["partial_tails"] == []
    with open(path, "ab") as handle:
        handle.write(b"z" * 5000 + b"\n" + b"".join(good_lines()))
    assert report_cli.main(argv, now=lambda: NOW) == 0
    inputs = json.loads((out / "meta_report.json").read_text())["inputs"]
    assert inputs["bad_lines"] == 1 and inputs["spans"] == 6


def test_the_reader_buffer_is_bounded_by_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a cap above the block size, a line without end grows the buffer to cap + 1 at most."""
    from meta_supervisor.reading import shapes as trace_reader

    monkeypatch.setattr(trace_reader, "BLOCK_SIZE", 1024)
    stream = ReadIntoSizes(b"q" * 50_000)
    aggregator = SpanAggregator(None)
    result = read_json_lines(stream, RecordDecoder(aggregator, "t"), 0, max_line=5000)
    assert (result.consumed, result.partial_tail, aggregator.inputs.bad_lines) == (50_000, 0, 1)
    assert stream.largest <= 5001


@pytest.mark.parametrize("value", ["12", "lots", "0", str(1 << 40)])
def test_a_bad_line_cap_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, value: str) -> None:
    monkeypatch.setenv(ENV_MAX_LINE, value)
    code, _, _ = build(tmp_path, tmp_path / "none.jsonl")
    assert code == 2
    assert f"{ENV_MAX_LINE}={value!r}" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_the_supervisor_names_a_fifo_as_such(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from meta_supervisor.cli import supervise

    fifo = tmp_path / "traces.jsonl"
    os.mkfifo(fifo)
    assert supervise.main(["--dry-run", "--traces", str(fifo)], out=io.StringIO()) == 2
    assert f"input {fifo} is a FIFO (named pipe), not a regular file" in capsys.readouterr().err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS read from /proc (Linux)")
def test_a_512_mib_file_without_a_newline_reads_in_bounded_memory(tmp_path: Path) -> None:
    """The issue's case at full size, with the default cap (a sparse file: no disk used): one bad line,
    and the command's peak RSS stays far below the file's size (it held the whole file before).

    The peak is the process's own VmHWM (ru_maxrss of a spawned child can include its parent's)."""
    path = tmp_path / "traces.jsonl"
    with open(path, "wb") as handle:
        handle.truncate(512 << 20)  # NULs
    code = (
        "import json, re, sys\n"
        "from meta_supervisor.cli import report as report_cli\n"
        "code = report_cli.main(sys.argv[1:])\n"
        "status = open('/proc/self/status').read()\n"
        "print(json.dumps([code, int(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))]))\n"
    )
    argv = [sys.executable, "-c", code, "--input", str(path), "--out", str(tmp_path / "out"), "--no-state", "--quiet"]
    argv += ["--no-alpha-quality", "--workers", "1", "--kill-file", str(tmp_path / "none.json")]
    env = {k: v for k, v in os.environ.items() if k != ENV_MAX_LINE}
    env["ALPHATRACE_SUPERVISOR_AUDIT_FILE"] = str(tmp_path / "audit.jsonl")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, env=env)
    status, peak_kib = json.loads(done.stdout.strip().splitlines()[-1])
    assert status == 0, done.stderr
    inputs = json.loads((tmp_path / "out" / "meta_report.json").read_text())["inputs"]
    assert inputs["bad_lines"] == 1 and inputs["partial_tails"] == [] and inputs["spans"] == 0
    assert "at byte 0" in inputs["problems"][0]["error"]
    assert peak_kib < 256 << 10, f"peak RSS {peak_kib >> 10} MiB (at most half the file)"
