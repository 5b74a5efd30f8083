"""The bounds, labels and slot layouts every tally shares: a leaf of ``tally``.

Tallies are built from span data nobody controls, so every table is bounded (``MAX_*``: past the
bound a new key folds into ``OTHER_LABEL``, ``bounded_key``) and every name is cut to ``MAX_LABEL``
(``label``). Counters are positional lists, for speed in the hot loop; their slots are named here
once (``DAY_*``, ``LLM_*``, ``T_*``, the consistency counts, and ``P_*``: an open run's entry), for
the aggregator, the merge rules, the incremental state and the report alike (the native core's
``native/src/part.rs`` mirrors them).

Reads no environment variables.
"""

from __future__ import annotations

from typing import Any

TOP_K = 5  # slowest runs, failing runs, mismatch examples kept per agent
BAD_LINE_EXAMPLES = 20
CONFLICT_EXAMPLES = 5  # (trace id, span id) of conflicting duplicates listed in the report
MAX_LABEL = 200  # longest agent / model / symbol / reason string kept (hostile input)
MAX_DISTINCT = 1000  # distinct symbols, models, reasons ... per agent before folding into "(other)"
MAX_AGENTS = 10_000
MAX_OUTCOMES = 20  # distinct outcomes per agent
MAX_REASONS = 100  # distinct invalid-signal reasons per agent
# an agent's bounded tables (``AgentTally`` attributes) and their limits: a part read apart is merged
# only if each stays within its limit (``build.merge.within_limits``)
AGENT_TABLE_LIMITS = (
    ("outcomes", MAX_OUTCOMES),
    ("day_models", MAX_DISTINCT),
    ("tools", MAX_DISTINCT),
    ("killed_mid_run", MAX_DISTINCT),
    ("budget_stops", MAX_DISTINCT),
    ("alpha", MAX_DISTINCT),
    ("invalid_reasons", MAX_REASONS),
)
OTHER_LABEL = "(other)"
UNKNOWN_AGENT = "(unknown agent)"  # spans that name no agent (and whose run's agent is not known)
MAX_PROCESSES = 10_000  # distinct (service.name, service.instance.id) with loss counters kept
NO_SERVICE = "(no service.name)"
NO_INSTANCE = "(no service.instance.id)"
# The per-host table (``InputTally.host_processes``): one row per (host.name, alphatrace.shard,
# service.instance.id), at most this many; a process past it is folded whole into "(other)".
MAX_HOST_PROCESSES = 1_000
NO_HOST = "(no host.name)"
NO_SHARD = "(no shard)"
# a host_processes row: counts summed, then each loss counter's largest value (cumulative per process)
H_SPANS, H_RUNS, H_ERRORS, H_LLM_CALLS, H_COST_NANO_USD, H_DROPPED, H_FAILED = range(7)
H_SUMMED = 5  # the first H_SUMMED columns add up under merge; the rest keep their maximum
NS_PER_DAY = 86_400 * 1_000_000_000

# day_runs slots (asof_runs: the first three, per the run's as-of day)
DAY_OK, DAY_ERROR, DAY_KILLED, DAY_ALPHA, DAY_ALPHA_INVALID = range(5)
EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal(): as-of days are kept as days since the epoch, as start days
# day_models slots: (day, model, simulated) -> [calls, errors, tokens_in, tokens_cached, tokens_out]
LLM_CALLS, LLM_ERRORS, LLM_IN, LLM_CACHED, LLM_OUT = range(5)
# tools slots: tool name -> [calls, errors, timed calls, latency sum ns, min ns, max ns, {latency bucket:
# calls}] (meta_supervisor/tally/tool_tallies.py)
T_CALLS, T_ERRORS, T_TIMED, T_SUM, T_MIN, T_MAX, T_HIST = range(7)
# consistency slots
CONSISTENT, MISMATCHED, UNCHECKED, ORPHAN_LLM_SPANS = range(4)
# run_steps slots (LLM and tool calls per run, from the root totals of the runs that ran: runs carrying
# the total, the totals' sum, their maximum): exact under merge (sums and a maximum)
RS_LLM_RUNS, RS_LLM_SUM, RS_LLM_MAX, RS_TOOL_RUNS, RS_TOOL_SUM, RS_TOOL_MAX = range(6)
UNKNOWN_BUDGET = "(unknown budget)"  # a budget stop whose root names no budget
# an open run (root and child spans not all seen yet): [agent, trace_id, run_id, root totals or None,
# LLM calls, input tokens, output tokens, cached input tokens, cost of priced calls, unpriced calls,
# deferred calls or None (agent_counts: LLM and tool calls without an agent name, waiting for the root),
# tool calls]
P_AGENT, P_TRACE, P_RUN, P_ROOT, P_CALLS, P_IN, P_OUT, P_CACHED, P_COST, P_UNPRICED, P_DEFERRED, P_TOOLS = range(12)


def label(text: str | None, fallback: str, limit: int = MAX_LABEL) -> str:
    """A name from span data, bounded in length; empty or missing becomes ``fallback``."""
    if not text:
        return fallback
    if len(text) > limit:
        return text[: limit - 1] + "\u2026"
    return text


def bounded_key(table: dict, key: Any, limit: int = MAX_DISTINCT) -> Any:
    """``key`` if the table has room for it, else the shared overflow key."""
    if key in table or len(table) < limit:
        return key
    if isinstance(key, tuple):
        return (*key[:-1], OTHER_LABEL) if len(key) > 1 else (OTHER_LABEL,)
    return OTHER_LABEL
