"""The embedded default exporter: appends spans to a file in the collector file exporter's format.

Each export is one OTLP/JSON line written with a single ``write()`` on an ``O_APPEND`` descriptor, so
concurrent writers never interleave. A process killed in the middle of that write (SIGKILL, power
loss) can leave part of its last line; before each append the exporter cuts such a fragment off (and
logs how many bytes it removed), so the file holds only whole lines and a half batch is never glued
to the next. Writers take an advisory lock around each write and repair, so several processes can
share one file without one cutting another's line in flight.

A write that fails (disk full, quota, permissions) is cut back off at once, so it leaves no fragment
to be mistaken for a killed writer's. Failures are logged with the file and the real cause from the
errno ("disk full"), once, then at most once a minute with the spans failed so far, and the export
reports ``FAILURE`` instead of raising; the next success logs that writing works again.

The trace file must be a regular file: a FIFO would stall the exporter once its reader stops (and
hang a blocking open), a device or socket cannot be repaired. ``special_file_kind`` is the one check:
``otel/provider.py`` refuses such a path at start-up (``ConfigError``), and every open here is
non-blocking and refuses it too (the path may be replaced while running).

Lines are encoded by ``otel/otlp_json_compiled.py`` (msgspec), byte for byte what the pure-Python
reference ``otel/otlp_json.py`` writes.

Reads no environment variables (``otel/provider.py`` resolves the path).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel.internal_errors import report_internal_error
from otel.otlp_json_compiled import encode_line
from otel.rate_limit import RateLimit

logger = logging.getLogger(__name__)

_CAUSES = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "I/O error",
}
_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def non_regular_kind(mode: int) -> str | None:
    """What a file of this ``st_mode`` is when it is not a regular file ("a FIFO (named pipe)"), else
    None: the one wording of the rule that trace files (written or read) are regular files."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")


def special_file_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("a FIFO (named pipe)"), else None."""
    try:
        return non_regular_kind(os.stat(path).st_mode)
    except OSError:  # missing (created on first export) or unreadable (the export reports why)
        return None


class NotARegularFile(OSError):
    pass


def failure_cause(exc: OSError) -> str:
    """The cause a user acts on, from the errno ("disk full"), with the system's own words."""
    if isinstance(exc, NotARegularFile):
        return str(exc)
    words = _CAUSES.get(exc.errno) if exc.errno is not None else None
    return f"{words} ({exc})" if words else f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _file_lock(fd: int) -> Iterator[None]:
    """An exclusive advisory lock every alphatrace writer of the file takes around each write and
    around the crash repair; the kernel releases it when a writer dies, so a kill never leaves it held."""
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class CollectorFileExporter(SpanExporter):
    def __init__(
        self,
        path: str | os.PathLike,
        clock: Callable[[], float] = time.monotonic,
        report_every_seconds: float = 60.0,
        noun: str = "spans",
    ) -> None:
        self.path = Path(path)
        self.noun = noun  # what a line's items are, in log lines: spans, metric points
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._rate = RateLimit(report_every_seconds, clock)
        self._failure: str | None = None  # the cause while writes fail
        self._failure_spans = 0  # spans failed since then
        self._own_fragment = False  # a failed write whose cut failed too: the next repair is no news
        self._closed = False
        self.lines_written = 0
        self.spans_written = 0
        self.spans_failed = 0

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO cannot hang the open
            fd = os.open(self.path, flags, 0o644)
            try:
                kind = non_regular_kind(os.fstat(fd).st_mode)
                if kind:
                    raise NotARegularFile(f"it is {kind}, not a regular file")
                os.set_blocking(fd, True)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _cut_crash_fragment(self, fd: int) -> None:
        """Truncate a half-written last line (a killed writer's) back to the last newline."""
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return
        end = size
        while end > 0:
            start = max(0, end - 65536)
            chunk = os.pread(fd, end - start, start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        else:
            keep = 0
        os.ftruncate(fd, keep)
        if self._own_fragment:  # this exporter's failed write, already reported with its cause
            self._own_fragment = False
            logger.info("alphatrace: removed the %d bytes a failed write left in %s", size - keep, self.path)
            return
        logger.warning(
            "alphatrace: %s ended in a half-written line (a writer was killed mid-write); removed its %d bytes",
            self.path,
            size - keep,
        )

    def _append(self, fd: int, line: bytes) -> None:
        """Append ``line`` whole or not at all. A short write (a filling disk) is continued, which
        either completes the line or fails with the real cause (ENOSPC, EDQUOT, EFBIG); a failed
        line is cut back off."""
        self._cut_crash_fragment(fd)
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, line)
            while written < len(line):
                more = os.write(fd, line[written:])
                if more <= 0:
                    raise OSError(errno.EIO, f"wrote {written} of {len(line)} bytes")
                written += more
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                self._own_fragment = True
            raise

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        if self._closed:
            self.spans_failed += len(spans)
            return SpanExportResult.FAILURE
        try:
            line = encode_line(spans)
        except Exception:
            self.spans_failed += len(spans)
            report_internal_error(logger, f"could not encode {len(spans)} spans")
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self.write_line(line, len(spans)) else SpanExportResult.FAILURE

    def write_line(self, line: bytes, count: int) -> bool:
        """Append one encoded line of ``count`` items (spans, or metric points for
        ``otel/metrics.py``) with every guarantee above; False when it failed (reported)."""
        with self._lock:
            if self._closed:
                self.spans_failed += count
                return False
            try:
                fd = self._open()
                with _file_lock(fd):  # so another writer's repair never cuts a line being written
                    self._append(fd, line)
            except OSError as exc:
                self._close_fd()
                self._report_failure(count, exc)
                return False
            if self._failure is not None:
                logger.warning(
                    "alphatrace: writing %s to %s works again (%s: %d %s failed)",
                    self.noun,
                    self.path,
                    self._failure,
                    self._failure_spans,
                    self.noun,
                )
                self._failure = None
            self.lines_written += 1
            self.spans_written += count
        return True

    def _report_failure(self, count: int, exc: OSError) -> None:
        """A new cause is logged at once; the same cause again at most once per interval, with a count."""
        self.spans_failed += count
        cause = failure_cause(exc)
        if cause != self._failure:
            self._failure, self._failure_spans = cause, count
            self._rate.reset()
            self._rate.ready()
            logger.error(
                "alphatrace: cannot write %s to %s: %s: %d %s failed; %s are dropped until it works again (repeated at most every %.0f s)",
                self.noun,
                self.path,
                cause,
                count,
                self.noun,
                self.noun,
                self._rate.every,
            )
            return
        self._failure_spans += count
        if self._rate.ready():
            logger.warning(
                "alphatrace: still cannot write %s to %s: %s: %d %s failed", self.noun, self.path, cause, self._failure_spans, self.noun
            )

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            self._close_fd()
