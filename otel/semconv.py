"""Every span name, attribute key and event name alphatrace writes or reads, written once.

The GenAI keys follow the OpenTelemetry GenAI semantic conventions; every key, event and span name
of alphatrace's own lies under ``alphatrace.`` (``PROJECT_PREFIX``) and is documented in
``docs/telemetry-contract.md``. Trace files written before the namespace used other names
(``agent.run_id``, ``alpha.signal``, ...): ``LEGACY_NAMES`` at the end maps each to its name now, for
every reader (the report's Python reader, ``native/src/legacy.rs``, the ClickHouse query).
Reads no environment variables.
"""

PROJECT_PREFIX = "alphatrace."

# --- resource -----------------------------------------------------------------------------
SERVICE_NAME_DEFAULT = "alphatrace"
RESOURCE_LLM_SIMULATED = "alphatrace.llm.simulated"
RESOURCE_SHARD = "alphatrace.shard"  # the fleet shard a scheduler process runs (agents.*.shard)
RESOURCE_SAMPLING = "alphatrace.sampling"  # set by a tail-sampling collector (collector-config.yaml): how the file was sampled
HOST_NAME = "host.name"  # standard resource key: the host a sharded scheduler runs on
SERVICE_NAME = "service.name"  # the SDK's standard resource keys, read by the report
SERVICE_INSTANCE_ID = "service.instance.id"  # one per process (the SDK makes a UUID)

# --- root span: one per agent run ------------------------------------------------------------
OPERATION_INVOKE_AGENT = "invoke_agent"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
AGENT_RUN_ID = "alphatrace.run.id"
AGENT_RUN_OUTCOME = "alphatrace.run.outcome"
AGENT_RUN_AS_OF = "alphatrace.run.as_of"
AGENT_STATUS = "alphatrace.agent.status"  # shadow | live
OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"
OUTCOME_KILLED = "killed"
OUTCOME_STALE_DATA = "stale_data"  # a live run refused: its market data is older than the limit
OUTCOME_BUDGET_EXCEEDED = "budget_exceeded"  # a call that would break a budget was not made
OUTCOMES = (OUTCOME_OK, OUTCOME_ERROR, OUTCOME_KILLED, OUTCOME_STALE_DATA, OUTCOME_BUDGET_EXCEEDED)
KILL_REASON = "alphatrace.kill.reason"
# A run stopped inside, before one of its steps (otel/run_context.py checkpoint): which step
# (STEPS), and why (the kill reason, or the budget that would break). A run killed before it
# started has neither.
RUN_STOPPED_BEFORE = "alphatrace.run.stopped_before"
RUN_STOP_REASON = "alphatrace.run.stop_reason"
STEP_LLM_CALL = "llm_call"
STEP_TOOL_STEP = "tool_step"
STEPS = (STEP_LLM_CALL, STEP_TOOL_STEP)
# on a run stopped by a budget (outcome budget_exceeded): which budget (BUDGETS), its limit and what
# had been spent when the next call was refused (USD, or tokens for run_tokens)
BUDGET_NAME = "alphatrace.budget.name"
BUDGET_LIMIT = "alphatrace.budget.limit"
BUDGET_SPENT = "alphatrace.budget.spent"
BUDGETS = ("run_cost", "day_cost", "run_tokens", "fleet_day_cost")
# on a live run whose data is stale (services/data_freshness.py): refused (outcome stale_data) or run
# on the last bar (outcome ok, alphatrace.run.as_of the last bar's date)
STALE_REASON = "alphatrace.stale.reason"
DATA_STALE = "alphatrace.data.stale"  # bool
DATA_LAST_BAR = "alphatrace.data.last_bar"  # ISO date of the universe's latest bar; absent when none
DATA_AGE_DAYS = "alphatrace.data.age_days"  # calendar days from that bar to the clock's date
DATA_MAX_AGE_DAYS = "alphatrace.data.max_age_days"
DATA_ON_STALE = "alphatrace.data.on_stale"  # refuse | last_bar
ERROR_TYPE = "error.type"
# on a failed run (from an HTTP error of the LLM) and on the LLM span (set by services/llm_http.py):
# the status and the error body's length; the body itself only when content capture is opted in
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
LLM_ERROR_BODY_LENGTH = "alphatrace.llm.error.body_length"
# the SDK's exception event, written by the run wrapper with its texts redacted (otel/redaction.py)
EVENT_EXCEPTION = "exception"
EXCEPTION_TYPE = "exception.type"
EXCEPTION_MESSAGE = "exception.message"
EXCEPTION_STACKTRACE = "exception.stacktrace"
EXCEPTION_ESCAPED = "exception.escaped"

# What the GenAI conventions recommend on an invoke_agent span, for a run that called a model: the
# provider and model of its first call (every alphatrace LLM agent calls one model through the
# OpenAI wire, real or simulated: "openai") and its usage summed over its calls, in the GenAI keys
# below (GEN_AI_PROVIDER_NAME, GEN_AI_REQUEST_MODEL, GEN_AI_USAGE_*). Unset on a run that called none.
# The LLM child spans carry the same usage per call: the report reads usage from LLM spans only.
PROVIDER_OPENAI = "openai"

# run totals, set on the root span when the run ends
RUN_LLM_CALLS = "alphatrace.run.llm_calls"
RUN_INPUT_TOKENS = "alphatrace.run.input_tokens"
RUN_OUTPUT_TOKENS = "alphatrace.run.output_tokens"
RUN_CACHED_INPUT_TOKENS = "alphatrace.run.cached_input_tokens"
RUN_COST_USD = "alphatrace.run.cost_usd"
RUN_UNPRICED_LLM_CALLS = "alphatrace.run.unpriced_llm_calls"
RUN_ALPHA_SIGNALS = "alphatrace.run.alpha_signals"
RUN_TOOL_CALLS = "alphatrace.run.tool_calls"  # tool steps executed (each an execute_tool child span)
# --- budgets (services/budgets.py): on the root span of a run a budget stopped (outcome
# budget_exceeded, alphatrace.run.stop_reason saying why) ------------------------------------
BUDGET_NAME = "alphatrace.budget.name"  # BUDGET_NAMES: the budget the next call would have broken
BUDGET_LIMIT = "alphatrace.budget.limit"  # double, in BUDGET_UNIT
BUDGET_SPENT = "alphatrace.budget.spent"  # double: spent (and reserved by runs in flight) before the call
BUDGET_UNIT = "alphatrace.budget.unit"  # BUDGET_UNIT_USD | BUDGET_UNIT_TOKENS
BUDGET_NEXT_CALL = "alphatrace.budget.next_call"  # double: the next call's estimate the check added to spent
BUDGET_ESTIMATED = "alphatrace.budget.estimated"  # bool: spent includes simulated calls priced as their stand-in model
# on any run whose budget ledger could not be read or written (the store down, a corrupt file): why,
# and whether the check then let the call through (budget_on_store_down = open) or stopped it
BUDGET_LEDGER_ERROR = "alphatrace.budget.ledger.error"
BUDGET_UNCHECKED = "alphatrace.budget.unchecked"  # bool true: a day budget was not checked (store down, open)
BUDGET_RUN_COST = "run_cost"
BUDGET_DAY_COST = "day_cost"
BUDGET_RUN_TOKENS = "run_tokens"
BUDGET_FLEET_DAY_COST = "fleet_day_cost"
BUDGET_NAMES = (BUDGET_RUN_COST, BUDGET_DAY_COST, BUDGET_RUN_TOKENS, BUDGET_FLEET_DAY_COST)
BUDGET_UNIT_USD = "USD"
BUDGET_UNIT_TOKENS = "tokens"
# process-wide telemetry losses so far (cumulative per service.instance.id), on every root span
TELEMETRY_SPANS_DROPPED = "alphatrace.telemetry.spans_dropped"
TELEMETRY_SPANS_EXPORT_FAILED = "alphatrace.telemetry.spans_export_failed"


def root_span_name(agent_name: str) -> str:
    return f"{OPERATION_INVOKE_AGENT} {agent_name}"


# --- LLM child spans (written by opentelemetry-instrumentation-genai-openai) ----------------
OPERATION_CHAT = "chat"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHED_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
# tokens written to the provider's prompt cache (part of input_tokens), and reasoning tokens (part of
# output_tokens, as OpenAI counts completion_tokens): the current GenAI name first, then older ones
GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS = "gen_ai.usage.cache_write.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"  # older name
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_FLAT = "gen_ai.usage.cache_creation_input_tokens"  # older still (OpenLLMetry)
CACHE_WRITE_TOKEN_KEYS = (
    GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_FLAT,
)
GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
SERVER_ADDRESS = "server.address"

# --- tool spans: "execute_tool {gen_ai.tool.name}", one per tool step of a run --------------
# (services/tool_loop.py, through opentelemetry-util-genai's tool helper; also read from other
# applications' spans). Kind INTERNAL, children of the run span; a failed step has status ERROR
# and error.type. Arguments and results only with content capture opted in (the helper's rule).
OPERATION_EXECUTE_TOOL = "execute_tool"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
TOOL_TYPE_FUNCTION = "function"
# the tool name recorded when the model asked for a name that is not a function name at all
# (OpenAI's ^[A-Za-z0-9_-]{1,64}$): the conventions' placeholder for an unknown value
TOOL_NAME_OTHER = "_OTHER"


def tool_span_name(tool_name: str) -> str:
    return f"{OPERATION_EXECUTE_TOOL} {tool_name}"


# --- spans from other instrumentations, read by the report -----------------------------------
# (docs/telemetry-contract.md, "Spans from other instrumentations"). alphatrace writes none of these.
# GenAI semantic conventions: the other LLM operations, the deprecated token keys.
OPERATION_TEXT_COMPLETION = "text_completion"
OPERATION_GENERATE_CONTENT = "generate_content"
OPERATION_EMBEDDINGS = "embeddings"  # input tokens only
GEN_AI_USAGE_PROMPT_TOKENS = "gen_ai.usage.prompt_tokens"  # deprecated: gen_ai.usage.input_tokens
GEN_AI_USAGE_COMPLETION_TOKENS = "gen_ai.usage.completion_tokens"  # deprecated: gen_ai.usage.output_tokens
GEN_AI_SYSTEM = "gen_ai.system"  # deprecated: gen_ai.provider.name
# OpenLLMetry (Traceloop): a span kind for its decorators' spans, a request type on LLM spans.
TRACELOOP_SPAN_KIND = "traceloop.span.kind"  # workflow | task | agent | tool
TRACELOOP_ENTITY_NAME = "traceloop.entity.name"  # the decorated function's (agent's, tool's) name
TRACELOOP_WORKFLOW_NAME = "traceloop.workflow.name"
TRACELOOP_KIND_AGENT = "agent"
TRACELOOP_KIND_TOOL = "tool"
LLM_REQUEST_TYPE = "llm.request.type"  # chat | completion | embedding | rerank
LLM_REQUEST_CHAT = "chat"
LLM_REQUEST_COMPLETION = "completion"
LLM_REQUEST_EMBEDDING = "embedding"
LLM_USAGE_TOTAL_TOKENS = "llm.usage.total_tokens"  # not read: input + output
TRACELOOP_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read_input_tokens"  # its older name for cache_read
# OpenInference (Arize): a span kind on every span, its own model and token keys.
OPENINFERENCE_SPAN_KIND = "openinference.span.kind"
OPENINFERENCE_LLM = "LLM"
OPENINFERENCE_EMBEDDING = "EMBEDDING"
OPENINFERENCE_AGENT = "AGENT"
OPENINFERENCE_TOOL = "TOOL"
OPENINFERENCE_AGENT_NAME = "agent.name"
OPENINFERENCE_TOOL_NAME = "tool.name"
OPENINFERENCE_TOOL_ID = "tool.id"
OPENINFERENCE_MODEL_NAME = "llm.model_name"
OPENINFERENCE_REQUEST_MODEL_NAME = "llm.request.model_name"
OPENINFERENCE_RESPONSE_MODEL_NAME = "llm.response.model_name"
OPENINFERENCE_EMBEDDING_MODEL_NAME = "embedding.model_name"
OPENINFERENCE_SYSTEM = "llm.system"
OPENINFERENCE_TOKENS_PROMPT = "llm.token_count.prompt"
OPENINFERENCE_TOKENS_COMPLETION = "llm.token_count.completion"
OPENINFERENCE_TOKENS_CACHE_READ = "llm.token_count.prompt_details.cache_read"
OPENINFERENCE_TOKENS_TOTAL = "llm.token_count.total"  # not read: input + output

# The report's LLM operations: the GenAI values, and "llm" for an OpenInference LLM span (which does
# not say whether it was a chat or a text completion).
OPERATION_LLM = "llm"
LLM_OPERATIONS = (OPERATION_CHAT, OPERATION_TEXT_COMPLETION, OPERATION_GENERATE_CONTENT, OPERATION_EMBEDDINGS)

# Keys read in this order, the first one present counting (native/src/part.rs reads the same order):
LLM_MODEL_KEYS = (
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_REQUEST_MODEL,
    OPENINFERENCE_RESPONSE_MODEL_NAME,
    OPENINFERENCE_MODEL_NAME,
    OPENINFERENCE_REQUEST_MODEL_NAME,
    OPENINFERENCE_EMBEDDING_MODEL_NAME,
)
INPUT_TOKEN_KEYS = (GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS, OPENINFERENCE_TOKENS_PROMPT)
OUTPUT_TOKEN_KEYS = (GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_COMPLETION_TOKENS, OPENINFERENCE_TOKENS_COMPLETION)
CACHED_TOKEN_KEYS = (GEN_AI_USAGE_CACHED_INPUT_TOKENS, TRACELOOP_CACHE_READ_INPUT_TOKENS, OPENINFERENCE_TOKENS_CACHE_READ)
# Names, the first non-empty string counting: an agent run's (after gen_ai.agent.name), a tool's.
RUN_AGENT_NAME_KEYS = (OPENINFERENCE_AGENT_NAME, TRACELOOP_ENTITY_NAME)
TOOL_NAME_KEYS = (GEN_AI_TOOL_NAME, OPENINFERENCE_TOOL_NAME, TRACELOOP_ENTITY_NAME)
TRACELOOP_AGENT_SUFFIX = ".agent"  # OpenLLMetry names a span "{entity}.{kind}"
TRACELOOP_TOOL_SUFFIX = ".tool"

# --- alpha signals: span events on the root span ------------------------------------------
EVENT_ALPHA_SIGNAL = "alphatrace.alpha.signal"
EVENT_ALPHA_SIGNAL_INVALID = "alphatrace.alpha.signal.invalid"
ALPHA_SYMBOL = "alphatrace.alpha.symbol"
ALPHA_DIRECTION = "alphatrace.alpha.direction"
ALPHA_PROB_UP = "alphatrace.alpha.prob_up"
ALPHA_CONFIDENCE = "alphatrace.alpha.confidence"
ALPHA_SCORE_FINAL = "alphatrace.alpha.score_final"
ALPHA_REGIME = "alphatrace.alpha.regime"
ALPHA_HORIZON = "alphatrace.alpha.horizon"
ALPHA_AS_OF = "alphatrace.alpha.as_of"
ALPHA_TRADABLE = "alphatrace.alpha.tradable"  # false for a shadow agent's signals and for stale ones
ALPHA_STALE = "alphatrace.alpha.stale"  # true on every signal of a live run on stale data (on_stale=last_bar)
# on a combiner's signal (agents/ensemble.py): the members it blended and those with no signal
ALPHA_MEMBERS = "alphatrace.alpha.members"
ALPHA_MEMBERS_MISSING = "alphatrace.alpha.members.missing"
ALPHA_INVALID_REASON = "alphatrace.alpha.invalid.reason"
DIRECTIONS = ("up", "down", "flat")

# --- kill switch ---------------------------------------------------------------------------
EVENT_KILL_SWITCH_ERROR = "alphatrace.kill_switch.error"
KILL_SWITCH_ERROR_MESSAGE = "alphatrace.kill_switch.error.message"
# on a run span when the shared store (services/kill_switch_store.py) could not be read: the run was
# decided on the last known state (bool true) and why (the store's URL with its password redacted)
KILL_SWITCH_STATE_STALE = "alphatrace.kill_switch.state.stale"
KILL_SWITCH_STORE_ERROR = "alphatrace.kill_switch.store.error"

# --- supervisor decisions (meta_supervisor/supervise.py, docs/policy.md) ----------------------
# One "alphatrace.supervisor.run" span per --apply, with one "alphatrace.supervisor.decide" child per
# agent judged; each
# decision links to the agent's latest run span in the window. The judged agent is in
# SUPERVISOR_AGENT, not gen_ai.agent.name, so a decision is never counted as one of the agent's spans.
SUPERVISOR_SPAN_PREFIX = "alphatrace.supervisor."  # the report counts such spans apart from any agent's
SPAN_SUPERVISOR_RUN = "alphatrace.supervisor.run"
SPAN_SUPERVISOR_DECIDE = "alphatrace.supervisor.decide"
SUPERVISOR_AGENT = "alphatrace.supervisor.agent"
SUPERVISOR_ACTION = "alphatrace.supervisor.action"  # retire | promote | keep | hold
SUPERVISOR_WOULD = "alphatrace.supervisor.would"  # what the policy wants (differs from the action for a hold)
SUPERVISOR_RULE = "alphatrace.supervisor.rule"  # e.g. retire.ic_below, promote.bar, none
SUPERVISOR_REASON = "alphatrace.supervisor.reason"
SUPERVISOR_RESULT = "alphatrace.supervisor.result"  # what --apply did: written | held ... | already ... | no change
SUPERVISOR_APPLIED = "alphatrace.supervisor.applied"  # bool: a file was written for this decision
SUPERVISOR_STATUS = "alphatrace.supervisor.status"  # the agent's status before the decision
SUPERVISOR_HELD_BY = "alphatrace.supervisor.held_by"  # the person whose entry holds the decision
SUPERVISOR_POLICY_FILE = "alphatrace.supervisor.policy.file"
SUPERVISOR_WINDOW_FIRST = "alphatrace.supervisor.window.first"
SUPERVISOR_WINDOW_LAST = "alphatrace.supervisor.window.last"
SUPERVISOR_DECISIONS = "alphatrace.supervisor.decisions"  # on the run span: decisions made
SUPERVISOR_FIGURE_PREFIX = "alphatrace.supervisor.figure."  # + figure name (error_rate, ic, p95_latency_ms, ...)


# --- forecast outcomes (meta_supervisor/supervisor/evaluation_spans.py, docs/telemetry-contract.md) ---
# When a signal's forward return over a scored horizon is known, the report build (opted in) adds one
# "alphatrace.evaluation" span to the run's own trace, a child of the run span, with one GenAI
# "gen_ai.evaluation.result" event per (signal, horizon) that matured since the last build. The span
# carries no gen_ai.agent.name and no gen_ai.operation.name: the report counts it apart
# (inputs.evaluation_spans), never as a run or as one of the agent's spans.
SPAN_EVALUATION = "alphatrace.evaluation"
EVALUATION_AGENT = "alphatrace.evaluation.agent"  # the agent whose run is evaluated
EVALUATION_RESULTS = "alphatrace.evaluation.results"  # events on the span
EVENT_GEN_AI_EVALUATION_RESULT = "gen_ai.evaluation.result"  # the GenAI conventions' evaluation event
GEN_AI_EVALUATION_NAME = "gen_ai.evaluation.name"  # forward_return_{h}d
GEN_AI_EVALUATION_SCORE_VALUE = "gen_ai.evaluation.score.value"  # the forward return (a fraction)
GEN_AI_EVALUATION_SCORE_LABEL = "gen_ai.evaluation.score.label"  # EVALUATION_LABELS
GEN_AI_EVALUATION_EXPLANATION = "gen_ai.evaluation.explanation"  # one short line, from the signal's own fields
EVALUATION_HORIZON_DAYS = "alphatrace.evaluation.horizon_days"  # trading days of the forward return
EVALUATION_EXIT_DAY = "alphatrace.evaluation.exit_day"  # ISO date of the close the return ends on
LABEL_HIT = "hit"  # up and the return > 0, or down and the return < 0
LABEL_MISS = "miss"  # a directional call the return did not bear out (a zero return included)
LABEL_FLAT = "flat"  # the signal made no directional call
EVALUATION_LABELS = (LABEL_HIT, LABEL_MISS, LABEL_FLAT)


# --- names in trace files written before the project namespace --------------------------------
# Old name -> the name now, for attribute keys, event names and span names alike. Writers write only
# the names above; every reader of trace files reads these too (a file may mix both):
# meta_supervisor/reading/legacy_names.py (the Python reader), native/src/legacy.rs (the same pairs,
# tests/test_legacy_names.py checks they agree), meta_supervisor/clickhouse (filled in from here).
LEGACY_NAMES = {
    "agent.run_id": AGENT_RUN_ID,
    "agent.run.outcome": AGENT_RUN_OUTCOME,
    "agent.run.as_of": AGENT_RUN_AS_OF,
    "agent.run.llm_calls": RUN_LLM_CALLS,
    "agent.run.input_tokens": RUN_INPUT_TOKENS,
    "agent.run.output_tokens": RUN_OUTPUT_TOKENS,
    "agent.run.cached_input_tokens": RUN_CACHED_INPUT_TOKENS,
    "agent.run.cost_usd": RUN_COST_USD,
    "agent.run.unpriced_llm_calls": RUN_UNPRICED_LLM_CALLS,
    "agent.run.alpha_signals": RUN_ALPHA_SIGNALS,
    "agent.status": AGENT_STATUS,
    "agent.kill.reason": KILL_REASON,
    "agent.stale.reason": STALE_REASON,
    "agent.data.stale": DATA_STALE,
    "agent.data.last_bar": DATA_LAST_BAR,
    "agent.data.age_days": DATA_AGE_DAYS,
    "agent.data.max_age_days": DATA_MAX_AGE_DAYS,
    "agent.data.on_stale": DATA_ON_STALE,
    "alpha.signal": EVENT_ALPHA_SIGNAL,
    "alpha.signal.invalid": EVENT_ALPHA_SIGNAL_INVALID,
    "alpha.symbol": ALPHA_SYMBOL,
    "alpha.direction": ALPHA_DIRECTION,
    "alpha.prob_up": ALPHA_PROB_UP,
    "alpha.confidence": ALPHA_CONFIDENCE,
    "alpha.score_final": ALPHA_SCORE_FINAL,
    "alpha.regime": ALPHA_REGIME,
    "alpha.horizon": ALPHA_HORIZON,
    "alpha.as_of": ALPHA_AS_OF,
    "alpha.tradable": ALPHA_TRADABLE,
    "alpha.stale": ALPHA_STALE,
    "alpha.members": ALPHA_MEMBERS,
    "alpha.members.missing": ALPHA_MEMBERS_MISSING,
    "alpha.invalid.reason": ALPHA_INVALID_REASON,
    "kill_switch.error": EVENT_KILL_SWITCH_ERROR,
    "kill_switch.error.message": KILL_SWITCH_ERROR_MESSAGE,
    "kill_switch.state.stale": KILL_SWITCH_STATE_STALE,
    "kill_switch.store.error": KILL_SWITCH_STORE_ERROR,
    "supervisor.run": SPAN_SUPERVISOR_RUN,
    "supervisor.decide": SPAN_SUPERVISOR_DECIDE,
    "supervisor.agent": SUPERVISOR_AGENT,
    "supervisor.action": SUPERVISOR_ACTION,
    "supervisor.would": SUPERVISOR_WOULD,
    "supervisor.rule": SUPERVISOR_RULE,
    "supervisor.reason": SUPERVISOR_REASON,
    "supervisor.result": SUPERVISOR_RESULT,
    "supervisor.applied": SUPERVISOR_APPLIED,
    "supervisor.status": SUPERVISOR_STATUS,
    "supervisor.held_by": SUPERVISOR_HELD_BY,
    "supervisor.policy.file": SUPERVISOR_POLICY_FILE,
    "supervisor.window.first": SUPERVISOR_WINDOW_FIRST,
    "supervisor.window.last": SUPERVISOR_WINDOW_LAST,
    "supervisor.decisions": SUPERVISOR_DECISIONS,
}
# Keys made of a prefix and a name (the supervisor's figures): old prefix -> the prefix now.
LEGACY_PREFIXES = {"supervisor.figure.": SUPERVISOR_FIGURE_PREFIX}
# The old supervisor span names (LEGACY_NAMES above) began with this.
LEGACY_SUPERVISOR_SPAN_PREFIX = "supervisor."
# --- metrics (otel/span_metrics.py, docs/telemetry-contract.md "Metrics") ----------------------
# The official OpenAI instrumentation adds gen_ai.client.token.usage and gen_ai.client.operation.duration.
METRIC_AGENT_RUNS = "alphatrace.agent.runs"  # {run}, by gen_ai.agent.name and alphatrace.run.outcome
METRIC_INVOKE_AGENT_DURATION = "gen_ai.invoke_agent.duration"  # s (the name opentelemetry-util-genai uses)
METRIC_LLM_COST = "alphatrace.llm.cost"  # USD, by agent and gen_ai.request.model
METRIC_LLM_TOKENS = "alphatrace.llm.tokens"  # {token}, by agent, model and gen_ai.token.type
METRIC_LLM_UNPRICED_CALLS = "alphatrace.llm.unpriced_calls"  # {call}, by agent
METRIC_ALPHA_SIGNALS = "alphatrace.alpha.signals"  # {signal}, by agent and alpha direction
METRIC_ALPHA_SIGNALS_INVALID = "alphatrace.alpha.signals.invalid"  # {signal}, by agent
METRIC_BUDGET_STOPS = "alphatrace.budget.stops"  # {run}, by agent and alphatrace.budget.name
METRIC_SPANS_DROPPED = "alphatrace.telemetry.spans_dropped"  # {span}, observed, cumulative per process
METRIC_SPANS_EXPORT_FAILED = "alphatrace.telemetry.spans_export_failed"  # {span}, observed
METRIC_KILL_SWITCH_KILLED = "alphatrace.kill_switch.killed"  # gauge 1/0, by agent of the fleet
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"  # input | output
TOKEN_TYPE_INPUT = "input"
TOKEN_TYPE_OUTPUT = "output"
