"""The consistency check: each run's root totals against the sums of its LLM and tool spans, order-independent.

Runs are joined by ``alphatrace.run.id`` (the trace id when a span has none), whatever order and file the
spans arrive in. A run stays open (``pending``) until its LLM span count reaches the root's
``alphatrace.run.llm_calls`` and its tool span count the root's ``alphatrace.run.tool_calls`` (a root
without that total, written before tools were counted, is not checked for tools: ``TOOLS_UNANNOUNCED``);
it is then closed as consistent or mismatched and remembered as a
fingerprint in ``closed_runs``, so that

* a second root span with the same run id is counted (``duplicate_run_roots``), not a second run;
* an LLM or tool span arriving after its run was closed (more spans than the root says) waits in
  ``pending`` and ``settle()`` turns the run into a mismatch (a tool span only when the root
  announced its tool calls);
* what is still open at report time is reported: roots missing LLM spans as mismatches, LLM spans
  without a root as orphans (``report``).

A run killed before it started (``killed`` without ``alphatrace.run.stopped_before``) has no children;
a run stopped mid-way (killed or over a budget) is checked like any other.

A mismatch example records the run's final reason, so the report is the same whatever the order.
Costs are compared with a tolerance (``COST_ABS_TOLERANCE`` + ``COST_REL_TOLERANCE``): the root sums
floats in its own order.

Open runs are bounded (``bound_open_runs``, after each batch of spans once more than
``open_runs.sweep_every`` runs are open): LLM spans that arrived after their run was closed are resolved at
once, as ``settle()`` would at the end, and if more than ``max_open_runs`` runs are still open the
oldest (in the order the file opened them) are *evicted* down to 7/8 of it (``open_runs``),
counted in ``inputs``:

* a root waiting for LLM spans it announced: the run is closed as *unchecked* (its LLM spans, if they
  come later, are attributed to the agent as always and change nothing else);
* LLM spans waiting for their root: the run is remembered as evicted (``RUN_EVICTED``); when its root
  comes later the run is *unchecked*, not a duplicate, and LLM spans of it coming later are attributed
  as always.

An LLM or tool span naming its agent whose run is already closed as *unchecked* (a root without
totals read before its children) opens no entry: nothing would be checked, and the sweep would
only delete it. Its run is kept as a fingerprint in ``_dead`` until the next sweep, counted with
``pending`` for the sweep's timing as the entry was, so that sweeps, and so evictions, come exactly
when they did (``_of_unchecked_run``); a call naming no agent of such a run opens the entry as
before (``_run_agent``), and a part read apart hands its ``_dead`` over with its open runs.

So *consistent* and *mismatched* mean "checked", *unchecked* "not checked" (the root announced no
totals, or the run was evicted before it could be), whatever the order; a file never needs more
than ``max_open_runs`` runs open at once unless its spans of one run are that far apart.

``ConsistencyCheck`` is a mixin of ``SpanAggregator`` (which has ``pending``, ``closed_runs``, ``inputs``,
``agent_index``, ``agent_order``, ``agents`` and ``_agent``).

Reads no environment variables (``open_runs.max_open_runs`` reads the bound's setting).
"""

from __future__ import annotations

import math
from itertools import islice

from meta_supervisor.reading.otlp_schema import as_float, as_int
from meta_supervisor.tally.agent_counts import replay
from meta_supervisor.tally.aggregates import note_mismatch
from meta_supervisor.tally.bounds import (
    CONSISTENT,
    MISMATCHED,
    P_AGENT,
    P_CACHED,
    P_CALLS,
    P_COST,
    P_DEFERRED,
    P_IN,
    P_OUT,
    P_ROOT,
    P_RUN,
    P_TOOLS,
    P_TRACE,
    P_UNPRICED,
    UNCHECKED,
    UNKNOWN_AGENT,
)
from meta_supervisor.tally.fingerprints import _K_SPAN, _K_TRACE, EMPTY, MASK64, run_fingerprint
from meta_supervisor.tally.open_runs import evict_to, sweep_every
from otel import semconv

# closed-run states: the code in the low two bits, TOOLS_UNANNOUNCED (the root carried no tool
# total: a tool span after the run closed is no mismatch) in the third, the agent's index (31 = not
# recorded) in the upper five. RUN_EVICTED (0) is only ever stored with index 31, so that no state is
# 0 (0 is "not there").
RUN_EVICTED, RUN_CONSISTENT, RUN_MISMATCHED, RUN_UNCHECKED = 0, 1, 2, 3
TOOLS_UNANNOUNCED = 4
INDEX_SHIFT = 3
AGENT_INDEX_UNKNOWN = 31
EVICTED_STATE = RUN_EVICTED | AGENT_INDEX_UNKNOWN << INDEX_SHIFT
EXTRA_LLM_SPANS = f"more LLM spans than {semconv.RUN_LLM_CALLS}"
EXTRA_TOOL_SPANS = f"more tool spans than {semconv.RUN_TOOL_CALLS}"
COST_ABS_TOLERANCE = 1e-9
COST_REL_TOLERANCE = 1e-6


def fewer_llm_spans(spans: int, calls: int) -> str:
    """The mismatch of a run whose root counts more LLM calls than it has LLM spans (the native
    core writes the same text)."""
    return f"fewer LLM spans than {semconv.RUN_LLM_CALLS} ({spans} of {calls})"


class ConsistencyCheck:
    # set by SpanAggregator.__init__: max_open_runs, _sweep_at, _unswept (LLM-only runs opened since
    # the last sweep, an upper bound), _dead (fingerprints of runs closed as unchecked whose children
    # came since the last sweep: the entries they would have opened, _of_unchecked_run)

    def _join_root(self, agent, tally, trace_id, attrs, run_key, run_id, skipped) -> None:
        """The root of a run (``skipped``: killed before it started, so its absent totals are not
        even "unchecked")."""
        pending = self.pending
        entry = pending.get(run_key)
        if entry is not None:
            if entry[P_DEFERRED] is not None:  # calls without an agent name that waited for this root
                replay(tally, entry[P_DEFERRED])
                entry[P_DEFERRED] = None
            if entry[P_ROOT] is not None:
                self.inputs.duplicate_run_roots += 1  # a second root span with the same run id
                return
            # The common case, decided here without building the totals: the run's LLM spans came
            # first (the SDK exports a root after its children) and the root's totals, as alphatrace
            # writes them, match them. Anything else (a total unreadable this way, a mismatch, a
            # root that waits for more LLM spans) takes the general path below, which agrees.
            try:
                consistent = int(attrs[_RUN_LLM_CALLS].intValue) == entry[P_CALLS]
                if consistent:
                    for key, slot in _INT_TOTAL_SLOTS:
                        value = attrs.get(key)
                        if value is not None and int(value.intValue) != entry[slot]:
                            consistent = False
                            break
                    else:
                        value = attrs.get(_RUN_COST)
                        if value is not None:
                            cost = value.doubleValue
                            spans_cost = entry[P_COST]
                            tolerance = COST_ABS_TOLERANCE + COST_REL_TOLERANCE * abs(spans_cost)
                            consistent = type(cost) is float and abs(cost - spans_cost) <= tolerance
            except (KeyError, AttributeError, TypeError, ValueError):
                consistent = False
            if consistent:
                fp = 0
                if len(run_key) == 36 and run_key[8] == "-":  # run_fingerprint() of a uuid, inlined
                    try:
                        x = int(run_key.replace("-", ""), 16)
                        fp = ((x & MASK64) * _K_SPAN ^ (x >> 64) * _K_TRACE) & MASK64
                    except ValueError:
                        pass
                if fp < 2:
                    fp = run_fingerprint(run_key)
                # FingerprintMap.insert_new() inlined
                closed = self.closed_runs
                keys, size = closed.keys, closed.size
                i = fp % size
                while True:
                    value = keys[i]
                    if value == EMPTY:
                        break
                    if value == fp:  # the run was closed before: this root is a second one
                        entry[P_AGENT], entry[P_TRACE], entry[P_RUN] = agent, trace_id, run_id  # as below
                        self._root_of_closed_run(fp, agent, tally, run_key, skipped)
                        return
                    i += 1
                    if i == size:
                        i = 0
                if closed.runs is not None and closed.runs.get(fp) >= 0:  # closed before, spilled since
                    entry[P_AGENT], entry[P_TRACE], entry[P_RUN] = agent, trace_id, run_id
                    self._root_of_closed_run(fp, agent, tally, run_key, skipped)
                    return
                keys[i] = fp
                index = self.agent_index.get(agent, AGENT_INDEX_UNKNOWN)
                code = RUN_CONSISTENT if _RUN_TOOL_CALLS in attrs else RUN_CONSISTENT | TOOLS_UNANNOUNCED
                closed.states[i] = code | (index if index < AGENT_INDEX_UNKNOWN else AGENT_INDEX_UNKNOWN) << INDEX_SHIFT
                closed.count += 1
                if closed.count > closed.limit:
                    closed._grow()
                del pending[run_key]
                tally.consistency[CONSISTENT] += 1
                return
        fp = run_fingerprint(run_key)
        closed = self.closed_runs
        root = _root_totals(attrs)
        if root is None:  # no totals on the root: nothing to check
            if not closed.insert_new(fp, self._closed_state(agent, RUN_UNCHECKED)):
                if not run_id and closed.get(fp, 0) != EVICTED_STATE:
                    # another agent span of the same trace (no run id: another instrumentation's
                    # nested or multi-agent trace): a run of its own, never a duplicate
                    if entry is not None:
                        del pending[run_key]
                    elif fp in self._dead:
                        self._dead.discard(fp)
                        self._last_dead = None
                    if not skipped:
                        tally.consistency[UNCHECKED] += 1
                    return
                self._root_of_closed_run(fp, agent, tally, run_key, skipped)
                return
            if entry is not None:
                del pending[run_key]
            if not skipped:  # a skipped run without totals is not even "unchecked"
                tally.consistency[UNCHECKED] += 1
            return
        if not (is_complete(entry[P_CALLS], entry[P_TOOLS], root) if entry is not None else is_complete(0, 0, root)):
            if closed.get(fp, 0):
                self._root_of_closed_run(fp, agent, tally, run_key, skipped)
                return
            if entry is None:
                pending[run_key] = [agent, trace_id, run_id, root, 0, 0, 0, 0, 0.0, 0, None, 0]
            else:
                entry[P_AGENT], entry[P_TRACE], entry[P_RUN], entry[P_ROOT] = agent, trace_id, run_id, root
            return
        # every LLM span the root counts has arrived: close the run now
        if entry is None:
            entry = [agent, trace_id, run_id, root, 0, 0, 0, 0, 0.0, 0, None, 0]
        else:
            entry[P_AGENT], entry[P_TRACE], entry[P_RUN], entry[P_ROOT] = agent, trace_id, run_id, root
        detail = mismatch_detail(entry)
        if not closed.insert_new(fp, self._closed_state(agent, _checked_code(detail, root))):
            entry[P_ROOT] = None
            self._root_of_closed_run(fp, agent, tally, run_key, skipped)
            return
        if run_key in pending:
            del pending[run_key]
        if detail is None:
            tally.consistency[CONSISTENT] += 1
        else:
            tally.consistency[MISMATCHED] += 1
            note_mismatch(tally.mismatches, trace_id, run_id, detail)

    def _run_agent(self, run_key: str) -> str | None:
        """The agent of a run, for a call that does not name its agent: its root's when the root was
        read (``(unknown agent)`` when the closed run does not record it: past the 63rd agent, or
        evicted), None when the root has not been read yet (the call is then deferred)."""
        entry = self.pending.get(run_key)
        if entry is not None:
            return entry[P_AGENT] if entry[P_ROOT] is not None else None
        fp = run_fingerprint(run_key)
        if fp in self._dead:  # an open run of an unchecked run, held as its fingerprint: now it waits for calls
            self._dead.discard(fp)  # the caller opens its entry, as the deferred call needs one
            self._last_dead = None
            return None
        state = self.closed_runs.get(fp, 0)
        if not state:
            return None
        index = state >> INDEX_SHIFT
        return self.agent_order[index] if index < AGENT_INDEX_UNKNOWN and index < len(self.agent_order) else UNKNOWN_AGENT

    def _join_tool(self, run_key: str, trace_id: str, run_id: str, agent: str, record: tuple | None) -> None:
        """A tool span joined to its run, counted in its open entry (an LLM call's is made by
        ``_llm_span`` itself); ``record``: the call, when it names no agent, kept until the root comes."""
        entry = self.pending.get(run_key)
        if entry is None:
            if record is None and self._of_unchecked_run(run_key):
                return
            self.pending[run_key] = [agent, trace_id, run_id, None, 0, 0, 0, 0, 0.0, 0, None if record is None else [record], 1]
            self._unswept += 1
            return
        if record is not None:
            if entry[P_DEFERRED] is None:
                entry[P_DEFERRED] = [record]
            else:
                entry[P_DEFERRED].append(record)
        entry[P_TOOLS] += 1
        root = entry[P_ROOT]
        if root is not None and is_complete(entry[P_CALLS], entry[P_TOOLS], root):
            self._close(run_key, entry)

    def _root_of_closed_run(self, fp: int, agent: str, tally, run_key: str, skipped: bool) -> None:
        """A root whose run is closed already: a second root (counted, nothing else), or the root of
        a run whose LLM spans were evicted before it came (the run is then unchecked)."""
        closed = self.closed_runs
        if closed.get(fp, 0) != EVICTED_STATE:
            self.inputs.duplicate_run_roots += 1
            return
        closed.set(fp, self._closed_state(agent, RUN_UNCHECKED))
        self.pending.pop(run_key, None)  # LLM spans that came after the eviction: attributed already
        if not skipped:
            tally.consistency[UNCHECKED] += 1

    def _closed_state(self, agent: str, code: int) -> int:
        return code | (min(self.agent_index.get(agent, AGENT_INDEX_UNKNOWN), AGENT_INDEX_UNKNOWN) << INDEX_SHIFT)

    def _close(self, run_key: str, entry: list, fp: int | None = None) -> None:
        """Close a run whose root arrived earlier, now that its last LLM or tool span is here."""
        del self.pending[run_key]
        if fp is None:
            fp = run_fingerprint(run_key)
        detail = mismatch_detail(entry)
        tally = self._agent(entry[P_AGENT])[1]
        if detail is None:
            tally.consistency[CONSISTENT] += 1
        else:
            tally.consistency[MISMATCHED] += 1
            note_mismatch(tally.mismatches, entry[P_TRACE], entry[P_RUN], detail)
        self.closed_runs.set(fp, self._closed_state(entry[P_AGENT], _checked_code(detail, entry[P_ROOT])))

    def _of_unchecked_run(self, run_key: str) -> bool:
        """Whether a child span that names its agent, with no open entry, belongs to a run already
        closed as unchecked. Such an entry would only wait for a sweep that deletes it (``_settle``
        changes nothing for an unchecked run), so it is not opened: the run's fingerprint is kept in
        ``_dead`` until the next sweep instead, counted with ``pending`` as the entry would be for the
        sweep's timing (``len(pending) + len(_dead) > _sweep_at``), so that sweeps, and so evictions,
        come exactly when they did."""
        if run_key == self._last_dead:  # the run of the span before (a run's children come together)
            return True
        fp = run_fingerprint(run_key)
        if fp in self._dead or self.closed_runs.get(fp, 0) & 3 == RUN_UNCHECKED:
            self._dead.add(fp)
            self._last_dead = run_key
            return True
        return False

    def settle(self) -> None:
        """Resolve pending runs without a root whose root was already closed (late extra spans)."""
        self._dead.clear()
        self._last_dead = None
        for run_key, entry in list(self.pending.items()):
            if entry[P_ROOT] is None:
                self._settle(run_key, entry)

    def pending_added(self, count: int) -> None:
        """``count`` open runs were added to ``pending`` from elsewhere (a part read apart, the state)."""
        self._unswept += count
        if len(self.pending) + len(self._dead) > self._sweep_at:
            self.bound_open_runs()

    def bound_open_runs(self) -> None:
        """Resolve the LLM-only runs opened since the last call whose run is closed (what ``settle``
        does at the end), then evict the oldest open runs while more than ``max_open_runs`` are open.

        Only runs opened since the last call need a look: an LLM-only run is resolvable only if its
        run was closed when it was opened (a root arriving later finds it in ``pending``)."""
        pending = self.pending
        self._dead.clear()  # what the sweep would delete (_settle of an unchecked run)
        self._last_dead = None
        if self._unswept:
            keys = []
            left = self._unswept
            for run_key in reversed(pending):  # the newest first: the runs opened since the last call
                if pending[run_key][P_ROOT] is None:
                    keys.append(run_key)
                    left -= 1
                    if not left:
                        break
            for run_key in keys:
                self._settle(run_key, pending[run_key])
            self._unswept = 0
        if len(pending) > self.max_open_runs:
            for run_key in list(islice(pending, len(pending) - evict_to(self.max_open_runs))):
                self._evict(run_key, pending.pop(run_key))
        self._sweep_at = len(pending) + sweep_every(self.max_open_runs)

    def _evict(self, run_key: str, entry: list) -> None:
        """Stop waiting for the rest of an open run (see the module's docstring)."""
        inputs = self.inputs
        fp = run_fingerprint(run_key)
        if entry[P_ROOT] is not None:  # a root waiting for LLM spans: its run is closed as unchecked
            inputs.evicted_roots += 1
            self.closed_runs.set(fp, self._closed_state(entry[P_AGENT], RUN_UNCHECKED))
            self._agent(entry[P_AGENT])[1].consistency[UNCHECKED] += 1
        else:  # LLM spans waiting for their root
            inputs.evicted_llm_runs += 1
            inputs.evicted_llm_spans += entry[P_CALLS]
            self.closed_runs.set(fp, EVICTED_STATE)
            if entry[P_DEFERRED] is not None:  # their root never came in time: (unknown agent)'s
                replay(self._agent(UNKNOWN_AGENT)[1], entry[P_DEFERRED])

    def _settle(self, run_key: str, entry: list) -> None:
        """An open run of child spans without a root: if its run is closed, resolve it (late extra
        LLM spans, or tool spans of a root that announced its tool calls)."""
        fp = run_fingerprint(run_key)
        state = self.closed_runs.get(fp, 0)
        if state:
            del self.pending[run_key]
            code = state & 3
            index = state >> INDEX_SHIFT
            if entry[P_DEFERRED] is not None:  # calls without an agent name: the closed run's agent
                known = index < AGENT_INDEX_UNKNOWN and index < len(self.agent_order)
                replay(self.agents[self.agent_order[index]] if known else self._agent(UNKNOWN_AGENT)[1], entry[P_DEFERRED])
            extra_tools = 0 if state & TOOLS_UNANNOUNCED else entry[P_TOOLS]
            if code == RUN_UNCHECKED or code == RUN_EVICTED or not (entry[P_CALLS] or extra_tools):
                return
            if index == AGENT_INDEX_UNKNOWN or index >= len(self.agent_order):
                owner = self._agent(entry[P_AGENT])[1]
            else:
                owner = self.agents[self.agent_order[index]]
            if code == RUN_CONSISTENT:
                owner.consistency[CONSISTENT] -= 1
                owner.consistency[MISMATCHED] += 1
                self.closed_runs.set(fp, (state & ~3) | RUN_MISMATCHED)
            note_mismatch(owner.mismatches, entry[P_TRACE], entry[P_RUN], EXTRA_LLM_SPANS if entry[P_CALLS] else EXTRA_TOOL_SPANS)


def _root_totals(attrs: dict) -> tuple | None:
    """(llm_calls, input, output, cached input tokens, cost, unpriced calls, tool calls) from a root span, None
    without ``alphatrace.run.llm_calls``; a total that is absent (or unreadable) is None and not compared."""
    value = attrs.get(_RUN_LLM_CALLS)
    if value is None:
        return None
    try:
        calls = int(value.intValue)  # the common case: a string of digits
    except (TypeError, ValueError):
        calls = as_int(value)
        if calls is None:
            return None
    totals = [calls]
    for key in _RUN_INT_TOTALS:
        value = attrs.get(key)
        if value is None:
            totals.append(None)
        else:
            try:
                totals.append(int(value.intValue))
            except (TypeError, ValueError):
                totals.append(as_int(value))
    value = attrs.get(_RUN_COST)
    if value is None:
        cost = None
    else:
        cost = value.doubleValue
        if type(cost) is not float:
            cost = as_float(value)
    return (calls, totals[1], totals[2], totals[3], cost, totals[4], totals[5])


_RUN_LLM_CALLS = semconv.RUN_LLM_CALLS
_RUN_COST = semconv.RUN_COST_USD
_RUN_INPUT = semconv.RUN_INPUT_TOKENS
_RUN_OUTPUT = semconv.RUN_OUTPUT_TOKENS
_RUN_CACHED = semconv.RUN_CACHED_INPUT_TOKENS
_RUN_UNPRICED = semconv.RUN_UNPRICED_LLM_CALLS
_RUN_TOOL_CALLS = semconv.RUN_TOOL_CALLS
_RUN_INT_TOTALS = (_RUN_INPUT, _RUN_OUTPUT, _RUN_CACHED, _RUN_UNPRICED, _RUN_TOOL_CALLS)
_INT_TOTAL_SLOTS = (
    (_RUN_INPUT, P_IN),
    (_RUN_OUTPUT, P_OUT),
    (_RUN_CACHED, P_CACHED),
    (_RUN_UNPRICED, P_UNPRICED),
    (_RUN_TOOL_CALLS, P_TOOLS),
)


def is_complete(calls: int, tools: int, root: tuple) -> bool:
    """Whether ``calls`` LLM and ``tools`` tool spans are every one the root announces (the run is
    closed then)."""
    return calls >= root[0] and (root[6] is None or tools >= root[6])


def _checked_code(detail: str | None, root: tuple) -> int:
    """The closed state's code of a checked run (``mismatch_detail``'s ``detail``)."""
    code = RUN_CONSISTENT if detail is None else RUN_MISMATCHED
    return code if root[6] is not None else code | TOOLS_UNANNOUNCED


def mismatch_detail(entry: list) -> str | None:
    """None when the root's totals equal the sums over its LLM and tool spans, else what differs."""
    calls, tokens_in, tokens_out, cached, cost, unpriced, tools = entry[P_ROOT]
    if (
        calls == entry[P_CALLS]
        and (tools is None or tools == entry[P_TOOLS])
        and (tokens_in is None or tokens_in == entry[P_IN])
        and (tokens_out is None or tokens_out == entry[P_OUT])
        and (cached is None or cached == entry[P_CACHED])
        and (unpriced is None or unpriced == entry[P_UNPRICED])
        and (cost is None or abs(cost - entry[P_COST]) <= COST_ABS_TOLERANCE + COST_REL_TOLERANCE * abs(entry[P_COST]))
    ):
        return None  # the common case, decided without building any text
    if entry[P_CALLS] > calls:
        return EXTRA_LLM_SPANS
    if tools is not None and entry[P_TOOLS] > tools:
        return EXTRA_TOOL_SPANS
    differences = []
    if calls != entry[P_CALLS]:
        differences.append(fewer_llm_spans(entry[P_CALLS], calls))
    if tools is not None and tools != entry[P_TOOLS]:
        differences.append(fewer_tool_spans(entry[P_TOOLS], tools))
    if tokens_in is not None and tokens_in != entry[P_IN]:
        differences.append(f"input_tokens root={tokens_in} spans={entry[P_IN]}")
    if tokens_out is not None and tokens_out != entry[P_OUT]:
        differences.append(f"output_tokens root={tokens_out} spans={entry[P_OUT]}")
    if cached is not None and cached != entry[P_CACHED]:
        differences.append(f"cached_input_tokens root={cached} spans={entry[P_CACHED]}")
    if cost is not None:
        spans_cost = entry[P_COST]
        if not math.isfinite(cost) or abs(cost - spans_cost) > COST_ABS_TOLERANCE + COST_REL_TOLERANCE * abs(spans_cost):
            differences.append(f"cost_usd root={cost:.9g} spans={spans_cost:.9g}")
    if unpriced is not None and unpriced != entry[P_UNPRICED]:
        differences.append(f"unpriced_llm_calls root={unpriced} spans={entry[P_UNPRICED]}")
    return "; ".join(differences) or None


def fewer_tool_spans(spans: int, announced: int) -> str:
    return f"fewer tool spans than {semconv.RUN_TOOL_CALLS} ({spans} of {announced})"
