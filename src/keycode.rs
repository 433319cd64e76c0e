//! An order-preserving byte encoding of index values. Two lists of values compare as their
//! encodings compare byte by byte: in Convex's order as `Value`'s `Ord` has it, with
//! `undefined` (`None`) first and a list that is a prefix of another first. Index keys keep
//! their values encoded, so that an index search compares bytes (one `memcmp`) instead of
//! walking values, options and strings.
//!
//! Each value is self-delimiting, so the encoding of a list of values is the encodings one
//! after the other, and "the first values of a key are `prefix`" is "the key's bytes start
//! with the encoding of `prefix`".
//!
//! The format (one tag byte, then the payload):
//!
//! | value | encoding |
//! |---|---|
//! | `undefined` | `00` |
//! | null | `01` |
//! | int64 | `02`, the value with its sign bit flipped, big-endian |
//! | float64 | `03`, the bits as `f64::total_cmp` orders them, unsigned, big-endian |
//! | boolean | `04`, `00` or `01` |
//! | string | `05`, the UTF-8 bytes escaped, then `00 00` |
//! | bytes | `06`, the bytes escaped, then `00 00` |
//! | array | `07`, `01` and the element before each element, then `00` |
//! | object | `08`, `01`, the escaped name, `00 00` and the value before each field, then `00` |
//!
//! Escaping writes a zero byte as `00 FF`, so the terminator `00 00` sorts before any
//! continuation: a string sorts before every longer string it starts.
//!
//! No crate encodes this model's order (its type ranks, `total_cmp` floats and objects as
//! ordered field lists); `encoding_orders_as_values_do` checks the encoding against `Ord`.

use crate::value::{Fields, Str, Value};

/// An encoded list of values, inline up to 40 bytes (an id and a short string).
pub type KeyBytes = smallvec::SmallVec<[u8; 40]>;

const UNDEFINED: u8 = 0x00;
const NULL: u8 = 0x01;
const INT64: u8 = 0x02;
const FLOAT64: u8 = 0x03;
const BOOL: u8 = 0x04;
const STRING: u8 = 0x05;
const BYTES: u8 = 0x06;
const ARRAY: u8 = 0x07;
const OBJECT: u8 = 0x08;
/// Before each element of an array and each field of an object.
const MORE: u8 = 0x01;
/// After the last element or field.
const END: u8 = 0x00;

/// The encoding of a list of index values (`None` is `undefined`).
pub fn encode<'a>(values: impl IntoIterator<Item = Option<&'a Value>>) -> KeyBytes {
    let mut out = KeyBytes::new();
    for v in values {
        match v {
            None => out.push(UNDEFINED),
            Some(v) => push_value(&mut out, v),
        }
    }
    out
}

fn push_value(out: &mut KeyBytes, v: &Value) {
    match v {
        Value::Null => out.push(NULL),
        Value::Int64(i) => {
            out.push(INT64);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float64(x) => {
            out.push(FLOAT64);
            out.extend_from_slice(&float_key(*x).to_be_bytes());
        }
        Value::Bool(b) => out.extend_from_slice(&[BOOL, u8::from(*b)]),
        Value::String(s) => {
            out.push(STRING);
            push_escaped(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            push_escaped(out, b);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            for item in items {
                out.push(MORE);
                push_value(out, item);
            }
            out.push(END);
        }
        Value::Object(fields) => {
            out.push(OBJECT);
            for (name, value) in fields {
                out.push(MORE);
                push_escaped(out, name.as_bytes());
                push_value(out, value);
            }
            out.push(END);
        }
    }
}

/// `f64::total_cmp` as an unsigned integer order: negative numbers have every bit flipped,
/// the others only the sign bit.
fn float_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    }
}

/// The encoding of one string value given in pieces: `encode` of the string the pieces
/// make, built without the string (an id is its table's prefix and its number).
pub fn encode_string(pieces: &[&[u8]]) -> KeyBytes {
    let mut out = KeyBytes::new();
    out.push(STRING);
    for piece in pieces {
        push_escaped_bytes(&mut out, piece);
    }
    push_terminator(&mut out);
    out
}

fn push_escaped(out: &mut KeyBytes, bytes: &[u8]) {
    push_escaped_bytes(out, bytes);
    push_terminator(out);
}

/// The bytes, each zero escaped as `00 FF`.
fn push_escaped_bytes(out: &mut KeyBytes, bytes: &[u8]) {
    if !has_zero(bytes) {
        // Almost every string: ids, names and statuses hold no zero byte.
        out.extend_from_slice(bytes);
        return;
    }
    let mut rest = bytes;
    while let Some(zero) = rest.iter().position(|&b| b == 0) {
        out.extend_from_slice(&rest[..zero]);
        out.push(0x00);
        out.push(0xFF);
        rest = &rest[zero + 1..];
    }
    out.extend_from_slice(rest);
}

/// Whether any byte is zero, eight bytes at a time: for a word `x`,
/// `(x - 0x0101…01) & !x & 0x8080…80` is nonzero exactly when one of its bytes is zero (the
/// lowest zero byte borrows and sets its high bit; no byte without a zero below it does).
fn has_zero(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return true;
        }
    }
    words.remainder().contains(&0)
}

/// The end of an escaped string: `00 00`, which sorts before any byte of a longer string.
fn push_terminator(out: &mut KeyBytes) {
    // Two pushes: `extend_from_slice` of two bytes is a reserve and two `memmove` calls.
    out.push(0x00);
    out.push(0x00);
}

/// The values a list encoding holds; `None` if `bytes` is not one (the store only decodes
/// what it encoded).
pub fn decode(mut bytes: &[u8]) -> Option<Vec<Option<Value>>> {
    let mut values = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        if tag == UNDEFINED {
            values.push(None);
            bytes = rest;
        } else {
            let (v, rest) = decode_value(bytes)?;
            values.push(Some(v));
            bytes = rest;
        }
    }
    Some(values)
}

fn decode_value(bytes: &[u8]) -> Option<(Value, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    Some(match tag {
        NULL => (Value::Null, rest),
        INT64 => {
            let (w, rest) = word(rest)?;
            (Value::Int64((w ^ (1 << 63)) as i64), rest)
        }
        FLOAT64 => {
            let (w, rest) = word(rest)?;
            let bits = if w >> 63 == 1 { w & !(1 << 63) } else { !w };
            (Value::Float64(f64::from_bits(bits)), rest)
        }
        BOOL => {
            let (&b, rest) = rest.split_first()?;
            (Value::Bool(b != 0), rest)
        }
        STRING => {
            let (raw, rest) = decode_escaped(rest)?;
            (Value::String(Str::from_utf8(raw).ok()?), rest)
        }
        BYTES => {
            let (raw, rest) = decode_escaped(rest)?;
            (Value::Bytes(raw), rest)
        }
        ARRAY => {
            let mut items = Vec::new();
            let mut rest = rest;
            loop {
                let (&marker, after) = rest.split_first()?;
                if marker == END {
                    break (Value::Array(items), after);
                }
                let (item, after) = decode_value(after)?;
                items.push(item);
                rest = after;
            }
        }
        OBJECT => {
            let mut pairs = Vec::new();
            let mut rest = rest;
            loop {
                let (&marker, after) = rest.split_first()?;
                if marker == END {
                    break (Value::Object(Fields::from_pairs(pairs)), after);
                }
                let (name, after) = decode_escaped(after)?;
                let (value, after) = decode_value(after)?;
                pairs.push((Str::from_utf8(name).ok()?, value));
                rest = after;
            }
        }
        _ => return None,
    })
}

fn word(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (w, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*w), rest))
}

fn decode_escaped(bytes: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut rest = bytes;
    loop {
        let zero = rest.iter().position(|&b| b == 0)?;
        out.extend_from_slice(&rest[..zero]);
        match rest.get(zero + 1)? {
            0x00 => return Some((out, &rest[zero + 2..])),
            0xFF => out.push(0),
            _ => return None,
        }
        rest = &rest[zero + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Values of every type, with the edge cases of the encoding: zero bytes in strings,
    /// names and bytes, strings that start one another, negative zero, infinities, NaN,
    /// the extreme integers, nested arrays and objects.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            prop_oneof![
                Just(i64::MIN),
                Just(i64::MAX),
                Just(0i64),
                Just(-1),
                any::<i64>()
            ]
            .prop_map(Value::Int64),
            prop_oneof![
                Just(-0.0f64),
                Just(0.0),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(f64::NAN),
                Just(-f64::NAN),
                any::<f64>(),
            ]
            .prop_map(Value::Float64),
            any::<bool>().prop_map(Value::Bool),
            "(a|\0|b|\u{e9}|\u{ff}){0,4}".prop_map(|s| Value::String(Str::from(s))),
            prop::collection::vec(
                prop_oneof![Just(0u8), Just(255), Just(1), any::<u8>()],
                0..4
            )
            .prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(("(a|\0|b){0,2}", inner), 0..3).prop_map(|pairs| {
                    Value::Object(Fields::from_pairs(
                        pairs.into_iter().map(|(k, v)| (Str::from(k), v)).collect(),
                    ))
                }),
            ]
        })
    }

    fn values() -> impl Strategy<Value = Vec<Option<Value>>> {
        prop::collection::vec(prop::option::weighted(0.8, value()), 0..3)
    }

    proptest! {
        /// Encodings compare as the lists of values do (with `undefined` first and a
        /// prefix first), and decode back to them.
        #[test]
        fn encoding_orders_as_values_do(a in values(), b in values()) {
            let (ea, eb) = (encode(a.iter().map(Option::as_ref)), encode(b.iter().map(Option::as_ref)));
            prop_assert_eq!(ea.as_slice().cmp(eb.as_slice()), a.cmp(&b));
            prop_assert_eq!(decode(&ea), Some(a));
        }

        /// `Value`'s equality agrees with its order (the encoding and every sorted
        /// structure rely on both meaning the same).
        #[test]
        fn value_equality_agrees_with_value_order(a in value(), b in value()) {
            prop_assert_eq!(a == b, a.cmp(&b) == std::cmp::Ordering::Equal);
            prop_assert_eq!(a == a.clone(), true);
        }

        /// A key's first values are `prefix` exactly when its encoding starts with the
        /// prefix's encoding.
        #[test]
        fn a_prefix_of_values_is_a_prefix_of_bytes(a in values(), b in values()) {
            let (ea, eb) = (encode(a.iter().map(Option::as_ref)), encode(b.iter().map(Option::as_ref)));
            prop_assert_eq!(eb.starts_with(&ea), b.starts_with(&a));
        }

        /// `has_zero` finds a zero byte wherever it is, in strings of any length.
        #[test]
        fn a_zero_byte_is_found_anywhere(
            bytes in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0x80u8), any::<u8>()], 0..40),
        ) {
            prop_assert_eq!(has_zero(&bytes), bytes.contains(&0));
        }

        /// A string given in pieces encodes as the string they make, zero bytes included.
        #[test]
        fn a_string_in_pieces_encodes_as_the_string(
            pieces in prop::collection::vec("(a|\0|:|7|\u{e9}){0,5}", 0..4),
        ) {
            let whole: String = pieces.concat();
            let bytes: Vec<&[u8]> = pieces.iter().map(|p| p.as_bytes()).collect();
            prop_assert_eq!(
                encode_string(&bytes),
                encode([Some(&Value::String(Str::from(whole)))])
            );
        }
    }
}
