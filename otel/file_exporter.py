"""The embedded default exporter: appends spans to a file in the collector file exporter's format.

Each export is one OTLP/JSON line written with a single ``write()`` on an ``O_APPEND`` descriptor, so
concurrent writers never interleave. A process killed in the middle of that write (SIGKILL, power
loss) can leave part of its last line; the next exporter to open the file cuts that fragment off
before it appends (and logs how many bytes it removed), so the file holds only whole lines and a
half batch is never glued to the next. Writers take an advisory lock around each write and around
the repair, so several processes can share one file without one cutting another's line in flight.

An I/O failure (disk full, permissions) is logged once with the file and the reason, not once per
batch, and the export reports ``FAILURE`` instead of raising; the next success logs that writing
resumed.

Reads no environment variables (``otel/provider.py`` resolves the path).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel.internal_errors import report_internal_error
from otel.otlp_json import encode_line

logger = logging.getLogger(__name__)


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
    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._failing_since: str | None = None
        self._closed = False
        self.lines_written = 0
        self.spans_written = 0
        self.spans_failed = 0

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                with _file_lock(fd):
                    self._cut_crash_fragment(fd)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _cut_crash_fragment(self, fd: int) -> None:
        """Truncate a half-written last line left by a killed writer back to the last newline."""
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
        logger.warning(
            "alphatrace: %s ended in a half-written line (a writer was killed mid-write); removed its %d bytes",
            self.path,
            size - keep,
        )

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
        with self._lock:
            try:
                fd = self._open()
                with _file_lock(fd):  # so another writer's repair never cuts a line being written
                    written = os.write(fd, line)
                if written != len(line):
                    # A short write (disk full) would glue the next batch onto a fragment; end the
                    # fragment so readers count one bad line and keep every later batch.
                    os.write(fd, b"\n")
                    raise OSError(f"short write: {written} of {len(line)} bytes")
            except OSError as exc:
                self.spans_failed += len(spans)
                self._close_fd()
                reason = f"{type(exc).__name__}: {exc}"
                if self._failing_since is None:
                    logger.error(
                        "alphatrace: cannot write spans to %s (%s); spans are dropped until it works again (logged once)",
                        self.path,
                        reason,
                    )
                    self._failing_since = reason
                return SpanExportResult.FAILURE
            if self._failing_since is not None:
                logger.warning("alphatrace: writing spans to %s works again", self.path)
                self._failing_since = None
            self.lines_written += 1
            self.spans_written += len(spans)
        return SpanExportResult.SUCCESS

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
