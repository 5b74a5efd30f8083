//! Spans that are not alphatrace's own but follow the GenAI conventions
//! (`meta_supervisor/tally/genai_spans.py`): what a span is, the names read from it, and tool calls
//! (`tool_tallies.add_tool_call`). Part of `part::Aggregator`.

use crate::part::{
    run_key, Aggregator, Attrs, A_AGENT, A_ERROR_TYPE, A_OP, A_OPENINFERENCE_AGENT, A_OPENINFERENCE_KIND, A_OPENINFERENCE_TOOL,
    A_REQUEST_TYPE, A_RUN_ID, A_TOOL_NAME, A_TRACELOOP_ENTITY, A_TRACELOOP_KIND, MAX_DISTINCT, MAX_LABEL, NO_AGENT, OTHER_LABEL, R,
    STATUS_ERROR,
};
use crate::schema::{AnyValue, Span};
use crate::tallies::{Deferred, Tally, ToolTally};
use crate::values::{as_str, label};
use std::borrow::Cow;

const UNKNOWN_TOOL: &str = "(unknown tool)";
const SUB_BITS: u32 = 5;

/// `genai_spans.classify`: what a span that is not alphatrace's own chat or run span is.
#[derive(Clone, Copy)]
pub enum Kind {
    Other,
    /// an LLM call, and its operation
    Llm(&'static str),
    Run,
    Tool,
}

fn by_operation(value: &str) -> Option<Kind> {
    Some(match value {
        "chat" => Kind::Llm("chat"),
        "text_completion" => Kind::Llm("text_completion"),
        "generate_content" => Kind::Llm("generate_content"),
        "embeddings" => Kind::Llm("embeddings"),
        "invoke_agent" => Kind::Run,
        "execute_tool" => Kind::Tool,
        _ => return None,
    })
}

fn by_openinference_kind(value: &str) -> Option<Kind> {
    Some(match value {
        "LLM" => Kind::Llm("llm"),
        "EMBEDDING" => Kind::Llm("embeddings"),
        "AGENT" => Kind::Run,
        "TOOL" => Kind::Tool,
        _ => return None,
    })
}

fn by_traceloop_kind(value: &str) -> Option<Kind> {
    Some(match value {
        "agent" => Kind::Run,
        "tool" => Kind::Tool,
        _ => return None,
    })
}

fn by_request_type(value: &str) -> Option<Kind> {
    Some(match value {
        "chat" => Kind::Llm("chat"),
        "completion" => Kind::Llm("text_completion"),
        "embedding" => Kind::Llm("embeddings"),
        _ => return None,
    })
}

/// The first of the keys whose value names a kind the report knows; `operation` is the span's
/// `gen_ai.operation.name`.
pub fn classify(attrs: &Attrs, operation: Option<&str>) -> Kind {
    operation
        .and_then(by_operation)
        .or_else(|| as_str(attrs[A_OPENINFERENCE_KIND]).and_then(by_openinference_kind))
        .or_else(|| as_str(attrs[A_TRACELOOP_KIND]).and_then(by_traceloop_kind))
        .or_else(|| as_str(attrs[A_REQUEST_TYPE]).and_then(by_request_type))
        .unwrap_or(Kind::Other)
}

/// `genai_spans.first_name`: the first value that is a non-empty string.
fn first_name<'s>(values: &[Option<&'s AnyValue>]) -> Option<&'s str> {
    values.iter().find_map(|value| as_str(*value).filter(|text| !text.is_empty()))
}

/// `genai_spans.run_agent_name`: a run's agent when its `gen_ai.agent.name` is absent or empty.
pub fn run_agent_name<'s>(span: &'s Span, attrs: &Attrs<'s, '_>) -> Option<&'s str> {
    if let Some(name) = first_name(&[attrs[A_OPENINFERENCE_AGENT], attrs[A_TRACELOOP_ENTITY]]) {
        return Some(name);
    }
    let name: &str = &span.name;
    let found = if as_str(attrs[A_OP]) == Some("invoke_agent") {
        name.strip_prefix("invoke_agent ")
    } else {
        Some(name.strip_suffix(".agent").unwrap_or(name))
    };
    found.filter(|n| !n.is_empty())
}

/// `genai_spans.tool_name`.
fn tool_name<'s>(span: &'s Span, attrs: &Attrs<'s, '_>) -> &'s str {
    if let Some(name) = first_name(&[attrs[A_TOOL_NAME], attrs[A_OPENINFERENCE_TOOL], attrs[A_TRACELOOP_ENTITY]]) {
        return name;
    }
    let name: &str = &span.name;
    let found = if as_str(attrs[A_OP]) == Some("execute_tool") {
        name.strip_prefix("execute_tool ")
    } else {
        Some(name.strip_suffix(".tool").unwrap_or(name))
    };
    found.filter(|n| !n.is_empty()).unwrap_or(UNKNOWN_TOOL)
}

/// `tool_tallies.latency_bucket`: the histogram bucket of a latency of `ns` (0 <= ns < 2**63).
pub fn latency_bucket(ns: i128) -> u32 {
    let ns = ns as u64;
    if ns < 2 << SUB_BITS {
        return ns as u32;
    }
    let exponent = 63 - ns.leading_zeros();
    ((exponent - SUB_BITS + 1) << SUB_BITS) | ((ns >> (exponent - SUB_BITS)) as u32 & ((1 << SUB_BITS) - 1))
}

impl Aggregator<'_, '_> {
    /// `ToolSpans._tool_span`: a tool call, per agent and tool; one that names no agent counts for
    /// its run's agent, deferred until the run's root is read (`agent_counts`).
    pub(crate) fn tool_span(&mut self, span: &Span, attrs: &Attrs, start: i128, end: i128, fp: u64) -> R<()> {
        let named = as_str(attrs[A_AGENT]).filter(|a| !a.is_empty());
        let error =
            span.status.as_ref().is_some_and(|s| s.code == STATUS_ERROR) || as_str(attrs[A_ERROR_TYPE]).is_some_and(|t| !t.is_empty());
        let name = label(Some(tool_name(span, attrs)), UNKNOWN_TOOL, MAX_LABEL);
        let run_id = as_str(attrs[A_RUN_ID]).unwrap_or("");
        let key = run_key(run_id, span);
        let index = match named {
            Some(agent) => self.agent(agent),
            None => match self.run_agent(key)? {
                Some(agent) => self.agent(&agent),
                None => {
                    let record = Deferred::Tool {
                        name: name.into_owned(),
                        error,
                        start,
                        end,
                    };
                    return self.join_tool(key, &span.trace_id, run_id, NO_AGENT, Some(record));
                }
            },
        };
        add_tool_call(&mut self.agents[index], &name, error, start, end);
        self.join_tool(key, &span.trace_id, run_id, index, None)?;
        if !span.events.is_empty() && named.is_some() {
            // its alpha events count for its agent, as an "other" span's do
            let day = crate::part::day_of(start)?;
            self.agents[index].day_runs.entry(&day, || day, || [0; 5]);
            self.events(index, span, day, fp)?;
        }
        Ok(())
    }
}

/// `tool_tallies.add_tool_call`: one call of a tool (`name` labelled already) of an agent.
pub(crate) fn add_tool_call(tally: &mut Tally, name: &str, error: bool, start: i128, end: i128) {
    let mut key = Cow::Borrowed(name);
    if !tally.tools.contains(name) && tally.tools.len() >= MAX_DISTINCT {
        key = Cow::Borrowed(OTHER_LABEL);
    }
    let tool = tally.tools.entry(&*key, || key.to_string(), ToolTally::default);
    tool.calls += 1;
    if error {
        tool.errors += 1;
    }
    if start > 0 && end >= start && end - start <= i64::MAX as i128 {
        let latency = end - start;
        if tool.timed == 0 || latency < tool.min {
            tool.min = latency;
        }
        if latency > tool.max {
            tool.max = latency;
        }
        tool.timed += 1;
        tool.sum += latency;
        *tool.histogram.entry(latency_bucket(latency)).or_insert(0) += 1;
    }
}
