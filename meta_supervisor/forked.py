"""A call made by a forked process while the caller goes on: the one way the report command uses its
second core after the read (the state's save, ``build.save_aside``; the HTML file,
``render.outputs.write_report``), and the rules every forked process of a build keeps.

* ``fork_is_safe``: only a process without other threads forks (a lock held by another thread at
  the fork would never be released in the child).
* ``die_with_parent``: a forked process is killed when the build dies (Linux ``PR_SET_PDEATHSIG``)
  and ends at once if the build died before that was set: nothing outlives the build.
* ``call_forked(function)`` forks a process that calls ``function()`` and ends; ``ForkedCall.result``
  waits for it and gives what it returned (pickled), or raises what it raised: an ``OSError`` as
  one (errno, message, file name: a full disk is said as in the caller's own process), anything
  else as a ``RuntimeError`` carrying the child's traceback; a child that ended without a result
  (killed, out of memory) is an ``OSError`` (EIO) saying how it ended. The child never returns
  into the caller's code (``os._exit``: no ``atexit`` handlers, no buffered output written twice).
* While a forked call runs, the caller's objects are frozen for the cyclic garbage collector
  (``gc.freeze``): a collection writes into every object it examines, and each page it writes
  is then copied (copy-on-write), ~1,250 pages for 1,000 agents' tallies. They are unfrozen when
  the last forked call has ended (objects are still freed by their reference counts meanwhile).

Reads no environment variables.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_TRACEBACK_LIMIT = 1 << 19  # characters of a child's traceback sent back at most
_running = 0  # forked calls not yet collected: the caller's objects stay frozen until none is left


def fork_is_safe() -> bool:
    """Forking a process that runs other threads can deadlock the child on a lock held at the fork."""
    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def die_with_parent(parent: int) -> None:
    """In a forked process: be killed when the parent dies (Linux ``PR_SET_PDEATHSIG``), and end now
    if it died before that was set. A forked process never outlives the build that started it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class ForkedCall:
    """A forked process calling a function; ``result`` waits for it (once; later calls give the same)."""

    def __init__(self, pid: int, result_fd: int, doing: str) -> None:
        self.pid, self.doing = pid, doing
        self._fd: int | None = result_fd
        self._outcome: tuple[bool, Any] | None = None

    def result(self) -> Any:
        if self._outcome is None:
            self._outcome = self._collect()
        ok, value = self._outcome
        if not ok:
            raise value
        return value

    def _collect(self) -> tuple[bool, Any]:
        chunks = []
        try:
            while chunk := os.read(self._fd, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            self._fd = None
            _, status = os.waitpid(self.pid, 0)
            _thaw()
        code = os.waitstatus_to_exitcode(status)
        try:
            kind, value = pickle.loads(b"".join(chunks))
        except Exception:  # nothing (killed before it told), or cut short
            how = f"was killed by signal {-code}" if code < 0 else f"ended with status {code} and no result"
            return False, OSError(errno.EIO, f"the process {self.doing} {how}")
        if kind == "returned":
            return True, value
        if kind == "oserror":
            number, message, filename = value
            return False, OSError(number, message, *([filename] if filename is not None else []))
        return False, RuntimeError(f"{self.doing} failed in its process:\n{value}")


def call_forked(function: Callable[[], Any], doing: str) -> ForkedCall:
    """Fork a process that calls ``function()`` (its result must pickle) and ends; ``doing`` says
    what it does in errors ("saving the state": "the process saving the state was killed ...")."""
    global _running
    parent = os.getpid()
    read_end, write_end = os.pipe()
    gc.freeze()
    _running += 1
    try:
        pid = os.fork()
    except BaseException:
        _thaw()
        raise
    if pid == 0:  # the child: call, tell, end (never back into the caller's code)
        code = 1
        try:
            os.close(read_end)
            die_with_parent(parent)
            told = pickle.dumps(("returned", function()))
            code = 0
        except OSError as exc:
            told = pickle.dumps(("oserror", (exc.errno or errno.EIO, exc.strerror or str(exc), _text(exc.filename))))
        except BaseException:  # a bug: its traceback is raised in the caller
            told = pickle.dumps(("failed", traceback.format_exc()[-_TRACEBACK_LIMIT:]))
        try:
            view = memoryview(told)
            while view:
                view = view[os.write(write_end, view) :]
        finally:
            os._exit(code)
    os.close(write_end)
    return ForkedCall(pid, read_end, doing)


def _thaw() -> None:
    global _running
    _running -= 1
    if _running == 0:
        gc.unfreeze()


def _text(filename) -> str | None:
    return None if filename is None else os.fsdecode(filename)
