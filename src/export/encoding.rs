//! The two value encodings of snapshot exports, decoding a JSONL line straight into the
//! crate's `Value` (no intermediate `serde_json::Value`) and encoding a `Value` back:
//! - *uniform* (current): `generated_schema.jsonl` is the single line `"uniform"`; int64 is a
//!   bare integer, float64 always has a `.` or an exponent, bytes are `{"$bytes": base64}`;
//! - *legacy* (older): the first line of `generated_schema.jsonl` is the inferred shape of the
//!   table as a JSON string; every bare number is a float64, and a string is an int64 (decimal)
//!   or bytes (base64) where the shape says so.

use crate::value::{Fields, Str, Value};
use base64::Engine as _;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;

/// How a table's values are encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encoding {
    Uniform,
    Legacy(Shape),
}

/// Why a `generated_schema.jsonl` names no encoding this crate knows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// The first line is not JSON, or not a JSON string.
    #[error("the first line of generated_schema.jsonl is not a JSON string: {0}")]
    NotAString(String),
    /// A JSON string that is neither `uniform` nor a shape.
    #[error("unknown encoding {0:?} (expected \"uniform\" or a shape)")]
    Unknown(String),
    /// A shape that does not parse.
    #[error("the shape does not parse at byte {at}: {reason}")]
    Shape { at: usize, reason: &'static str },
}

impl Encoding {
    /// The encoding that the first line of `generated_schema.jsonl` names.
    pub fn from_schema_line(line: &[u8]) -> Result<Encoding, EncodingError> {
        let text: String = serde_json::from_slice(line).map_err(|e| {
            EncodingError::NotAString(format!("{e} in {}", String::from_utf8_lossy(line)))
        })?;
        if text == "uniform" {
            return Ok(Encoding::Uniform);
        }
        if text.trim_start().starts_with('{') {
            return Ok(Encoding::Legacy(Shape::parse(&text)?));
        }
        Err(EncodingError::Unknown(text))
    }

    /// Decodes one document (or value) from a JSON line.
    pub fn decode(&self, line: &[u8]) -> Result<Value, serde_json::Error> {
        let legacy = matches!(self, Encoding::Legacy(_));
        let mut de = serde_json::Deserializer::from_slice(line);
        let mut v = ValueSeed { legacy }.deserialize(&mut de)?;
        de.end()?;
        if let Encoding::Legacy(shape) = self
            && !shape.is_plain()
        {
            shape.root.apply(&mut v);
        }
        Ok(v)
    }

    /// The first line of `generated_schema.jsonl` for this encoding.
    pub fn schema_line(&self) -> String {
        match self {
            Encoding::Uniform => "\"uniform\"".into(),
            Encoding::Legacy(shape) => {
                serde_json::to_string(&shape.render()).expect("a string serializes")
            }
        }
    }

    /// Appends `v` in this encoding as compact JSON.
    pub fn encode(&self, v: &Value, out: &mut Vec<u8>) {
        let legacy = matches!(self, Encoding::Legacy(_));
        encode_value(v, legacy, out);
    }
}

fn encode_value(v: &Value, legacy: bool, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int64(i) if legacy => {
            let _ = write!(out, "\"{i}\"");
        }
        Value::Int64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float64(x) if !x.is_finite() => {
            // JSON has no NaN or infinity; both encodings write them as strings here.
            let _ = write!(out, "\"{x}\"");
        }
        Value::Float64(x) if legacy && x.fract() == 0.0 && x.abs() < 9.0e15 => {
            // The older encoding wrote numbers as JavaScript does: 1000, not 1000.0.
            let _ = write!(out, "{}", *x as i64);
        }
        Value::Float64(x) => {
            // `{:?}` always writes a `.` or an exponent (1000.0, 1e21).
            let _ = write!(out, "{x:?}");
        }
        Value::String(s) => {
            serde_json::to_writer(&mut *out, s.as_str()).expect("a string serializes");
        }
        Value::Bytes(b) => {
            let text = base64::engine::general_purpose::STANDARD.encode(b);
            if legacy {
                let _ = write!(out, "\"{text}\"");
            } else {
                let _ = write!(out, "{{\"$bytes\":\"{text}\"}}");
            }
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_value(item, legacy, out);
            }
            out.push(b']');
        }
        Value::Object(fields) => encode_fields(fields.iter(), legacy, out),
    }
}

/// Appends an object with the given fields (in the given order).
pub fn encode_fields<'a>(
    fields: impl Iterator<Item = (&'a Str, &'a Value)>,
    legacy: bool,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    for (i, (k, v)) in fields.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, k.as_str()).expect("a string serializes");
        out.push(b':');
        encode_value(v, legacy, out);
    }
    out.push(b'}');
}

/// Deserializes straight into `Value`, with the number rules of an encoding.
#[derive(Copy, Clone)]
struct ValueSeed {
    legacy: bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Convex value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(if self.legacy {
            Value::Float64(i as f64)
        } else {
            Value::Int64(i)
        })
    }
    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Value, E> {
        if self.legacy {
            return Ok(Value::Float64(u as f64));
        }
        i64::try_from(u)
            .map(Value::Int64)
            .map_err(|_| E::custom(format!("integer {u} is out of the int64 range")))
    }
    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Float64(x))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(Str::from(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(self)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Fields::new();
        while let Some(key) = map.next_key::<KeyStr>()? {
            let v = map.next_value_seed(self)?;
            if !self.legacy && key.0 == "$bytes" && fields.is_empty() {
                // `{"$bytes": base64}`: field names starting with `$` are reserved, so this
                // object can only be a bytes value.
                let Value::String(text) = &v else {
                    return Err(serde::de::Error::custom("$bytes must hold a base64 string"));
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| serde::de::Error::custom(format!("$bytes: {e}")))?;
                if map.next_key::<KeyStr>()?.is_some() {
                    return Err(serde::de::Error::custom("$bytes must be the only field"));
                }
                return Ok(Value::Bytes(bytes));
            }
            fields.insert(key.0, v);
        }
        Ok(Value::Object(fields))
    }
}

/// A map key, kept inline when short.
struct KeyStr(Str);

impl<'de> serde::Deserialize<'de> for KeyStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyStr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, s: &str) -> Result<KeyStr, E> {
                Ok(KeyStr(Str::from(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The inferred shape of a table in the legacy encoding: which value types occur at each
/// field path. Only `int64` and `bytes` change decoding; the rest is kept for rendering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    root: ShapeNode,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ShapeNode {
    /// Scalar types seen here: `null`, `int64`, `float64`, `boolean`, `string`, `bytes`.
    atoms: BTreeSet<String>,
    /// Object fields, by name (`?` marks optional ones in the rendering).
    fields: BTreeMap<String, (ShapeNode, bool)>,
    /// `record<string, T>`: the shape of every field of an object with arbitrary keys.
    any_field: Option<Box<ShapeNode>>,
    /// `array<T>`: the shape of the elements.
    element: Option<Box<ShapeNode>>,
    /// Whether objects occur here (so `{}` renders even with no fields).
    object: bool,
}

/// Nesting limit of a shape, matching Convex's value depth limit with room to spare.
const SHAPE_DEPTH_MAX: usize = 64;

impl Shape {
    /// Parses a shape such as `{_id: string, n?: int64 | null, xs: array<{b: bytes}>}`.
    pub fn parse(text: &str) -> Result<Shape, EncodingError> {
        let mut p = ShapeParser {
            s: text.as_bytes(),
            at: 0,
        };
        let root = p.union(0)?;
        p.ws();
        if p.at != p.s.len() {
            return Err(p.err("text after the shape"));
        }
        Ok(Shape { root })
    }

    /// Adds the types of one document to the shape (for writing a legacy export).
    pub fn observe(&mut self, v: &Value) {
        self.root.observe(v);
    }

    /// Whether no path holds int64 or bytes, so decoding needs no second pass.
    fn is_plain(&self) -> bool {
        !self.root.special()
    }

    /// The shape's text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.root.render(&mut out);
        out
    }
}

impl ShapeNode {
    fn special(&self) -> bool {
        self.int64()
            || self.bytes()
            || self.fields.values().any(|(n, _)| n.special())
            || self.any_field.as_ref().is_some_and(|n| n.special())
            || self.element.as_ref().is_some_and(|n| n.special())
    }

    fn int64(&self) -> bool {
        self.atoms.contains("int64") && !self.atoms.contains("string")
    }

    fn bytes(&self) -> bool {
        self.atoms.contains("bytes") && !self.atoms.contains("string")
    }

    /// Turns strings at int64 and bytes paths into those values.
    fn apply(&self, v: &mut Value) {
        match v {
            Value::String(s) if self.int64() => {
                if let Ok(i) = s.parse::<i64>() {
                    *v = Value::Int64(i);
                }
            }
            Value::String(s) if self.bytes() => {
                if let Ok(b) = base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                    *v = Value::Bytes(b);
                }
            }
            Value::Array(items) => {
                if let Some(e) = &self.element {
                    items.iter_mut().for_each(|item| e.apply(item));
                }
            }
            Value::Object(fields) => {
                for (k, item) in fields.iter_mut() {
                    match self.fields.get(k.as_str()) {
                        Some((n, _)) => n.apply(item),
                        None => {
                            if let Some(n) = &self.any_field {
                                n.apply(item);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn observe(&mut self, v: &Value) {
        let atom = match v {
            Value::Array(items) => {
                let e = self.element.get_or_insert_with(Default::default);
                items.iter().for_each(|item| e.observe(item));
                return;
            }
            Value::Object(fields) => {
                let first = !self.object;
                self.object = true;
                for (k, item) in fields {
                    let entry = self.fields.entry(k.to_string()).or_insert_with(|| {
                        // A field first seen after other objects is optional.
                        (ShapeNode::default(), !first)
                    });
                    entry.0.observe(item);
                }
                // A field an earlier object had and this one lacks is optional too.
                for (k, (_, optional)) in self.fields.iter_mut() {
                    if !fields.contains_key(k.as_str()) {
                        *optional = true;
                    }
                }
                return;
            }
            Value::Null => "null",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "float64",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
        };
        if !self.atoms.contains(atom) {
            self.atoms.insert(atom.to_string());
        }
    }

    fn render(&self, out: &mut String) {
        let mut parts = 0;
        let mut sep = |out: &mut String| {
            if parts > 0 {
                out.push_str(" | ");
            }
            parts += 1;
        };
        for a in &self.atoms {
            sep(out);
            out.push_str(a);
        }
        if let Some(e) = &self.element {
            sep(out);
            out.push_str("array<");
            e.render(out);
            out.push('>');
        }
        if let Some(n) = &self.any_field {
            sep(out);
            out.push_str("record<string, ");
            n.render(out);
            out.push('>');
        }
        if self.object || !self.fields.is_empty() {
            sep(out);
            out.push('{');
            for (i, (k, (n, optional))) in self.fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                if *optional {
                    out.push('?');
                }
                out.push_str(": ");
                n.render(out);
            }
            out.push('}');
        }
        if parts == 0 {
            out.push_str("never");
        }
    }

    fn merge(&mut self, other: ShapeNode) {
        self.atoms.extend(other.atoms);
        self.object |= other.object;
        for (k, (n, opt)) in other.fields {
            match self.fields.get_mut(&k) {
                Some((mine, o)) => {
                    mine.merge(n);
                    *o |= opt;
                }
                None => {
                    self.fields.insert(k, (n, opt));
                }
            }
        }
        for (mine, theirs) in [
            (&mut self.element, other.element),
            (&mut self.any_field, other.any_field),
        ] {
            if let Some(t) = theirs {
                match mine {
                    Some(m) => m.merge(*t),
                    None => *mine = Some(t),
                }
            }
        }
    }
}

struct ShapeParser<'a> {
    s: &'a [u8],
    at: usize,
}

impl ShapeParser<'_> {
    fn err(&self, reason: &'static str) -> EncodingError {
        EncodingError::Shape {
            at: self.at,
            reason,
        }
    }

    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Result<String, EncodingError> {
        self.ws();
        let start = self.at;
        while self
            .s
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'$')
        {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.err("expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.at]).into_owned())
    }

    fn union(&mut self, depth: usize) -> Result<ShapeNode, EncodingError> {
        if depth > SHAPE_DEPTH_MAX {
            return Err(self.err("nested too deeply"));
        }
        let mut node = self.single(depth)?;
        while self.eat(b'|') {
            let next = self.single(depth)?;
            node.merge(next);
        }
        Ok(node)
    }

    fn single(&mut self, depth: usize) -> Result<ShapeNode, EncodingError> {
        let mut node = ShapeNode::default();
        if self.eat(b'{') {
            node.object = true;
            if self.eat(b'}') {
                return Ok(node);
            }
            loop {
                let name = self.word()?;
                let optional = self.eat(b'?');
                if !self.eat(b':') {
                    return Err(self.err("expected `:`"));
                }
                let child = self.union(depth + 1)?;
                node.fields.insert(name, (child, optional));
                if self.eat(b'}') {
                    return Ok(node);
                }
                if !self.eat(b',') {
                    return Err(self.err("expected `,` or `}`"));
                }
            }
        }
        let word = self.word()?;
        match word.as_str() {
            "array" | "set" => {
                if !self.eat(b'<') {
                    return Err(self.err("expected `<`"));
                }
                node.element = Some(Box::new(self.union(depth + 1)?));
                if !self.eat(b'>') {
                    return Err(self.err("expected `>`"));
                }
            }
            "record" | "map" => {
                if !self.eat(b'<') {
                    return Err(self.err("expected `<`"));
                }
                let _key = self.union(depth + 1)?;
                if !self.eat(b',') {
                    return Err(self.err("expected `,`"));
                }
                node.any_field = Some(Box::new(self.union(depth + 1)?));
                if !self.eat(b'>') {
                    return Err(self.err("expected `>`"));
                }
            }
            "id" => {
                if !self.eat(b'<') {
                    return Err(self.err("expected `<`"));
                }
                self.word()?;
                if !self.eat(b'>') {
                    return Err(self.err("expected `>`"));
                }
                node.atoms.insert("string".into());
            }
            // Convex's float refinements (`normalfloat64`, `negativezero`, ...) are floats.
            w if w.ends_with("float64") || w == "negativezero" || w == "nan" => {
                node.atoms.insert("float64".into());
            }
            "int64" | "string" | "bytes" | "boolean" | "null" | "any" | "never" => {
                node.atoms.insert(word);
            }
            _ => return Err(self.err("unknown type")),
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::object;

    #[test]
    fn uniform_keeps_int64_float64_and_bytes_apart() {
        let v = Encoding::Uniform
            .decode(br#"{"a":1,"b":1.0,"c":1e3,"d":{"$bytes":"AQI="},"e":[null,true,"x"]}"#)
            .unwrap();
        let want = object([
            ("a", Value::Int64(1)),
            ("b", Value::Float64(1.0)),
            ("c", Value::Float64(1000.0)),
            ("d", Value::Bytes(vec![1, 2])),
            (
                "e",
                Value::Array(vec![Value::Null, Value::Bool(true), Value::from("x")]),
            ),
        ]);
        assert_eq!(v, want);
        let mut out = Vec::new();
        Encoding::Uniform.encode(&want, &mut out);
        assert_eq!(Encoding::Uniform.decode(&out).unwrap(), want);
    }

    #[test]
    fn legacy_reads_strings_as_int64_and_bytes_where_the_shape_says() {
        let line = br#""{_id: string, n: int64, b?: bytes, s: string | int64, xs: array<{k: int64}>, r: record<string, int64>, f: normalfloat64}""#;
        let enc = Encoding::from_schema_line(line).unwrap();
        let v = enc
            .decode(
                br#"{"_id":"x","n":"12","b":"AQI=","s":"7","xs":[{"k":"-3"}],"r":{"z":"5"},"f":3}"#,
            )
            .unwrap();
        let want = object([
            ("_id", Value::from("x")),
            ("n", Value::Int64(12)),
            ("b", Value::Bytes(vec![1, 2])),
            ("s", Value::from("7")),
            ("xs", Value::Array(vec![object([("k", Value::Int64(-3))])])),
            ("r", object([("z", Value::Int64(5))])),
            ("f", Value::Float64(3.0)),
        ]);
        assert_eq!(v, want);
        // Writing it back in the legacy encoding and reading it again gives the same value.
        let mut out = Vec::new();
        enc.encode(&want, &mut out);
        assert_eq!(enc.decode(&out).unwrap(), want);
    }

    #[test]
    fn observed_shapes_render_and_parse_back() {
        let mut shape = Shape::default();
        shape.observe(&object([("a", Value::Int64(1)), ("b", Value::from("x"))]));
        shape.observe(&object([
            ("a", Value::Int64(2)),
            ("c", Value::Array(vec![Value::Bytes(vec![1])])),
        ]));
        let text = shape.render();
        assert_eq!(text, "{a: int64, b?: string, c?: array<bytes>}");
        assert_eq!(Shape::parse(&text).unwrap().render(), text);
    }

    #[test]
    fn unknown_encodings_are_errors() {
        assert!(matches!(
            Encoding::from_schema_line(br#""columnar-v9""#),
            Err(EncodingError::Unknown(_))
        ));
        assert!(matches!(
            Encoding::from_schema_line(b"{not json"),
            Err(EncodingError::NotAString(_))
        ));
        assert!(matches!(
            Encoding::from_schema_line(br#""{a: wat}""#),
            Err(EncodingError::Shape { .. })
        ));
    }
}
