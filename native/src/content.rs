//! `fingerprints.content_check` and `span_entry`: a span's content as the MessagePack bytes msgspec
//! writes for the decoded `otlp_schema.Span` (every field in declaration order, defaults included;
//! integers in their smallest form, floats as float64, strings with their shortest header), its
//! Adler-32, mixed to 8 bits; and the span set's entry (the id part of the fingerprint and that
//! check). Values the core reads but msgspec's structs do not declare (a span attribute's
//! `boolValue`, an event's time without alpha signals) are left out, as Python leaves them out.

use crate::schema::{AnyValue, DoubleVal, Event, IntVal, KeyValue, Span, Text};

pub const CHECK_BITS: u32 = 8;
pub const CHECK_MASK: u64 = (1 << CHECK_BITS) - 1;
const K_SPAN: u64 = 0x9E3779B97F4A7C15;
const NIL: u8 = 0xc0;

/// `fingerprints.span_entry`.
pub fn span_entry(fp: u64, check: u64) -> u64 {
    let id = fp & !CHECK_MASK;
    (if id == 0 { 1 << CHECK_BITS } else { id }) | check
}

/// The buffer the bytes of one span are written to (kept between spans: no allocation per span).
#[derive(Default)]
pub struct Content {
    buf: Vec<u8>,
}

impl Content {
    /// `fingerprints.content_check` of a span decoded as `Span[Event]` (`full_events`, a build
    /// keeping alpha signals) or `Span[NarrowEvent]`.
    pub fn check(&mut self, span: &Span, full_events: bool) -> u64 {
        self.buf.clear();
        self.span(span, full_events);
        (adler32(&self.buf) as u64).wrapping_mul(K_SPAN) >> 56
    }

    fn span(&mut self, span: &Span, full_events: bool) {
        self.map(8);
        self.field("traceId");
        self.text(&span.trace_id);
        self.field("spanId");
        self.text(&span.span_id);
        self.field("name");
        self.text(&span.name);
        self.field("startTimeUnixNano");
        self.int_val(&span.start);
        self.field("endTimeUnixNano");
        self.int_val(&span.end);
        self.field("attributes");
        self.array(span.attributes.len());
        for kv in &span.attributes {
            self.key_value(kv, 3);
        }
        self.field("events");
        self.array(span.events.len());
        for event in &span.events {
            self.event(event, full_events);
        }
        self.field("status");
        match &span.status {
            None => self.buf.push(NIL),
            Some(status) => {
                self.map(2);
                self.field("code");
                self.int(status.code as i128);
                self.field("message");
                self.text(&status.message);
            }
        }
    }

    fn event(&mut self, event: &Event, full: bool) {
        if full {
            self.map(3);
            self.field("timeUnixNano");
            self.int_val(&event.time);
        } else {
            self.map(2);
        }
        self.field("name");
        self.text(&event.name);
        self.field("attributes");
        self.array(event.attributes.len());
        for kv in &event.attributes {
            self.key_value(kv, if full { 4 } else { 1 });
        }
    }

    /// A `KeyValue` whose value struct declares the first `fields` of stringValue, intValue,
    /// doubleValue, boolValue (`AnyValue` 3, `EventValue` 4, `StringValue` 1).
    fn key_value(&mut self, kv: &KeyValue, fields: usize) {
        self.map(2);
        self.field("key");
        self.text(&kv.key);
        self.field("value");
        let Some(value) = &kv.value else {
            self.buf.push(NIL);
            return;
        };
        let AnyValue {
            string,
            int,
            double,
            boolean,
            ..
        } = value;
        self.map(fields);
        self.field("stringValue");
        match string {
            Some(text) => self.text(text),
            None => self.buf.push(NIL),
        }
        if fields >= 3 {
            self.field("intValue");
            match int {
                Some(v) => self.int_val(v),
                None => self.buf.push(NIL),
            }
            self.field("doubleValue");
            match double {
                Some(DoubleVal::Number(v)) => {
                    self.buf.push(0xcb);
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
                Some(DoubleVal::Text(text)) => self.str(text),
                None => self.buf.push(NIL),
            }
        }
        if fields >= 4 {
            self.field("boolValue");
            self.buf.push(match boolean {
                Some(true) => 0xc3,
                Some(false) => 0xc2,
                None => NIL,
            });
        }
    }

    fn map(&mut self, fields: usize) {
        self.buf.push(0x80 | fields as u8); // every struct here has fewer than 16 fields
    }

    fn array(&mut self, len: usize) {
        if len < 16 {
            self.buf.push(0x90 | len as u8);
        } else if len < 1 << 16 {
            self.buf.push(0xdc);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xdd);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    fn field(&mut self, name: &str) {
        self.str(name);
    }

    fn text(&mut self, text: &Text) {
        self.str(text);
    }

    fn str(&mut self, text: &str) {
        let len = text.len();
        if len < 32 {
            self.buf.push(0xa0 | len as u8);
        } else if len < 1 << 8 {
            self.buf.extend_from_slice(&[0xd9, len as u8]);
        } else if len < 1 << 16 {
            self.buf.push(0xda);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xdb);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.buf.extend_from_slice(text.as_bytes());
    }

    fn int_val(&mut self, value: &IntVal) {
        match value {
            IntVal::Int(v) => self.int(*v),
            IntVal::Text(text) => self.str(text),
        }
    }

    /// An integer in [-2^63, 2^64) (the schema reads no other) in its smallest MessagePack form.
    fn int(&mut self, v: i128) {
        let buf = &mut self.buf;
        if v >= 0 {
            if v < 128 {
                buf.push(v as u8);
            } else if v < 1 << 8 {
                buf.extend_from_slice(&[0xcc, v as u8]);
            } else if v < 1 << 16 {
                buf.push(0xcd);
                buf.extend_from_slice(&(v as u16).to_be_bytes());
            } else if v < 1 << 32 {
                buf.push(0xce);
                buf.extend_from_slice(&(v as u32).to_be_bytes());
            } else {
                buf.push(0xcf);
                buf.extend_from_slice(&(v as u64).to_be_bytes());
            }
        } else if v >= -32 {
            buf.push(v as i8 as u8);
        } else if v >= -(1 << 7) {
            buf.extend_from_slice(&[0xd0, v as i8 as u8]);
        } else if v >= -(1 << 15) {
            buf.push(0xd1);
            buf.extend_from_slice(&(v as i16).to_be_bytes());
        } else if v >= -(1 << 31) {
            buf.push(0xd2);
            buf.extend_from_slice(&(v as i32).to_be_bytes());
        } else {
            buf.push(0xd3);
            buf.extend_from_slice(&(v as i64).to_be_bytes());
        }
    }
}

/// `zlib.adler32` (from 1), 16 bytes at a time with the modulo deferred.
fn adler32(data: &[u8]) -> u32 {
    const MOD: u64 = 65521;
    const BLOCK: usize = 16;
    const NMAX: usize = 5552 / BLOCK * BLOCK; // bytes after which the sums must be reduced (u32 in zlib; kept here)
    let (mut a, mut b) = (1u64, 0u64);
    for run in data.chunks(NMAX) {
        let mut chunks = run.chunks_exact(BLOCK);
        for chunk in &mut chunks {
            let (mut sum, mut weighted) = (0u64, 0u64);
            for (i, &x) in chunk.iter().enumerate() {
                sum += x as u64;
                weighted += (BLOCK - i) as u64 * x as u64;
            }
            b += BLOCK as u64 * a + weighted;
            a += sum;
        }
        for &x in chunks.remainder() {
            a += x as u64;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    ((b << 16) | a) as u32
}

#[cfg(test)]
mod tests {
    use super::adler32;

    #[test]
    fn adler32_as_zlib() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E60398);
        let long: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + x as u64) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!(adler32(&long), ((b << 16) | a) as u32);
    }
}
