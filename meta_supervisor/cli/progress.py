"""A progress bar on a terminal, for builds that take longer than a moment.

Nothing is drawn unless the stream is a terminal and the build has run for ``delay`` seconds; it is
redrawn at most ten times a second and erased when the build ends, so logs and pipes stay clean.

Reads no environment variables.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, delay: float = 0.5, clock=time.monotonic) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.delay = delay
        self.clock = clock
        self.started = clock()
        self.last_draw = 0.0
        self.drawn = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.started < self.delay or now - self.last_draw < 0.1:
            return
        self.last_draw = now
        fraction = min(done / total, 1.0) if total else 0.0
        filled = int(fraction * WIDTH)
        elapsed = max(now - self.started, 1e-9)
        bar = "#" * filled + "." * (WIDTH - filled)
        line = f"\r[{bar}] {fraction:6.1%}  {done / 1e6:,.0f}/{total / 1e6:,.0f} MB  {done / elapsed / 1e6:,.0f} MB/s"
        self.stream.write(line)
        self.stream.flush()
        self.drawn = True

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\r" + " " * 79 + "\r")
            self.stream.flush()
            self.drawn = False
