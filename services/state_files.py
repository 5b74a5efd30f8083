"""State files that people and programs both edit: the one atomic write and the one lock helper.

* ``write_atomically``: readers see the old content or the new, never half, and the new content
  survives a power loss once it returns: a temp file in the same folder is written and fsynced,
  renamed over the target, then the folder itself is fsynced (the rename is an entry of the folder).
  Used for the kill switch, agent status, the supervisor's files, the report files and the report's
  incremental state. The content may come as pieces (an iterable of strings, e.g. a JSON encoder's
  ``iterencode``, or ``json_pieces``): they are written as they come, so a large report or state is
  never whole in memory.
* ``exclusive_lock``: an exclusive ``flock`` on a lock file, waited for at most a given time; the
  holder's pid is written into the lock file, so a build that times out can say who holds it. A
  forked child never keeps a lock its parent holds: the child's copy of the descriptor is closed
  right after every fork (``os.register_at_fork``). ``flock`` locks belong to the open file
  description, which a fork shares, so a child that outlived a killed parent kept the lock forever.
* ``locked_for_update``: ``exclusive_lock`` on ``<path>.lock`` for a read-change-write of ``path``.
* ``read_small_file``: a state file's text, read without blocking (a FIFO planted at the path) and
  never past a size limit, so a huge or odd file costs one ``fstat``, never a read and a parse.

Reads no environment variables.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

_HELD: dict[int, int] = {}  # lock descriptor -> pid of the process that took the lock


def _close_held_locks_in_child() -> None:
    """After a fork, in the child: close the child's copies of the held lock descriptors. (Not
    LOCK_UN: that would release the parent's lock too; closing one copy of several does not.)"""
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_locks_in_child)


class LockTimeout(Exception):
    """The lock was not free within the time allowed; ``holder`` describes who holds it."""

    def __init__(self, lock_path: Path, waited: float, holder: str) -> None:
        super().__init__(f"{lock_path} is held by {holder}; waited {waited:g} s")
        self.lock_path, self.waited, self.holder = lock_path, waited, holder


def lock_holder(lock_path: Path) -> str:
    """Who holds the lock, from the pid the holder wrote into the lock file."""
    try:
        text = Path(lock_path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    pid = int(text.split()[0]) if text and text.split()[0].isdigit() else 0
    if not pid:
        return "another process (no pid recorded)"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"process {pid}, which is no longer running (a process it started may still hold the lock)"
    except PermissionError:
        pass
    return f"process {pid}"


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, timeout: float | None = None, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created if needed) for the ``with`` block.

    ``timeout``: None waits as long as it takes, 0 tries once, else seconds; ``LockTimeout`` when
    the lock is still held then. ``on_wait(holder)`` is called once when the lock is busy."""
    owner = os.getpid()
    fd = _acquire(Path(lock_path), timeout, on_wait)
    try:
        _HELD[fd] = owner
        with contextlib.suppress(OSError):  # who holds it, for a build that waits in vain
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{owner}\n".encode(), 0)
        yield
    finally:
        if os.getpid() == owner:  # a forked child closed its copy already (and may reuse the number)
            _HELD.pop(fd, None)
            os.close(fd)  # releases the lock (the last descriptor of its open file description)


def _acquire(lock_path: Path, timeout: float | None, on_wait: Callable[[str], None] | None) -> int:
    """A descriptor of ``lock_path`` holding its lock. A lock file removed while it was waited for
    (a state set pruned by its last holder) is not a lock any more: the file there now is locked."""
    started = time.monotonic()
    told = on_wait is None or timeout == 0
    pause = 0.01
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            while not _try_lock(fd):
                if not told:
                    told = True
                    on_wait(lock_holder(lock_path))
                waited = time.monotonic() - started
                if timeout is None:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    break
                if waited >= timeout:
                    raise LockTimeout(lock_path, timeout, lock_holder(lock_path))
                time.sleep(min(pause, max(timeout - waited, 0.001)))
                pause = min(pause * 2, 0.25)
            if _is_at(fd, lock_path):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _is_at(fd: int, path: Path) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def locked_for_update(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` (the file itself is replaced, so not locked)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.with_name(path.name + ".lock")):
        yield


def fsync_folder(folder: Path) -> None:
    """Make the folder's entries (a rename, a new or deleted file) durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that cannot sync a folder
            raise
    finally:
        os.close(fd)


WRITE_BATCH = 4096  # pieces joined into one write (an encoder's pieces are a few characters each)
WRITE_BATCH_CHARS = 1 << 18  # or fewer, when they are large (a report's pieces are whole agents)


def _write_pieces(tmp, pieces: Iterable[str]) -> None:
    """Write string pieces as UTF-8, ``WRITE_BATCH`` at a time, or fewer once they hold
    ``WRITE_BATCH_CHARS`` (one write each would be slow, all at once would hold them all)."""
    batch: list[str] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= WRITE_BATCH_CHARS or len(batch) >= WRITE_BATCH:
            tmp.write("".join(batch).encode("utf-8"))
            batch.clear()
            size = 0
    if batch:
        tmp.write("".join(batch).encode("utf-8"))


WIDE_ENTRIES = 64  # a dict with this many entries (the 1,000 agents of a section) may share values
SMALL_ENTRY = 16  # an entry of at most this many keys is looked into for a shared value


class SharedValues:
    """The containers that the entries of one wide dict share: the same object as a value of several
    entries (every agent without alpha signals has one and the same empty horizons section, ~4 kB
    of JSON, 1,000 times in a report of 1,000 agents). ``repeats(entry)`` says whether a small
    dict entry holds a container seen in an earlier entry; the writer then writes that entry key
    by key and encodes each shared container once (``text``), the same text as encoding it again.
    Ids are safe keys: every value is held by the dict being written while it is written."""

    __slots__ = ("_seen", "_texts")

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}  # id of a container value of the entries -> entries holding it
        self._texts: dict[int, str] = {}

    def repeats(self, entry: Any) -> bool:
        if type(entry) is not dict or len(entry) > SMALL_ENTRY or not all(type(key) is str for key in entry):
            return False
        found = False
        seen = self._seen
        for value in entry.values():
            if (type(value) is dict or type(value) is list) and value:
                count = seen.get(id(value), 0) + 1
                seen[id(value)] = count
                found = found or count > 1
        return found

    def shared(self, value: Any) -> bool:
        return (type(value) is dict or type(value) is list) and self._seen.get(id(value), 0) > 1

    def text(self, value: Any, encode: Callable[[Any], str]) -> str:
        """``encode(value)``, made once for a shared ``value``."""
        text = self._texts.get(id(value))
        if text is None:
            text = self._texts[id(value)] = encode(value)
        return text


JSON_TYPES = (str, int, float, dict, list, tuple, type(None))  # what json writes without ``default`` (bool is an int)
PLAIN_OPTIONS = frozenset({"ensure_ascii", "allow_nan", "default"})  # options under which orjson may write a value


def json_pieces(value: Any, depth: int = 2, plain: Callable[..., bool] | None = None, **options: Any) -> Iterator[str]:
    """Compact JSON text of ``value`` (``json.dumps(value, separators=(",", ":"), **options)``, the
    same text) as pieces for ``write_atomically``: a dict down to ``depth`` levels is encoded key by
    key, so only one value's text is made at a time (a state of 1,000 agents is several MB of text,
    made whole twice over by ``dumps`` and then ``encode``); a value that the entries of a wide
    dict share is encoded once (``SharedValues``). ``plain``: the compiled core's
    ``orjson_writes_as_json`` (``meta_supervisor.native_core.json_check``), or None: a value it
    vouches for (with ``ensure_ascii``, one whose strings are all ASCII) is written by orjson, the
    same text several times faster; any other value, or any other option, by ``json``."""
    encoder = json.JSONEncoder(separators=(",", ":"), **options)
    ascii_only = options.get("ensure_ascii", True)
    if plain is not None and options.keys() <= PLAIN_OPTIONS:
        default = options.get("default")

        def encode(item: Any) -> str:
            if default is not None and type(item) is dict and not all(isinstance(inner, JSON_TYPES) for inner in item.values()):
                # a value json would hand to ``default`` (a state's tally, made as it is written):
                # handed to it here, so that orjson may write its result (as json would, the same text)
                item = {key: inner if isinstance(inner, JSON_TYPES) else default(inner) for key, inner in item.items()}
            if type(item) is not str and plain(item, ascii_only):
                try:
                    return orjson.dumps(item).decode("utf-8")
                except orjson.JSONEncodeError:  # an integer beyond 64 bits
                    pass
            return encoder.encode(item)

    else:
        encode = encoder.encode

    def pieces(item: Any, level: int) -> Iterator[str]:
        if level > 0 and type(item) is dict and item and all(type(key) is str for key in item):
            shared = SharedValues() if level == 1 and len(item) >= WIDE_ENTRIES else None
            opening = "{"
            for key, inner in item.items():
                yield f"{opening}{encoder.encode(key)}:"
                if shared is not None and shared.repeats(inner):
                    yield from _shared_entry(inner, shared, encode)
                else:
                    yield from pieces(inner, level - 1)
                opening = ","
            yield "}"
        else:
            yield encode(item)

    return pieces(value, depth)


def _shared_entry(entry: dict, shared: SharedValues, encode: Callable[[Any], str]) -> Iterator[str]:
    """``encode(entry)`` (compact) as pieces, its shared values' text made once."""
    opening = "{"
    for key, value in entry.items():
        yield f"{opening}{encode(key)}:"
        yield shared.text(value, encode) if shared.shared(value) else encode(value)
        opening = ","
    yield "}"


def write_atomically(path: Path, text: str | bytes | Iterable[str], sync_folder: bool = True) -> os.stat_result:
    """Write ``text`` to ``path``: temp file in the same folder, fsync, rename, fsync the folder.
    ``text`` may be string pieces, written as they come (an error while they are made leaves the
    old file as it was). The file keeps its mode (0644 for a new one). Without ``sync_folder`` the
    caller fsyncs the folder itself (``fsync_folder``), once after several files: the rename is
    durable only then. Returns the written file's stat, taken before the rename (its inode and
    mtime are this write's even if another process replaces the file at once: the report record's
    check)."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as tmp:
            if isinstance(text, str):
                tmp.write(text.encode("utf-8"))
            elif isinstance(text, bytes | bytearray | memoryview):
                tmp.write(text)
            else:
                _write_pieces(tmp, text)
            tmp.flush()
            os.fsync(tmp.fileno())
            written = os.fstat(tmp.fileno())
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o644
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if sync_folder:
        fsync_folder(folder)
    return written


class SmallFileError(ValueError):
    """A state file that is not a regular file, cannot be read, is not UTF-8 or is over its limit."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def read_small_file(target: Path, max_bytes: int, what: str) -> str | None:
    """``target``'s text, ``None`` when it is missing; ``SmallFileError`` (its message starting with
    ``what`` and the path) when it is not a regular file, cannot be read, is not UTF-8 or is larger than
    ``max_bytes`` (never read past the limit)."""
    too_large = f"{what} {target} is larger than the {max_bytes:,}-byte limit; it is not read"
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO planted at the path must not block
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SmallFileError(f"cannot read {what} {target}: {exc}") from None
    with os.fdopen(fd, "rb") as handle:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SmallFileError(f"{what} {target} is not a regular file")
            if st.st_size > max_bytes:
                raise SmallFileError(too_large, too_large=True)
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise SmallFileError(f"cannot read {what} {target}: {exc}") from None
    if len(data) > max_bytes:  # grew after the fstat
        raise SmallFileError(too_large, too_large=True)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SmallFileError(f"{what} {target} is not UTF-8 ({exc})") from None
