//! Values read from spans as Python reads them (`otlp_schema.as_int`, `as_float`, `as_time_ns`,
//! `aggregates.label`), span and run fingerprints (`fingerprints.py`), and `Helpers`: what the core
//! asks of Python for rare input, so that the answer is Python's own.

use crate::part::{decline, MAX_TIME_NS, MAX_TOKENS, R};
use crate::schema::{AnyValue, DoubleVal, IntVal};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use rustc_hash::FxHashMap;
use std::borrow::Cow;

const K_SPAN: u64 = 0x9E3779B97F4A7C15;
const K_TRACE: u64 = 0xC2B2AE3D27D4EB4F;
const K_TRACE_HIGH: u64 = 0x165667B19E3779F9;

// --- the Python side's answers for rare cases -------------------------------------------------------

pub struct Helpers<'py> {
    pub obj: Bound<'py, PyAny>,
    prices: FxHashMap<String, Option<(f64, f64, f64)>>,
    days: FxHashMap<String, i64>,
}

impl<'py> Helpers<'py> {
    pub fn new(obj: Bound<'py, PyAny>) -> Self {
        Helpers {
            obj,
            prices: FxHashMap::default(),
            days: FxHashMap::default(),
        }
    }

    pub(crate) fn call1(&self, name: &str, args: impl IntoPyObject<'py, Target = PyTuple>) -> R<Bound<'py, PyAny>> {
        Ok(self.obj.getattr(name)?.call1(args)?)
    }

    /// `int(text)`, None on ValueError (as_int, as_time_ns, the horizon); declines beyond i128.
    pub(crate) fn int_text(&self, text: &str) -> R<Option<i128>> {
        let value = self.call1("int_text", (text,))?;
        if value.is_none() {
            return Ok(None);
        }
        match value.extract::<i128>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => decline("an integer beyond 128 bits"),
        }
    }

    pub(crate) fn price(&mut self, model: &str) -> R<Option<(f64, f64, f64)>> {
        if let Some(found) = self.prices.get(model) {
            return Ok(*found);
        }
        let value = self.call1("price", (model,))?;
        let price = if value.is_none() {
            None
        } else {
            Some(value.extract::<(f64, f64, f64)>()?)
        };
        self.prices.insert(model.to_string(), price);
        Ok(price)
    }

    /// `AlphaEvents._day_ordinal`: the ordinal of an ISO date (first 10 characters), 0 if none.
    pub(crate) fn day_ordinal(&mut self, text: &str) -> R<i64> {
        if let Some(&day) = self.days.get(text) {
            return Ok(day);
        }
        let day: i64 = self.call1("day_ordinal", (text,))?.extract()?;
        if self.days.len() < 65_536 {
            self.days.insert(text.to_string(), day);
        }
        Ok(day)
    }
}

// --- typed values (otlp_schema.as_int / as_float / as_str) -------------------------------------------

pub(crate) fn strict_int(text: &str) -> Option<i128> {
    // the common case first: at most 19 digits (a time in ns, a token count) fit a u64
    if !text.is_empty() && text.len() <= 19 {
        if let Some(value) = plain_u64(text.as_bytes()) {
            return Some(value as i128);
        }
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 36 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i128>().ok()
}

/// At most 19 ASCII digits as their number, eight at a time (a time in ns has 19: two words and
/// three digits, not nineteen steps); None when a byte is not a digit.
#[inline]
fn plain_u64(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut chunks = digits.chunks_exact(8);
    for chunk in &mut chunks {
        value = value * 100_000_000 + eight_digits(u64::from_le_bytes(chunk.try_into().unwrap()))?;
    }
    for &b in chunks.remainder() {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + (b - b'0') as u64;
    }
    Some(value)
}

/// Eight ASCII digits (the first in the lowest byte) as their number, or None when a byte is not
/// a digit. A byte below '0' has its top bit set after the subtraction (a borrow into the next
/// byte only follows such a byte), one above '9' after adding 0x76; then the digits are added in
/// pairs, fours and eights by multiplications (simdjson's `parse_eight_digits_unrolled`).
#[inline]
fn eight_digits(word: u64) -> Option<u64> {
    let digits = word.wrapping_sub(0x3030_3030_3030_3030);
    if (digits | digits.wrapping_add(0x7676_7676_7676_7676)) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    let pairs = (digits * 10 + (digits >> 8)) & 0x00ff_00ff_00ff_00ff;
    let fours = (pairs * 100 + (pairs >> 16)) & 0x0000_ffff_0000_ffff;
    Some((fours * 10_000 + (fours >> 32)) & 0xffff_ffff)
}

/// `int(raw)` of an OTLP `str | int` field: None where Python raises ValueError.
pub(crate) fn int_of(raw: &IntVal, helpers: &Helpers) -> R<Option<i128>> {
    match raw {
        IntVal::Int(n) => Ok(Some(*n)),
        IntVal::Text(text) => match strict_int(text) {
            Some(n) => Ok(Some(n)),
            None => helpers.int_text(text),
        },
    }
}

pub(crate) fn as_int(value: Option<&AnyValue>, helpers: &Helpers) -> R<Option<i128>> {
    let Some(value) = value else { return Ok(None) };
    if let Some(raw) = &value.int {
        return int_of(raw, helpers);
    }
    if let Some(DoubleVal::Number(f)) = value.double {
        if f.is_finite() && f.fract() == 0.0 {
            if f.abs() >= 1.0e38 {
                return decline("an integral double beyond 128 bits");
            }
            return Ok(Some(f as i128));
        }
    }
    Ok(None)
}

pub(crate) fn as_float(value: Option<&AnyValue>, helpers: &Helpers) -> R<Option<f64>> {
    let Some(value) = value else { return Ok(None) };
    match &value.double {
        Some(DoubleVal::Number(f)) => Ok(Some(*f)),
        Some(DoubleVal::Text(text)) => Ok(match &**text {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        }),
        None => Ok(as_int(Some(value), helpers)?.map(|n| n as f64)),
    }
}

pub(crate) fn as_str<'s>(value: Option<&'s AnyValue>) -> Option<&'s str> {
    value.and_then(|v| v.string.as_deref())
}

/// `otlp_schema.as_time_ns` and the range check: 0 when unreadable or beyond fixed64.
pub(crate) fn time_of(raw: &IntVal, helpers: &Helpers) -> R<i128> {
    let time = int_of(raw, helpers)?.unwrap_or(0);
    Ok(if time > MAX_TIME_NS { 0 } else { time })
}

/// `_count_attr`: a cumulative counter; negative, too large or not an integer reads as 0.
pub(crate) fn count_attr(value: Option<&AnyValue>, helpers: &Helpers) -> R<i128> {
    Ok(match as_int(value, helpers)? {
        Some(n) if (0..=MAX_TOKENS).contains(&n) => n,
        _ => 0,
    })
}

/// `aggregates.label`: a name bounded in characters; empty or missing becomes `fallback`.
pub fn label<'t>(text: Option<&'t str>, fallback: &'t str, limit: usize) -> Cow<'t, str> {
    match text {
        None | Some("") => Cow::Borrowed(fallback),
        Some(text) if text.len() <= limit || text.chars().count() <= limit => Cow::Borrowed(text),
        Some(text) => {
            let mut out: String = text.chars().take(limit - 1).collect();
            out.push('\u{2026}');
            Cow::Owned(out)
        }
    }
}

// --- fingerprints (fingerprints.py) ------------------------------------------------------------------

pub(crate) fn hex_u128(text: &str) -> Option<u128> {
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    // `u128::from_str_radix` of hex digits only (no sign), from a table, in two 64-bit halves:
    // every span has two ids
    let bytes = text.as_bytes();
    let split = bytes.len().saturating_sub(16);
    let (high, low) = (hex_u64(&bytes[..split])?, hex_u64(&bytes[split..])?);
    Some((high as u128) << 64 | low as u128)
}

/// At most 16 hex digits as a number (0 for none); None when one is not a hex digit.
fn hex_u64(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut bad = 0u8;
    for &b in digits {
        let digit = HEX[b as usize];
        bad |= digit;
        value = value << 4 | (digit & 0x0f) as u64;
    }
    (bad & 0x80 == 0).then_some(value)
}

/// Each byte's hex digit value, or 0x80 when it is not one.
const HEX: [u8; 256] = {
    let mut table = [0x80u8; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// The hex digits of a uuid-like key (dashes dropped) as a number: at most 32 digits, else None.
pub(crate) fn uuid_u128(text: &str) -> Option<u128> {
    // the common case first: a UUID's own layout, 8-4-4-4-12 hex digits, read a group at a time
    // (~80 instructions, not ~800 a character at a time: every span carries its run's id)
    let b = text.as_bytes();
    if b.len() == 36 && b[8] == b'-' && b[13] == b'-' && b[18] == b'-' && b[23] == b'-' {
        if let (Some(a), Some(c), Some(d), Some(e), Some(f)) = (
            hex_u64(&b[..8]),
            hex_u64(&b[9..13]),
            hex_u64(&b[14..18]),
            hex_u64(&b[19..23]),
            hex_u64(&b[24..]),
        ) {
            return Some((a as u128) << 96 | (c as u128) << 80 | (d as u128) << 64 | (e as u128) << 48 | f as u128);
        }
    }
    let mut value: u128 = 0;
    let mut digits = 0;
    for b in text.bytes() {
        if b == b'-' {
            continue;
        }
        let digit = (b as char).to_digit(16)?;
        digits += 1;
        if digits > 32 {
            return None;
        }
        value = value << 4 | digit as u128;
    }
    if digits == 0 {
        return None;
    }
    Some(value)
}

pub(crate) fn span_fingerprint(trace_id: &str, span_id: &str, helpers: &Helpers) -> R<u64> {
    if let Some(fp) = hex_span_fingerprint(trace_id, span_id) {
        return Ok(fp);
    }
    Ok(helpers.call1("span_fingerprint", (trace_id, span_id))?.extract()?)
}

/// `span_fingerprint` of ids in their usual form (32 and 16 hex digits), without Python; None
/// for any other form (then only Python's rule gives it). Never 0 or 1.
pub(crate) fn hex_span_fingerprint(trace_id: &str, span_id: &str) -> Option<u64> {
    if trace_id.len() != 32 || span_id.len() != 16 {
        return None;
    }
    let (t, s) = (hex_u128(trace_id)?, hex_u128(span_id)?);
    let value = ((t as u64).wrapping_mul(K_TRACE)) ^ (((t >> 64) as u64).wrapping_mul(K_TRACE_HIGH)) ^ ((s as u64).wrapping_mul(K_SPAN));
    Some(if value < 2 { value + 2 } else { value })
}

pub(crate) fn run_fingerprint(run_key: &str, helpers: &Helpers) -> R<u64> {
    if run_key.len() == 36 && run_key.as_bytes()[8] == b'-' {
        if let Some(x) = uuid_u128(run_key) {
            let value = ((x as u64).wrapping_mul(K_SPAN)) ^ (((x >> 64) as u64).wrapping_mul(K_TRACE));
            return Ok(if value < 2 { value + 2 } else { value });
        }
    }
    Ok(helpers.call1("run_fingerprint", (run_key,))?.extract()?)
}

/// `signal_store.span_ids`: 24 raw bytes, or the strings when they are not hex ids.
pub(crate) enum Ids {
    Raw([u8; 24]),
    Odd(String, String),
}

pub(crate) fn span_ids(trace_id: &str, span_id: &str, helpers: &Helpers) -> R<Ids> {
    if trace_id.len() == 32 && span_id.len() == 16 {
        if let (Some(t), Some(s)) = (hex_u128(trace_id), hex_u128(span_id)) {
            let mut raw = [0u8; 24];
            raw[..16].copy_from_slice(&t.to_be_bytes());
            raw[16..].copy_from_slice(&(s as u64).to_be_bytes());
            return Ok(Ids::Raw(raw));
        }
    }
    let value = helpers.call1("span_ids", (trace_id, span_id))?;
    if let Ok(bytes) = value.downcast::<PyBytes>() {
        let mut raw = [0u8; 24]; // struct "24s": padded with NULs, or cut
        let data = bytes.as_bytes();
        let n = data.len().min(24);
        raw[..n].copy_from_slice(&data[..n]);
        return Ok(Ids::Raw(raw));
    }
    let (t, s): (String, String) = value.extract()?;
    Ok(Ids::Odd(t, s))
}

#[cfg(test)]
mod tests {
    use super::strict_int;

    #[test]
    fn a_uuid_a_group_at_a_time_as_a_character_at_a_time() {
        fn slow(text: &str) -> Option<u128> {
            let digits: String = text.chars().filter(|&c| c != '-').collect();
            if digits.is_empty() || digits.len() > 32 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            u128::from_str_radix(&digits, 16).ok()
        }
        for text in [
            "eb1167b3-67a9-4378-bc65-c1e582e2e662",
            "EB1167B3-67A9-4378-BC65-C1E582E2E66F",
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "eb1167b3-67a9-4378-bc65-c1e582e2e66g",
            "eb1167b3-67a9-4378-bc65+c1e582e2e662",
            "eb1167b3-67a9-4378-bc6-5c1e582e2e662",
            "eb1167b3-67a9-4378-bc65-c1e582e2e6 2",
            "eb1167b3--7a9-4378-bc65-c1e582e2e662",
            "run-1",
        ] {
            assert_eq!(super::uuid_u128(text), slow(text), "{text:?}");
        }
    }

    #[test]
    fn eight_digits_at_a_time_as_one_at_a_time() {
        let texts = [
            "0",
            "7",
            "12345678",
            "1763900000861597326",
            "9999999999999999999",
            "00000000000000000001",
            "1234567",
            "123456789",
            "12345678901234567",
            "1234567/",
            "1234567:",
            "12a45678",
            "/2345678",
            ":2345678",
            "1234567\u{80}",
            "12345678 ",
            " 1",
            "-5",
            "",
            "1234567890123456789",
            "0000000099999999",
        ];
        for text in texts {
            let naive = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse::<i128>().unwrap());
            assert_eq!(strict_int(text).filter(|_| !text.starts_with('-')), naive, "{text:?}");
        }
        for b in 0..=255u8 {
            let text = [b'1', b'2', b'3', b, b'5', b'6', b'7', b'8', b'9'];
            let expected = b.is_ascii_digit().then(|| 123_000_000 + (b - b'0') as i128 * 100_000 + 56_789);
            assert_eq!(std::str::from_utf8(&text).ok().and_then(strict_int), expected, "{b}");
        }
    }
}
