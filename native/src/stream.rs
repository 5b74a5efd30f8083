//! A line's spans added to the aggregator as they are parsed, one at a time, instead of the whole
//! line parsed into a `schema::Request` first and its spans added then (`add_request` in `lib.rs`,
//! which the unterminated last line of a part still takes: it may be incomplete, and then nothing
//! of it is counted).
//!
//! Why: a line of thousands of spans (a large export batch) parsed whole is a tree of tens of
//! megabytes, written once and read back once from memory; one span at a time stays in the CPU's
//! caches, and a line needs no more memory than its bytes and one span (issue 13's
//! `4096-spans-a-line` row). Lines of one span lose their per-line vectors too.
//!
//! The same results as parsing the line whole: the same strict types (`schema.rs`), keys checked
//! the same way (a key given twice is an error), the spans in file order, each `scopeSpans` entry
//! one batch of `Aggregator::add_spans` (its process's row and the open-run bound after its last
//! span). A resource's facts are needed before its spans: when `"scopeSpans"` comes before
//! `"resource"` in its object, that entry's scopes are parsed whole and added when the object ends,
//! as before. A line that turns out to be bad after some of its spans were added declines the whole
//! part (as any bad line does), so what those spans added is never used.

use crate::part::{Aggregator, Batch, Stop};
use crate::schema::{Resource, ScopeSpans, Skip, Span, Text};
use crate::tallies::Process;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

pub(crate) enum LineError {
    /// The line is not a request the strict types read (the caller declines, or skips a blank line).
    Json(serde_json::Error),
    /// The aggregator stopped (a decline or a Python error) on one of the line's spans.
    Stop(Stop),
}

/// Parse `text` (one whole line) and add its spans as they come. Returns how many entries its
/// `resourceSpans` list had (0 when it has none, or no such key).
pub(crate) fn add_line(agg: &mut Aggregator, text: &str) -> Result<usize, LineError> {
    let mut sink = Sink { agg, stop: None };
    let mut parser = serde_json::Deserializer::from_str(text);
    let parsed = RequestSeed(&mut sink)
        .deserialize(&mut parser)
        .and_then(|count| parser.end().map(|()| count));
    match (parsed, sink.stop) {
        (_, Some(stop)) => Err(LineError::Stop(stop)),
        (Ok(count), None) => Ok(count),
        (Err(err), None) => Err(LineError::Json(err)),
    }
}

struct Sink<'s, 'py, 't> {
    agg: &'s mut Aggregator<'py, 't>,
    stop: Option<Stop>, // why parsing was ended early: the aggregator's, not the parser's
}

impl Sink<'_, '_, '_> {
    /// Keep the aggregator's reason and end the parse with an error that carries none.
    fn fail<E: de::Error>(&mut self, stop: Stop) -> E {
        self.stop = Some(stop);
        E::custom("stopped by the aggregator")
    }
}

fn duplicate<E: de::Error>(key: &'static str) -> E {
    de::Error::duplicate_field(key)
}

/// The request object: `{"resourceSpans": [...]}`, other keys skipped.
struct RequestSeed<'a, 's, 'py, 't>(&'a mut Sink<'s, 'py, 't>);

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, '_, '_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, '_, '_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object (Request)")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<usize, M::Error> {
        let mut count = None;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if &*key == "resourceSpans" {
                if count.is_some() {
                    return Err(duplicate("resourceSpans"));
                }
                count = Some(map.next_value_seed(ResourceList(&mut *self.0))?);
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(count.unwrap_or(0))
    }
}

/// The `resourceSpans` list: each entry added as it is parsed; returns their count.
struct ResourceList<'a, 's, 'py, 't>(&'a mut Sink<'s, 'py, 't>);

impl<'de> DeserializeSeed<'de> for ResourceList<'_, '_, '_, '_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResourceList<'_, '_, '_, '_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while seq.next_element_seed(ResourceSeed(&mut *self.0))?.is_some() {
            count += 1;
        }
        Ok(count)
    }
}

/// One `resourceSpans` entry (`add_request`'s loop body).
struct ResourceSeed<'a, 's, 'py, 't>(&'a mut Sink<'s, 'py, 't>);

impl<'de> DeserializeSeed<'de> for ResourceSeed<'_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// A resource's facts (`Aggregator::resource_facts`) and whether a tail-sampling collector marked it.
struct Facts<'r> {
    simulated: bool,
    process: Process<'r>,
    sampled: bool,
}

fn facts_of<'r, E: de::Error>(sink: &mut Sink, resource: &'r Option<Resource>) -> Result<Facts<'r>, E> {
    let attributes = resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
    match sink.agg.resource_facts(attributes) {
        Ok((simulated, process)) => Ok(Facts {
            simulated,
            process,
            sampled: attributes.iter().any(|kv| &*kv.key == "alphatrace.sampling"),
        }),
        Err(stop) => Err(sink.fail(stop)),
    }
}

impl<'de> Visitor<'de> for ResourceSeed<'_, '_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object (ResourceSpans)")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let sink = self.0;
        let mut resource: Option<Option<Resource<'de>>> = None; // outer None: no "resource" key yet
        let mut scopes_seen = false;
        let mut parsed_whole: Option<Vec<ScopeSpans<'de>>> = None; // "scopeSpans" before "resource"
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match &*key {
                "resource" => {
                    if resource.is_some() {
                        return Err(duplicate("resource"));
                    }
                    resource = Some(map.next_value()?);
                }
                "scopeSpans" => {
                    if scopes_seen {
                        return Err(duplicate("scopeSpans"));
                    }
                    scopes_seen = true;
                    match &resource {
                        Some(found) => {
                            let facts = facts_of(sink, found)?;
                            map.next_value_seed(ScopeList {
                                sink: &mut *sink,
                                facts: &facts,
                            })?;
                        }
                        None => parsed_whole = Some(map.next_value()?),
                    }
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        if let Some(scopes) = parsed_whole {
            let resource = resource.unwrap_or(None);
            let facts = facts_of(sink, &resource)?;
            if facts.sampled {
                sink.agg.inputs.tail_sampled_spans += scopes.iter().map(|s| s.spans.len() as i64).sum::<i64>();
            }
            for scope in &scopes {
                if let Err(stop) = sink.agg.add_spans(&scope.spans, facts.simulated, &facts.process) {
                    return Err(sink.fail(stop));
                }
            }
        }
        Ok(())
    }
}

/// A resource's `scopeSpans` list.
struct ScopeList<'a, 'f, 's, 'py, 't> {
    sink: &'a mut Sink<'s, 'py, 't>,
    facts: &'f Facts<'f>,
}

impl<'de> DeserializeSeed<'de> for ScopeList<'_, '_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ScopeList<'_, '_, '_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let facts = self.facts;
        while seq
            .next_element_seed(ScopeSeed {
                sink: &mut *self.sink,
                facts,
            })?
            .is_some()
        {}
        Ok(())
    }
}

/// One `scopeSpans` entry: one batch of `add_spans`, ended when its object ends.
struct ScopeSeed<'a, 'f, 's, 'py, 't> {
    sink: &'a mut Sink<'s, 'py, 't>,
    facts: &'f Facts<'f>,
}

impl<'de> DeserializeSeed<'de> for ScopeSeed<'_, '_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ScopeSeed<'_, '_, '_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object (ScopeSpans)")
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let (sink, facts) = (self.sink, self.facts);
        let mut batch = Batch::default();
        let mut spans_seen = false;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            if &*key == "spans" {
                if spans_seen {
                    return Err(duplicate("spans"));
                }
                spans_seen = true;
                map.next_value_seed(SpanList {
                    sink: &mut *sink,
                    facts,
                    batch: &mut batch,
                })?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        match sink.agg.end_batch(&batch, &facts.process) {
            Ok(()) => Ok(()),
            Err(stop) => Err(sink.fail(stop)),
        }
    }
}

/// A scope's `spans` list: each span added as soon as it is parsed, then dropped.
struct SpanList<'a, 'f, 'b, 's, 'py, 't> {
    sink: &'a mut Sink<'s, 'py, 't>,
    facts: &'f Facts<'f>,
    batch: &'b mut Batch,
}

impl<'de> DeserializeSeed<'de> for SpanList<'_, '_, '_, '_, '_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SpanList<'_, '_, '_, '_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (sink, facts) = (self.sink, self.facts);
        while let Some(span) = seq.next_element::<Span<'de>>()? {
            if facts.sampled {
                sink.agg.inputs.tail_sampled_spans += 1;
            }
            if let Err(stop) = sink.agg.add_span(&span, facts.simulated, &facts.process, self.batch) {
                return Err(sink.fail(stop));
            }
        }
        Ok(())
    }
}
