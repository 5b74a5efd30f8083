"""Incremental builds: read only what changed since the last build, and give the full build's report.

The state (per input file its identity and offset, and the aggregates; ``state_store`` keeps it on
disk) is keyed by what the numbers depend on (inputs, window, price table, whether alpha signals are
kept), so a build with other options never reuses the wrong state. A build then:

* does nothing but report when no input changed (identity, size, mtime, first bytes): only the
  JSON, the kept alpha signals and each input's first 4 KB are read;
* reads only the appended bytes of grown files (renamed files, i.e. collector rotation, are found
  by identity and continued), on top of the saved aggregates, then saves them again;
* when the *last* input file was truncated, replaced or removed, restores the *checkpoint* (the
  state as it was just before that file) and reads only that file again: its share;
* rebuilds from scratch when an earlier file was truncated, replaced or removed, or the state or its
  checkpoint is missing or damaged (the reason is in ``BuildStats.rebuild_reason``).

The state is checked before it is trusted: the tables' digests and the summary's consistency
(``state_checks``: among others no saved offset past its file's saved size, which a file smaller
now than that is a truncation, read again), a checkpoint against the state after it. A state that fails is not used:
everything is read again, and the reason is a warning (``BuildStats.warnings``, the report's
``inputs.state_warnings``). The state is best effort: a folder that cannot be locked (read-only,
not a folder) means a full build without state, a save that fails (a full disk) leaves the previous
state and no partial files; both are warnings, and the report is written all the same. Another build
of the same options holding the state is waited for at most ``BuildOptions.lock_timeout`` seconds
(``LockTimeout`` then, naming it).

Why a checkpoint and not subtraction: deduplication, the run join and the "last signal wins" store
cross files, so one file's share cannot be taken out of the totals exactly. The aggregates are
order-independent and files are read in a fixed order (rotated backups oldest first, the active
file last; ``inputs``), so the state before the last file plus that file read again is
exactly a full build. Only the last file gets this because it is the one that changes: a collector
restart without rotation truncates it, ``make demo`` removes and rewrites it; backups never change.
One checkpoint costs about one more copy of the state on disk, and it is only *written* when the
files before the last one changed: a full build writes it before reading the last file (in step
with the read, no second pass); an append to the active file keeps it; after a rotation (the
active file renamed to a backup, a new one started) the previous state itself becomes the
checkpoint, its tables kept where they are. ``stats.checkpoint`` says which happened.

Reads no environment variables.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from meta_supervisor.build.full import full_build, read_file_maybe_parallel
from meta_supervisor.build.options import BuildOptions, BuildStats, progress_adapter
from meta_supervisor.build.save_aside import PendingSave, may_fork_aside
from meta_supervisor.build.state_checks import cursors_of, regression_problem
from meta_supervisor.build.state_store import KEEP_STATES, SavedState, locked_for, new_generation, state_key
from meta_supervisor.reading.cursor import FileCursor, classify
from meta_supervisor.reading.inputs import head_digest, identity_of
from meta_supervisor.tally.latency_runs import summary_of

__all__ = ["KEEP_STATES", "abandon_saving", "finish_saving", "incremental_build", "saved_state", "sort_latencies", "state_key"]
_STATE_ERRORS = (OSError, ValueError, KeyError, TypeError)  # a damaged state: rebuild, never a wrong report


@dataclass
class _Base:
    """The saved state a build continues from: the last state, or its checkpoint."""

    generation: str
    cursors: list[FileCursor]  # the files it covers, in the order they were read
    is_main: bool
    checkpoint: str | None = None  # the last state's checkpoint (when is_main)
    text: bytes = b""  # the last state's JSON (when is_main): what becomes a checkpoint after a rotation


def sort_latencies(aggregator) -> dict[str, dict]:
    """Summarise each agent's latencies for the report (its resident ones sorted in place, its
    spilled runs read back a chunk at a time: ``latency_runs.summary_of``)."""
    return {name: summary_of(tally) for name, tally in aggregator.agents.items()}


def _plan(files: list[Path], saved: list[FileCursor]) -> tuple[dict[str, tuple[str, FileCursor | None]], str]:
    """Per current file: what to do ("skip", "continue", "new"); or the reason a rebuild is needed."""
    by_identity = {(cursor.device, cursor.inode): cursor for cursor in saved}
    plan: dict[str, tuple[str, FileCursor | None]] = {}
    used = set()
    for path in files:
        try:
            ident = identity_of(path)
        except OSError as exc:
            return {}, f"cannot stat {path}: {exc}"
        known = by_identity.get((ident.device, ident.inode))
        change = classify(path, known)
        if change.kind == "unchanged" and known.head_length and _head_changed(path, known):
            return {}, f"{path} has the size and time of the last build but other first bytes (rewritten)"
        if change.kind == "replaced":
            return {}, change.reason
        if known is not None:
            used.add((known.device, known.inode))
        plan[str(path)] = ("skip" if change.kind == "unchanged" else "continue" if change.kind == "grown" else "new", known)
    current = set(plan)
    for cursor in saved:
        if (cursor.device, cursor.inode) not in used:
            if cursor.path in current:  # e.g. `make demo`: removed, then written again
                return {}, f"{cursor.path} was replaced by a new file of the same name"
            return {}, f"{cursor.path} is no longer among the inputs (deleted or moved away)"
    return plan, ""


def _head_changed(path: Path, known: FileCursor) -> bool:
    """Same inode, size and mtime, yet other first bytes: the file was rewritten, its time set back."""
    try:
        return head_digest(path, known.head_length) != known.head_digest
    except OSError:
        return True


def incremental_build(options: BuildOptions, files: list[Path], stats: BuildStats):
    """The aggregator and file cursors for ``files``, reading as little as the saved state allows.
    The state is best effort: when its folder cannot be used, or its state cannot be trusted or
    saved, the build says so (``stats.warnings``) and the report is still the full build's.
    ``LockTimeout`` when another build holds the state longer than ``options.lock_timeout``."""
    assert options.state_dir is not None
    store = SavedState(options.state_dir, state_key(options))
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(locked_for(options, store.key))
        except OSError as exc:  # a read-only or full folder, or not a folder
            stats.warnings.append(f"incremental state in {options.state_dir} not used ({exc}): everything read, nothing saved")
            return full_build(options, files, stats)
        built = _build_locked(options, files, stats, store)
        if stats.saving is not None:  # the lock is kept until the forked save has ended (finish_saving)
            stats.saving.pending.hold(held.pop_all())
        return built


def _distrusted(stats: BuildStats, problem: str) -> str:
    """A state that cannot be trusted: a warning, and the reason of the full build."""
    stats.warnings.append(f"incremental state not trusted, everything read again: {problem}")
    return f"rebuild: {problem}"


def _build_locked(options: BuildOptions, files: list[Path], stats: BuildStats, store: SavedState):
    if options.force_full:
        return _full_and_save(options, files, stats, store, "forced full build")
    try:
        data, text, reason = store.load_summary(options)
        saved = cursors_of(data) if data is not None else []
    except _STATE_ERRORS as exc:
        return _full_and_save(options, files, stats, store, _distrusted(stats, str(exc)))
    if data is None:
        return _full_and_save(options, files, stats, store, reason)
    plan, problem = _plan(files, saved)
    if problem:
        return _from_checkpoint(options, files, stats, store, data, problem)
    if all(action == "skip" for action, _ in plan.values()):
        try:
            tallies = store.light_tallies(data)
        except _STATE_ERRORS as exc:
            return _full_and_save(options, files, stats, store, _distrusted(stats, f"saved state unreadable ({exc})"))
        stats.mode = "unchanged"
        stats.state_dir, stats.state = options.state_dir, f"{store.key}-{data['generation']}"
        with contextlib.suppress(OSError):
            os.utime(store.json_path)  # recently used: kept by the pruning
        cursors = {str(path): _renamed(plan[str(path)][1], path) for path in files}
        return tallies, cursors
    try:
        aggregator = store.load_aggregator(data, options)
    except _STATE_ERRORS as exc:
        return _full_and_save(options, files, stats, store, _distrusted(stats, f"saved state unreadable ({exc})"))
    stats.mode = "incremental"
    base = _Base(data["generation"], saved, is_main=True, checkpoint=data.get("checkpoint"), text=text)
    return _continue(options, files, stats, store, aggregator, plan, base)


def _from_checkpoint(options: BuildOptions, files: list[Path], stats: BuildStats, store: SavedState, data: dict, problem: str):
    """A file of the last state changed in a way that cannot be continued: when it is the last
    file, restore the checkpoint before it and read it again; otherwise rebuild everything."""
    generation = data.get("checkpoint")
    last = data["files"][-1]["path"] if data.get("files") else "the last input"

    def unusable(exc: Exception) -> str:
        return f"{problem}; the checkpoint before {last} is unusable ({exc})"

    if generation is None:
        return _full_and_save(options, files, stats, store, f"rebuild: {problem} (no checkpoint before {last} was saved)")
    if generation == "":  # nothing was read before the last file: restoring it is a full build
        return _full_and_save(options, files, stats, store, f"{problem}: it is the only input, read again from the start")
    try:
        checkpoint = store.load_checkpoint(generation)
        covered = cursors_of(checkpoint)
        regressed = regression_problem(covered, cursors_of(data))
        if regressed:
            raise ValueError(regressed)
    except _STATE_ERRORS as exc:
        return _full_and_save(options, files, stats, store, _distrusted(stats, unusable(exc)))
    plan, earlier = _plan(files, covered)
    if earlier:
        return _full_and_save(options, files, stats, store, f"rebuild: {earlier} (only the last input, {last}, can be read again alone)")
    try:
        aggregator = store.load_aggregator(checkpoint, options)
    except _STATE_ERRORS as exc:
        return _full_and_save(options, files, stats, store, _distrusted(stats, unusable(exc)))
    stats.mode = "incremental"
    stats.rebuild_reason = f"only the last input's share read again, from the checkpoint before it: {problem}"
    return _continue(options, files, stats, store, aggregator, plan, _Base(generation, covered, is_main=False))


def _continue(options, files: list[Path], stats: BuildStats, store: SavedState, aggregator, plan: dict, base: _Base):
    """Read what the plan says on top of ``aggregator`` (the state ``base``), then save."""
    total = sum(max(identity_of(path).size - (plan[str(path)][1].size if plan[str(path)][1] else 0), 0) for path in files)
    advance = progress_adapter(options, total)
    cursors: dict[str, FileCursor] = {}
    checkpoint = None
    read_before_last = False
    for index, path in enumerate(files):
        action, known = plan[str(path)]
        if index == len(files) - 1:
            checkpoint = _checkpoint_before_last(store, aggregator, cursors, base, known, read_before_last, stats)
        if action == "skip":
            cursors[str(path)] = _renamed(known, path)
            continue
        read_before_last = True
        cursor = read_file_maybe_parallel(path, aggregator, options, advance, known)
        stats.bytes_read += cursor.size - (known.size if known else 0)
        stats.files_read += 1
        cursors[str(path)] = cursor
    if not files:
        stats.checkpoint = "none (no input files)"
    aggregator.settle()
    summaries = sort_latencies(aggregator)  # mostly sorted already: a merge of two runs
    _save(options, stats, store, aggregator, cursors, summaries, checkpoint)
    return aggregator, cursors


def _save(options: BuildOptions, stats: BuildStats, store: SavedState, aggregator, cursors: dict, summaries: dict, checkpoint) -> None:
    """Save the new state (best effort: the report does not depend on it), by a forked process
    beside the report's assembly when the build asks for it (``save_aside``; ``finish_saving``)."""
    aggregator.latency_summaries = summaries
    if options.save_aside and may_fork_aside(options.workers):
        pending = PendingSave(lambda name: store.save(aggregator, cursors, summaries, checkpoint, name), new_generation(), store.discard)
        stats.saving = _Saving(pending, store, checkpoint, options.state_dir)
        return
    try:
        generation = store.save(aggregator, cursors, summaries, checkpoint)
    except OSError as exc:
        _not_saved(stats, store, checkpoint, exc)
        return
    stats.state_dir, stats.state = options.state_dir, f"{store.key}-{generation}"


@dataclass
class _Saving:
    """A state being saved aside (``BuildStats.saving``): what ``finish_saving`` needs."""

    pending: PendingSave
    store: SavedState
    checkpoint: str | None
    state_dir: Path | None


def finish_saving(stats: BuildStats) -> str | None:
    """Wait for the state a forked process saves (``BuildOptions.save_aside``), then release the
    state lock: ``stats.state`` is set, or the warning that it was not saved is added and returned
    (None: saved, or nothing was being saved). A bug in the save is raised here."""
    saving, stats.saving = stats.saving, None
    if saving is None:
        return None
    try:
        generation = saving.pending.wait()
    except OSError as exc:
        return _not_saved(stats, saving.store, saving.checkpoint, exc)
    stats.state_dir, stats.state = saving.state_dir, f"{saving.store.key}-{generation}"
    return None


def saved_state(stats: BuildStats) -> tuple[Path | None, str]:
    """The state the build's tallies equal: its folder and name (``BuildStats.state_dir``,
    ``state``), also while a forked process still saves it (its name is chosen before the fork;
    files named after it are removed with it if that save fails: ``SavedState.discard``)."""
    saving = stats.saving
    if saving is None:
        return stats.state_dir, stats.state
    return saving.state_dir, f"{saving.store.key}-{saving.pending.generation}"


def abandon_saving(stats: BuildStats) -> None:
    """The build failed before ``finish_saving``: let the save end (whatever its outcome), release the lock."""
    saving, stats.saving = stats.saving, None
    if saving is not None:
        saving.pending.abandon()


def _not_saved(stats: BuildStats, store: SavedState, checkpoint: str | None, exc: OSError) -> str:
    if checkpoint and stats.checkpoint.startswith("written"):  # written by this build for this state: not needed now
        store.discard(checkpoint)
    warning = f"incremental state not saved ({exc}); what was written of it is removed, the previous state kept"
    stats.warnings.append(warning)
    return warning


def _checkpoint_before_last(store: SavedState, aggregator, cursors: dict, base: _Base, known, read_before: bool, stats: BuildStats):
    """The checkpoint the new state will name, decided just before the last file is read:
    ``aggregator`` then holds exactly the files before it (``cursors``) when the last file is new."""
    if known is None:
        if read_before:
            return _write_checkpoint(store, aggregator, cursors, stats)
        if base.is_main:  # after a rotation: the last state is the state before the new last file
            try:
                store.adopt_as_checkpoint(base.text, base.generation)
            except OSError as exc:
                stats.warnings.append(f"checkpoint before the last input not saved ({exc})")
                stats.checkpoint = "none (could not be saved)"
                return None
            stats.checkpoint = "the previous state, kept as the checkpoint"
            return base.generation
        stats.checkpoint = "kept"  # restored from it, and the files before the last did not change
        return base.generation
    if base.is_main and not read_before and base.checkpoint is not None and base.cursors and known is base.cursors[-1]:
        stats.checkpoint = "kept"  # only the last file grew
        return base.checkpoint
    # The aggregator already holds part of the last file (it was read before, and either the files
    # before it changed or it was not the last one then): no state "before it" exists to save. The
    # next new last file (a rotation, a recreated active file) brings a checkpoint back.
    if base.is_main and base.checkpoint is None:
        stats.checkpoint = "none (the last state had none)"
    elif base.is_main:
        stats.checkpoint = "none (the files before the last one changed)"
    else:
        stats.checkpoint = "none (the last input was already in the checkpoint: the active file is gone)"
    return None


def _write_checkpoint(store: SavedState, aggregator, cursors: dict, stats: BuildStats) -> str | None:
    """Save ``aggregator`` (the files in ``cursors``) as a checkpoint; returns its generation (None:
    it could not be saved, best effort as the state itself)."""
    try:
        generation, size, seconds = store.write_checkpoint(aggregator, cursors)
    except OSError as exc:
        stats.warnings.append(f"checkpoint before the last input not saved ({exc}); what was written of it is removed")
        stats.checkpoint = "none (could not be saved)"
        return None
    stats.checkpoint = f"written ({size / 1e6:.1f} MB in {seconds:.2f} s)"
    return generation


def _renamed(cursor: FileCursor, path: Path) -> FileCursor:
    cursor.path = str(path)
    return cursor


def _full_and_save(options: BuildOptions, files: list[Path], stats: BuildStats, store: SavedState, reason: str):
    stats.rebuild_reason = reason
    stats.mode = "full"
    checkpoint: list[str | None] = [None]

    def before_last(aggregator, cursors: dict) -> None:
        if not cursors:
            checkpoint[0] = ""  # nothing before the last file
            stats.checkpoint = "empty (one input file)"
            return
        checkpoint[0] = _write_checkpoint(store, aggregator, cursors, stats)

    aggregator, cursors = full_build(options, files, stats, before_last)
    _save(options, stats, store, aggregator, cursors, sort_latencies(aggregator), checkpoint[0])
    return aggregator, cursors
