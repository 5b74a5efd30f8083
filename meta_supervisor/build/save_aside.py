"""The new incremental state saved by a forked process while the report is assembled.

Saving the state of 1,000 agents (each tally encoded, the tables and the summary written and
fsynced) takes ~0.12 s of a 1.3 s build, after the reading is done and while the second core is
idle: the read's worker has ended. ``PendingSave`` forks a process that does the save
(``SavedState.save``, exactly as the build's own process would; ``meta_supervisor.forked``) and
returns at once; the build assembles the report meanwhile, then ``PendingSave.wait`` gives the
save's outcome.

What stays as it was:

* The state lock. It is taken by the build's own descriptor, and a forked process never keeps a
  lock its parent holds (``services.state_files``), so the build keeps holding it (``PendingSave``
  is handed the build's hold) until ``wait`` (or ``abandon``) has the child's end: no other build
  reads or writes the state in between.
* A failed save. An ``OSError`` in the child (a full disk) comes back as one, so the build says
  "incremental state not saved (...)" as before, in the report too; so is a child that ended
  without a result (killed, out of memory). A bug in the save (another exception) is a
  ``RuntimeError`` carrying the child's traceback, as it would have failed the build without the
  fork. Whatever a failed or killed save wrote of its generation (no summary names it) is removed
  (``SavedState.discard``, which keeps a generation the summary names: a child killed just after
  the summary's rename saved a whole state).
* Nothing outlives the build: the child dies with it, and the summary's atomic replace means a
  child killed at any point leaves the previous state whole.

Only when the build asks for it (``BuildOptions.save_aside``: the report command) and may fork: at
least two worker processes allowed (``--workers``) and no other thread running. Otherwise the state
is saved in the build's process.

Reads no environment variables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from meta_supervisor.forked import call_forked, fork_is_safe


def may_fork_aside(workers: int) -> bool:
    """Whether a process may be forked beside the build's (the state's save, the HTML): ``workers``
    (``BuildOptions.workers``, ``--workers``; 0: one per CPU) allows two, and no other thread runs."""
    from meta_supervisor.build.parallel import worker_count  # not imported by a build with nothing new

    return worker_count(workers) >= 2 and fork_is_safe()


class PendingSave:
    """A state being saved by a forked process; ``wait`` for its generation."""

    def __init__(self, save: Callable[[str], str], generation: str, discard: Callable[[str], None]) -> None:
        self.generation = generation
        self._call = call_forked(lambda: save(generation), "saving the state")
        self._discard = discard
        self._hold: contextlib.ExitStack | None = None

    def hold(self, stack: contextlib.ExitStack) -> None:
        """Keep the state lock (``stack``, the build's hold) until the save has ended."""
        self._hold = stack

    def wait(self) -> str:
        """The saved generation; ``OSError`` when the state was not saved (what was written of it
        is removed), ``RuntimeError`` for a bug in the save. Releases the lock."""
        try:
            try:
                return self._call.result()
            except BaseException:
                self._discard(self.generation)
                raise
        finally:
            if self._hold is not None:
                self._hold.close()
                self._hold = None

    def abandon(self) -> None:
        """The build failed on the way: let the save end (it is short; killed, it could end just
        after the summary's rename), then release the lock. Its outcome no longer matters."""
        with contextlib.suppress(OSError, RuntimeError):
            self.wait()
