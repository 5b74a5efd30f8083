"""One kill switch and one budget for every host, proved with real processes: scheduler shards
started as their own processes (``scheduler.py --shard``, live), each with its own kill-switch file
and trace file (its "host"), all pointed at one real redis-server (``ALPHATRACE_KILL_SWITCH_STORE``),
their LLM calls going over HTTP to an OpenAI-compatible server on loopback that counts every request
per agent. A kill issued once (``python -m services.kill_switch kill --store``) stops the agent on
whichever shard runs it before its next call; a fleet's daily budget holds across two shards."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from otel import semconv
from services.call_estimate import estimate_call
from services.pricing import PriceTable
from tests.openai_server import OpenAIServer
from tests.redis_server import RedisServer
from tests.test_kill_switch_store import CANARY, redis_available  # noqa: F401 (the store's fixture)

REPO = Path(__file__).resolve().parent.parent
WAIT = 180.0  # generous: three schedulers and the test's server on a loaded 2-core machine
API_KEY = "sk-test-fleet-store-processes"
# Each agent asks with its own horizon, which the server reads back from the request to know whose it is.
HORIZON = {"research_analyst": 3, "llm_analyst": 5, "llm_west": 7, "llm_north": 9}
AGENT_OF_HORIZON = {horizon: agent for agent, horizon in HORIZON.items()}

FLEET = """
[fleet]
universe = ["SPX", "WTI"]
max_workers = 4
misfire_grace_seconds = 30
{fleet_budget}

[llm]
provider = "openai"
model = "gpt-4o-mini"
timeout_seconds = 300
max_retries = 0
"""


def _agent(name: str, module: str, shard: str, params: str) -> str:
    return f'\n[agents.{name}]\nmodule = "{module}"\ninterval_seconds = 0.2\nshard = "{shard}"\nparams = {{ {params} }}\n'


def agent_of(body: dict) -> str | None:
    """Whose request this is: the horizon in its first user message (the tool loop resends it)."""
    for message in body.get("messages", []):
        found = re.search(r"Horizon: (\d+) trading days", str(message.get("content") or ""))
        if message.get("role") == "user" and found:
            return AGENT_OF_HORIZON.get(int(found.group(1)))
    return None


def requests_of(server: OpenAIServer) -> Counter:
    with server._lock:
        return Counter(agent_of(body) for body in server.bodies)


class Shards:
    """Scheduler shards as processes, each its own host: kill-switch file, trace file, log."""

    def __init__(self, tmp: Path, config: Path, store: str, server: OpenAIServer) -> None:
        self.tmp, self.config, self.store, self.server = tmp, config, store, server
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, shard: str) -> None:
        host = self.tmp / shard
        host.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(
            ALPHATRACE_TRACE_FILE=str(host / "traces.jsonl"),
            ALPHATRACE_KILL_SWITCH_FILE=str(host / "killed_agents.json"),  # never written: the store rules
            ALPHATRACE_KILL_SWITCH_STORE=self.store,
            ALPHATRACE_ON_STALE="last_bar",  # the test's market data ends years ago
            OPENAI_API_KEY=API_KEY,
            OPENAI_BASE_URL=self.server.base_url,
        )
        with open(host / "scheduler.log", "ab") as log:
            self.processes[shard] = subprocess.Popen(
                [sys.executable, "scheduler.py", "--shard", shard, "--cycles", "1000000", "--config", str(self.config)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def logs(self) -> str:
        return "\n".join(
            f"=== {shard}\n{(self.tmp / shard / 'scheduler.log').read_text(errors='replace')[-3000:]}" for shard in self.processes
        )

    def wait_until(self, what: str, condition) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            exited = {shard: p.returncode for shard, p in self.processes.items() if p.poll() is not None}
            assert not exited, f"shards exited {exited} while waiting for {what}\n{self.logs()}"
            assert time.monotonic() < deadline, f"{what}: not within {WAIT:.0f}s; requests {requests_of(self.server)}\n{self.logs()}"
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM: every shard stops gracefully and flushes its spans to its file."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        self.server.release()
        codes = {}
        for shard, process in self.processes.items():
            try:
                codes[shard] = process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[shard] = process.wait(timeout=WAIT)
        assert set(codes.values()) == {0}, f"{codes}\n{self.logs()}"

    def runs(self, shard: str) -> list[dict]:
        """The shard's run spans (attributes) from its trace file, in start order."""
        return run_spans(self.tmp / shard / "traces.jsonl")


def run_spans(path: Path) -> list[dict]:
    """The run spans (attributes, and ``start`` in ns) in a trace file, in start order."""
    runs = []
    text = path.read_text() if path.exists() else ""
    for line in text[: text.rfind("\n") + 1].splitlines():  # complete lines: the file may be growing
        for rs in json.loads(line)["resourceSpans"]:
            for span in (s for ss in rs["scopeSpans"] for s in ss["spans"]):
                attrs = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                if attrs.get(semconv.GEN_AI_OPERATION_NAME) == "invoke_agent":
                    runs.append({**attrs, "start": int(span["startTimeUnixNano"])})
    return sorted(runs, key=lambda run: run["start"])


def _kill_switch(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.kill_switch", *argv], cwd=REPO, capture_output=True, text=True, timeout=WAIT)


@pytest.fixture
def store(redis_available, tmp_path):  # noqa: F811 (the fixture imported above)
    with RedisServer(tmp_path, password=CANARY) as srv:
        yield srv


def test_one_kill_stops_the_agent_on_whichever_shard_runs_it_before_its_next_call(world, store, tmp_path):
    config = tmp_path / "fleet.toml"
    text = FLEET.format(fleet_budget="")
    text += _agent("research_analyst", "agents.research_analyst", "east", f"horizon = {HORIZON['research_analyst']}")
    text += _agent("llm_analyst", "agents.llm_analyst", "east", f"horizon = {HORIZON['llm_analyst']}")
    text += _agent("llm_west", "agents.llm_analyst", "west", f"horizon = {HORIZON['llm_west']}")
    text += _agent("llm_north", "agents.llm_analyst", "north", f"horizon = {HORIZON['llm_north']}")
    config.write_text(text)
    kill_file = tmp_path / "operator" / "killed_agents.json"  # where a person edits the kill list
    kill_file.parent.mkdir()
    published = _kill_switch("--file", str(kill_file), "--store", store.url, "sync")
    assert published.returncode == 0, published.stderr

    with OpenAIServer() as server:
        shards = Shards(tmp_path, config, store.url, server)
        try:
            for shard in ("east", "west", "north"):
                shards.start(shard)
            shards.wait_until("every agent's first LLM request", lambda: all(requests_of(server)[agent] for agent in HORIZON))
            at_kill = {}
            for victim in ("research_analyst", "llm_west"):  # one on east beside a survivor, one alone on west
                # The victim is inside an LLM call while the kill is issued: a run in flight.
                server.hold(lambda body, victim=victim: agent_of(body) == victim)
                assert server.held.wait(WAIT), f"no request of {victim} within {WAIT:.0f}s\n{shards.logs()}"
                at_kill[victim] = requests_of(server)[victim]
                done = _kill_switch(
                    "--file", str(kill_file), "--store", store.url, "--config", str(config), "kill", victim, "--reason", "runaway"
                )
                assert done.returncode == 0, done.stderr
                server.release()
            survivors = {agent: requests_of(server)[agent] for agent in ("llm_analyst", "llm_north")}
            shards.wait_until(
                "three more calls of each survivor", lambda: all(requests_of(server)[a] >= n + 3 for a, n in survivors.items())
            )
        finally:
            shards.stop()
        after = requests_of(server)

    # Not one LLM request of a killed agent reached the server after its kill, from any shard.
    assert {victim: after[victim] for victim in at_kill} == at_kill
    assert None not in after  # every request was one of the four agents'
    runs = {shard: shards.runs(shard) for shard in shards.processes}
    for shard, victim in (("east", "research_analyst"), ("west", "llm_west")):
        outcomes = [run[semconv.AGENT_RUN_OUTCOME] for run in runs[shard] if run[semconv.GEN_AI_AGENT_NAME] == victim]
        first_killed = outcomes.index(semconv.OUTCOME_KILLED)
        # the run in flight at the kill finished its call, then no run went on: killed (mid-run or before
        # start). The runs before it all ended ok; there may be none: the tool-calling agent's request
        # held at the kill can be a later call of its first run, which the kill then stops mid-run.
        assert set(outcomes[:first_killed]) <= {semconv.OUTCOME_OK}
        assert set(outcomes[first_killed:]) == {semconv.OUTCOME_KILLED} and len(outcomes) - first_killed >= 1
        # what the runs say they asked equals what the server received from that agent
        asked = [int(run.get(semconv.RUN_LLM_CALLS, 0)) for run in runs[shard] if run[semconv.GEN_AI_AGENT_NAME] == victim]
        assert sum(asked) == after[victim]
    for shard, survivor in (("east", "llm_analyst"), ("north", "llm_north")):
        outcomes = Counter(run[semconv.AGENT_RUN_OUTCOME] for run in runs[shard] if run[semconv.GEN_AI_AGENT_NAME] == survivor)
        assert set(outcomes) == {semconv.OUTCOME_OK} and outcomes[semconv.OUTCOME_OK] >= survivors[survivor] + 3
    # The shards never read their own files: the kill reached them through the store only.
    assert not any((tmp_path / shard / "killed_agents.json").exists() for shard in shards.processes)


def test_a_fleet_daily_budget_holds_across_two_shard_processes(world, store, tmp_path):
    config = tmp_path / "fleet.toml"
    limit_calls = 3.5  # the fleet's day: a call's estimate and three and a half calls' worth
    agents = _agent("llm_analyst", "agents.llm_analyst", "east", f"horizon = {HORIZON['llm_analyst']}")
    agents += _agent("llm_west", "agents.llm_analyst", "west", f"horizon = {HORIZON['llm_west']}")
    published = _kill_switch("--file", str(tmp_path / "killed_agents.json"), "--store", store.url, "sync")
    assert published.returncode == 0, published.stderr

    with OpenAIServer() as server:
        # One call's cost, measured as the fleet spends it: a first run on each shard under a budget
        # nothing reaches; and its estimate before it is made, from the requests the server received.
        config.write_text(FLEET.format(fleet_budget="[fleet.budget]\nday_cost_usd = 1000.0") + agents)
        probe = Shards(tmp_path / "probe", config, store.url, server)
        try:
            for shard in ("east", "west"):
                probe.start(shard)
            probe.wait_until("a first call of each agent", lambda: requests_of(server)["llm_analyst"] and requests_of(server)["llm_west"])
        finally:
            probe.stop()
        runs = probe.runs("east") + probe.runs("west")
        costs = {run[semconv.RUN_COST_USD] for run in runs if run.get(semconv.RUN_LLM_CALLS)}
        assert len(costs) == 1, costs  # every call the same (same features, same-length prompts)
        cost = costs.pop()
        with server._lock:
            estimates = [estimate_call(body["messages"], body) for body in server.bodies]
        estimate = max(PriceTable.load().cost("gpt-4o-mini", e.tokens_in, e.tokens_out) for e in estimates)
        assert estimate > cost  # the output allowance is above what the analyst answers
        limit = estimate + cost * limit_calls
        before = sum(requests_of(server).values())
        for key in store_keys(store, "alphatrace:budget:spend:*"):  # the fleet's day starts from zero
            store_client(store).delete(key)

        config.write_text(FLEET.format(fleet_budget=f"[fleet.budget]\nday_cost_usd = {limit!r}") + agents)
        shards = Shards(tmp_path / "fleet", config, store.url, server)
        try:
            for shard in ("east", "west"):
                shards.start(shard)
            # refused with nothing in flight: four calls spent (a refusal while the other shard's
            # reservation is in flight counts that estimate as spent too)
            shards.wait_until(
                "a refused run on each shard with four calls spent",
                lambda: all(
                    any(
                        run[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_BUDGET_EXCEEDED
                        and run.get(semconv.BUDGET_SPENT) == pytest.approx(4 * cost)
                        for run in shards.runs(s)
                    )
                    for s in ("east", "west")
                ),
            )
        finally:
            shards.stop()
        calls = sum(requests_of(server).values()) - before

    assert calls == 4  # four calls and a fifth's estimate pass the cap, between both shards together
    runs = shards.runs("east") + shards.runs("west")
    assert sum(int(run.get(semconv.RUN_LLM_CALLS, 0)) for run in runs) == calls
    refused = [run for run in runs if run[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_BUDGET_EXCEEDED]
    assert {run[semconv.BUDGET_NAME] for run in refused} == {semconv.BUDGET_FLEET_DAY_COST}
    assert {run[semconv.GEN_AI_AGENT_NAME] for run in refused} == {"llm_analyst", "llm_west"}
    fleet_spent = [float(store_client(store).get(key)) for key in store_keys(store, "alphatrace:budget:spend:*:fleet")]
    assert fleet_spent == [pytest.approx(calls * cost)] and fleet_spent[0] <= limit


def store_client(store: RedisServer):
    import redis

    return redis.Redis.from_url(store.url, decode_responses=True)


def store_keys(store: RedisServer, pattern: str) -> list[str]:
    return sorted(store_client(store).scan_iter(pattern))
