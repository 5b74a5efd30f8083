//! The JSON grammar of the core's scanner of a line's bytes (`scan_spans.rs` reads the spans with
//! it): whitespace, objects and arrays (serde_json's nesting limit), strings (eight bytes at a time,
//! borrowed from the line unless they have escapes, decoded as serde_json decodes into a `str`),
//! numbers by serde_json's grammar and types, literals, and any value walked and checked. Each
//! refuses exactly what serde_json refuses there (`Fail::Json`).

use crate::part::Stop;
use std::borrow::Cow;

/// serde_json's nesting limit: a container inside 127 others is refused.
pub(crate) const MAX_DEPTH: u32 = 127;

pub(crate) enum Fail {
    /// the line is not one the strict types read (or not one this reader reads: serde decides)
    Json,
    /// the aggregator stopped on one of the line's spans
    Stop(Stop),
}

pub(crate) type P<T> = Result<T, Fail>;

pub(crate) struct Scan<'a> {
    pub(crate) text: &'a str,
    pub(crate) b: &'a [u8],
    pub(crate) i: usize,
    pub(crate) depth: u32,
    /// whether the aggregator was given anything of this line (then it cannot be read again)
    pub(crate) touched: bool,
    /// Attribute vectors of this line's spans, events and resources, emptied for the next
    /// (`scan_spans::Spare`).
    pub(crate) pool: Vec<Vec<crate::schema::KeyValue<'a>>>,
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
pub(crate) fn plain_run(b: &[u8], mut i: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    match plain_run_sse2(b, i) {
        Ok(found) => return found,
        Err(rest) => i = rest,
    }
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

/// `plain_run` 16 bytes at a time (SSE2, part of every x86-64): the index of the first quote,
/// backslash or control character from `i`, or (`Err`), when there is none up to where fewer
/// than 16 bytes are left, that place (the 8-byte loop goes on from there). About half the
/// instructions of the 8-byte loop a string (issue 13: strings are most of a span's bytes).
#[cfg(target_arch = "x86_64")]
#[inline]
fn plain_run_sse2(b: &[u8], mut i: usize) -> Result<usize, usize> {
    use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8};
    // SAFETY: SSE2 is part of x86-64 (every such processor has it), and each load reads bytes
    // i..i + 16, within `b` (the loop's condition), unaligned
    unsafe {
        let (quote, backslash, controls) = (_mm_set1_epi8(b'"' as i8), _mm_set1_epi8(b'\\' as i8), _mm_set1_epi8(0x1f));
        while i + 16 <= b.len() {
            let v = _mm_loadu_si128(b.as_ptr().add(i).cast::<__m128i>());
            // a byte below 0x20 is its own unsigned minimum with 0x1f
            let stops = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                _mm_cmpeq_epi8(_mm_min_epu8(v, controls), v),
            );
            let found = _mm_movemask_epi8(stops);
            if found != 0 {
                return Ok(i + found.trailing_zeros() as usize);
            }
            i += 16;
        }
    }
    Err(i)
}

/// A number's text read by serde_json's grammar.
pub(crate) enum Number {
    U64(u64),
    I64(i64),
    /// a fraction, an exponent, `-0`, or beyond 64 bits: serde_json reads it as a float (finite)
    F64(f64),
}

impl<'a> Scan<'a> {
    // --- the JSON grammar ------------------------------------------------------------------------

    /// The next byte after whitespace (0 at the end), not consumed.
    #[inline]
    pub(crate) fn peek(&mut self) -> u8 {
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b' ' | b'\n' | b'\t' | b'\r' => self.i += 1,
                _ => return c,
            }
        }
        0
    }

    #[inline]
    pub(crate) fn expect(&mut self, c: u8) -> P<()> {
        if self.peek() == c {
            self.i += 1;
            Ok(())
        } else {
            Err(Fail::Json)
        }
    }

    /// Enter a container (`{` or `[`), counting its depth as serde_json does.
    #[inline]
    pub(crate) fn open(&mut self, c: u8) -> P<()> {
        self.expect(c)?;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Fail::Json);
        }
        Ok(())
    }

    /// The next key of an object, or None at its end (`first`: no key read yet).
    #[inline]
    pub(crate) fn key(&mut self, first: &mut bool) -> P<Option<Cow<'a, str>>> {
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
    pub(crate) fn element(&mut self, first: &mut bool) -> P<bool> {
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
    // always: its result in registers, not written to memory and read back by its caller in other
    // pieces, a stall on each of a span's ids, name and times (issue 13)
    #[inline(always)]
    pub(crate) fn string(&mut self) -> P<Cow<'a, str>> {
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
    pub(crate) fn number(&mut self) -> P<(Number, bool)> {
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

    pub(crate) fn literal(&mut self, word: &[u8]) -> P<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Fail::Json)
        }
    }

    /// `null` for an `Option` field: true (and consumed) when the value is null.
    #[inline]
    pub(crate) fn null(&mut self) -> P<bool> {
        if self.peek() == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Any JSON value, walked and checked (`schema::Skip`).
    pub(crate) fn skip(&mut self) -> P<()> {
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
}
