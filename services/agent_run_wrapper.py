"""The seed's entry point for running an agent with telemetry: ``run_with_telemetry(agent_name, fn,
*args, **kwargs)`` and the ``AgentRunWrapper`` behind it.

The span logic lives with the rest of the telemetry, in ``otel/agent_runs.py`` (the root span, the
outcome, the run's totals, the exception event); this module keeps the seed's name and import path.

Reads no environment variables.
"""

from __future__ import annotations

from otel.agent_runs import AgentRunWrapper, new_run_id, run_with_telemetry

__all__ = ["AgentRunWrapper", "new_run_id", "run_with_telemetry"]
