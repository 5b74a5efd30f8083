"""BLAKE2b, imported without loading OpenSSL: the one digest of the report's fingerprints, file
heads, state tables and cache keys.

Reads no environment variables.
"""

from __future__ import annotations

try:  # the BLAKE2 module itself: importing hashlib would load OpenSSL (~10 ms per run)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - other Python builds
    from hashlib import blake2b

__all__ = ["blake2b"]
