//! `fingerprints.content_check` and `span_entry`: 8 bits of what a span says beyond its ids, and the
//! span set's entry (the id part of the fingerprint and that check). The check is the top byte of
//! CPython's `hash()` of a tuple of ints (64-bit builds): each int reduced modulo 2^61 - 1 (sign
//! kept, -1 read as -2), the tuple's xxHash-based combination of them (`tuplehash` in
//! Objects/tupleobject.c). Python's `len` of a string counts characters.

use crate::schema::Span;

pub const CHECK_BITS: u32 = 8;
pub const CHECK_MASK: u64 = (1 << CHECK_BITS) - 1;

/// `fingerprints.span_entry`.
pub fn span_entry(fp: u64, check: u64) -> u64 {
    let id = fp & !CHECK_MASK;
    (if id == 0 { 1 << CHECK_BITS } else { id }) | check
}

/// `fingerprints.content_check`: `start` and `end` are the span's times as the report reads them
/// (`values::time_of`).
pub fn content_check(start: i128, end: i128, span: &Span) -> u64 {
    let (code, message) = match &span.status {
        None => (-1, 0),
        Some(status) => (status.code as i128, status.message.chars().count()),
    };
    let lengths = [message, span.name.chars().count(), span.attributes.len(), span.events.len()].map(|n| n as i128);
    tuple_hash(&[start, end, code, lengths[0], lengths[1], lengths[2], lengths[3]]) >> 56 & CHECK_MASK
}

/// `hash(n)` of a Python int (as the unsigned 64-bit word of the signed result).
fn int_hash(n: i128) -> u64 {
    const MODULUS: u128 = (1 << 61) - 1;
    let reduced = (n.unsigned_abs() % MODULUS) as i64;
    let hash = if n < 0 { -reduced } else { reduced };
    (if hash == -1 { -2 } else { hash }) as u64
}

/// `hash(tuple)` of a tuple of Python ints.
fn tuple_hash(items: &[i128]) -> u64 {
    const PRIME_1: u64 = 11400714785074694791;
    const PRIME_2: u64 = 14029467366897019727;
    const PRIME_5: u64 = 2870177450012600261;
    let len = items.len() as u64;
    let mut acc = PRIME_5;
    for &item in items {
        acc = acc.wrapping_add(int_hash(item).wrapping_mul(PRIME_2));
        acc = acc.rotate_left(31);
        acc = acc.wrapping_mul(PRIME_1);
    }
    acc = acc.wrapping_add(len ^ (PRIME_5 ^ 3527539));
    if acc == u64::MAX {
        1546275796
    } else {
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::{int_hash, tuple_hash};

    #[test]
    fn as_cpython() {
        // hash(-1), hash(2**64 - 1), hash(-(2**63)), hash((1, 2)), hash((-1,)), hash((2**64 - 1, -5)) in CPython 3.11
        assert_eq!(int_hash(-1) as i64, -2);
        assert_eq!(int_hash((1 << 64) - 1) as i64, 7);
        assert_eq!(int_hash(-(1 << 63)) as i64, -4);
        assert_eq!(tuple_hash(&[1, 2]) as i64, -3550055125485641917);
        assert_eq!(tuple_hash(&[-1]) as i64, 8078679518589016365);
        assert_eq!(tuple_hash(&[(1 << 64) - 1, -5]) as i64, -979935140220480228);
    }
}
