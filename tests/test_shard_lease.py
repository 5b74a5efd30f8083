"""The shard lease by itself: a fake store (a dict with expiry on a fake clock, and an outage switch)
and a fake clock, so every rule is exact and nothing sleeps; then the lock files on one host, and a
scheduler whose lease is gone starting no run. Real processes and a real redis-server:
tests/test_shard_lease_processes.py."""

from __future__ import annotations

import json
import logging

import pytest

import scheduler
from services.alerts import ALERT_LEASE_LOST, Alert
from services.config_error import ConfigError
from services.kill_switch_store import StoreUnavailable
from services.shard_lease import (
    NO_SHARD,
    FileLeaseStore,
    LeaseHolder,
    LeaseStore,
    ShardLease,
    lease_names,
    lease_timing,
)
from tests.fleet_fixtures import build_test_fleet, root_spans

TTL, RENEW = 30.0, 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStore(LeaseStore):
    """The store's rules (services/shard_lease.py, _HOLD_LUA and _RELEASE_LUA) over a dict."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.keys: dict[str, tuple[str, float]] = {}  # name -> (value, expires at)
        self.down = False

    def where(self) -> str:
        return "the fake store"

    def describe(self, name: str) -> str:
        return f"fake key {name}"

    def value(self, name: str) -> str | None:
        value, expires = self.keys.get(name, (None, 0.0))
        return value if self.clock() < expires else None

    def hold(self, names, value, ttl_s, all_or_none):
        if self.down:
            raise StoreUnavailable("store fake://***@store unreachable")
        others = {name: self.value(name) for name in names if self.value(name) not in (None, value)}
        if others and all_or_none:
            return others
        for name in names:
            if name not in others:
                self.keys[name] = (value, self.clock() + ttl_s)
        return others

    def release(self, names, value):
        for name in names:
            if self.value(name) == value:
                del self.keys[name]


class RecordingAlerts:
    def __init__(self) -> None:
        self.sent: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.sent.append(alert)

    def close(self, timeout_seconds: float = 5.0) -> None:
        pass


def _lease(store, clock, names=("east",), pid=101, alerts=None) -> ShardLease:
    holder = LeaseHolder("host-a" if pid == 101 else "host-b", pid, f"instance-{pid}", "2025-03-04T05:06:07Z")
    return ShardLease(store, names, holder, TTL, RENEW, clock=clock, alerts=alerts)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(clock):
    return FakeStore(clock)


def test_a_second_scheduler_for_the_shard_is_refused_naming_the_holder_and_the_fix(store, clock):
    first = _lease(store, clock)
    first.acquire()
    assert first.allows("east")
    with pytest.raises(ConfigError) as refused:
        _lease(store, clock, pid=202).acquire()
    message = str(refused.value)
    assert message.startswith("shard 'east' is already run by another scheduler: host host-a, pid 101")
    assert "service.instance.id instance-101" in message and "since 2025-03-04T05:06:07Z" in message
    assert "fake key east" in message and "stop that scheduler" in message and "at most 30 s" in message
    assert "\n" not in message
    # the holder died without releasing: once the TTL has passed, the next one takes it
    clock.now += TTL
    second = _lease(store, clock, pid=202)
    second.acquire()
    assert second.allows("east") and json.loads(store.value("east"))["pid"] == 202


def test_all_leases_or_none(store, clock):
    _lease(store, clock, names=["west"], pid=202).acquire()
    with pytest.raises(ConfigError, match="shard 'west' is already run"):
        _lease(store, clock, names=["east", "west"]).acquire()
    assert store.value("east") is None  # not left taken by the refused scheduler


def test_renewals_keep_the_lease_past_many_ttls(store, clock):
    lease = _lease(store, clock)
    lease.acquire()
    for _ in range(12):  # four TTLs
        clock.now += RENEW
        lease.renew()
        assert lease.allows("east")
    assert json.loads(store.value("east"))["pid"] == 101
    with pytest.raises(ConfigError):
        _lease(store, clock, pid=202).acquire()


def test_a_store_outage_shorter_than_the_ttl_changes_nothing_longer_stops_runs_until_it_is_back(store, clock, caplog):
    alerts = RecordingAlerts()
    lease = _lease(store, clock, alerts=alerts)
    lease.acquire()
    store.down = True
    clock.now += RENEW
    lease.renew()
    clock.now += RENEW
    lease.renew()
    assert lease.allows("east") and not alerts.sent  # 20 s of a 30 s lease: runs go on
    clock.now += RENEW - 0.001
    assert lease.allows("east")
    clock.now += 0.001  # exactly the TTL after the last confirmed renewal was sent
    assert not lease.allows("east")  # at once, before the thread's next step
    lease.renew()
    clock.now += RENEW
    lease.renew()
    assert [a.cause for a in alerts.sent] == [ALERT_LEASE_LOST]  # once
    assert alerts.sent[0].figures["shard"] == "east" and "not renewed for 30 s" in alerts.sent[0].summary
    lost = [r for r in caplog.records if "lost its lease" in r.getMessage()]
    assert len(lost) == 1 and "fake://***@store" in lost[0].getMessage()
    assert len([r for r in caplog.records if "unreachable" in r.getMessage() and r.levelno == logging.WARNING]) == 1
    store.down = False  # back, the key expired meanwhile and nobody took it: taken again
    clock.now += RENEW
    lease.renew()
    assert lease.allows("east")
    assert any("held by this scheduler again" in r.getMessage() for r in caplog.records)


def test_a_stolen_lease_stops_runs_and_is_not_released_by_the_loser(store, clock):
    alerts = RecordingAlerts()
    lease = _lease(store, clock, names=["east", "west"], alerts=alerts)
    lease.acquire()
    thief = LeaseHolder("host-b", 202, "instance-202", "2025-03-04T06:00:00Z").value()
    store.keys["east"] = (thief, clock() + 3600)
    clock.now += RENEW
    lease.renew()
    assert not lease.allows("east") and lease.allows("west")  # a lease per shard
    assert len(alerts.sent) == 1 and "held by host host-b, pid 202" in alerts.sent[0].summary
    lease.release()
    assert store.value("east") == thief and store.value("west") is None  # compare-and-delete


def test_a_clean_release_frees_the_shard_at_once(store, clock):
    lease = _lease(store, clock)
    lease.acquire()
    lease.release()
    assert not lease.allows("east") and store.value("east") is None
    _lease(store, clock, pid=202).acquire()


def test_lease_names_and_timing_settings():
    assert lease_names(["east", None, "east", "west"]) == [NO_SHARD, "east", "west"]
    assert lease_timing({}) == (30.0, 10.0)
    assert lease_timing({"ALPHATRACE_LEASE_TTL_SECONDS": "6"}) == (6.0, 2.0)
    assert lease_timing({"ALPHATRACE_LEASE_TTL_SECONDS": "6", "ALPHATRACE_LEASE_RENEW_SECONDS": "3"}) == (6.0, 3.0)
    for env, message in (
        ({"ALPHATRACE_LEASE_TTL_SECONDS": "soon"}, "ALPHATRACE_LEASE_TTL_SECONDS='soon': must be a number of seconds > 0"),
        ({"ALPHATRACE_LEASE_TTL_SECONDS": "0"}, "must be a number of seconds > 0"),
        ({"ALPHATRACE_LEASE_RENEW_SECONDS": "-1"}, "ALPHATRACE_LEASE_RENEW_SECONDS='-1'"),
        ({"ALPHATRACE_LEASE_RENEW_SECONDS": "20"}, "must be at most half of the lease's TTL"),
    ):
        with pytest.raises(ConfigError, match=message):
            lease_timing(env)


def test_lock_files_on_one_host_refuse_a_second_holder_until_the_first_releases(tmp_path):
    kill_file = tmp_path / "state" / "killed_agents.json"
    first = ShardLease(FileLeaseStore(kill_file), [NO_SHARD], LeaseHolder.of_this_process("instance-1"))
    first.acquire()
    first.start_renewing()  # nothing to renew: a lock lasts as long as the process
    assert first.allows(NO_SHARD)
    second = ShardLease(FileLeaseStore(kill_file), [NO_SHARD], LeaseHolder.of_this_process("instance-2"))
    with pytest.raises(ConfigError) as refused:
        second.acquire()
    message = str(refused.value)
    assert "shard '(no shard)' is already run by another scheduler" in message and "service.instance.id instance-1" in message
    assert f"lock file {kill_file}.lease.(no_shard)" in message and "released when it exits" in message
    first.release()
    second.acquire()
    assert second.allows(NO_SHARD)
    second.release()


def test_a_bad_lease_setting_stops_start_up_with_one_line(world, monkeypatch, capsys):
    monkeypatch.setenv("ALPHATRACE_LEASE_RENEW_SECONDS", "later")
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["alphatrace: configuration error: ALPHATRACE_LEASE_RENEW_SECONDS='later': must be a number of seconds > 0"]


def test_a_second_scheduler_on_one_host_is_refused_and_a_replay_needs_no_lease(world, monkeypatch, capsys):
    trace_file = world["tmp"] / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    holder = ShardLease(FileLeaseStore(world["kill_file"]), [NO_SHARD], LeaseHolder("host-x", 4242, "instance-x", "2025-03-04T05:06:07Z"))
    holder.acquire()  # another scheduler of this fleet, unsharded, on this host
    try:
        assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "shard '(no shard)' is already run by another scheduler: host host-x, pid 4242" in lines[0]
        assert not trace_file.exists()  # no run
        assert scheduler.main(["--replay", "--days", "1", "--config", str(world["config"])]) == 0
    finally:
        holder.release()
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 0  # released: the next one runs


def test_a_scheduler_without_its_shards_lease_starts_no_run(world, telemetry, span_exporter, store, clock):
    lease = _lease(store, clock, names=[NO_SHARD])
    fleet = build_test_fleet(world, telemetry)
    fleet._lease = lease
    fleet.run_cycle()
    assert root_spans(span_exporter) == []  # never acquired
    lease.acquire()
    fleet.run_cycle()
    assert len(root_spans(span_exporter)) == len(fleet.agents)
    fleet.shutdown()
