"""Where reading a trace file stopped, and how the file changed since: ``FileCursor`` and ``classify``.

``FileCursor`` is what the incremental state keeps per input file: its identity (device, inode and a
digest of its first bytes), its shape, and how far it has been read (bytes of the file, or of the
decompressed stream for a zstd-compressed file, which is decompressed again and skipped up to there:
a zstd stream cannot be resumed in the middle). ``classify`` compares a file with its cursor:
unchanged, grown (read on from the cursor), new or replaced (read again).

Reads no environment variables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from meta_supervisor.reading.formats import FORMAT_EMPTY
from meta_supervisor.reading.inputs import head_digest, identity_of


@dataclass
class FileCursor:
    path: str
    device: int = 0
    inode: int = 0
    size: int = 0  # file size when last read
    mtime_ns: int = 0
    head_length: int = 0
    head_digest: str = ""
    format: str = FORMAT_EMPTY
    offset: int = 0  # bytes consumed (of the decompressed stream for zstd files)
    records: int = 0  # lines or messages consumed
    partial_tail_bytes: int = 0
    error: str | None = None

    def to_state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, data: dict) -> FileCursor:
        return cls(**data)

    def details(self) -> dict:
        """The file's entry in the report's ``inputs.file_details``."""
        return {
            "path": self.path,
            "format": self.format,
            "bytes": self.size,
            "records": self.records,
            "partial_tail_bytes": self.partial_tail_bytes,
            "error": self.error,
        }


@dataclass
class FileChange:
    kind: str  # "unchanged" | "grown" | "new" | "replaced"
    reason: str = ""
    cursor: FileCursor | None = field(default=None)


def classify(path: Path, known: FileCursor | None) -> FileChange:
    """How ``path`` relates to what the last build read of the same file (``known``)."""
    if known is None:
        return FileChange("new")
    ident = identity_of(path)
    if (ident.device, ident.inode) != (known.device, known.inode):
        return FileChange("replaced", f"{path} is a different file than last time (inode changed)")
    if ident.size == known.size and ident.mtime_ns == known.mtime_ns:
        return FileChange("unchanged", cursor=known)
    if ident.size < known.size:
        return FileChange("replaced", f"{path} shrank from {known.size} to {ident.size} bytes (truncated)")
    if known.head_length and head_digest(path, known.head_length) != known.head_digest:
        return FileChange("replaced", f"{path} was rewritten (its first bytes changed)")
    return FileChange("grown", cursor=known)
