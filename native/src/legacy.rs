//! Names in trace files written before the project namespace (`otel/semconv.py` `LEGACY_NAMES`, the
//! same pairs; `tests/test_legacy_names.py` checks they agree): an old span is read under today's names,
//! as `meta_supervisor/reading/legacy_names.py` reads it.

/// The name now of an attribute key, event name or span name alphatrace wrote before the namespace.
pub(crate) fn current(name: &str) -> Option<&'static str> {
    Some(match name {
        "agent.run_id" => "alphatrace.run.id",
        "agent.run.outcome" => "alphatrace.run.outcome",
        "agent.run.as_of" => "alphatrace.run.as_of",
        "agent.run.llm_calls" => "alphatrace.run.llm_calls",
        "agent.run.input_tokens" => "alphatrace.run.input_tokens",
        "agent.run.output_tokens" => "alphatrace.run.output_tokens",
        "agent.run.cached_input_tokens" => "alphatrace.run.cached_input_tokens",
        "agent.run.cost_usd" => "alphatrace.run.cost_usd",
        "agent.run.unpriced_llm_calls" => "alphatrace.run.unpriced_llm_calls",
        "agent.run.alpha_signals" => "alphatrace.run.alpha_signals",
        "agent.status" => "alphatrace.agent.status",
        "agent.kill.reason" => "alphatrace.kill.reason",
        "agent.stale.reason" => "alphatrace.stale.reason",
        "agent.data.stale" => "alphatrace.data.stale",
        "agent.data.last_bar" => "alphatrace.data.last_bar",
        "agent.data.age_days" => "alphatrace.data.age_days",
        "agent.data.max_age_days" => "alphatrace.data.max_age_days",
        "agent.data.on_stale" => "alphatrace.data.on_stale",
        "alpha.signal" => "alphatrace.alpha.signal",
        "alpha.signal.invalid" => "alphatrace.alpha.signal.invalid",
        "alpha.symbol" => "alphatrace.alpha.symbol",
        "alpha.direction" => "alphatrace.alpha.direction",
        "alpha.prob_up" => "alphatrace.alpha.prob_up",
        "alpha.confidence" => "alphatrace.alpha.confidence",
        "alpha.score_final" => "alphatrace.alpha.score_final",
        "alpha.regime" => "alphatrace.alpha.regime",
        "alpha.horizon" => "alphatrace.alpha.horizon",
        "alpha.as_of" => "alphatrace.alpha.as_of",
        "alpha.tradable" => "alphatrace.alpha.tradable",
        "alpha.stale" => "alphatrace.alpha.stale",
        "alpha.members" => "alphatrace.alpha.members",
        "alpha.members.missing" => "alphatrace.alpha.members.missing",
        "alpha.invalid.reason" => "alphatrace.alpha.invalid.reason",
        "kill_switch.error" => "alphatrace.kill_switch.error",
        "kill_switch.error.message" => "alphatrace.kill_switch.error.message",
        "kill_switch.state.stale" => "alphatrace.kill_switch.state.stale",
        "kill_switch.store.error" => "alphatrace.kill_switch.store.error",
        "supervisor.run" => "alphatrace.supervisor.run",
        "supervisor.decide" => "alphatrace.supervisor.decide",
        "supervisor.agent" => "alphatrace.supervisor.agent",
        "supervisor.action" => "alphatrace.supervisor.action",
        "supervisor.would" => "alphatrace.supervisor.would",
        "supervisor.rule" => "alphatrace.supervisor.rule",
        "supervisor.reason" => "alphatrace.supervisor.reason",
        "supervisor.result" => "alphatrace.supervisor.result",
        "supervisor.applied" => "alphatrace.supervisor.applied",
        "supervisor.status" => "alphatrace.supervisor.status",
        "supervisor.held_by" => "alphatrace.supervisor.held_by",
        "supervisor.policy.file" => "alphatrace.supervisor.policy.file",
        "supervisor.window.first" => "alphatrace.supervisor.window.first",
        "supervisor.window.last" => "alphatrace.supervisor.window.last",
        "supervisor.decisions" => "alphatrace.supervisor.decisions",
        _ => return None,
    })
}

/// A span attribute key that may be an old name of a key the report reads (they all began so).
pub(crate) fn may_be_old_key(key: &str) -> bool {
    key.starts_with("agent.")
}

/// The old supervisor span names began with this (`LEGACY_SUPERVISOR_SPAN_PREFIX`).
pub(crate) const OLD_SUPERVISOR_SPAN_PREFIX: &str = "supervisor.";
