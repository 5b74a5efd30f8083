"""The fleet on several hosts, simulated on this machine (``make fleet-demo``): three scheduler shards,
one agent-mode collector each (``collector/agent-config.yaml``, routing by trace id), two gateway
collectors (``collector-config.yaml``, each writing its own trace file), then one report over both
gateways' files.  Everything on loopback, on free ports, under ``telemetry/fleet-demo/``; bounded in
time (``--timeout``).  The processes are managed by ``tests/stack.py`` (``MultiHost``), the same code
the integration tests (``tests/test_fleet_hosts.py``) use.  docs/several-hosts.md explains the shape.

    .venv/bin/python collector/fleet_demo.py [--days 20] [--timeout 300]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import stack  # noqa: E402  (the repository root is put on the path just above)

# Which agents each shard runs: the shipped four together (the ensemble combines the other three, so
# they share its shard), and two more agents, each alone on its own "host".
SHARDS = {
    "east": ("momentum", "mean_reversion", "llm_analyst", "ensemble"),
    "west": ("momentum_fast",),
    "north": ("mean_reversion_wide",),
}
EXTRA_AGENTS = """
[agents.momentum_fast]
module = "agents.momentum"
interval_seconds = 300
params = { horizon = 3, scale = 0.05 }

[agents.mean_reversion_wide]
module = "agents.mean_reversion"
interval_seconds = 300
params = { horizon = 5, entry_z = 2.5 }
"""


def sharded_config(out: Path) -> Path:
    """agents/agents.toml with a shard per agent and the two extra agents."""
    text = (REPO / "agents" / "agents.toml").read_text() + EXTRA_AGENTS
    for shard, agents in SHARDS.items():
        for agent in agents:
            text = text.replace(f"[agents.{agent}]\n", f'[agents.{agent}]\nshard = "{shard}"\n')
    path = out / "agents.toml"
    path.write_text(text)
    return path


def exported(log: str) -> int:
    found = re.search(r"(\d+) spans ended, (\d+) exported", log)
    return int(found.group(2)) if found else 0


def span_ids(files: list[Path]) -> set[str]:
    ids = set()
    for path in files:
        for line in stack.complete_lines(path):
            for rs in json.loads(line).get("resourceSpans", []):
                ids.update(span["spanId"] for ss in rs.get("scopeSpans", []) for span in ss.get("spans", []))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=20, help="trading days each shard replays (default 20)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the whole demo (default 300)")
    parser.add_argument("--out", type=Path, default=REPO / "telemetry" / "fleet-demo", help="where everything goes")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    reason = stack.ensure_built()
    if reason:
        print(f"fleet-demo: the stack is not available: {reason}", file=sys.stderr)
        return 1
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    config = sharded_config(args.out)
    with stack.MultiHost(args.out / "hosts", SHARDS) as fleet:
        print(f"fleet-demo: gateways {', '.join(g.otlp_grpc_endpoint for g in fleet.gateways)}; one agent collector per shard")
        running = {shard: fleet.start_shard(shard, ["--replay", "--days", str(args.days), "--config", str(config)]) for shard in SHARDS}
        for shard, process in running.items():
            code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
            if code != 0:
                print(f"fleet-demo: shard {shard} exited {code}:\n{fleet.shard_log(shard)}", file=sys.stderr)
                return 1
        expected = sum(exported(fleet.shard_log(shard)) for shard in SHARDS)
        while len(span_ids(fleet.trace_files())) < expected:
            if time.monotonic() > deadline:
                print(f"fleet-demo: only {len(span_ids(fleet.trace_files()))} of {expected} spans reached the gateways", file=sys.stderr)
                return 1
            time.sleep(0.5)
        for shard in SHARDS:
            print(f"  shard {shard:6} ({', '.join(SHARDS[shard])}): {exported(fleet.shard_log(shard))} spans exported")
        for gateway in fleet.gateways:
            print(f"  {gateway.tmp_path.name}: {len(span_ids(gateway.trace_files()))} spans in {gateway.trace_file}")
        files = fleet.trace_files()
    report_dir = args.out / "report"
    command = [sys.executable, "meta_supervisor/build_meta_report.py", "--out", str(report_dir), "--no-state", "--quiet"]
    for path in files:
        command += ["--input", str(path)]
    done = subprocess.run(command, cwd=REPO, timeout=max(1.0, deadline - time.monotonic()))
    if done.returncode != 0:
        return done.returncode
    report = json.loads((report_dir / "meta_report.json").read_text())
    print("fleet-demo: one report over both gateways' files:")
    for name, agent in sorted(report["agents"].items()):
        print(f"  {name:22} {agent['runs']:4} runs  {agent['llm_calls']:4} LLM calls  {agent['alpha_signals']:4} signals")
    print(f"fleet-demo: report in {report_dir} (meta_report.md, .json, .html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
