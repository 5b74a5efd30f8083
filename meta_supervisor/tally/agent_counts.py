"""Counting one LLM or tool call into an agent's tally, now or later: one rule for both.

An LLM or tool span that names its agent (``gen_ai.agent.name``, as alphatrace's own spans do) is
counted at once. One that does not (the children of another instrumentation's agent span) belongs to
the agent of its run (joined by ``alphatrace.run.id``, else the trace id): when that run's root has not
been read yet, the call is kept as a *deferred* record in the run's open entry
(``bounds.P_DEFERRED``) and counted for the root's agent when the root comes
(``consistency``); if it never comes (the run is evicted, or still open when the report is made), the
call counts for ``(unknown agent)``.

Records are tuples, so that both readers (``native/src/part.rs`` writes the same ones) and the
incremental state keep them alike:

* ``(DEFERRED_LLM, day, model, simulated, operation, input, output, cached input tokens, error, bad)``
  (``model`` already labelled, token counts already checked, ``bad``: they were not valid);
* ``(DEFERRED_TOOL, tool name, error, start ns, end ns)``.

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from meta_supervisor.tally.aggregates import AgentTally
from meta_supervisor.tally.bounds import LLM_CACHED, LLM_CALLS, LLM_ERRORS, LLM_IN, LLM_OUT, P_DEFERRED, UNKNOWN_AGENT, bounded_key
from meta_supervisor.tally.day_tables import counting
from meta_supervisor.tally.tool_tallies import add_tool_call

DEFERRED_LLM, DEFERRED_TOOL = 0, 1


def count_llm_call(
    tally, day: int, model: str, simulated: bool, operation: str, tokens_in: int, tokens_out: int, cached: int, error: bool, bad: bool
) -> None:
    """One LLM call of the agent of ``tally`` (an ``AgentTally``)."""
    operations = tally.llm_operations
    operations[operation] = operations.get(operation, 0) + 1
    if bad:
        tally.bad_token_values += 1
    key = (day, model, simulated)
    day_models = tally.day_models
    if type(day_models) is not dict:  # packed (loaded): counted into as a dict
        day_models = tally.day_models = counting(day_models)
    counts = day_models.get(key)
    if counts is None:
        key = bounded_key(day_models, key)
        counts = day_models.get(key)
        if counts is None:
            counts = day_models[key] = [0, 0, 0, 0, 0]
    counts[LLM_CALLS] += 1
    counts[LLM_IN] += tokens_in
    counts[LLM_CACHED] += cached
    counts[LLM_OUT] += tokens_out
    if error:
        counts[LLM_ERRORS] += 1


def replay(tally, records: list) -> None:
    """Count deferred records for the agent of ``tally``."""
    for record in records:
        if record[0] == DEFERRED_LLM:
            count_llm_call(tally, *record[1:])
        else:
            add_tool_call(tally.tools, record[1], record[2], record[3], record[4])


def with_deferred(agents: Mapping[str, AgentTally], pending: Mapping[str, list]) -> Mapping[str, AgentTally]:
    """The agents' tallies as a report shows them: the deferred calls of the runs still open count for
    ``(unknown agent)``, in a copy (the tallies themselves keep waiting: the root may come in a later
    build)."""
    deferred = [record for entry in pending.values() if entry[P_DEFERRED] for record in entry[P_DEFERRED]]
    if not deferred:
        return agents
    unknown = AgentTally()
    if UNKNOWN_AGENT in agents:
        unknown.merge(agents[UNKNOWN_AGENT])
    replay(unknown, deferred)
    return {**agents, UNKNOWN_AGENT: unknown}
