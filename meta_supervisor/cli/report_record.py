"""The report record: a build that finds nothing new keeps the report files as they are, as ``make``
keeps a target that is newer than everything it is made from.

After the report files are written (``cli/report.py``), the build records, in the state folder beside
the incremental state (``report-<state key>-kept-<out folder digest>.record``, JSON written atomically; the
state's own tidying removes it with the state set, and with every save of a new generation: a build
that read something new leaves no record until it has written its report), two things:

* ``dependencies``' digest: everything ``assemble.report.build_report`` and
  ``render.outputs.write_report`` depend on. The input files resolved from the ``--input`` specs, with
  the notes that resolving made, and each file's identity (device, inode, size, mtime_ns; taken before
  the build read them, so a file that changed during the build never matches) and the digest of its
  first 4 kB (``reading.inputs.identity_of``, ``head_digest``: the incremental build's own rule for
  "unchanged"); the state key (inputs, ``--since``/``--until``, price table, alpha signals kept); the
  as-of window; the kill switch's and the audit log's contents as read (or the errors reading them
  gave); the Jaeger URL; the market data files (``alpha_cache.market_fingerprint``: name, size,
  mtime_ns of each CSV, taken before the signals are scored); the worth section's fleet
  configuration; the price table and its maximum age; the formats and the output folder; the UTC day
  of the report (alpha scoring and the price table's age depend on it); the settings that change what
  is counted (line cap, open-run bound, resident spans, ``ALPHATRACE_NATIVE``); the working folder;
  ``SCHEMA_VERSION``; and the code: (path, size, mtime_ns) of every module file of the project's
  packages, the native core's file and the Python, orjson and msgspec versions;
* each output written: its path, identity (device, inode, size, mtime_ns, of the temp file the atomic
  write renamed into place: another build's file is never taken for this build's) and the digest of its
  first and last ``SAMPLE_BYTES`` (the whole file when smaller); plus the report's ``generated_at``,
  the lines the command printed about it, and the identity (device, inode, size) of the saved state
  the report was made from: its summary (``report-<key>.json``) and its generation's tables (a save of
  a new state replaces them; one removed or replaced would make the state a warning).

The next build (``Record.kept``) computes the same digest before reading anything else, and keeps
the report only when the digest, every requested output and the state's files all match the record:
it reads the inputs' first 4 kB, the kill switch and audit files, lists the market data folder and
stats the project's module files (a few ms), never the saved state or the trace files' contents. A
record is written only after a build with no state warning (one whose state was saved, or found
unchanged), so a kept report is one that "nothing new" would write again, but for ``generated_at``,
which stays when the kept report was made. Any doubt (no record, a damaged or unreadable one, a
missing, edited or replaced output, a changed dependency) falls through to the usual build, which
writes the report and a new record. Never kept: ``--full``, ``--no-state`` (no record) and evaluation
spans (they need the tallies; the record is still written for the builds after).

The check holds the state lock, as an unchanged build does: a build of the same options running
meanwhile is waited for (at most the lock timeout, then ``LockTimeout`` as the build's), and the
check then sees what it wrote. The record is written without the lock (as the report files are): it
vouches only for output files it names by inode, so builds writing the same folder at once can only
make a check fail, never make a stale report pass. The kept files are not touched: their mtime stays
the time their content was written, as ``generated_at`` says (``make`` does not touch an up-to-date
target either); the state's summary is touched as by an unchanged build (the state set's recent use).

Reads no environment variables (the command resolves them and hands the values in).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meta_supervisor.assemble.report import SCHEMA_VERSION
from meta_supervisor.blake2 import blake2b
from meta_supervisor.build.alpha_cache import market_fingerprint
from meta_supervisor.locations import PROJECT_ROOT
from meta_supervisor.reading.inputs import HEAD_BYTES, head_digest, identity_of
from services.state_files import SmallFileError, read_small_file, write_atomically

RECORD_FORMAT = 1
SAMPLE_BYTES = 256 * 1024  # an output's digest covers its first and last this many bytes
MAX_RECORD_BYTES = 1 << 20
CODE_PACKAGES = ("agents", "alpha", "meta_supervisor", "otel", "services", "settings")  # tests/test_import_contract.py's


@dataclass
class Dependencies:
    """What a report depends on, but for the day: ``digest(day)`` is the record's key."""

    parts: dict[str, Any]

    def digest(self, day: dt.date) -> str:
        material = json.dumps({**self.parts, "day": day.isoformat()}, sort_keys=True, default=repr)
        return blake2b(material.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def input_identities(files: Iterable[Path]) -> list | None:
    """(path, device, inode, size, mtime_ns, digest of the first 4 kB) of each input; None when one
    cannot be read (then nothing is kept or recorded)."""
    out = []
    try:
        for path in files:
            ident = identity_of(path)
            out.append([str(path), ident.device, ident.inode, ident.size, ident.mtime_ns, head_digest(path, HEAD_BYTES)])
    except OSError:
        return None
    return out


def code_fingerprint() -> list:
    """(path, size, mtime_ns) of every file of the project's packages that Python may load, the
    native core's file, and the versions of Python and the encoders the report's text comes from."""
    files = []
    for package in CODE_PACKAGES:
        stack = [PROJECT_ROOT / package]
        while stack:
            try:
                with os.scandir(stack.pop()) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False):
                            if entry.name != "__pycache__":
                                stack.append(Path(entry.path))
                        elif entry.name.endswith((".py", ".so")):
                            stat = entry.stat()
                            files.append((entry.path, stat.st_size, stat.st_mtime_ns))
            except OSError:
                files.append(("unreadable", package))
    native = sys.modules.get("alphatrace_native.alphatrace_native")
    native_file = getattr(native, "__file__", None)
    if native_file:
        try:
            stat = os.stat(native_file)
            files.append((native_file, stat.st_size, stat.st_mtime_ns, stat.st_ino))
        except OSError:
            files.append(("unreadable", native_file))
    versions = [sys.version, *(getattr(sys.modules.get(name), "__version__", None) for name in ("orjson", "msgspec"))]
    return [sorted(files, key=repr), versions]


@dataclass
class InputsSeen:
    """The inputs as resolved and seen before the build reads them: the files, the notes resolving
    made, their identities (None: one could not be read) and the market data's fingerprint."""

    files: list[Path]
    messages: list[str]
    identities: list | None
    market: list | None


def inputs_seen(specs: list[str], market) -> InputsSeen | None:
    """``InputsSeen`` now; None when the specs cannot be resolved (the build says why)."""
    from meta_supervisor.reading.inputs import resolve_inputs
    from settings.config_error import ConfigError

    try:
        files, messages = resolve_inputs(specs)
    except (ConfigError, OSError):
        return None
    return InputsSeen(files, messages, input_identities(files), market_fingerprint(market) if market is not None else None)


def dependencies(seen: InputsSeen, *, key: str, settings: dict[str, Any], formats, out_dir: Path, **report_inputs) -> Dependencies | None:
    """The report's dependencies (the module docstring lists them), the inputs and market data as
    ``seen`` before the build read them; ``report_inputs``: ``as_of``, ``kill``, ``audit``,
    ``jaeger_url``, ``worth``, ``prices``, ``price_age`` as the report gets them. None when an input
    could not be read or the working folder is gone: nothing is kept or recorded then."""
    if seen.identities is None:
        return None
    audit = report_inputs["audit"]
    try:
        parts = {
            "format": RECORD_FORMAT,
            "schema": SCHEMA_VERSION,
            "inputs": seen.identities,
            "messages": list(seen.messages),
            "state_key": key,
            "as_of": [day.isoformat() if day else None for day in report_inputs["as_of"]],
            "kill": repr(report_inputs["kill"]),
            "audit": [audit.path, audit.error, blake2b(repr(audit.records).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()],
            "jaeger_url": report_inputs["jaeger_url"],
            "market": seen.market,
            "worth": repr(report_inputs["worth"]),
            "prices": [repr(report_inputs["prices"]), report_inputs["price_age"]],
            "formats": sorted(formats),
            "out_dir": os.path.abspath(out_dir),
            "settings": settings,
            "cwd": os.getcwd(),
            "code": code_fingerprint(),
        }
    except OSError:
        return None
    return Dependencies(parts)


def record_path(state_dir: Path, state_key: str, out_dir: Path) -> Path:
    """One record per state key and output folder; named as a file of the state set
    (``report-<key>-...``), so the state's tidying removes it with the set and at each new save."""
    folder = blake2b(os.path.abspath(out_dir).encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return Path(state_dir) / f"report-{state_key}-kept-{folder}.record"


def state_files(state_summary: Path, state: str) -> list[Path]:
    """The saved state a report was made from (``state``: ``"<key>-<generation>"``): its summary, then
    its generation's tables (not the alpha cache beside them). Their (device, inode, size) are recorded
    (not their mtime: an unchanged build touches the summary): a save replaces them all, and a table
    deleted or replaced since means a build that would warn about the state, so the report is made again."""
    tables = sorted(path for path in state_summary.parent.glob(f"report-{state}.*.bin") if not path.name.endswith(".alpha.bin"))
    return [state_summary, *tables]


def _sample_digest(handle, size: int) -> str:
    digest = blake2b(digest_size=16)
    if size <= 2 * SAMPLE_BYTES:
        digest.update(handle.read())
    else:
        digest.update(handle.read(SAMPLE_BYTES))
        handle.seek(size - SAMPLE_BYTES)
        digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()


def _identity(stat: os.stat_result) -> list[int]:
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns]


def _output_entry(path: Path, written: os.stat_result) -> dict | None:
    """``path``'s entry when it is still the file this build wrote (``written``: its temp file's
    stat), else None (another build replaced it meanwhile)."""
    with open(path, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if _identity(stat) != _identity(written):
            return None
        return {"path": str(path), "identity": _identity(stat), "sample": _sample_digest(handle, stat.st_size)}


@dataclass
class Kept:
    generated_at: str
    outputs: list[str]
    lines: list[list[str]]  # [stream, text]: what the build that wrote the report printed about it
    summary: str


class Record:
    """The report record of one build's options (its state key) and output folder."""

    def __init__(self, state_dir: Path, options, out_dir: Path, formats: tuple[str, ...]) -> None:
        from meta_supervisor.build.state_store import SavedState, state_key
        from meta_supervisor.render.outputs import output_paths

        self.options = options
        self.key = state_key(options)
        self.path = record_path(state_dir, self.key, out_dir)
        self.state_summary = SavedState(state_dir, self.key).json_path
        self.out_dir = out_dir
        self.formats = formats
        self.out_paths = output_paths(out_dir, formats)

    def dependencies(self, seen: InputsSeen | None, **report_inputs) -> Dependencies | None:
        """``dependencies`` for this build (``report_inputs``: as there)."""
        from meta_supervisor import native_core
        from meta_supervisor.reading.formats import max_line_bytes

        if seen is None:
            return None
        options = self.options
        settings = {
            "max_line_bytes": max_line_bytes(),
            "max_open_runs": options.max_open_runs,
            "resident_spans": options.resident_spans,
            "native": native_core.mode(),
            "alpha_signals": options.alpha_signals,
        }
        return dependencies(seen, key=self.key, settings=settings, formats=self.formats, out_dir=self.out_dir, **report_inputs)

    def kept(self, depends: Dependencies | None, day: dt.date) -> Kept | None:
        """The record when it vouches for the report files there now with these dependencies (checked
        holding the state lock, as an unchanged build; the state's summary then touched as that build
        does: the state sets' pruning keeps the recently used); None otherwise, for any reason (the
        build writes them). ``LockTimeout`` as the build's."""
        from meta_supervisor.build.state_store import locked_for

        if depends is None:
            return None
        options = self.options
        try:
            with locked_for(options, self.key):
                found = self._check(depends, day)
                if found is not None:
                    os.utime(self.state_summary)
                return found
        except OSError:  # a folder that cannot be locked: the build says so
            return None

    def _check(self, depends: Dependencies, day: dt.date) -> Kept | None:
        try:
            text = read_small_file(self.path, MAX_RECORD_BYTES, "report record")
            if text is None:
                return None
            record = json.loads(text)
            if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or record.get("dependencies") != depends.digest(day):
                return None
            outputs = record["outputs"]
            if [entry["path"] for entry in outputs] != [str(target) for target in self.out_paths]:
                return None
            files = record["state"]
            if not files or files[0][0] != str(self.state_summary):
                return None
            for file, *identity in files:
                if _identity(os.stat(file))[:3] != identity:
                    return None
            for entry in outputs:
                with open(entry["path"], "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    if _identity(stat) != entry["identity"] or _sample_digest(handle, stat.st_size) != entry["sample"]:
                        return None
            lines = [[str(stream), str(line)] for stream, line in record["lines"]]
            return Kept(str(record["generated_at"]), [entry["path"] for entry in outputs], lines, str(record["summary"]))
        except (OSError, ValueError, KeyError, TypeError, SmallFileError):
            return None

    def save(self, depends: Dependencies | None, day: dt.date, report: dict, written: dict, state: str, lines: list) -> None:
        """Record the report just written (``written``: each file's stat as written; ``state``: the
        saved state it was made from, ``"<key>-<generation>"``), or, with no ``depends``, remove the
        record. Best effort: without a record the next build writes the report again."""
        if depends is None:
            self.forget()
            return
        try:
            outputs = [_output_entry(target, stat) for target, stat in written.items()]
            if any(entry is None for entry in outputs):
                self.forget()
                return
            record = {
                "format": RECORD_FORMAT,
                "dependencies": depends.digest(day),
                "generated_at": report["generated_at"],
                "outputs": outputs,
                "state": [[str(file), *_identity(os.stat(file))[:3]] for file in state_files(self.state_summary, state)],
                "lines": lines,
                "summary": summary_line(report),
            }
            write_atomically(self.path, json.dumps(record, indent=1))
        except (OSError, ValueError):
            self.forget()

    def forget(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def summary_line(report: dict) -> str:
    """The report's figures as the command's last line gives them."""
    fleet, inputs = report["fleet"], report["inputs"]
    return f"{fleet['agents']} agents, {fleet['runs']} runs, {inputs['spans']} spans, {inputs['bad_lines']} bad lines"
