//! A hand-written reader of one whole line's bytes into the `schema.rs` types, spans added to the
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

use crate::part::{Aggregator, Batch, Stop};
use crate::schema::{AnyValue, DoubleVal, Event, IntVal, KeyValue, Request, Resource, ScopeSpans, Span, Status, Text};
use crate::stream::{self, LineError};
use crate::tallies::Process;
use serde::de::Error as _;
use std::borrow::Cow;

/// serde_json's nesting limit: a container inside 127 others is refused.
const MAX_DEPTH: u32 = 127;

enum Fail {
    /// the line is not one the strict types read (or not one this reader reads: serde decides)
    Json,
    /// the aggregator stopped on one of the line's spans
    Stop(Stop),
}

type P<T> = Result<T, Fail>;

/// Parse `text` (one whole line) and add its spans as they come; as `stream::add_line`.
pub(crate) fn add_line(agg: &mut Aggregator, text: &str) -> Result<usize, LineError> {
    let mut scan = Scan {
        text,
        b: text.as_bytes(),
        i: 0,
        depth: 0,
        touched: false,
    };
    let read = scan.request(agg).and_then(|count| match scan.peek() {
        0 if scan.i == scan.b.len() => Ok(count),
        _ => Err(Fail::Json), // trailing characters
    });
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

struct Scan<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    depth: u32,
    /// whether the aggregator was given anything of this line (then it cannot be read again)
    touched: bool,
}

/// Bytes that end a run of plain string content: the quote, the backslash, control characters.
const STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = true;
        i += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte at or after `i` that ends a string's plain run (`STOP`), or the
/// length: eight bytes at a time, each word tested for a quote, a backslash or a byte below 0x20
/// (the lowest flagged byte is exact: a borrow only carries upward from a byte that matches).
#[inline]
fn plain_run(b: &[u8], mut i: usize) -> usize {
    while let Some(word) = b.get(i..i + 8) {
        let v = u64::from_le_bytes(word.try_into().unwrap());
        let quote = v ^ (ONES * b'"' as u64);
        let backslash = v ^ (ONES * b'\\' as u64);
        let found =
            (quote.wrapping_sub(ONES) & !quote | backslash.wrapping_sub(ONES) & !backslash | v.wrapping_sub(ONES * 0x20) & !v) & HIGHS;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !STOP[b[i] as usize] {
        i += 1;
    }
    i
}

/// A number's text read by serde_json's grammar.
enum Number {
    U64(u64),
    I64(i64),
    /// a fraction, an exponent, `-0`, or beyond 64 bits: serde_json reads it as a float (finite)
    F64(f64),
}

impl<'a> Scan<'a> {
    // --- the JSON grammar ------------------------------------------------------------------------

    /// The next byte after whitespace (0 at the end), not consumed.
    #[inline]
    fn peek(&mut self) -> u8 {
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b' ' | b'\n' | b'\t' | b'\r' => self.i += 1,
                _ => return c,
            }
        }
        0
    }

    #[inline]
    fn expect(&mut self, c: u8) -> P<()> {
        if self.peek() == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Fail::Json)
        }
    }

    /// Enter a container (`{` or `[`), counting its depth as serde_json does.
    #[inline]
    fn open(&mut self, c: u8) -> P<()> {
        self.expect(c)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Fail::Json);
        }
        Ok(())
    }

    /// The next key of an object, or None at its end (`first`: no key read yet).
    #[inline]
    fn key(&mut self, first: &mut bool) -> P<Option<Cow<'a, str>>> {
        match self.peek() {
            b'}' => {
                self.i += 1;
                self.depth -= 1;
                return Ok(None);
            }
            b',' if !*first => {
                self.i += 1;
                if self.peek() != b'"' {
                    return Err(Fail::Json);
                }
            }
            b'"' if *first => {}
            _ => return Err(Fail::Json),
        }
        *first = false;
        let key = self.string()?;
        self.expect(b':')?;
        Ok(Some(key))
    }

    /// Whether an array has another element (`first`: none read yet).
    #[inline]
    fn element(&mut self, first: &mut bool) -> P<bool> {
        match self.peek() {
            b']' => {
                self.i += 1;
                self.depth -= 1;
                return Ok(false);
            }
            b',' if !*first => {
                self.i += 1;
                if self.peek() == b']' {
                    return Err(Fail::Json); // a trailing comma
                }
            }
            _ if *first => {}
            _ => return Err(Fail::Json),
        }
        *first = false;
        Ok(true)
    }

    /// A string at the current (opening quote) position, borrowed unless it has escapes.
    #[inline]
    fn string(&mut self) -> P<Cow<'a, str>> {
        if self.peek() != b'"' {
            return Err(Fail::Json);
        }
        let start = self.i + 1;
        let i = plain_run(self.b, start);
        match self.b.get(i) {
            Some(b'"') => {
                self.i = i + 1;
                // the line is valid UTF-8 and the quotes are ASCII: the slice is on char boundaries
                Ok(Cow::Borrowed(&self.text[start..i]))
            }
            Some(b'\\') => {
                self.i = i;
                self.escaped(start).map(Cow::Owned)
            }
            _ => Err(Fail::Json), // a control character, or the end of the line
        }
    }

    /// The rest of a string with escapes (`self.i` at the first backslash), decoded as serde_json
    /// decodes into a `str`: a `\u` surrogate must be a leading one followed by a trailing one.
    #[cold]
    fn escaped(&mut self, start: usize) -> P<String> {
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.text[start..self.i]);
        let mut run = self.i;
        loop {
            let c = *self.b.get(self.i).ok_or(Fail::Json)?;
            match c {
                b'"' => {
                    out.push_str(&self.text[run..self.i]);
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[run..self.i]);
                    let e = *self.b.get(self.i + 1).ok_or(Fail::Json)?;
                    self.i += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let n = self.hex4()?;
                            let code = match n {
                                0xDC00..=0xDFFF => return Err(Fail::Json), // a lone trailing surrogate
                                0xD800..=0xDBFF => {
                                    if self.b.get(self.i) != Some(&b'\\') || self.b.get(self.i + 1) != Some(&b'u') {
                                        return Err(Fail::Json);
                                    }
                                    self.i += 2;
                                    let low = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return Err(Fail::Json);
                                    }
                                    (((n - 0xD800) as u32) << 10 | (low - 0xDC00) as u32) + 0x1_0000
                                }
                                _ => n as u32,
                            };
                            out.push(char::from_u32(code).ok_or(Fail::Json)?);
                        }
                        _ => return Err(Fail::Json),
                    }
                    run = self.i;
                }
                0x00..=0x1f => return Err(Fail::Json),
                _ => self.i += 1,
            }
        }
    }

    fn hex4(&mut self) -> P<u16> {
        let digits = self.b.get(self.i..self.i + 4).ok_or(Fail::Json)?;
        let mut n = 0u16;
        for &d in digits {
            let v = (d as char).to_digit(16).ok_or(Fail::Json)?;
            n = n << 4 | v as u16;
        }
        self.i += 4;
        Ok(n)
    }

    /// A number at the current position by serde_json's grammar (`-`? int frac? exp?): its kind, and
    /// its text's end. A float that is not finite is refused, as serde_json refuses it.
    fn number(&mut self) -> P<(Number, bool)> {
        let start = self.i;
        let b = self.b;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let mut significand = 0u64;
        let mut overflow = false;
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if b.get(i).is_some_and(u8::is_ascii_digit) {
                    return Err(Fail::Json); // a leading zero
                }
            }
            Some(b'1'..=b'9') => {
                while let Some(&d @ b'0'..=b'9') = b.get(i) {
                    match significand.checked_mul(10).and_then(|s| s.checked_add((d - b'0') as u64)) {
                        Some(s) => significand = s,
                        None => overflow = true,
                    }
                    i += 1;
                }
            }
            _ => return Err(Fail::Json),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Fail::Json);
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(Fail::Json);
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.i = i;
        if integer && !overflow {
            if !negative {
                return Ok((Number::U64(significand), true));
            }
            let neg = (significand as i64).wrapping_neg();
            if neg < 0 {
                return Ok((Number::I64(neg), true));
            }
        }
        // serde_json reads it as a float: refused when out of range
        let value: f64 = self.text[start..i].parse().map_err(|_| Fail::Json)?;
        if !value.is_finite() {
            return Err(Fail::Json);
        }
        Ok((Number::F64(value), integer))
    }

    fn literal(&mut self, word: &[u8]) -> P<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Fail::Json)
        }
    }

    /// `null` for an `Option` field: true (and consumed) when the value is null.
    #[inline]
    fn null(&mut self) -> P<bool> {
        if self.peek() == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Any JSON value, walked and checked (`schema::Skip`).
    fn skip(&mut self) -> P<()> {
        match self.peek() {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                self.open(b'{')?;
                let mut first = true;
                while self.key(&mut first)?.is_some() {
                    self.skip()?;
                }
            }
            b'[' => {
                self.open(b'[')?;
                let mut first = true;
                while self.element(&mut first)? {
                    self.skip()?;
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => {
                self.number()?;
            }
            _ => return Err(Fail::Json),
        }
        Ok(())
    }

    // --- the strict types (schema.rs) ------------------------------------------------------------

    fn text(&mut self) -> P<Text<'a>> {
        self.string().map(Text)
    }

    /// `IntVal`: a string, or an integer serde_json reads as u64 or i64.
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
            if let Some(kv) = self.key_value_plain() {
                out.push(kv);
                continue;
            }
            let mut kv = KeyValue::default();
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
            out.push(kv);
        }
        Ok(())
    }

    /// The common attribute written compactly, `{"key":"K","value":{"stringValue":"V"}}` (or
    /// `intValue` a string, `boolValue`, `doubleValue` a number), strings without escapes: read
    /// by its bytes, or None with nothing consumed (then the general path reads it).
    #[inline]
    fn key_value_plain(&mut self) -> Option<KeyValue<'a>> {
        const KEY: &[u8] = b"{\"key\":\"";
        const VALUE: &[u8] = b"\",\"value\":{\"";
        if self.depth + 2 > MAX_DEPTH || !self.b[self.i..].starts_with(KEY) {
            return None;
        }
        let start = self.i;
        let key_start = start + KEY.len();
        let key_end = plain_run(self.b, key_start);
        if !self.b[key_end..].starts_with(VALUE) {
            return None;
        }
        let mut kv = KeyValue::default();
        let mut value = AnyValue::default();
        let field = key_end + VALUE.len();
        let rest = &self.b[field..];
        let end = if let Some(after) = rest.strip_prefix(b"stringValue\":\"") {
            let (text, end) = self.plain_string(self.b.len() - after.len())?;
            value.string = Some(Text(Cow::Borrowed(text)));
            end
        } else if let Some(after) = rest.strip_prefix(b"intValue\":\"") {
            let (text, end) = self.plain_string(self.b.len() - after.len())?;
            value.int = Some(IntVal::Text(Cow::Borrowed(text)));
            end
        } else if let Some(after) = rest.strip_prefix(b"boolValue\":") {
            let at = self.b.len() - after.len();
            if after.starts_with(b"true") {
                value.boolean = Some(true);
                at + 4
            } else if after.starts_with(b"false") {
                value.boolean = Some(false);
                at + 5
            } else {
                return None;
            }
        } else if let Some(after) = rest.strip_prefix(b"doubleValue\":") {
            self.i = self.b.len() - after.len();
            let read = match after.first() {
                Some(b'-' | b'0'..=b'9') => self.double_val().ok(),
                _ => None,
            };
            let end = self.i;
            self.i = start;
            value.double = Some(read?);
            end
        } else {
            return None;
        };
        if !self.b[end..].starts_with(b"}}") {
            return None;
        }
        kv.key = Text(Cow::Borrowed(&self.text[key_start..key_end]));
        kv.value = Some(value);
        self.i = end + 2;
        Some(kv)
    }

    /// A string's plain content from `at` (after its opening quote): the text and the index after
    /// its closing quote, or None when it has an escape or a control character.
    #[inline]
    fn plain_string(&self, at: usize) -> Option<(&'a str, usize)> {
        let end = plain_run(self.b, at);
        (self.b.get(end) == Some(&b'"')).then(|| (&self.text[at..end], end + 1))
    }

    fn event(&mut self) -> P<Event<'a>> {
        let mut out = Event::default();
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
        Ok(out)
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
        out.trace_id = Text::default();
        out.span_id = Text::default();
        out.name = Text::default();
        out.start = IntVal::default();
        out.end = IntVal::default();
        out.attributes.clear();
        out.events.clear();
        out.status = None;
        let mut seen = [false; 8];
        self.open(b'{')?;
        let mut first = true;
        while let Some(key) = self.key(&mut first)? {
            match &*key {
                "traceId" => {
                    once(&mut seen[0])?;
                    out.trace_id = self.text()?;
                }
                "spanId" => {
                    once(&mut seen[1])?;
                    out.span_id = self.text()?;
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
                        let event = self.event()?;
                        out.events.push(event);
                    }
                }
                "status" => {
                    once(&mut seen[7])?;
                    out.status = if self.null()? { None } else { Some(self.status()?) };
                }
                _ => self.skip()?,
            }
        }
        Ok(())
    }

    fn resource(&mut self) -> P<Resource<'a>> {
        let mut out = Resource::default();
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

    fn request(&mut self, agg: &mut Aggregator) -> P<usize> {
        let mut count = None;
        self.open(b'{')?;
        let mut first = true;
        let mut span = Span::default();
        while let Some(key) = self.key(&mut first)? {
            if &*key == "resourceSpans" {
                if count.is_some() {
                    return Err(Fail::Json);
                }
                let mut n = 0;
                self.open(b'[')?;
                let mut first = true;
                while self.element(&mut first)? {
                    self.resource_spans(agg, &mut span)?;
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
        if let Some(scopes) = parsed_whole {
            let resource = resource.unwrap_or(None);
            let facts = facts_of(agg, &resource)?;
            self.touched = true;
            if facts.sampled {
                agg.inputs.tail_sampled_spans += scopes.iter().map(|s| s.spans.len() as i64).sum::<i64>();
            }
            for scope in &scopes {
                agg.add_spans(&scope.spans, facts.simulated, &facts.process).map_err(Fail::Stop)?;
            }
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
                        self.span(span)?;
                        self.touched = true;
                        if facts.sampled {
                            agg.inputs.tail_sampled_spans += 1;
                        }
                        agg.add_span(span, facts.simulated, &facts.process, &mut batch)
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
