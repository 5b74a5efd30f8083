"""``heap_trim.map_large_blocks``: with glibc's mmap threshold fixed, megabyte buffers freed between
long-lived small objects go back to the OS at once (the build's transient buffers: a hand-over
file's chunks, a part's packed tallies). Measured in a fresh process (``/proc/self/status``);
without the fixed threshold glibc serves such buffers from the heap after the first one is freed,
where the small objects pin them. Nothing here measures a time."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys
from meta_supervisor.build.heap_trim import map_large_blocks

def rss_kb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

fixed = sys.argv[1] == "fixed"
if fixed:
    assert map_large_blocks()
before = rss_kb()
pins = []
for round in range(4):
    blocks = []
    for _ in range(16):  # megabyte buffers held together, a small long-lived object after each
        block = bytearray(1 << 20)
        block[::4096] = b"x" * len(block[::4096])  # touched: resident
        blocks.append(block)
        pins.append(bytearray(1000))  # from malloc (pymalloc serves up to 512 bytes), kept
    del blocks, block
print(rss_kb() - before)
"""


def _grown_kb(mode: str) -> int:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and /proc: Linux with glibc only")
def test_megabyte_buffers_are_returned_when_freed():
    assert _grown_kb("fixed") < 4 * 1024  # 4 x 16 MB of buffers made and freed: none of them kept
    assert _grown_kb("plain") > 8 * 1024  # glibc's default: the heap keeps them (measured 17 MB)
