//! A line's spans read by the scanner (`scan.rs`) into the `schema.rs` types and added to the
//! aggregator as they are read: what `stream.rs` does with serde_json, without serde's visitors.
//!
//! Why: serde_json's string scanning and the visitors of the attribute lists (`KeyValue`,
//! `AnyValue`, one per attribute, a dozen per span) were 40–55% of the core's time on every shape of
//! file (issue 13). Here a key is compared as it is read and a value read by what its key says.
//!
//! It accepts exactly what the serde path accepts, with the same values: any key order, unknown
//! keys skipped (any JSON value, walked and checked), whitespace, escapes (`\u` with paired
//! surrogates only), numbers by serde_json's grammar and types (`IntVal`: an integer within u64 or
//! i64, not `-0`; `DoubleVal`: from the number's own text), `null` only where an `Option` is, a key
//! given twice an error, serde_json's nesting limit. Anything else is refused; then, if no span of
//! the line was added yet, the line is read again by the serde path (`stream::add_line`), whose
//! answer (the same spans, or its own error) is the line's: so a bad line gets serde's own error.
//! Refused after spans were added, the line is bad for both readers (it declines the part, as any
//! bad line does), and serde's whole-line parse gives the error's text.

use crate::part::{Aggregator, Batch};
use crate::scan::{plain_run, Fail, Number, Scan, MAX_DEPTH, P};
use crate::schema::{AnyValue, DoubleVal, Event, IntVal, KeyValue, Request, Resource, ScopeSpans, Span, Status, Text};
use crate::stream::{self, LineError};
use crate::tallies::Process;
use crate::values::hex_span_fingerprint;
use serde::de::Error as _;
use std::borrow::Cow;

/// Vectors of the scanner kept, empty, from one line to the next: a line of one span otherwise
/// allocates its span's, its resource's and each of its events' attribute vectors again (~8% of
/// the core's instructions on a file of one span a line, issue 13).
#[derive(Default)]
pub(crate) struct Spare {
    attributes: Vec<Vec<KeyValue<'static>>>,
    events: Vec<Event<'static>>,
}

/// At most this many attribute vectors kept, each of at most `SPARE_CAPACITY` attributes (and an
/// events vector of at most that many events): a span of thousands of events or attributes does
/// not keep their memory for the rest of the part.
const SPARE_VECTORS: usize = 32;
const SPARE_CAPACITY: usize = 64;

/// `out.push(make())` with room made first, so that the value is made in its slot and not on the
/// stack and then copied there (which the push's possible growth in between forces).
#[inline(always)]
fn push_with<T>(out: &mut Vec<T>, make: impl FnOnce() -> T) -> &mut T {
    out.reserve(1);
    let len = out.len();
    out.spare_capacity_mut()[0].write(make());
    // SAFETY: the slot at `len`, within the capacity, was written just above
    unsafe { out.set_len(len + 1) };
    &mut out[len]
}

/// The value of an attribute written compactly (`Scan::key_value_plain`), before it is put in its slot.
enum Plain<'a> {
    String(&'a str),
    Int(&'a str),
    Bool(bool),
    Double(f64),
}

/// Emptied vectors under another lifetime: their allocations only, for the next line.
///
/// Sound: every vector here is empty (`Scan::give` clears each one it keeps, `recycle_events`
/// drains the events), so nothing borrowed from one line's text is in them when another line's
/// lifetime is given; the types differ by a lifetime only (one layout). A safe in-place `collect`
/// did the same at ~40 instructions a vector, a fifth of what keeping them saved.
fn relifetime<'x, 'y>(mut pool: Vec<Vec<KeyValue<'x>>>, mut events: Vec<Event<'x>>) -> (Vec<Vec<KeyValue<'y>>>, Vec<Event<'y>>) {
    // emptied here too, whatever the callers did (a no-op on the empty vectors they give back), so
    // that soundness does not rest on them
    pool.iter_mut().for_each(Vec::clear);
    events.clear();
    // SAFETY: every vector is empty (just above): no value with the lifetime `'x` is in them
    unsafe {
        (
            std::mem::transmute::<Vec<Vec<KeyValue<'x>>>, Vec<Vec<KeyValue<'y>>>>(pool),
            std::mem::transmute::<Vec<Event<'x>>, Vec<Event<'y>>>(events),
        )
    }
}

/// Parse `text` (one whole line) and add its spans as they come; as `stream::add_line`.
pub(crate) fn add_line(agg: &mut Aggregator, text: &str) -> Result<usize, LineError> {
    let spare = std::mem::take(&mut agg.spare);
    let (pool, events) = relifetime(spare.attributes, spare.events);
    let mut scan = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
        depth: 0,
        touched: false,
        pool,
    };
    let mut span = Span::default();
    span.events = events;
    span.attributes = scan.vec();
    let read = scan.request(agg, &mut span).and_then(|count| match scan.peek() {
        0 if scan.i == scan.b.len() => Ok(count),
        _ => Err(Fail::Json), // trailing characters
    });
    scan.recycle_events(&mut span.events);
    if span.events.capacity() > SPARE_CAPACITY {
        span.events = Vec::new(); // a span of many events: its vector not kept
    }
    scan.give(std::mem::take(&mut span.attributes));
    let (attributes, events) = relifetime(std::mem::take(&mut scan.pool), std::mem::take(&mut span.events));
    agg.spare = Spare { attributes, events };
    match read {
        Ok(count) => Ok(count),
        Err(Fail::Stop(stop)) => Err(LineError::Stop(stop)),
        Err(Fail::Json) if !scan.touched => stream::add_line(agg, text),
        Err(Fail::Json) => Err(LineError::Json(match serde_json::from_str::<Request>(text) {
            Err(err) => err,
            Ok(_) => serde_json::Error::custom("a line the native scanner refuses after some of its spans"),
        })),
    }
}

impl<'a> Scan<'a> {
    // --- the vectors kept (Spare) ----------------------------------------------------------------

    /// An empty attribute vector, kept from an earlier span when there is one.
    #[inline]
    fn vec(&mut self) -> Vec<KeyValue<'a>> {
        self.pool.pop().unwrap_or_default()
    }

    /// `attributes` emptied and kept for another span (when it is small and there is room).
    #[inline]
    fn give(&mut self, mut attributes: Vec<KeyValue<'a>>) {
        if self.pool.len() < SPARE_VECTORS && attributes.capacity() <= SPARE_CAPACITY && attributes.capacity() > 0 {
            attributes.clear();
            self.pool.push(attributes);
        }
    }

    /// `events` emptied, their attribute vectors kept.
    fn recycle_events(&mut self, events: &mut Vec<Event<'a>>) {
        for event in events.drain(..) {
            self.give(event.attributes);
        }
    }

    // --- the strict types (schema.rs) ------------------------------------------------------------

    #[inline]
    fn text(&mut self) -> P<Text<'a>> {
        self.string().map(Text)
    }

    /// `IntVal`: a string, or an integer serde_json reads as u64 or i64.
    #[inline]
    fn int_val(&mut self) -> P<IntVal<'a>> {
        match self.peek() {
            b'"' => Ok(IntVal::Text(self.string()?)),
            b'-' | b'0'..=b'9' => match self.number()?.0 {
                Number::U64(n) => Ok(IntVal::Int(n as i128)),
                Number::I64(n) => Ok(IntVal::Int(n as i128)),
                Number::F64(_) => Err(Fail::Json),
            },
            _ => Err(Fail::Json),
        }
    }

    /// `DoubleVal`: from the number's own text (see `schema.rs`).
    fn double_val(&mut self) -> P<DoubleVal<'a>> {
        match self.peek() {
            b'"' => Ok(DoubleVal::Text(self.string()?)),
            b'-' | b'0'..=b'9' => {
                // an integer's f64 rounded to nearest, as the parse of its text is
                let value = match self.number()? {
                    (Number::U64(n), _) => n as f64,
                    (Number::I64(n), _) => n as f64,
                    (Number::F64(0.0), true) => 0.0, // `-0` (== 0.0) is 0.0 for msgspec
                    (Number::F64(value), _) => value,
                };
                Ok(DoubleVal::Number(value))
            }
            _ => Err(Fail::Json),
        }
    }

    fn boolean(&mut self) -> P<bool> {
        match self.peek() {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => Err(Fail::Json),
        }
    }

    /// An `i64` field: an integer within i64.
    fn i64(&mut self) -> P<i64> {
        match self.peek() {
            b'-' | b'0'..=b'9' => match self.number()?.0 {
                Number::U64(n) if n <= i64::MAX as u64 => Ok(n as i64),
                Number::I64(n) => Ok(n),
                _ => Err(Fail::Json),
            },
            _ => Err(Fail::Json),
        }
    }

    fn any_value(&mut self) -> P<AnyValue<'a>> {
        let mut out = AnyValue::default();
        let (mut string, mut int, mut double, mut boolean) = (false, false, false, false);
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            match &*key {
                "stringValue" => {
                    once(&mut string)?;
                    out.string = if self.null()? { None } else { Some(self.text()?) };
                }
                "intValue" => {
                    once(&mut int)?;
                    out.int = if self.null()? { None } else { Some(self.int_val()?) };
                }
                "doubleValue" => {
                    once(&mut double)?;
                    out.double = if self.null()? { None } else { Some(self.double_val()?) };
                }
                "boolValue" => {
                    once(&mut boolean)?;
                    out.boolean = if self.null()? { None } else { Some(self.boolean()?) };
                }
                _ => self.skip()?,
            }
        }
        Ok(out)
    }

    /// A `Vec<KeyValue>` field, appended to `out`.
    fn attributes(&mut self, out: &mut Vec<KeyValue<'a>>) -> P<()> {
        self.open(b'[')?;
        let mut first = true;
        while self.element(&mut first)? {
            // each attribute made where it is kept, in `out`: a `KeyValue` is 128 bytes, and made
            // on the stack it was moved three times before its push, each move reading back what
            // had just been written in other pieces (~6% of a build's samples, issue 13)
            let kv = push_with(out, KeyValue::default);
            if self.key_value_plain(kv) {
                continue;
            }
            let (mut key_seen, mut value_seen) = (false, false);
            self.open(b'{')?;
            let mut kv_first = true;
            while let Some(key) = self.key(&mut kv_first)? {
                match &*key {
                    "key" => {
                        once(&mut key_seen)?;
                        kv.key = self.text()?;
                    }
                    "value" => {
                        once(&mut value_seen)?;
                        kv.value = if self.null()? { None } else { Some(self.any_value()?) };
                    }
                    _ => self.skip()?,
                }
            }
        }
        Ok(())
    }

    /// The common attribute written compactly, `{"key":"K","value":{"stringValue":"V"}}` (or
    /// `intValue` a string, `boolValue`, `doubleValue` a number), strings without escapes: read
    /// by its bytes into `kv` (a default one), true; or false with nothing consumed and `kv` left
    /// as it was (then the general path reads it).
    #[inline]
    fn key_value_plain(&mut self, kv: &mut KeyValue<'a>) -> bool {
        const KEY: &[u8] = b"{\"key\":\"";
        const VALUE: &[u8] = b"\",\"value\":{\"";
        if self.depth + 2 > MAX_DEPTH || !self.b[self.i..].starts_with(KEY) {
            return false;
        }
        let start = self.i;
        let key_start = start + KEY.len();
        let key_end = plain_run(self.b, key_start);
        if !self.b[key_end..].starts_with(VALUE) {
            return false;
        }
        let Some((value, end)) = self.plain_value(start, key_end + VALUE.len()) else {
            return false;
        };
        if !self.b[end..].starts_with(b"}}") {
            return false;
        }
        kv.key = Text(Cow::Borrowed(&self.text[key_start..key_end]));
        let slot = kv.value.insert(AnyValue::default());
        match value {
            Plain::String(text) => slot.string = Some(Text(Cow::Borrowed(text))),
            Plain::Int(text) => slot.int = Some(IntVal::Text(Cow::Borrowed(text))),
            Plain::Bool(value) => slot.boolean = Some(value),
            Plain::Double(value) => slot.double = Some(DoubleVal::Number(value)),
        }
        self.i = end + 2;
        true
    }

    /// `key_value_plain`'s value from `field` (its one field's name): the value and the index after
    /// it, or None; `self.i` is left at `start` either way.
    #[inline]
    fn plain_value(&mut self, start: usize, field: usize) -> Option<(Plain<'a>, usize)> {
        let rest = &self.b[field..];
        if let Some(after) = rest.strip_prefix(b"stringValue\":\"") {
            let (text, end) = self.plain_string(self.b.len() - after.len())?;
            Some((Plain::String(text), end))
        } else if let Some(after) = rest.strip_prefix(b"intValue\":\"") {
            let (text, end) = self.plain_string(self.b.len() - after.len())?;
            Some((Plain::Int(text), end))
        } else if let Some(after) = rest.strip_prefix(b"boolValue\":") {
            let at = self.b.len() - after.len();
            if after.starts_with(b"true") {
                Some((Plain::Bool(true), at + 4))
            } else if after.starts_with(b"false") {
                Some((Plain::Bool(false), at + 5))
            } else {
                None
            }
        } else if let Some(after) = rest.strip_prefix(b"doubleValue\":") {
            self.i = self.b.len() - after.len();
            let read = match after.first() {
                Some(b'-' | b'0'..=b'9') => self.double_val().ok(),
                _ => None,
            };
            let end = self.i;
            self.i = start;
            match read? {
                DoubleVal::Number(value) => Some((Plain::Double(value), end)),
                DoubleVal::Text(_) => None, // not read from a number: never here
            }
        } else {
            None
        }
    }

    /// A string's plain content from `at` (after its opening quote): the text and the index after
    /// its closing quote, or None when it has an escape or a control character.
    #[inline]
    fn plain_string(&self, at: usize) -> Option<(&'a str, usize)> {
        let end = plain_run(self.b, at);
        (self.b.get(end) == Some(&b'"')).then(|| (&self.text[at..end], end + 1))
    }

    /// An event read into `out` (a default one).
    fn event(&mut self, out: &mut Event<'a>) -> P<()> {
        out.attributes = self.vec();
        let (mut time, mut name, mut attributes) = (false, false, false);
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            match &*key {
                "timeUnixNano" => {
                    once(&mut time)?;
                    out.time = self.int_val()?;
                }
                "name" => {
                    once(&mut name)?;
                    out.name = self.text()?;
                }
                "attributes" => {
                    once(&mut attributes)?;
                    self.attributes(&mut out.attributes)?;
                }
                _ => self.skip()?,
            }
        }
        Ok(())
    }

    fn status(&mut self) -> P<Status<'a>> {
        let mut out = Status::default();
        let (mut code, mut message) = (false, false);
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            match &*key {
                "code" => {
                    once(&mut code)?;
                    out.code = self.i64()?;
                }
                "message" => {
                    once(&mut message)?;
                    out.message = self.text()?;
                }
                _ => self.skip()?,
            }
        }
        Ok(out)
    }

    /// One span into `out` (its vectors kept from the span before, cleared: one allocation a line).
    fn span(&mut self, out: &mut Span<'a>) -> P<()> {
        self.span_then(out, None).map(drop)
    }

    /// `span`, calling `ids_read` (when given) with the span's fingerprint as soon as both its ids
    /// are read (in their usual hex form: `hex_span_fingerprint`), before the rest of it, and
    /// returning it: a caller that adds the span to a table larger than the caches prefetches its
    /// slot there (`FpSet::prefetch`), and gives the fingerprint to `add_span_with`, not made twice.
    /// Without `ids_read` no fingerprint is made (the span is added later, by `add_spans`).
    fn span_then(&mut self, out: &mut Span<'a>, mut ids_read: Option<&mut dyn FnMut(u64)>) -> P<Option<u64>> {
        let mut fp = None;
        out.trace_id = Text::default();
        out.span_id = Text::default();
        out.name = Text::default();
        out.start = IntVal::default();
        out.end = IntVal::default();
        out.attributes.clear();
        self.recycle_events(&mut out.events);
        out.status = None;
        let mut seen = [false; 8];
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            match &*key {
                "traceId" | "spanId" => {
                    if &*key == "traceId" {
                        once(&mut seen[0])?;
                        out.trace_id = self.text()?;
                    } else {
                        once(&mut seen[1])?;
                        out.span_id = self.text()?;
                    }
                    if let (true, true, Some(call)) = (seen[0], seen[1], ids_read.as_mut()) {
                        fp = hex_span_fingerprint(&out.trace_id, &out.span_id);
                        if let Some(fp) = fp {
                            call(fp);
                        }
                    }
                }
                "name" => {
                    once(&mut seen[2])?;
                    out.name = self.text()?;
                }
                "startTimeUnixNano" => {
                    once(&mut seen[3])?;
                    out.start = self.int_val()?;
                }
                "endTimeUnixNano" => {
                    once(&mut seen[4])?;
                    out.end = self.int_val()?;
                }
                "attributes" => {
                    once(&mut seen[5])?;
                    self.attributes(&mut out.attributes)?;
                }
                "events" => {
                    once(&mut seen[6])?;
                    self.open(b'[')?;
                    let mut first = true;
                    while self.element(&mut first)? {
                        // made in its slot, as an attribute is (`push_with`); one left half-read by
                        // an error has its attribute vector kept by `recycle_events` all the same
                        let event = push_with(&mut out.events, Event::default);
                        self.event(event)?;
                    }
                }
                "status" => {
                    once(&mut seen[7])?;
                    out.status = if self.null()? { None } else { Some(self.status()?) };
                }
                _ => self.skip()?,
            }
        }
        Ok(fp)
    }

    fn resource(&mut self) -> P<Resource<'a>> {
        let mut out = Resource::default();
        out.attributes = self.vec();
        let mut attributes = false;
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            if &*key == "attributes" {
                once(&mut attributes)?;
                self.attributes(&mut out.attributes)?;
            } else {
                self.skip()?;
            }
        }
        Ok(out)
    }

    /// A `scopeSpans` list read whole (when it comes before its resource).
    fn scopes_whole(&mut self) -> P<Vec<ScopeSpans<'a>>> {
        let mut out = Vec::new();
        self.open(b'[')?;
        let mut first = true;
        while self.element(&mut first)? {
            let mut scope = ScopeSpans::default();
            let mut spans = false;
            self.open(b'{')?;
            let mut scope_first = true;
            while let Some(key) = self.key(&mut scope_first)? {
                if &*key == "spans" {
                    once(&mut spans)?;
                    self.open(b'[')?;
                    let mut span_first = true;
                    while self.element(&mut span_first)? {
                        let mut span = Span::default();
                        self.span(&mut span)?;
                        scope.spans.push(span);
                    }
                } else {
                    self.skip()?;
                }
            }
            out.push(scope);
        }
        Ok(out)
    }

    // --- the request, its spans added as they are read (stream.rs) -------------------------------

    fn request(&mut self, agg: &mut Aggregator, span: &mut Span<'a>) -> P<usize> {
        let mut count = None;
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            if &*key == "resourceSpans" {
                if count.is_some() {
                    return Err(Fail::Json);
                }
                let mut n = 0;
                self.open(b'[')?;
                let mut first = true;
                while self.element(&mut first)? {
                    self.resource_spans(agg, span)?;
                    n += 1;
                }
                count = Some(n);
            } else {
                self.skip()?;
            }
        }
        Ok(count.unwrap_or(0))
    }

    fn resource_spans(&mut self, agg: &mut Aggregator, span: &mut Span<'a>) -> P<()> {
        let mut resource: Option<Option<Resource<'a>>> = None; // outer None: no "resource" key yet
        let mut scopes_seen = false;
        let mut parsed_whole: Option<Vec<ScopeSpans<'a>>> = None;
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            match &*key {
                "resource" => {
                    if resource.is_some() {
                        return Err(Fail::Json);
                    }
                    resource = Some(if self.null()? { None } else { Some(self.resource()?) });
                }
                "scopeSpans" => {
                    once(&mut scopes_seen)?;
                    match &resource {
                        Some(found) => {
                            let facts = facts_of(agg, found)?;
                            self.scopes(agg, &facts, span)?;
                        }
                        None => parsed_whole = Some(self.scopes_whole()?),
                    }
                }
                _ => self.skip()?,
            }
        }
        let resource = resource.unwrap_or(None);
        if let Some(scopes) = parsed_whole {
            let facts = facts_of(agg, &resource)?;
            self.touched = true;
            if facts.sampled {
                agg.inputs.tail_sampled_spans += scopes.iter().map(|s| s.spans.len() as i64).sum::<i64>();
            }
            for scope in &scopes {
                agg.add_spans(&scope.spans, facts.simulated, &facts.process).map_err(Fail::Stop)?;
            }
        }
        if let Some(resource) = resource {
            self.give(resource.attributes);
        }
        Ok(())
    }

    /// A resource's `scopeSpans` list, each entry one batch, each span added as it is read.
    fn scopes(&mut self, agg: &mut Aggregator, facts: &Facts, span: &mut Span<'a>) -> P<()> {
        self.open(b'[')?;
        let mut first = true;
        while self.element(&mut first)? {
            let mut batch = Batch::default();
            let mut spans_seen = false;
            self.open(b'{')?;
            let mut scope_first = true;
            while let Some(key) = self.key(&mut scope_first)? {
                if &*key == "spans" {
                    once(&mut spans_seen)?;
                    self.open(b'[')?;
                    let mut span_first = true;
                    while self.element(&mut span_first)? {
                        let fp = self.span_then(span, Some(&mut |fp| agg.seen.prefetch(fp)))?;
                        self.touched = true;
                        if facts.sampled {
                            agg.inputs.tail_sampled_spans += 1;
                        }
                        agg.add_span_with(span, fp, facts.simulated, &facts.process, &mut batch)
                            .map_err(Fail::Stop)?;
                    }
                } else {
                    self.skip()?;
                }
            }
            self.touched = true;
            agg.end_batch(&batch, &facts.process).map_err(Fail::Stop)?;
        }
        Ok(())
    }
}

/// A key given twice is refused.
#[inline]
fn once(seen: &mut bool) -> P<()> {
    if std::mem::replace(seen, true) {
        return Err(Fail::Json);
    }
    Ok(())
}

/// A resource's facts (`Aggregator::resource_facts`) and whether a tail-sampling collector marked it.
struct Facts<'r> {
    simulated: bool,
    process: Process<'r>,
    sampled: bool,
}

fn facts_of<'r>(agg: &Aggregator, resource: &'r Option<Resource>) -> P<Facts<'r>> {
    let attributes = resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
    let (simulated, process) = agg.resource_facts(attributes).map_err(Fail::Stop)?;
    Ok(Facts {
        simulated,
        process,
        sampled: attributes.iter().any(|kv| &*kv.key == "alphatrace.sampling"),
    })
}
