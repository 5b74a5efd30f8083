"""The report record (``meta_supervisor.cli.report_record``): a build with nothing new keeps the report
files as they are, reading nothing of the state and nothing of the traces but their first bytes; a change
to any one thing the report depends on, an output deleted or edited, a damaged record or ``--full`` has
the report written again, equal to a fresh full build's (its time aside)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meta_supervisor.cli import report as report_cli
from meta_supervisor.cli import report_record
from meta_supervisor.reading.inputs import HEAD_BYTES
from tests.fixtures.report.otlp_builder import Llm, Run, Signal, lines_for
from tests.test_report_alpha import PRICES, hand_made_runs
from tests.test_report_state_safety import state_lock_held

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 1, 3, 12, 0, tzinfo=dt.UTC)
OUTPUTS = ("meta_report.json", "meta_report.md", "meta_report.html")


@dataclass
class World:
    """One project's files in ``tmp``, and the command line building its report."""

    tmp: Path
    now: dt.datetime = NOW
    extra: list[str] = field(default_factory=list)
    out: str = "out"

    def argv(self, *more: str, out: str | None = None, state: bool = True) -> list[str]:
        t = self.tmp
        argv = ["--input", str(t / "traces*.jsonl"), "--out", str(t / (out or self.out))]
        argv += ["--state-dir", str(t / "state")] if state else ["--no-state"]
        argv += ["--market-data", str(t / "prices"), "--kill-file", str(t / "killed.json"), "--audit-log", str(t / "audit.jsonl")]
        argv += ["--price-table", str(t / "prices.json"), "--fleet-config", str(t / "agents.toml"), "--workers", "1"]
        return [*argv, *self.extra, *more]

    def build(self, *more: str, out: str | None = None, state: bool = True) -> int:
        return report_cli.main(self.argv(*more, out=out, state=state), now=lambda: self.now)

    def outputs(self, out: str | None = None) -> dict[str, tuple]:
        """Each report file of the formats built: (inode, mtime_ns, bytes)."""
        folder = self.tmp / (out or self.out)
        formats = self.extra[self.extra.index("--format") + 1].split(",") if "--format" in self.extra else ["json", "md", "html"]
        found = {}
        for name in OUTPUTS:
            if name.rpartition(".")[2] not in formats:
                continue
            path = folder / name
            if path.exists():
                stat = path.stat()
                found[name] = (stat.st_ino, stat.st_mtime_ns, path.read_bytes())
        return found


def masked(files: dict[str, tuple]) -> dict[str, bytes]:
    """The files' bytes with the report's time (``generated_at``, as each page shows it) masked."""
    stamp = json.loads(files["meta_report.json"][2])["generated_at"].encode()
    return {name: data.replace(stamp, b"<generated_at>") for name, (_, _, data) in files.items()}


@pytest.fixture
def world(tmp_path: Path) -> World:
    (tmp_path / "prices").mkdir()
    for csv in PRICES.glob("*.csv"):
        shutil.copy(csv, tmp_path / "prices" / csv.name)
    (tmp_path / "traces.jsonl").write_text("".join(lines_for(hand_made_runs(), per_line=2)), encoding="utf-8")
    shutil.copy(ROOT / "services" / "llm_prices.json", tmp_path / "prices.json")
    shutil.copy(ROOT / "agents" / "agents.toml", tmp_path / "agents.toml")
    made = World(tmp_path)
    assert made.build() == 0
    return made


def test_nothing_new_keeps_the_report_reading_only_the_inputs_first_bytes(world: World, monkeypatch, capsys) -> None:
    before = world.outputs()
    assert set(before) == set(OUTPUTS)
    assert len(list((world.tmp / "state").glob("report-*-kept-*.record"))) == 1
    from meta_supervisor.build import dispatch, state_store

    def not_read(*args, **kwargs):
        raise AssertionError("the state or the traces were read although nothing changed")

    monkeypatch.setattr(dispatch, "build_inputs", not_read)
    monkeypatch.setattr(state_store.SavedState, "load_summary", not_read)
    heads = []
    real_head = report_record.head_digest

    def head(path, length):
        heads.append(length)
        return real_head(path, length)

    monkeypatch.setattr(report_record, "head_digest", head)
    capsys.readouterr()
    later = NOW + dt.timedelta(hours=3)  # the same UTC day
    assert report_cli.main(world.argv(), now=lambda: later) == 0
    out = capsys.readouterr().out
    assert "report unchanged since 2026-01-03T12:00:00Z: nothing new, kept as is" in out
    assert world.outputs() == before  # the same files (inodes), untouched (mtimes), the same bytes
    assert heads == [HEAD_BYTES]  # one input, its first 4 kB
    assert json.loads(before["meta_report.json"][2])["generated_at"] == "2026-01-03T12:00:00Z"


def _append_a_run(w: World) -> None:
    with open(w.tmp / "traces.jsonl", "a", encoding="utf-8") as handle:
        handle.write("".join(lines_for([Run("llm", 9, start_ms=9000, llm=[Llm(tokens_in=5, tokens_out=5)])])))


def _touch_input(w: World) -> None:
    os.utime(w.tmp / "traces.jsonl", ns=(10**18, 10**18))


def _rewrite_input_head(w: World) -> None:
    """Same size and mtime, other first bytes (a file written again with its time set back)."""
    path = w.tmp / "traces.jsonl"
    stat = path.stat()
    text = path.read_text(encoding="utf-8")
    runs = hand_made_runs()
    runs[0] = Run("rule", 1, start_ms=0, signals=[Signal("AAA", "up", 0.1, -1.0, as_of="2024-01-02")])  # "down" -> "up": 2 bytes less
    other = "".join(lines_for(runs, per_line=2))
    other = other[:-1] + " " * (len(text) - len(other)) + "\n" if len(other) < len(text) else other
    assert len(other.encode()) == stat.st_size and other != text
    path.write_text(other, encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _another_input_file(w: World) -> None:
    (w.tmp / "traces-2025-12-31T00-00-00.000.jsonl").write_text(
        "".join(lines_for([Run("rule", 20, start_ms=20, signals=[Signal("BBB", "up", 0.5, 0.1, as_of="2024-01-03")])])),
        encoding="utf-8",
    )


def _kill_an_agent(w: World) -> None:
    (w.tmp / "killed.json").write_text(json.dumps(["rule"]), encoding="utf-8")


def _damage_the_kill_file(w: World) -> None:
    (w.tmp / "killed.json").write_text("[not json", encoding="utf-8")


def _an_audit_record(w: World) -> None:
    from meta_supervisor.supervisor.audit import append_audit

    append_audit([{"agent": "rule", "action": "retire", "rule": "hit_rate", "at": "2026-01-02T00:00:00Z"}], w.tmp / "audit.jsonl")


def _other_prices(w: World) -> None:
    aaa = w.tmp / "prices" / "AAA.csv"
    stat = aaa.stat()
    aaa.write_text(aaa.read_text().replace("2024-01-03,,,,110,", "2024-01-03,,,,90,"))
    os.utime(aaa, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))


def _other_price_table(w: World) -> None:
    table = json.loads((w.tmp / "prices.json").read_text())
    table["models"]["gpt-4o-mini"]["output"] = 0.7
    (w.tmp / "prices.json").write_text(json.dumps(table))


def _other_fleet_config(w: World) -> None:
    """Another universe: the worth section's benchmark (and its cached copy's key: ``alpha_cache.worth_key``)."""
    config = w.tmp / "agents.toml"
    text = config.read_text()
    universe = next(line for line in text.splitlines() if line.startswith("universe = "))
    config.write_text(text.replace(universe, 'universe = ["AAA"]'))
    before = json.loads((w.tmp / "out" / "meta_report.json").read_text())["worth"]
    assert w.build("--no-state", out="probe") == 0
    assert json.loads((w.tmp / "probe" / "meta_report.json").read_text())["worth"] != before


def _next_day(w: World) -> None:
    w.now = NOW + dt.timedelta(days=1)


def _env(name: str, value: str) -> Callable[[World, pytest.MonkeyPatch], None]:
    return lambda w, monkeypatch: monkeypatch.setenv(name, value)


def _option(*more: str) -> Callable[[World], None]:
    return lambda w: w.extra.extend(more)


def _new_schema(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_record, "SCHEMA_VERSION", report_record.SCHEMA_VERSION + 1)


def _code_changed(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module file of the project changed (here: of a stand-in project root, as tests must not touch the code)."""
    root = w.tmp / "code"
    monkeypatch.setattr(report_record, "PROJECT_ROOT", root)
    (root / "meta_supervisor").mkdir(parents=True)
    module = root / "meta_supervisor" / "module.py"
    module.write_text("VALUE = 1\n")
    assert w.build() == 0  # the record now names this code
    module.write_text("VALUE = 22\n")


def _state_removed(w: World) -> None:
    for summary in (w.tmp / "state").glob("report-????????????????.json"):
        summary.unlink()


def _state_table_replaced(w: World) -> None:
    """A table of the saved state replaced (its summary the same): the state is checked again."""
    (table,) = (w.tmp / "state").glob("report-*-*.latencies.bin")
    copy = table.with_name("copy")
    shutil.copy2(table, copy)
    os.replace(copy, table)


CHANGES = {
    "an input grew": _append_a_run,
    "an input's mtime": _touch_input,
    "an input's first bytes": _rewrite_input_head,
    "another input file": _another_input_file,
    "the kill switch": _kill_an_agent,
    "the kill file unreadable": _damage_the_kill_file,
    "the audit log": _an_audit_record,
    "the market data": _other_prices,
    "the price table": _other_price_table,
    "the fleet config": _other_fleet_config,
    "the UTC day": _next_day,
    "the window": _option("--since", "2020-01-01"),
    "the as-of window": _option("--as-of-since", "2024-01-03"),
    "the jaeger url": _option("--jaeger-url", "http://jaeger.example:16686"),
    "the jaeger url (environment)": _env("ALPHATRACE_JAEGER_URL", "http://jaeger.example:16686"),
    "the price max age": _env("ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS", "5000"),
    "the line cap": _env("ALPHATRACE_MAX_LINE_BYTES", "1024"),
    "the open-run bound": _env("ALPHATRACE_MAX_OPEN_RUNS", "4096"),
    "no alpha quality": _option("--no-alpha-quality"),
    "the formats": _option("--format", "json,md"),
    "the schema version": _new_schema,
    "the code": _code_changed,
    "the saved state": _state_removed,
    "a table of the saved state": _state_table_replaced,
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_to_any_dependency_writes_the_report_again(world: World, monkeypatch, capsys, change: str) -> None:
    apply = CHANGES[change]
    if apply.__code__.co_argcount == 2:
        apply(world, monkeypatch)
    else:
        apply(world)
    before = world.outputs()
    capsys.readouterr()
    assert world.build() == 0
    assert "kept as is" not in capsys.readouterr().out
    after = world.outputs()
    assert after and all(after[name][0] != before.get(name, (None,))[0] for name in after)  # each file written anew
    assert world.build(out="fresh", state=False) == 0  # a fresh full build of the same inputs and options
    assert masked(after) == masked(world.outputs("fresh"))
    capsys.readouterr()
    assert world.build() == 0  # and then nothing new again: kept
    assert "kept as is" in capsys.readouterr().out and world.outputs() == after


@pytest.mark.parametrize("how", ["deleted", "edited", "edited in place, its size and time kept", "replaced"])
def test_an_output_deleted_or_edited_is_written_again(world: World, capsys, how: str) -> None:
    target = world.tmp / "out" / "meta_report.md"
    if how == "deleted":
        target.unlink()
    elif how == "edited":
        with open(target, "a", encoding="utf-8") as handle:
            handle.write("a note of mine\n")
    elif how == "replaced":
        stat = target.stat()
        copy = target.with_name("copy.md")
        shutil.copy2(target, copy)
        os.replace(copy, target)  # the same bytes and mtime, another file
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        stat = target.stat()
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x20
        with open(target, "r+b") as handle:
            handle.write(data)
        os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    before = world.outputs()
    capsys.readouterr()
    assert world.build() == 0
    assert "kept as is" not in capsys.readouterr().out
    after = world.outputs()
    assert set(after) == set(OUTPUTS) and after["meta_report.md"][0] != before.get("meta_report.md", (None,))[0]
    assert world.build(out="fresh", state=False) == 0
    assert masked(after) == masked(world.outputs("fresh"))


@pytest.mark.parametrize(
    "damage",
    [b"", b"\x00\xff garbage", b'{"format": 1, "dependencies": 5}', b"[]", b'{"format": 1', "too large"],
)
def test_a_damaged_record_means_the_report_is_written_again_never_an_error(world: World, capsys, damage) -> None:
    (record,) = (world.tmp / "state").glob("report-*-kept-*.record")
    if damage == "too large":
        record.write_bytes(b" " * (report_record.MAX_RECORD_BYTES + 1))
    else:
        record.write_bytes(damage)
    before = world.outputs()
    assert world.build() == 0
    after = world.outputs()
    assert after["meta_report.json"][0] != before["meta_report.json"][0]
    assert masked(after) == masked(before)
    capsys.readouterr()
    assert world.build() == 0 and "kept as is" in capsys.readouterr().out  # recorded again


def test_a_record_whose_fields_are_damaged_means_a_new_report(world: World) -> None:
    (record,) = (world.tmp / "state").glob("report-*-kept-*.record")
    data = json.loads(record.read_text())
    for broken in ({**data, "outputs": "x"}, {**data, "outputs": [{"path": 1}]}, {**data, "state": None}, {**data, "lines": 7}):
        record.write_text(json.dumps(broken))
        before = world.outputs()
        assert world.build() == 0
        assert world.outputs()["meta_report.json"][0] != before["meta_report.json"][0]


def test_full_no_state_and_evaluation_spans_write_the_report_again(world: World, monkeypatch, capsys) -> None:
    before = world.outputs()
    assert world.build("--full") == 0
    after = world.outputs()
    assert all(after[name][0] != before[name][0] for name in OUTPUTS) and masked(after) == masked(before)
    assert world.build("--no-state") == 0  # files written by a build that records nothing
    no_state = world.outputs()
    assert world.build() == 0  # so not vouched for by the record: written again
    assert all(world.outputs()[name][0] != no_state[name][0] for name in OUTPUTS)
    published = []
    monkeypatch.setattr(report_cli, "publish_evaluations", lambda *args: published.append(args))
    again = world.outputs()
    assert world.build("--evaluation-spans") == 0 and published  # the tallies are needed: never kept
    assert all(world.outputs()[name][0] != again[name][0] for name in OUTPUTS)
    capsys.readouterr()
    assert world.build() == 0 and "kept as is" in capsys.readouterr().out  # and recorded for the builds after


def test_kept_report_repeats_what_was_said_about_it(world: World, capsys) -> None:
    """The lines the build that wrote the report printed about it (a note, a price-table warning) are
    printed again when it is kept; a state warning means no record."""
    (world.tmp / "killed.json").write_text("[not json", encoding="utf-8")
    assert world.build() == 0
    first = capsys.readouterr().err
    assert "kill-switch" in first and "price table" in first
    assert world.build() == 0
    assert capsys.readouterr().err == first


def test_the_check_waits_for_a_build_holding_the_state_then_keeps(world: World, monkeypatch, capsys) -> None:
    """Another build of the same options holds the state lock: the check waits for it (exit 3 past the
    lock timeout, naming the holder, as any build), and keeps the report once it is released."""
    (lock_path,) = (world.tmp / "state").glob("report-*.lock")
    with state_lock_held(lock_path):
        monkeypatch.setenv("ALPHATRACE_STATE_LOCK_TIMEOUT", "0.2")
        capsys.readouterr()
        assert world.build() == 3
        assert "4242" in capsys.readouterr().err
    before = world.outputs()
    assert world.build() == 0 and "kept as is" in capsys.readouterr().out and world.outputs() == before
