"""Every span name, attribute key and event name alphatrace writes or reads, written once.

The GenAI keys follow the OpenTelemetry GenAI semantic conventions; the ``agent.*`` and
``alpha.*`` keys are alphatrace's own and are documented in ``docs/telemetry-contract.md``.
Reads no environment variables.
"""

# --- resource -----------------------------------------------------------------------------
SERVICE_NAME_DEFAULT = "alphatrace"
RESOURCE_LLM_SIMULATED = "alphatrace.llm.simulated"
RESOURCE_SHARD = "alphatrace.shard"  # the fleet shard a scheduler process runs (agents.*.shard)
HOST_NAME = "host.name"  # standard resource key: the host a sharded scheduler runs on
SERVICE_NAME = "service.name"  # the SDK's standard resource keys, read by the report
SERVICE_INSTANCE_ID = "service.instance.id"  # one per process (the SDK makes a UUID)

# --- root span: one per agent run ------------------------------------------------------------
OPERATION_INVOKE_AGENT = "invoke_agent"
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_AGENT_NAME = "gen_ai.agent.name"
AGENT_RUN_ID = "agent.run_id"
AGENT_RUN_OUTCOME = "agent.run.outcome"
AGENT_RUN_AS_OF = "agent.run.as_of"
AGENT_STATUS = "agent.status"  # shadow | live
OUTCOME_OK = "ok"
OUTCOME_ERROR = "error"
OUTCOME_KILLED = "killed"
OUTCOME_STALE_DATA = "stale_data"  # a live run refused: its market data is older than the limit
OUTCOME_BUDGET_EXCEEDED = "budget_exceeded"  # a call that would break a budget was not made
OUTCOMES = (OUTCOME_OK, OUTCOME_ERROR, OUTCOME_KILLED, OUTCOME_STALE_DATA, OUTCOME_BUDGET_EXCEEDED)
KILL_REASON = "agent.kill.reason"
# A run stopped inside, before one of its steps (otel/run_context.py checkpoint): which step
# (STEPS), and why (the kill reason, or the budget that would break). A run killed before it
# started has neither.
RUN_STOPPED_BEFORE = "alphatrace.run.stopped_before"
RUN_STOP_REASON = "alphatrace.run.stop_reason"
STEP_LLM_CALL = "llm_call"
STEP_TOOL_STEP = "tool_step"
STEPS = (STEP_LLM_CALL, STEP_TOOL_STEP)
# on a live run whose data is stale (services/data_freshness.py): refused (outcome stale_data) or run
# on the last bar (outcome ok, agent.run.as_of the last bar's date)
STALE_REASON = "agent.stale.reason"
DATA_STALE = "agent.data.stale"  # bool
DATA_LAST_BAR = "agent.data.last_bar"  # ISO date of the universe's latest bar; absent when none
DATA_AGE_DAYS = "agent.data.age_days"  # calendar days from that bar to the clock's date
DATA_MAX_AGE_DAYS = "agent.data.max_age_days"
DATA_ON_STALE = "agent.data.on_stale"  # refuse | last_bar
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

# run totals, set on the root span when the run ends
RUN_LLM_CALLS = "agent.run.llm_calls"
RUN_INPUT_TOKENS = "agent.run.input_tokens"
RUN_OUTPUT_TOKENS = "agent.run.output_tokens"
RUN_CACHED_INPUT_TOKENS = "agent.run.cached_input_tokens"
RUN_COST_USD = "agent.run.cost_usd"
RUN_UNPRICED_LLM_CALLS = "agent.run.unpriced_llm_calls"
RUN_ALPHA_SIGNALS = "agent.run.alpha_signals"
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

# --- spans from other instrumentations, read by the report -----------------------------------
# (docs/telemetry-contract.md, "Spans from other instrumentations"). alphatrace writes none of these.
# GenAI semantic conventions: the other LLM operations, tool execution, the deprecated token keys.
OPERATION_TEXT_COMPLETION = "text_completion"
OPERATION_GENERATE_CONTENT = "generate_content"
OPERATION_EMBEDDINGS = "embeddings"  # input tokens only
OPERATION_EXECUTE_TOOL = "execute_tool"
GEN_AI_TOOL_NAME = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID = "gen_ai.tool.call.id"
GEN_AI_TOOL_TYPE = "gen_ai.tool.type"
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
EVENT_ALPHA_SIGNAL = "alpha.signal"
EVENT_ALPHA_SIGNAL_INVALID = "alpha.signal.invalid"
ALPHA_SYMBOL = "alpha.symbol"
ALPHA_DIRECTION = "alpha.direction"
ALPHA_PROB_UP = "alpha.prob_up"
ALPHA_CONFIDENCE = "alpha.confidence"
ALPHA_SCORE_FINAL = "alpha.score_final"
ALPHA_REGIME = "alpha.regime"
ALPHA_HORIZON = "alpha.horizon"
ALPHA_AS_OF = "alpha.as_of"
ALPHA_TRADABLE = "alpha.tradable"  # false for a shadow agent's signals and for stale ones
ALPHA_STALE = "alpha.stale"  # true on every signal of a live run on stale data (on_stale=last_bar)
# on a combiner's signal (agents/ensemble.py): the members it blended and those with no signal
ALPHA_MEMBERS = "alpha.members"
ALPHA_MEMBERS_MISSING = "alpha.members.missing"
ALPHA_INVALID_REASON = "alpha.invalid.reason"
DIRECTIONS = ("up", "down", "flat")

# --- kill switch ---------------------------------------------------------------------------
EVENT_KILL_SWITCH_ERROR = "kill_switch.error"
KILL_SWITCH_ERROR_MESSAGE = "kill_switch.error.message"
# on a run span when the shared store (services/kill_switch_store.py) could not be read: the run was
# decided on the last known state (bool true) and why (the store's URL with its password redacted)
KILL_SWITCH_STATE_STALE = "kill_switch.state.stale"
KILL_SWITCH_STORE_ERROR = "kill_switch.store.error"

# --- supervisor decisions (meta_supervisor/supervise.py, docs/policy.md) ----------------------
# One "supervisor.run" span per --apply, with one "supervisor.decide" child per agent judged; each
# decision links to the agent's latest run span in the window. The judged agent is in
# SUPERVISOR_AGENT, not gen_ai.agent.name, so a decision is never counted as one of the agent's spans.
SPAN_SUPERVISOR_RUN = "supervisor.run"
SPAN_SUPERVISOR_DECIDE = "supervisor.decide"
SUPERVISOR_AGENT = "supervisor.agent"
SUPERVISOR_ACTION = "supervisor.action"  # retire | promote | keep | hold
SUPERVISOR_WOULD = "supervisor.would"  # what the policy wants (differs from the action for a hold)
SUPERVISOR_RULE = "supervisor.rule"  # e.g. retire.ic_below, promote.bar, none
SUPERVISOR_REASON = "supervisor.reason"
SUPERVISOR_RESULT = "supervisor.result"  # what --apply did: written | held ... | already ... | no change
SUPERVISOR_APPLIED = "supervisor.applied"  # bool: a file was written for this decision
SUPERVISOR_STATUS = "supervisor.status"  # the agent's status before the decision
SUPERVISOR_HELD_BY = "supervisor.held_by"  # the person whose entry holds the decision
SUPERVISOR_POLICY_FILE = "supervisor.policy.file"
SUPERVISOR_WINDOW_FIRST = "supervisor.window.first"
SUPERVISOR_WINDOW_LAST = "supervisor.window.last"
SUPERVISOR_DECISIONS = "supervisor.decisions"  # on the run span: decisions made
SUPERVISOR_FIGURE_PREFIX = "supervisor.figure."  # + figure name (error_rate, ic, p95_latency_ms, ...)
