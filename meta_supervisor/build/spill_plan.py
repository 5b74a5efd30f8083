"""How far the build's fingerprint tables may grow in memory, and where they spill beyond that.

A build keeps one entry per span (the dedup set) and one per closed run; with the native core those
tables keep at most ``resident_spans`` span entries (and half as many closed runs) in memory per
process, and spill the rest, sorted, to unnamed files in the build's cache folder
(``fingerprints.SpillPlan``, ``native/src/spill.rs``): every answer stays exact, only the resident
part is bounded. ``spill_folder`` is ``<state folder>/spill`` (or the system's temp folder for a
build that keeps no state); the files there are unlinked as soon as they are made, so a killed
build leaves nothing, except for a file made in the microseconds before its unlink, which the next
build removes (``tidy``).

Environment: ``ALPHATRACE_RESIDENT_SPANS`` (a whole number from ``MIN_RESIDENT_SPANS`` to 2^31;
the command's ``--resident-spans`` wins over it; a bad value is a ``ConfigError``).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from meta_supervisor.tally.fingerprints import SpillPlan
from settings.config_error import ConfigError, env_number

ENV_RESIDENT_SPANS = "ALPHATRACE_RESIDENT_SPANS"
DEFAULT_RESIDENT_SPANS = 500_000  # ~5.7 MB of span slots and ~3.2 MB of closed-run slots a process
MIN_RESIDENT_SPANS = 1_024
MAX_RESIDENT_SPANS = 1 << 31
_LEFT_FILE = re.compile(r"^\.spill-(\d+)-\d+\.tmp$")


def resident_spans(argument: int | None = None, environ: Mapping[str, str] = os.environ) -> int:
    """The resident cap: ``argument`` (``--resident-spans``), else ``ALPHATRACE_RESIDENT_SPANS``, else
    ``DEFAULT_RESIDENT_SPANS``; a ``ConfigError`` when out of range."""
    if argument is not None:
        if not MIN_RESIDENT_SPANS <= argument <= MAX_RESIDENT_SPANS:
            limits = f">= {MIN_RESIDENT_SPANS} and <= {MAX_RESIDENT_SPANS}"
            raise ConfigError(f"--resident-spans {argument}: must be a whole number of spans {limits}")
        return argument
    limits = {"minimum": MIN_RESIDENT_SPANS, "maximum": MAX_RESIDENT_SPANS}
    return int(env_number(environ, ENV_RESIDENT_SPANS, DEFAULT_RESIDENT_SPANS, unit="spans", **limits))


def spill_folder(state_dir: Path | None) -> Path:
    if state_dir is not None:
        return Path(state_dir) / "spill"
    return Path(tempfile.gettempdir()) / f"alphatrace-spill-{os.getuid()}"


def plan_for(state_dir: Path | None, resident: int) -> SpillPlan | None:
    """The plan of a build: its folder made (and tidied), its cap. A state folder that cannot hold
    one (not a folder, read-only: the build still gives its report) spills to the temp folder;
    None (the tables unbounded, in memory) when that cannot either."""
    for folder in dict.fromkeys([spill_folder(state_dir), spill_folder(None)]):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                continue
        except OSError:
            continue
        tidy(folder)
        return SpillPlan(str(folder), resident)
    return None


def tidy(folder: Path) -> None:
    """Remove run files a killed build left between their creation and their unlink (its pid gone)."""
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            match = _LEFT_FILE.match(path.name)
            if match is None:
                continue
            if not _alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
