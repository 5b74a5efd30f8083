"""The new incremental state saved by a forked process while the report is assembled.

Saving the state of 1,000 agents (each tally encoded, the tables and the summary written and
fsynced) takes ~0.12 s of a 1.3 s build, after the reading is done and while the second core is
idle: the read's worker has ended. ``save_aside`` forks a process that does the save
(``SavedState.save``, exactly as the build's own process would) and returns at once; the build
assembles the report meanwhile, then ``PendingSave.wait`` gives the save's outcome.

What stays as it was:

* The state lock. It is taken by the build's own descriptor, and a forked process never keeps a
  lock its parent holds (``services.state_files``), so the build keeps holding it (``PendingSave``
  is handed the build's hold) until ``wait`` (or ``abandon``) has the child's end: no other build
  reads or writes the state in between.
* A failed save. An ``OSError`` in the child (a full disk) comes back as one (errno, message and
  path), so the build says "incremental state not saved (...)" as before, in the report too. A
  child that ended without a result (killed, out of memory) is said the same way; a bug in the
  save (another exception) is a ``RuntimeError`` carrying the child's traceback, as it would have
  failed the build without the fork. Whatever a failed or killed save wrote of its generation (no
  summary names it) is removed (``SavedState.discard``).
* Nothing outlives the build: the child dies with it (``parallel.die_with_parent``), and the
  summary's atomic replace means a child killed at any point leaves the previous state whole.

Only when the build asks for it (``BuildOptions.save_aside``: the report command) and may fork: at
least two worker processes allowed (``--workers``) and no other thread running (``fork_is_safe``).
Otherwise the state is saved in the build's process.

Reads no environment variables.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import traceback
from collections.abc import Callable

# parallel (and what it imports: msgspec, zstandard) is imported when a state is saved: a build with
# nothing new to read never imports it (full)
_RESULT_LIMIT = 1 << 20  # a traceback's text at most: the child's result is read whole


def may_save_aside(workers: int) -> bool:
    """Whether the state can be saved by a forked process (``workers``: ``BuildOptions.workers``)."""
    from meta_supervisor.build.parallel import fork_is_safe, worker_count

    return worker_count(workers) >= 2 and fork_is_safe()


class PendingSave:
    """A state being saved by a forked child; ``wait`` for its generation. ``hold``: the build's
    hold on the state lock (an ``ExitStack``), released once the child has ended."""

    def __init__(self, pid: int, result_fd: int, generation: str, discard: Callable[[str], None]) -> None:
        self.pid, self.generation = pid, generation
        self._fd: int | None = result_fd
        self._discard = discard
        self._hold: contextlib.ExitStack | None = None
        self._outcome: str | BaseException | None = None

    def hold(self, stack: contextlib.ExitStack) -> None:
        """Keep the state lock (``stack``) until the child has ended."""
        self._hold = stack

    def wait(self) -> str:
        """The saved generation; ``OSError`` when the state was not saved (what was written of it
        removed), ``RuntimeError`` for a bug in the save. Releases the lock. Idempotent."""
        if self._outcome is None:
            try:
                self._outcome = self._collect()
            finally:
                self._release()
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        return self._outcome

    def abandon(self) -> None:
        """The build failed on the way: end the child, remove what it wrote, release the lock."""
        if self._outcome is None and self._fd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            with contextlib.suppress(BaseException):
                self.wait()

    def _collect(self) -> str | BaseException:
        chunks = []
        try:
            while sum(map(len, chunks)) < _RESULT_LIMIT:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            self._fd = None
            _, status = os.waitpid(self.pid, 0)
        try:
            result = json.loads(b"".join(chunks) or b"null")
        except ValueError:
            result = None
        if isinstance(result, dict) and result.get("generation") == self.generation and os.waitstatus_to_exitcode(status) == 0:
            return self.generation
        self._discard(self.generation)
        if isinstance(result, dict) and "oserror" in result:
            number, message, filename = result["oserror"]
            return OSError(number, message, *([filename] if filename is not None else []))
        if isinstance(result, dict) and "error" in result:
            return RuntimeError(f"saving the incremental state failed in its process:\n{result['error']}")
        code = os.waitstatus_to_exitcode(status)
        how = f"was killed by signal {-code}" if code < 0 else f"ended with status {code} and no result"
        return OSError(errno.EIO, f"the process saving it {how}")

    def _release(self) -> None:
        if self._hold is not None:
            self._hold.close()
            self._hold = None


def save_aside(save: Callable[[str], str], generation: str, discard: Callable[[str], None]) -> PendingSave:
    """Fork a child that calls ``save(generation)`` and reports its outcome; ``discard(generation)``
    removes what a failed save wrote."""
    from meta_supervisor.build.parallel import die_with_parent

    parent = os.getpid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: save, tell, end (never back into the build's code)
        code = 1
        try:
            os.close(read_end)
            die_with_parent(parent)
            result: dict = {"generation": save(generation)}
            code = 0
        except OSError as exc:
            result = {"oserror": [exc.errno or errno.EIO, exc.strerror or str(exc), _text(exc.filename)]}
        except BaseException:  # a bug: its traceback goes to the parent, which raises it there
            result = {"error": traceback.format_exc()[-_RESULT_LIMIT // 2 :]}
        try:
            told = memoryview(json.dumps(result).encode())
            while told:
                told = told[os.write(write_end, told) :]
        finally:
            os._exit(code)
    os.close(write_end)
    return PendingSave(pid, read_end, generation, discard)


def _text(filename) -> str | None:
    return None if filename is None else os.fsdecode(filename)
