"""Where the meta-supervisor's files are by default: the project root and the folders under it.

Reads no environment variables.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
