"""The order of agents within one cycle: members before the agents that combine their signals.

An agent that combines others says which through a ``members(params)`` method (``agents/ensemble.py``
derives them from its ``weights``). ``run_stages`` layers the fleet so every agent runs in a stage
after all of its members that are in the fleet; agents in one stage run concurrently. A member that
is disabled in the fleet is ignored here (the combiner records it as missing); a member that is no
agent of the fleet config at all (a typo) and a cycle are a ``ConfigError`` at start-up.

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from services.config_error import ConfigError, check_known


def dependencies(agents: Mapping[str, Any], params: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Each agent's members among ``agents`` (itself excluded)."""
    deps: dict[str, set[str]] = {}
    for name, agent in agents.items():
        members = getattr(agent, "members", None)
        wanted = members(params.get(name, {})) if callable(members) else []
        deps[name] = {member for member in wanted if member in agents and member != name}
    return deps


def check_members(
    agents: Mapping[str, Any],
    params: Mapping[str, Mapping[str, Any]],
    configured: Iterable[str],
    source: str,
    elsewhere: Mapping[str, str | None] | None = None,
) -> None:
    """``ConfigError`` when an agent combines one that the fleet config does not name ("did you mean"),
    or, on a shard, one that another shard runs (``elsewhere``: its signals never reach this process)."""
    configured = list(configured)
    elsewhere = elsewhere or {}
    for name, agent in agents.items():
        members = getattr(agent, "members", None)
        if callable(members):
            wanted = list(members(params.get(name, {})))
            for member in wanted:
                if member in elsewhere:
                    where = f"shard {elsewhere[member]!r}" if elsewhere[member] else "no shard"
                    raise ConfigError(
                        f"{source}: agents.{name} combines {member!r}, which is assigned to {where}: "
                        f"an agent and the agents it combines must share a shard"
                    )
            check_known(wanted, configured, f"{source}: agents.{name}.params", "agent")


def run_stages(agents: Mapping[str, Any], params: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """Agents in stages, members first; the fleet's order is kept within a stage."""
    deps = dependencies(agents, params)
    done: set[str] = set()
    stages: list[list[str]] = []
    while len(done) < len(deps):
        ready = [name for name in deps if name not in done and deps[name] <= done]
        if not ready:
            waiting = sorted(name for name in deps if name not in done)
            raise ConfigError(f"agents combine each other's signals in a cycle: {', '.join(waiting)}")
        stages.append(ready)
        done.update(ready)
    return stages
