//! The OTLP/JSON shapes the report reads, as serde types borrowing from the line.
//!
//! They mirror `meta_supervisor/reading/otlp_schema.py` (the msgspec structs) but accept a strict subset of
//! what msgspec accepts: a duplicate key, an integer given as a float, an integer beyond 64 bits, a
//! `null` where msgspec wants a value, are errors here. An error makes the caller decline the part
//! (the Python reader then reads it), so being stricter never changes a report.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A struct read only from a JSON object (serde's derive would also take an array of its fields,
/// which msgspec refuses). Known keys are read (a key given twice is an error); any other value is
/// skipped with `Skip`, which walks it and so meets serde_json's nesting limit (128), where msgspec
/// stops at Python's recursion limit (about 1000): a line nested that deep is declined.
macro_rules! object {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty = $key:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Default)]
        pub struct $name<'a> {
            $(pub $field: $ty,)*
            _text: std::marker::PhantomData<&'a str>,
        }

        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct ObjectVisitor<'a>(std::marker::PhantomData<&'a str>);

                impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str(concat!("an object (", stringify!($name), ")"))
                    }
                    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                        let mut out = $name::default();
                        $(let mut $field = false;)*
                        while let Some(key) = map.next_key::<Text<'de>>()? {
                            match &*key {
                                $($key => {
                                    if $field {
                                        return Err(de::Error::duplicate_field($key));
                                    }
                                    $field = true;
                                    out.$field = map.next_value()?;
                                })*
                                _ => {
                                    map.next_value::<Skip>()?;
                                }
                            }
                        }
                        Ok(out)
                    }
                }

                d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
            }
        }
    };
}

object!(Request { resource_spans: Vec<ResourceSpans<'a>> = "resourceSpans" });
object!(ResourceSpans { resource: Option<Resource<'a>> = "resource", scope_spans: Vec<ScopeSpans<'a>> = "scopeSpans" });
object!(Resource { attributes: Vec<KeyValue<'a>> = "attributes" });
object!(ScopeSpans { spans: Vec<Span<'a>> = "spans" });
object!(Span {
    trace_id: Text<'a> = "traceId",
    span_id: Text<'a> = "spanId",
    name: Text<'a> = "name",
    start: IntVal<'a> = "startTimeUnixNano",
    end: IntVal<'a> = "endTimeUnixNano",
    attributes: Vec<KeyValue<'a>> = "attributes",
    events: Vec<Event<'a>> = "events",
    status: Option<Status<'a>> = "status",
});
object!(Status { code: i64 = "code", message: Text<'a> = "message" });
object!(Event { time: IntVal<'a> = "timeUnixNano", name: Text<'a> = "name", attributes: Vec<KeyValue<'a>> = "attributes" });
object!(KeyValue { key: Text<'a> = "key", value: Option<AnyValue<'a>> = "value" });
object!(
    /// Every value field any of the msgspec value structs reads (span, resource and event values).
    AnyValue {
        string: Option<Text<'a>> = "stringValue",
        int: Option<IntVal<'a>> = "intValue",
        double: Option<DoubleVal<'a>> = "doubleValue",
        boolean: Option<bool> = "boolValue",
    }
);

/// Any JSON value, walked and dropped.
pub(crate) struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Skip, M::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

/// `str | int`: OTLP/JSON writes 64-bit integers as strings.
pub enum IntVal<'a> {
    Int(i128),
    Text(Cow<'a, str>),
}

/// `float | str`: a number, or one of the strings "NaN", "Infinity", "-Infinity" (or anything else).
pub enum DoubleVal<'a> {
    Number(f64),
    Text(Cow<'a, str>),
}

struct IntValVisitor;

impl<'de> Visitor<'de> for IntValVisitor {
    type Value = IntVal<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer or a string")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(IntVal::Int(v as i128))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(IntVal::Int(v as i128))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(IntVal::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(IntVal::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(IntVal::Text(Cow::Owned(v)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for IntVal<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntValVisitor)
    }
}

/// Read from the number's own text: msgspec reads an integer literal as an int and then a float
/// (so `-0` is 0.0), a fraction or exponent as a float (`-0.0` is -0.0), and refuses one out of
/// range; serde_json's own number parsing would give -0.0 for both.
impl<'de: 'a, 'a> Deserialize<'de> for DoubleVal<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de serde_json::value::RawValue = Deserialize::deserialize(d)?;
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<Text<'de>>(text)
                .map(|t| DoubleVal::Text(t.0))
                .map_err(de::Error::custom),
            Some(b'-' | b'0'..=b'9') => {
                let value: f64 = text.parse().map_err(de::Error::custom)?;
                if !value.is_finite() {
                    return Err(de::Error::custom("a number out of range"));
                }
                let integer = !text.contains(['.', 'e', 'E']);
                Ok(DoubleVal::Number(if integer && value == 0.0 { 0.0 } else { value }))
            }
            _ => Err(de::Error::custom("a number or a string")),
        }
    }
}

impl Default for IntVal<'_> {
    fn default() -> Self {
        IntVal::Int(0)
    }
}

/// A JSON string, borrowed from the line unless it has escapes.
#[derive(Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}
