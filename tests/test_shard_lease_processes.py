"""The shard lease with real processes against a real redis-server (with a password): live
schedulers (``scheduler.py --cycles``) started as their own processes with a short lease TTL. A second
scheduler for a shard exits 2 naming the holder; one SIGKILLed keeps the shard until its TTL passes,
then the next starts; a clean shutdown frees it at once; renewals keep it past several TTLs; a lease
taken by another process stops new runs of that shard's agents while the scheduler's other shard runs
on. No timing assertions: every wait is bounded and generous."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services import kill_switch
from services.kill_switch_store import RedisSource
from services.shard_lease import LEASE_KEY, LeaseHolder
from tests.redis_server import RedisServer
from tests.test_fleet_store_processes import run_spans
from tests.test_kill_switch_store import CANARY, redis_available  # noqa: F401 (the store's fixture)

REPO = Path(__file__).resolve().parent.parent
WAIT = 120.0
TTL_S = 4.0  # short, so a dead holder's lease lapses soon; renewed eight times per TTL
RENEW_S = 0.5
EAST = ("momentum", "mean_reversion", "llm_analyst", "ensemble")  # the ensemble's members share its shard


@pytest.fixture
def store(redis_available, world):  # noqa: F811 (the fixture imported above)
    with RedisServer(world["tmp"], password=CANARY) as server:
        assert kill_switch.sync(world["kill_file"], server.url) == 1  # the fleet's kill list: nobody killed
        client = RedisSource(server.url)
        yield server, client
        client.close()


@pytest.fixture
def fleet(world):
    text = world["config"].read_text()
    for agent in EAST:
        text = text.replace(f"[agents.{agent}]\n", f'[agents.{agent}]\nshard = "east"\n')
    world["config"].write_text(text + '\n[agents.solo]\nmodule = "agents.momentum"\ninterval_seconds = 0.05\nshard = "west"\n')
    return world


class Schedulers:
    def __init__(self, world, url: str) -> None:
        self.world, self.url = world, url
        self.processes: dict[str, subprocess.Popen] = {}

    def env(self, name: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            ALPHATRACE_TRACE_FILE=str(self.world["tmp"] / name / "traces.jsonl"),
            ALPHATRACE_KILL_SWITCH_STORE=self.url,
            ALPHATRACE_LEASE_TTL_SECONDS=str(TTL_S),
            ALPHATRACE_LEASE_RENEW_SECONDS=str(RENEW_S),
            ALPHATRACE_ON_STALE="last_bar",  # the test's market data ends years ago
        )
        return env

    def argv(self, *options: str) -> list[str]:
        return [sys.executable, "scheduler.py", "--cycles", "1000000", "--config", str(self.world["config"]), *options]

    def start(self, name: str, *options: str) -> subprocess.Popen:
        (self.world["tmp"] / name).mkdir()
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(
                self.argv(*options), cwd=REPO, env=self.env(name), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.processes[name] = process
        return process

    def refused(self, name: str, *options: str) -> str:
        """Starts one that must be refused; returns its one line."""
        (self.world["tmp"] / name).mkdir()
        done = subprocess.run(self.argv(*options), cwd=REPO, env=self.env(name), capture_output=True, text=True, timeout=WAIT)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and len(lines) == 1, (done.returncode, done.stderr[-3000:])
        assert not (self.world["tmp"] / name / "traces.jsonl").exists()  # not one run
        return lines[0]

    def log_path(self, name: str) -> Path:
        return self.world["tmp"] / name / "scheduler.log"

    def logs(self) -> str:
        return "\n".join(f"=== {name}\n{self.log_path(name).read_text(errors='replace')[-3000:]}" for name in self.processes)

    def wait_until(self, what: str, condition, alive: tuple[str, ...] = ()) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            for name in alive:
                assert self.processes[name].poll() is None, f"{name} exited while waiting for {what}\n{self.logs()}"
            assert time.monotonic() < deadline, f"{what}: not within {WAIT:.0f}s\n{self.logs()}"
            time.sleep(0.05)

    def stop(self, name: str) -> int:
        process = self.processes[name]
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=WAIT)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=WAIT)


@pytest.fixture
def schedulers(fleet, store):
    running = Schedulers(fleet, store[0].url)
    yield running
    running.close()


def holder_pid(client: RedisSource, shard: str) -> int | None:
    value = client._client.get(LEASE_KEY.format(name=shard))
    return None if value is None else json.loads(value)["pid"]


def test_one_scheduler_per_shard_refused_while_held_free_after_a_kill_and_the_ttl_at_once_after_a_clean_stop(store, schedulers):
    _, client = store
    first = schedulers.start("first", "--shard", "east")
    schedulers.wait_until("the first scheduler holds east", lambda: holder_pid(client, "east") == first.pid, alive=("first",))

    # Renewals keep it past several TTLs: at every look, for more than three TTLs, it is the first's.
    held_since = time.monotonic()
    while time.monotonic() - held_since < 3 * TTL_S:
        assert holder_pid(client, "east") == first.pid and first.poll() is None, schedulers.logs()
        time.sleep(0.1)

    line = schedulers.refused("second", "--shard", "east")
    assert line.startswith("alphatrace: configuration error: shard 'east' is already run by another scheduler: ")
    assert f"pid {first.pid}" in line and "since 20" in line and "alphatrace:lease:shard:east" in line
    assert "stop that scheduler" in line and f"at most {TTL_S:g} s" in line
    assert CANARY not in line and "***@" in line
    # another shard is not affected
    west = schedulers.start("west", "--shard", "west")
    schedulers.wait_until("west holds its own lease", lambda: holder_pid(client, "west") == west.pid, alive=("west",))

    first.send_signal(signal.SIGKILL)
    first.wait(timeout=WAIT)
    assert holder_pid(client, "east") == first.pid  # a killed scheduler releases nothing: the TTL does
    schedulers.wait_until("the dead scheduler's lease to lapse", lambda: holder_pid(client, "east") is None)
    third = schedulers.start("third", "--shard", "east")
    schedulers.wait_until("the third scheduler holds east", lambda: holder_pid(client, "east") == third.pid, alive=("third",))
    schedulers.wait_until(
        "the third scheduler runs east's agents", lambda: len(run_spans(schedulers.world["tmp"] / "third" / "traces.jsonl")) > 0
    )

    assert schedulers.stop("third") == 0
    assert holder_pid(client, "east") is None  # released on the way out, no TTL to wait for
    assert holder_pid(client, "west") == west.pid
    assert schedulers.stop("west") == 0
    assert holder_pid(client, "west") is None


def test_a_lease_taken_by_another_process_stops_that_shards_runs_while_the_other_shard_runs_on(store, schedulers):
    _, client = store
    both = schedulers.start("both")  # no --shard: it runs, so holds, east and west
    schedulers.wait_until(
        "the unsharded scheduler holds east and west",
        lambda: holder_pid(client, "east") == both.pid and holder_pid(client, "west") == both.pid,
        alive=("both",),
    )
    trace_file = schedulers.world["tmp"] / "both" / "traces.jsonl"
    schedulers.wait_until("east's agents run", lambda: any(r["gen_ai.agent.name"] == "momentum" for r in run_spans(trace_file)))

    thief = LeaseHolder("host-elsewhere", 99999, "instance-thief", "2025-03-04T05:06:07Z").value()
    client._client.set(LEASE_KEY.format(name="east"), thief, px=int(WAIT * 1000 * 3))
    log = schedulers.log_path("both")
    schedulers.wait_until("the scheduler notices", lambda: "lost its lease" in log.read_text(errors="replace"), alive=("both",))
    noticed_ns = time.time_ns()

    def solo_runs_since() -> int:
        return sum(1 for r in run_spans(trace_file) if r["gen_ai.agent.name"] == "solo" and r["start"] > noticed_ns)

    schedulers.wait_until("west's agent runs three more times", lambda: solo_runs_since() >= 3, alive=("both",))
    assert schedulers.stop("both") == 0
    east_runs_after = [r for r in run_spans(trace_file) if r["gen_ai.agent.name"] in EAST and r["start"] > noticed_ns]
    assert east_runs_after == []
    text = log.read_text(errors="replace")
    assert text.count("lost its lease") == 1 and "held by host host-elsewhere, pid 99999" in text
    assert client._client.get(LEASE_KEY.format(name="east")) == thief  # the loser deletes nothing of the thief's
    assert holder_pid(client, "west") is None  # its own, released
    assert CANARY not in text
