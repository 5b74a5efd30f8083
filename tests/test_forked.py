"""``meta_supervisor.forked.call_forked``: what the forked call returned or raised comes back to the
caller as if the call had been made there, a killed call is said as such, and the caller's objects
are frozen for the garbage collector only while forked calls run."""

from __future__ import annotations

import errno
import gc
import os
import signal
import time

import pytest

from meta_supervisor.forked import call_forked


def test_the_result_comes_back_from_another_process() -> None:
    call = call_forked(lambda: {"pid": os.getpid(), "big": "x" * 300_000}, "answering")
    result = call.result()
    assert result["pid"] != os.getpid() and result["big"] == "x" * 300_000
    assert call.result() is result  # asked again: the same answer, no second wait


def test_an_os_error_comes_back_as_one() -> None:
    def full_disk():
        raise OSError(errno.ENOSPC, "No space left on device", "/some/where.json")

    with pytest.raises(OSError) as raised:
        call_forked(full_disk, "writing").result()
    told = (raised.value.errno, raised.value.strerror, raised.value.filename)
    assert told == (errno.ENOSPC, "No space left on device", "/some/where.json")


def test_a_bug_comes_back_with_its_traceback() -> None:
    def buggy():
        return {}["missing"]

    with pytest.raises(RuntimeError, match=r"(?s)^rendering failed in its process:\nTraceback.*KeyError: 'missing'"):
        call_forked(buggy, "rendering").result()


def test_a_killed_call_is_said_as_such() -> None:
    call = call_forked(lambda: time.sleep(120), "sleeping")
    os.kill(call.pid, signal.SIGKILL)
    with pytest.raises(OSError, match=r"the process sleeping was killed by signal 9") as raised:
        call.result()
    assert raised.value.errno == errno.EIO
    exited = call_forked(lambda: os._exit(3), "exiting")
    with pytest.raises(OSError, match=r"the process exiting ended with status 3 and no result"):
        exited.result()


def test_objects_are_frozen_for_the_collector_only_while_forked_calls_run() -> None:
    assert gc.get_freeze_count() == 0
    kept = [[index] for index in range(1000)]
    first = call_forked(lambda: len(kept), "counting")
    second = call_forked(lambda: signal.SIGTERM.value, "naming")
    assert gc.get_freeze_count() >= len(kept)
    assert first.result() == 1000
    assert gc.get_freeze_count() >= len(kept)  # the second call still runs
    assert second.result() == signal.SIGTERM.value
    assert gc.get_freeze_count() == 0
