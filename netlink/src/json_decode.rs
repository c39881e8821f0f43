//! Hand-written decoding of the re-exec handover's JSON (a `serde_json::Value`)
//! into moonlit's types: the size lever of docs/DESIGN.md, "The handover's
//! decoder". serde's derived `Deserialize` costs several kilobytes of code per
//! type; this costs a few dozen bytes per field.
//!
//! The wire format is serde's derived one, unchanged: `Serialize` stays
//! derived, and a type's [`Decode`] must read exactly what its derived
//! `Serialize` writes, and what older versions wrote (a field added later is
//! read with a default when missing, as `#[serde(default)]` did). These rules
//! of serde's are kept:
//! - a missing field is an error, unless its type is an `Option` (then
//!   `None`) or the type's decoder gives it a default;
//! - unknown fields are ignored;
//! - an enum is externally tagged: a unit variant is its name as a string,
//!   any other `{"name": content}`;
//! - integers must fit their type; a `Duration` is `{"secs", "nanos"}`;
//!   addresses are their text forms; tuples are arrays.
//!
//! It lives in the lowest crate whose types are handed over, so that the
//! config and init crates implement [`Decode`] for theirs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use serde_json::{Map, Value};

/// A decoding error: what was wrong, with the path of fields to it.
pub type Result<T> = std::result::Result<T, String>;

/// Reads `Self` from the JSON its derived `Serialize` writes.
pub trait Decode: Sized {
    fn decode(v: &Value) -> Result<Self>;
    /// The value of a field that is not in the document.
    fn missing(key: &str) -> Result<Self> {
        Err(format!("missing field `{key}`"))
    }
}

/// The fields of a JSON object, for a struct's decoder.
pub struct Obj<'a>(&'a Map<String, Value>);

impl<'a> Obj<'a> {
    /// `v` as an object; `what` names the type in the error.
    pub fn of(v: &'a Value, what: &str) -> Result<Obj<'a>> {
        match v {
            Value::Object(m) => Ok(Obj(m)),
            other => Err(mismatch(other, what)),
        }
    }
    #[inline(never)]
    fn field(&self, key: &str) -> Option<&'a Value> {
        self.0.get(key)
    }

    // The accessors are kept out of line: inlined, each field of a struct
    // costs some hundred bytes of code instead of a call.

    /// A field serde reads without a default.
    #[inline(never)]
    pub fn get<T: Decode>(&self, key: &str) -> Result<T> {
        match self.field(key) {
            Some(v) => T::decode(v).map_err(|e| within(key, e)),
            None => T::missing(key),
        }
    }
    /// A field with `#[serde(default)]`: its type's default when missing.
    #[inline(never)]
    pub fn or_default<T: Decode + Default>(&self, key: &str) -> Result<T> {
        self.or_else(key, T::default)
    }
    /// A field with `#[serde(default = "f")]`.
    #[inline(never)]
    pub fn or_else<T: Decode>(&self, key: &str, f: impl FnOnce() -> T) -> Result<T> {
        match self.field(key) {
            Some(v) => T::decode(v).map_err(|e| within(key, e)),
            None => Ok(f()),
        }
    }
}

/// An externally tagged enum's variant: its name, and its content unless it
/// is a unit variant.
pub fn variant<'a>(v: &'a Value, what: &str) -> Result<(&'a str, Option<&'a Value>)> {
    match v {
        Value::String(s) => Ok((s, None)),
        Value::Object(m) if m.len() == 1 => {
            let (k, c) = m.iter().next().expect("one entry");
            Ok((k, Some(c)))
        }
        other => Err(mismatch(other, what)),
    }
}

/// The content of a variant that has one, or an error naming the variant.
pub fn content<'a>(name: &str, c: Option<&'a Value>) -> Result<&'a Value> {
    c.ok_or_else(|| format!("variant `{name}` needs its content"))
}

/// The fields of a struct variant.
pub fn fields<'a>(name: &str, c: Option<&'a Value>, what: &str) -> Result<Obj<'a>> {
    Obj::of(content(name, c)?, what)
}

/// The error for a variant name the type does not have.
pub fn unknown_variant(name: &str, what: &str) -> String {
    format!("unknown variant `{name}` of {what}")
}

#[cold]
#[inline(never)]
fn within(key: &str, e: String) -> String {
    format!("{key}: {e}")
}

#[cold]
#[inline(never)]
fn mismatch(v: &Value, expected: &str) -> String {
    let found = match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("expected {expected}, found {found}")
}

impl Decode for String {
    fn decode(v: &Value) -> Result<Self> {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| mismatch(v, "a string"))
    }
}

impl Decode for bool {
    fn decode(v: &Value) -> Result<Self> {
        v.as_bool().ok_or_else(|| mismatch(v, "a boolean"))
    }
}

impl Decode for f64 {
    fn decode(v: &Value) -> Result<Self> {
        v.as_f64().ok_or_else(|| mismatch(v, "a number"))
    }
}

/// Any integer of the document, widened, as serde_json's `Value` holds it.
fn integer(v: &Value) -> Result<i128> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(i128::from)
            .or_else(|| n.as_i64().map(i128::from))
            .ok_or_else(|| format!("expected an integer, found {n}")),
        other => Err(mismatch(other, "an integer")),
    }
}

macro_rules! decode_int {
    ($($t:ty),*) => {$(
        impl Decode for $t {
            fn decode(v: &Value) -> Result<Self> {
                let n = integer(v)?;
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range for {}", stringify!($t)))
            }
        }
    )*};
}
decode_int!(u8, u16, u32, u64, usize, i32, i64);

impl<T: Decode> Decode for Option<T> {
    fn decode(v: &Value) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::decode(v).map(Some),
        }
    }
    fn missing(_: &str) -> Result<Self> {
        Ok(None)
    }
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a [Value]> {
    match v {
        Value::Array(a) => Ok(a),
        other => Err(mismatch(other, what)),
    }
}

/// The elements of an array. A plain loop: `collect` through `Result`
/// costs a few kilobytes per element type.
#[inline(never)]
fn items<T: Decode>(v: &Value) -> Result<Vec<T>> {
    let a = array(v, "an array")?;
    let mut out = Vec::with_capacity(a.len());
    for (i, x) in a.iter().enumerate() {
        match T::decode(x) {
            Ok(t) => out.push(t),
            Err(e) => return Err(at(i, e)),
        }
    }
    Ok(out)
}

#[cold]
#[inline(never)]
fn at(i: usize, e: String) -> String {
    format!("[{i}]: {e}")
}

impl<T: Decode> Decode for Vec<T> {
    fn decode(v: &Value) -> Result<Self> {
        items(v)
    }
}

impl<T: Decode> Decode for VecDeque<T> {
    fn decode(v: &Value) -> Result<Self> {
        items(v).map(VecDeque::from)
    }
}

impl<T: Decode + Ord> Decode for BTreeSet<T> {
    fn decode(v: &Value) -> Result<Self> {
        let mut out = BTreeSet::new();
        for x in items(v)? {
            out.insert(x);
        }
        Ok(out)
    }
}

impl<T: Decode> Decode for BTreeMap<String, T> {
    fn decode(v: &Value) -> Result<Self> {
        let Value::Object(m) = v else {
            return Err(mismatch(v, "an object"));
        };
        let mut out = BTreeMap::new();
        for (k, x) in m {
            match T::decode(x) {
                Ok(t) => {
                    out.insert(k.clone(), t);
                }
                Err(e) => return Err(within(k, e)),
            }
        }
        Ok(out)
    }
}

impl Decode for [u8; 6] {
    fn decode(v: &Value) -> Result<Self> {
        let a: Vec<u8> = items(v)?;
        a.try_into()
            .map_err(|a: Vec<u8>| format!("expected 6 bytes, found {}", a.len()))
    }
}

fn tuple(v: &Value, n: usize) -> Result<&[Value]> {
    let a = array(v, "an array")?;
    if a.len() == n {
        Ok(a)
    } else {
        Err(format!("expected an array of {n}, found {}", a.len()))
    }
}

impl<A: Decode, B: Decode> Decode for (A, B) {
    fn decode(v: &Value) -> Result<Self> {
        let a = tuple(v, 2)?;
        Ok((A::decode(&a[0])?, B::decode(&a[1])?))
    }
}

impl<A: Decode, B: Decode, C: Decode> Decode for (A, B, C) {
    fn decode(v: &Value) -> Result<Self> {
        let a = tuple(v, 3)?;
        Ok((A::decode(&a[0])?, B::decode(&a[1])?, C::decode(&a[2])?))
    }
}

impl Decode for Value {
    fn decode(v: &Value) -> Result<Self> {
        Ok(v.clone())
    }
}

impl Decode for Duration {
    fn decode(v: &Value) -> Result<Self> {
        let o = Obj::of(v, "a duration")?;
        let nanos: u32 = o.get("nanos")?;
        if nanos >= 1_000_000_000 {
            return Err(format!("{nanos} nanoseconds is not under a second"));
        }
        Ok(Duration::new(o.get("secs")?, nanos))
    }
}

/// A type read from its text form (addresses).
fn parsed<T: std::str::FromStr>(v: &Value, what: &str) -> Result<T> {
    let s = v.as_str().ok_or_else(|| mismatch(v, what))?;
    s.parse().map_err(|_| format!("`{s}` is not {what}"))
}

impl Decode for IpAddr {
    fn decode(v: &Value) -> Result<Self> {
        parsed(v, "an IP address")
    }
}

impl Decode for Ipv4Addr {
    fn decode(v: &Value) -> Result<Self> {
        parsed(v, "an IPv4 address")
    }
}

impl Decode for SocketAddr {
    fn decode(v: &Value) -> Result<Self> {
        parsed(v, "a socket address")
    }
}

/// Parses `bytes` as JSON and decodes a `T` from it.
pub fn from_slice<T: Decode>(bytes: &[u8]) -> Result<T> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    T::decode(&v)
}

/// For tests: `x` survives writing (its derived `Serialize`) and reading
/// back (its [`Decode`]) unchanged, field for field.
pub fn round_trips<T: Decode + serde::Serialize>(x: &T) -> Result<()> {
    let written = serde_json::to_value(x).map_err(|e| e.to_string())?;
    let read = T::decode(&written)?;
    let again = serde_json::to_value(&read).map_err(|e| e.to_string())?;
    if again == written {
        Ok(())
    } else {
        Err(format!("read back as {again}, written as {written}"))
    }
}

/// Implements serde's `Deserialize` for a type through its [`Decode`], so
/// that derived code of other types (and tests) can still read it.
#[macro_export]
macro_rules! deserialize_by_decode {
    ($($t:ty),* $(,)?) => {$(
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let v = <$crate::json_decode::Value as ::serde::Deserialize>::deserialize(d)?;
                <$t as $crate::json_decode::Decode>::decode(&v).map_err(<D::Error as ::serde::de::Error>::custom)
            }
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn primitives_follow_serde() {
        assert_eq!(u8::decode(&json!(255)), Ok(255));
        assert!(u8::decode(&json!(256))
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(i32::decode(&json!(-5)), Ok(-5));
        assert!(u32::decode(&json!(-1)).is_err());
        assert!(u32::decode(&json!(1.5)).is_err());
        assert_eq!(Option::<u32>::decode(&json!(null)), Ok(None));
        assert_eq!(
            Duration::decode(&json!({"secs": 2, "nanos": 5})),
            Ok(Duration::new(2, 5))
        );
        assert!(Duration::decode(&json!({"secs": 2}))
            .unwrap_err()
            .contains("nanos"));
        assert_eq!(
            <(String, u64)>::decode(&json!(["a", 1])),
            Ok(("a".to_string(), 1))
        );
        assert!(<(String, u64)>::decode(&json!(["a"])).is_err());
        assert_eq!(
            <[u8; 6]>::decode(&json!([1, 2, 3, 4, 5, 6])),
            Ok([1, 2, 3, 4, 5, 6])
        );
        assert!(IpAddr::decode(&json!("300.1.1.1")).is_err());
    }

    #[test]
    fn errors_name_the_path() {
        let v = json!({"a": {"b": [1, "x"]}});
        let o = Obj::of(&v, "an object").unwrap();
        let e = o.get::<BTreeMap<String, Vec<u32>>>("a").unwrap_err();
        assert_eq!(e, "a: b: [1]: expected an integer, found a string");
        assert_eq!(o.get::<u32>("z").unwrap_err(), "missing field `z`");
        assert_eq!(o.get::<Option<u32>>("z"), Ok(None));
        assert_eq!(o.or_default::<u32>("z"), Ok(0));
    }
}
