"""The hot loop: decoded OTLP requests in, per-agent tallies out, every span counted once.

For each span: drop it if its (traceId, spanId) was seen before, counted as an exact duplicate (an
exporter retry: the same content) or as a conflicting one (other content: the first copy is kept; see
``fingerprints.content_check``), apply the ``--since``/``--until`` window, then classify it by
``gen_ai.operation.name``:

* ``invoke_agent``: a run's root span: outcome, latency, kill reason, failing/slowest runs, its
  ``alphatrace.alpha.signal`` / ``alphatrace.alpha.signal.invalid`` events, and the run totals it
  carries (never its ``gen_ai.usage.*``: they sum its LLM spans, which count themselves);
* ``chat``: an LLM call: tokens by model (simulated calls kept apart, never priced);
* spans of other instrumentations (``genai_spans.classify``: GenAI conventions, OpenInference,
  OpenLLMetry): their agent runs as runs, their LLM calls (``text_completion``, ``embeddings``, ...) as
  LLM calls, counted per operation too, their tool calls per agent and tool (``genai_spans.ToolSpans``);
* ``alphatrace.evaluation`` (forecast outcomes the report build added under a run span):
  counted as ``evaluation_spans``, never as a run or as one of the agent's spans;
* ``alphatrace.supervisor.run`` / ``.decide`` (the supervisor's decisions, written into the same
  file by ``supervise --apply``): counted as ``supervisor_spans``, never as any agent's;
* anything else: counted as "other" (its alpha events still count for its agent).

A span of a file written before the project namespace (``agent.run_id``, ``alpha.signal``, ...) is
read under today's names (``reading.legacy_names``).

The events (``alpha_events.AlphaEvents``): every usable ``alphatrace.alpha.signal`` event is also offered to its
agent's ``SignalStore`` (the last signal per symbol and as-of day, for scoring), unless the
aggregator was made with ``collect_signals=False``;
with ``collect_runs=True`` each root span also becomes an ``alpha.records.RunRecord`` (for the
supervisor's policy).

Each root's totals are joined with the sums of its LLM and tool spans by ``consistency.ConsistencyCheck``
(the consistency check), independently of the order spans arrive in. Each run that ran (not killed
before it started, not refused on stale data) adds its root's ``llm_calls`` and ``tool_calls`` totals
to its agent's ``run_steps`` (calls per run: runs, sum, maximum), and a run stopped mid-way counts
by where (killed) or by budget (``budget_exceeded``).

This is the build's inner loop: it is written for speed (locals, inlined fingerprinting) rather
than for brevity. Reads no environment variables.
"""

from __future__ import annotations

import datetime as dt
import math

import msgspec

from alpha.records import RunRecord
from meta_supervisor.reading.legacy_names import SUPERVISOR_SPAN_PREFIXES, is_old_span, upgrade_attributes
from meta_supervisor.reading.otlp_schema import (
    MAX_TIME_NS,
    AnyValue,
    Span,
    TraceRequest,
    as_float,
    as_int,
    as_str,
    as_time_ns,
    is_finite,
)
from meta_supervisor.reading.resource import is_tail_sampled, resource_facts
from meta_supervisor.tally.agent_counts import DEFERRED_LLM, count_llm_call, replay
from meta_supervisor.tally.aggregates import AgentTally, InputTally, push_top
from meta_supervisor.tally.alpha_events import AlphaEvents
from meta_supervisor.tally.bounds import (
    DAY_ERROR,
    DAY_KILLED,
    DAY_OK,
    EPOCH_ORDINAL,
    H_COST_NANO_USD,
    H_ERRORS,
    H_LLM_CALLS,
    H_RUNS,
    H_SPANS,
    MAX_AGENTS,
    MAX_LABEL,
    MAX_OUTCOMES,
    NS_PER_DAY,
    OTHER_LABEL,
    P_AGENT,
    P_CACHED,
    P_CALLS,
    P_COST,
    P_DEFERRED,
    P_IN,
    P_OUT,
    P_ROOT,
    P_TOOLS,
    P_UNPRICED,
    RS_LLM_RUNS,
    RS_TOOL_RUNS,
    TOP_K,
    UNKNOWN_AGENT,
    UNKNOWN_BUDGET,
    bounded_key,
    label,
)
from meta_supervisor.tally.consistency import ConsistencyCheck, is_complete
from meta_supervisor.tally.day_tables import counting
from meta_supervisor.tally.fingerprints import (
    _K_SPAN,
    _K_TRACE,
    _K_TRACE_HIGH,
    ID_MASK,
    MASK64,
    FingerprintMap,
    FingerprintSet,
    SpillPlan,
    run_fingerprint,
    span_fingerprint,
)
from meta_supervisor.tally.genai_spans import LLM, RUN, TOOL, ToolSpans, classify, llm_tokens, model_value, run_agent_name
from meta_supervisor.tally.latency_runs import latency_spill_for
from meta_supervisor.tally.open_runs import MAX_OPEN_RUNS, sweep_every
from meta_supervisor.tally.signal_store import (
    SignalStore,
)
from meta_supervisor.tally.tool_tallies import native_histogram_merge
from otel import semconv

_OP = semconv.GEN_AI_OPERATION_NAME
_CHAT = semconv.OPERATION_CHAT
_INVOKE_AGENT = semconv.OPERATION_INVOKE_AGENT
_AGENT = semconv.GEN_AI_AGENT_NAME
_RUN_ID = semconv.AGENT_RUN_ID
_EVALUATION = semconv.SPAN_EVALUATION
_OK = semconv.OUTCOME_OK
_ERROR = semconv.OUTCOME_ERROR
_SPANS_DROPPED = semconv.TELEMETRY_SPANS_DROPPED
MAX_RUN_COST_USD = 1e9  # a run's cost past this is not a cost: left out of the per-host sum
_SPANS_EXPORT_FAILED = semconv.TELEMETRY_SPANS_EXPORT_FAILED
_SERVICE_NAME = semconv.SERVICE_NAME
_SERVICE_INSTANCE_ID = semconv.SERVICE_INSTANCE_ID
_RESPONSE_MODEL = semconv.GEN_AI_RESPONSE_MODEL
_REQUEST_MODEL = semconv.GEN_AI_REQUEST_MODEL
_TOKENS_IN = semconv.GEN_AI_USAGE_INPUT_TOKENS
_TOKENS_OUT = semconv.GEN_AI_USAGE_OUTPUT_TOKENS
_TOKENS_CACHED = semconv.GEN_AI_USAGE_CACHED_INPUT_TOKENS
_OUTCOME = semconv.AGENT_RUN_OUTCOME
_KILLED = semconv.OUTCOME_KILLED
_STALE_DATA = semconv.OUTCOME_STALE_DATA
_BUDGET_EXCEEDED = semconv.OUTCOME_BUDGET_EXCEEDED
_STOPPED_BEFORE = semconv.RUN_STOPPED_BEFORE
_BUDGET_NAME = semconv.BUDGET_NAME
_STEP_TOTALS = ((semconv.RUN_LLM_CALLS, RS_LLM_RUNS), (semconv.RUN_TOOL_CALLS, RS_TOOL_RUNS))
_RUN_AS_OF = semconv.AGENT_RUN_AS_OF
STATUS_ERROR = 2
MAX_TOKENS = 10**15  # more tokens than that in one call is a broken value, not a count
MAX_LATENCY_NS = (1 << 63) - 1  # the latencies array holds signed 64-bit values: longer is a broken time
UNKNOWN_MODEL = "(unknown model)"


def _count_key(table: dict[str, int], key: str) -> None:
    """One more for ``key`` (already labelled) in a bounded table of counts."""
    if key not in table:
        key = bounded_key(table, key)
    table[key] = table.get(key, 0) + 1


def _count_attr(value) -> int:
    """A cumulative counter attribute; anything negative, too large or not an integer reads as 0."""
    number = as_int(value) if value is not None else None
    return number if number is not None and 0 <= number <= MAX_TOKENS else 0


class SpanAggregator(ConsistencyCheck, AlphaEvents, ToolSpans):
    """Accumulates spans into ``agents`` and ``inputs``; ``pending`` holds the still-open runs."""

    def __init__(
        self,
        prices=None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        expected_spans: int = 0,
        collect_signals: bool = True,
        collect_runs: bool = False,
        max_open_runs: int = MAX_OPEN_RUNS,
        spill: SpillPlan | None = None,
    ):
        self.collect_signals = collect_signals
        self.max_open_runs = max_open_runs  # consistency.bound_open_runs
        self._sweep_at = sweep_every(max_open_runs)
        self._unswept = 0
        self._dead: set[int] = set()  # consistency._of_unchecked_run
        self._last_dead: str | None = None  # the run key last found in _dead (None when it left)
        self.run_records: list | None = [] if collect_runs else None  # alpha.records.RunRecord per root span
        self._days: dict[str, int] = {}  # as-of text -> date ordinal (0: not a date)
        self.inputs = InputTally()
        self.agents: dict[str, AgentTally] = {}
        self.agent_order: list[str] = []  # index -> name, for closed-run states
        self.agent_index: dict[str, int] = {}
        self.spill = spill  # bounded tables (fingerprints.SpillPlan): spilled beyond its resident size
        self.seen = FingerprintSet(expected_spans, spill)
        self.closed_runs = FingerprintMap(expected_spans // 2, spill)
        self.latency_spill = latency_spill_for(spill)  # run latencies past a budget: sorted runs in a file
        self.pending: dict[str, list] = {}
        self.since_ns = since_ns
        self.until_ns = until_ns
        self._prices = prices
        self._price_cache: dict[str, object] = {}
        self.latency_summaries: dict[str, dict] | None = None  # set by an incremental build

    def reset(self) -> None:
        """Empty again, as it was made: what was added is let go of (a worker lost halfway through
        the part being merged: the file is then read again from its start)."""
        spans = self.seen.expected
        collect_runs = self.run_records is not None
        self.__init__(self._prices, self.since_ns, self.until_ns, spans, self.collect_signals, collect_runs, self.max_open_runs, self.spill)

    def part_options(self) -> tuple:
        """(prices, since, until, collect_signals, max_open_runs): what a fresh aggregator for a part
        of a file needs to read it as this one would (``python_part.read_part_python``,
        ``native_reader``)."""
        return self._prices, self.since_ns, self.until_ns, self.collect_signals, self.max_open_runs

    def is_empty(self) -> bool:
        """Nothing read yet (no saved state loaded either)."""
        inputs = self.inputs
        copies = inputs.duplicate_spans or inputs.conflicting_spans
        return not (len(self.seen) or len(self.closed_runs) or self.pending or self.agents or inputs.spans or copies)

    def add_tallies(self, tallies: tuple, line_offset: int) -> None:
        """Add the tallies and open runs of a part read apart (``build.merge``, the native reader): its
        spans and closed runs are in the tables already. ``tallies`` is ``(inputs, agents,
        agent_order, pending, dead)`` (``dead``: the part's ``_dead``, fingerprints; absent from an
        older caller's); the part's bad lines are numbered from ``line_offset``."""
        inputs, agents, agent_order, pending, *dead = tallies  # dead: the part's _dead, when it has one
        new = set()  # agents created here under their own name, with nothing added yet
        for name in agent_order:
            known = name in self.agents
            if self._agent(name)[0] == name and not known:
                new.add(name)
        drain = getattr(agents, "drain", None)  # a part's packed tallies, let go of as they are merged
        native_merge = native_histogram_merge()  # asked once, not once an agent (1,000 agents)
        for name, tally in drain() if drain is not None else agents.items():
            if name in new:  # taken over whole, not copied into the new tally (AgentTally.taken_over)
                new.discard(name)
                self.agents[name] = tally.taken_over(self.collect_signals)
                continue
            canonical, mine = self._agent(name)
            new.discard(canonical)
            mine.merge(tally, native_merge)
        inputs.bad_line_examples = [(file, line + line_offset, error) for file, line, error in inputs.bad_line_examples]
        self.inputs.merge(inputs)
        for key, entry in pending.items():
            mine = self.pending.get(key)
            if mine is None:
                self.pending[key] = entry
                if self._dead:  # the run's entry, held here as a fingerprint, is this one now
                    self._dead.discard(run_fingerprint(key))
                    self._last_dead = None
                continue
            for slot in (P_CALLS, P_IN, P_OUT, P_CACHED, P_COST, P_UNPRICED, P_TOOLS):
                mine[slot] += entry[slot]
            if entry[P_DEFERRED] is not None:
                mine[P_DEFERRED] = (mine[P_DEFERRED] or []) + entry[P_DEFERRED]
            if mine[P_ROOT] is None and entry[P_ROOT] is not None:
                mine[:4] = entry[:4]
            if mine[P_ROOT] is not None and mine[P_DEFERRED] is not None:  # as consistency._join_root does
                replay(self._agent(mine[P_AGENT])[1], mine[P_DEFERRED])
                mine[P_DEFERRED] = None
            if mine[P_ROOT] is not None and is_complete(mine[P_CALLS], mine[P_TOOLS], mine[P_ROOT]):
                self._close(key, mine)
        if dead:
            self._dead.update(dead[0])  # runs closed in the part (so unknown here until now)
        self.pending_added(len(pending))

    # --- entry points -------------------------------------------------------------------------

    def add_request(self, request: TraceRequest) -> None:
        for resource_spans in request.resourceSpans:
            resource = resource_spans.resource
            attributes = resource.attributes if resource is not None else ()
            simulated, process = resource_facts(attributes)
            if attributes and is_tail_sampled(attributes):
                self.inputs.tail_sampled_spans += sum(len(scope_spans.spans) for scope_spans in resource_spans.scopeSpans)
            for scope_spans in resource_spans.scopeSpans:
                self.add_spans(scope_spans.spans, simulated, process)

    def add_spans(self, spans: list[Span], simulated: bool, process: tuple) -> None:
        """Spans of one resource: ``simulated`` and ``process`` (``service.name``,
        ``service.instance.id``) are ``resource_facts`` of it."""
        inputs = self.inputs
        seen = self.seen
        slots, size, count, limit = seen.slots, seen.size, seen.count, seen.limit
        windowed = self.since_ns is not None or self.until_ns is not None
        counted = llm_calls = 0
        for span in spans:
            trace_id = span.traceId
            span_id = span.spanId
            # dedup: span_fingerprint() and FingerprintSet.add() inlined
            if len(trace_id) == 32 and len(span_id) == 16:
                try:
                    t = int(trace_id, 16)
                    fp = ((t & MASK64) * _K_TRACE ^ (t >> 64) * _K_TRACE_HIGH ^ int(span_id, 16) * _K_SPAN) & MASK64
                except ValueError:
                    fp = span_fingerprint(trace_id, span_id)
                if fp < 2:
                    fp += 2
            elif trace_id and span_id:
                fp = span_fingerprint(trace_id, span_id)
            else:
                # Malformed (OTLP requires both ids): counted, and deduplicated by its whole content
                # so that a repeated line cannot count it twice.
                inputs.spans_without_id += 1
                fp = span_fingerprint("\x00no-id", msgspec.json.encode(span).decode("utf-8", "replace"))
            try:
                start = int(span.startTimeUnixNano)
            except ValueError:
                start = 0
            if start > MAX_TIME_NS:  # beyond fixed64 nanoseconds: not a time
                start = 0
            try:
                end = int(span.endTimeUnixNano)
            except ValueError:
                end = 0
            if end > MAX_TIME_NS:
                end = 0
            # content_check() and span_entry() inlined
            status = span.status
            code, message = (-1, 0) if status is None else (status.code, len(status.message))
            check = hash((start, end, code, message, len(span.name), len(span.attributes), len(span.events))) >> 56 & 255
            entry = (fp & ID_MASK or 256) | check
            i = (entry >> 8) % size
            while True:
                value = slots[i]
                if value == 0 and seen.runs is not None:  # bounded: maybe spilled (fingerprints.SpillPlan)
                    value = seen.spilled(entry)
                    if value:
                        break
                if value == 0:
                    slots[i] = entry
                    count += 1
                    seen.count = count
                    if count > limit:
                        seen._grow()  # or spilled
                        slots, size, limit, count = seen.slots, seen.size, seen.limit, seen.count
                    break
                if value ^ entry < 256:  # the same id part
                    break
                i += 1
                if i == size:
                    i = 0
            if value:
                if value == entry:
                    inputs.duplicate_spans += 1
                else:
                    inputs.add_conflicting_span(trace_id, span_id)  # the first copy is kept
                continue
            if windowed and not self._in_window(start):
                inputs.outside_window += 1
                continue
            counted += 1
            attrs = {kv.key: kv.value for kv in span.attributes}
            if is_old_span(attrs):
                upgrade_attributes(attrs)
            operation = attrs.get(_OP)
            operation = operation.stringValue if operation is not None else None
            if operation == _CHAT:
                llm_calls += 1
                self._llm_span(span, attrs, start, simulated)
            elif operation == _INVOKE_AGENT:
                self._run_span(span, attrs, start, end, fp, process, simulated)
            elif (kind := classify(attrs, operation))[0] == LLM:  # another instrumentation's spans
                llm_calls += 1
                self._llm_span(span, attrs, start, simulated, kind[1])
            elif kind[0] == RUN:
                self._run_span(span, attrs, start, end, fp, process, simulated)
            elif kind[0] == TOOL:
                self._tool_span(span, attrs, start, end, operation, fp)
            elif span.name == _EVALUATION:
                inputs.evaluation_spans += 1  # a forecast's outcome under its run, not one of the run's spans
            elif span.name.startswith(SUPERVISOR_SPAN_PREFIXES):
                inputs.supervisor_spans += 1  # a decision about an agent, not one of its spans
            else:
                inputs.other_spans += 1
                if span.events:
                    agent = as_str(attrs.get(_AGENT))
                    if agent:
                        tally = self._agent(agent)[1]
                        self._events(tally, span, self._day_row(tally, start), fp)
        inputs.spans += counted
        if counted:
            row = inputs.host_row(process)
            row[H_SPANS] += counted
            row[H_LLM_CALLS] += llm_calls
        if len(self.pending) + len(self._dead) > self._sweep_at:
            self.bound_open_runs()

    def _in_window(self, start: int) -> bool:
        if self.since_ns is not None and start < self.since_ns:
            return False
        return self.until_ns is None or start < self.until_ns

    # --- agents ---------------------------------------------------------------------------------

    def _agent(self, name: str) -> tuple[str, AgentTally]:
        """The canonical (bounded) agent name and its tally, created on first sight."""
        tally = self.agents.get(name)
        if tally is not None:
            return name, tally
        name = label(name, UNKNOWN_AGENT)
        if name not in self.agents and len(self.agents) >= MAX_AGENTS:
            name = OTHER_LABEL
        tally = self.agents.get(name)
        if tally is None:
            tally = self.agents[name] = AgentTally(SignalStore() if self.collect_signals else None)
            self.agent_index[name] = len(self.agent_order)
            self.agent_order.append(name)
        return name, tally

    @staticmethod
    def _day_row(tally: AgentTally, start: int) -> list[int]:
        day = start // NS_PER_DAY
        day_runs = tally.day_runs
        if type(day_runs) is not dict:  # packed (loaded): counted into as a dict
            day_runs = tally.day_runs = counting(day_runs)
        row = day_runs.get(day)
        if row is None:
            row = day_runs[day] = [0, 0, 0, 0, 0]
        return row

    # --- run (root) spans -------------------------------------------------------------------------

    def _run_span(self, span: Span, attrs: dict[str, AnyValue], start: int, end: int, fp: int, process: tuple, simulated: bool) -> None:
        value = attrs.get(_AGENT)
        agent = value.stringValue if value is not None else None
        if not agent:
            agent = run_agent_name(span, attrs) or UNKNOWN_AGENT
        tally = self.agents.get(agent)
        if tally is None:
            agent, tally = self._agent(agent)
        status = span.status
        value = attrs.get(_OUTCOME)
        outcome = value.stringValue if value is not None else None
        if not outcome:
            tally.outcome_missing += 1
            outcome = _ERROR if status is not None and status.code == STATUS_ERROR else _OK
        outcomes = tally.outcomes
        if outcome in outcomes:
            outcomes[outcome] += 1
        else:
            key = bounded_key(outcomes, label(outcome, "(empty)"), MAX_OUTCOMES)
            outcomes[key] = outcomes.get(key, 0) + 1
        row = self._day_row(tally, start)
        value = attrs.get(_RUN_ID)
        run_id = (value.stringValue if value is not None else None) or ""
        skipped = False  # killed before it started: no children, not a run that ran
        as_of = as_str(attrs.get(_RUN_AS_OF))
        as_of_day = self._day_ordinal(as_of) if as_of else 0
        if as_of_day and (outcome == _OK or outcome == _ERROR or outcome == _KILLED):
            asof_runs = tally.asof_runs
            if type(asof_runs) is not dict:  # packed (loaded): counted into as a dict
                asof_runs = tally.asof_runs = counting(asof_runs)
            as_of_row = asof_runs.get(as_of_day - EPOCH_ORDINAL)
            if as_of_row is None:
                as_of_row = asof_runs[as_of_day - EPOCH_ORDINAL] = [0, 0, 0]
            as_of_row[DAY_OK if outcome == _OK else DAY_ERROR if outcome == _ERROR else DAY_KILLED] += 1
        if outcome == _OK or outcome == _ERROR:
            if outcome == _OK:
                row[DAY_OK] += 1
            else:
                row[DAY_ERROR] += 1
                error_type = as_str(attrs.get(semconv.ERROR_TYPE)) or ""
                message = status.message if status is not None else ""
                push_top(tally.failing, (start, span.traceId, label(run_id, ""), label(error_type, ""), label(message, "", 300)))
            if start > 0 and start <= end <= start + MAX_LATENCY_NS:
                latency = end - start
                tally.latencies_ns.append(latency)
                slowest = tally.slowest
                if len(slowest) < TOP_K or latency >= slowest[0][0]:
                    push_top(slowest, (latency, span.traceId, label(run_id, ""), start))
            else:
                tally.bad_durations += 1
            if start > 0:
                if start > tally.last_start_ns:
                    tally.last_start_ns = start
                if not tally.first_start_ns or start < tally.first_start_ns:
                    tally.first_start_ns = start
        elif outcome == _KILLED:
            row[DAY_KILLED] += 1
            item = (start, label(as_str(attrs.get(semconv.KILL_REASON)), "", 300))
            if tally.last_kill is None or item > tally.last_kill:
                tally.last_kill = item
            step = as_str(attrs.get(_STOPPED_BEFORE))
            if step:  # stopped mid-run: it ran, and its children are checked as any run's
                _count_key(tally.killed_mid_run, label(step, ""))
            else:
                skipped = True
        elif outcome == _BUDGET_EXCEEDED:
            _count_key(tally.budget_stops, label(as_str(attrs.get(_BUDGET_NAME)), UNKNOWN_BUDGET))
        if not skipped and outcome != _STALE_DATA:
            self._run_steps(tally.run_steps, attrs)
        if span.events:
            self._events(tally, span, row, fp)
        dropped = attrs.get(_SPANS_DROPPED)
        failed = attrs.get(_SPANS_EXPORT_FAILED)
        if dropped is not None or failed is not None:
            self.inputs.add_telemetry_losses(process, _count_attr(dropped), _count_attr(failed))
            self.inputs.add_host_losses(process, _count_attr(dropped), _count_attr(failed))
        host = self.inputs.host_row(process)
        if outcome == _OK or outcome == _ERROR:
            host[H_RUNS] += 1
            if outcome == _ERROR:
                host[H_ERRORS] += 1
        host[H_COST_NANO_USD] += cost_nano_usd(attrs.get(semconv.RUN_COST_USD))
        if self.run_records is not None:
            self._record_run(span, attrs, agent, outcome, start, simulated)
        self._join_root(agent, tally, span.traceId, attrs, run_id or span.traceId or span.spanId, run_id, skipped)

    @staticmethod
    def _run_steps(steps: list[int], attrs: dict[str, AnyValue]) -> None:
        """A run that ran: its LLM and tool calls from its root's totals, when it carries them
        (``bounds.RS_*``; a total that is not a count in range is as absent)."""
        for key, runs in _STEP_TOTALS:
            value = attrs.get(key)
            if value is None:
                continue
            number = as_int(value)
            if number is None or not 0 <= number <= MAX_TOKENS:
                continue
            steps[runs] += 1
            steps[runs + 1] += number
            if number > steps[runs + 2]:
                steps[runs + 2] = number

    def _record_run(self, span: Span, attrs: dict[str, AnyValue], agent: str, outcome: str, start: int, simulated: bool) -> None:
        end = as_time_ns(span.endTimeUnixNano)
        cost = as_float(attrs.get(semconv.RUN_COST_USD))
        self.run_records.append(
            RunRecord(
                agent=agent,
                outcome=outcome,
                as_of=self._as_of_date(as_str(attrs.get(semconv.AGENT_RUN_AS_OF))),
                duration_ms=max(0, end - start) / 1e6 if start else 0.0,
                cost_usd=cost if is_finite(cost) else 0.0,
                unpriced_llm_calls=max(as_int(attrs.get(semconv.RUN_UNPRICED_LLM_CALLS)) or 0, 0),
                llm_calls=max(as_int(attrs.get(semconv.RUN_LLM_CALLS)) or 0, 0),
                simulated=simulated,
                status=as_str(attrs.get(semconv.AGENT_STATUS)) or "",
                trace_id=span.traceId,
                span_id=span.spanId,
                start_unix_nano=start,
            )
        )

    def _as_of_date(self, text: str | None) -> dt.date | None:
        day = self._day_ordinal(text)
        return dt.date.fromordinal(day) if day else None

    # --- LLM spans ------------------------------------------------------------------------------

    def _llm_span(self, span: Span, attrs: dict[str, AnyValue], start: int, simulated: bool, operation: str = _CHAT) -> None:
        value = attrs.get(_AGENT)
        agent = value.stringValue if value is not None else None
        value = attrs.get(_RUN_ID)
        run_id = (value.stringValue if value is not None else None) or ""
        run_key = run_id or span.traceId or span.spanId
        deferred = None
        if not agent:  # another instrumentation's child: its run's agent (agent_counts)
            agent = self._run_agent(run_key)
            if agent is None:
                agent = UNKNOWN_AGENT
                deferred = True
        value = attrs.get(_RESPONSE_MODEL) or attrs.get(_REQUEST_MODEL) or model_value(attrs)
        model = value.stringValue if value is not None else None
        if not model or len(model) > MAX_LABEL:
            model = label(model, UNKNOWN_MODEL)
        try:  # the common case: three strings of digits (what genai_spans.llm_tokens does, without the calls)
            tokens_in = int(attrs[_TOKENS_IN].intValue)
            tokens_out = int(attrs[_TOKENS_OUT].intValue)
            cached = int(attrs[_TOKENS_CACHED].intValue)
        except (KeyError, AttributeError, TypeError, ValueError):
            tokens_in, tokens_out, cached = llm_tokens(attrs)  # also the deprecated and other producers' keys
        bad = tokens_in < 0 or tokens_out < 0 or cached < 0 or cached > tokens_in or max(tokens_in, tokens_out) > MAX_TOKENS
        if bad:
            tokens_in = tokens_in if 0 <= tokens_in <= MAX_TOKENS else 0
            tokens_out = tokens_out if 0 <= tokens_out <= MAX_TOKENS else 0
            cached = min(max(cached, 0), tokens_in)
        status = span.status
        error = status is not None and status.code == STATUS_ERROR
        if deferred:
            deferred = (DEFERRED_LLM, start // NS_PER_DAY, model, simulated, operation, tokens_in, tokens_out, cached, error, bad)
        else:
            tally = self.agents.get(agent)
            if tally is None:
                agent, tally = self._agent(agent)
            count_llm_call(tally, start // NS_PER_DAY, model, simulated, operation, tokens_in, tokens_out, cached, error, bad)
        # the cost of this one call, only for the per-run consistency check (the report prices sums)
        if simulated:
            cost, unpriced = 0.0, 0
        else:
            price = self._price_cache.get(model, False)
            if price is False:
                price = self._price_cache[model] = self._prices.price_for(model) if self._prices is not None else None
            if price is None:
                cost, unpriced = 0.0, 1
            else:
                cost = ((tokens_in - cached) * price.input + cached * price.cached_input + tokens_out * price.output) / 1_000_000
                unpriced = 0
        entry = self.pending.get(run_key)
        if entry is None:
            # A run closed as unchecked needs no entry (_of_unchecked_run); one checked or not closed
            # yet is not looked up further here: bound_open_runs() resolves it, settle() at the end.
            if not deferred and self._of_unchecked_run(run_key):
                return
            self.pending[run_key] = [
                agent, span.traceId, run_id, None, 1, tokens_in, tokens_out, cached, cost, unpriced, [deferred] if deferred else None, 0,
            ]  # fmt: skip
            self._unswept += 1
            return
        if deferred:
            if entry[P_DEFERRED] is None:
                entry[P_DEFERRED] = [deferred]
            else:
                entry[P_DEFERRED].append(deferred)
        entry[P_CALLS] += 1
        entry[P_IN] += tokens_in
        entry[P_OUT] += tokens_out
        entry[P_CACHED] += cached
        entry[P_COST] += cost
        entry[P_UNPRICED] += unpriced
        root = entry[P_ROOT]
        if root is not None and is_complete(entry[P_CALLS], entry[P_TOOLS], root):
            self._close(run_key, entry)


def cost_nano_usd(value: AnyValue | None) -> int:
    """A run's own ``alphatrace.run.cost_usd`` in whole nano-dollars (an integer sum is the same in
    any order and merges exactly); not a finite amount in [0, MAX_RUN_COST_USD]: 0. The native core
    rounds the same way (``part.rs``)."""
    cost = as_float(value)
    if cost is None or not 0.0 <= cost <= MAX_RUN_COST_USD:  # NaN fails both comparisons
        return 0
    return math.floor(cost * 1e9 + 0.5)
