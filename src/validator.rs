//! Convex's `v.*` validators, checked strictly as Convex checks a typed table's writes.

use crate::value::{Fields, Value};
use std::fmt;

/// One validator, mirroring Convex's `v.*` builders.
#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    /// `v.string()`
    String,
    /// `v.number()`: float64 only, an int64 is rejected.
    Number,
    /// `v.int64()`
    Int64,
    /// `v.boolean()`
    Boolean,
    /// `v.null()`
    Null,
    /// `v.bytes()`
    Bytes,
    /// `v.id(table)`: a string that is an id of exactly this table.
    Id(String),
    /// `v.literal(value)`
    Literal(Value),
    /// `v.optional(inner)`: only meaningful as an object field; the field may be absent.
    Optional(Box<Validator>),
    /// `v.array(inner)`
    Array(Box<Validator>),
    /// `v.object({...})`: strict, missing required fields and extra fields are rejected.
    Object(ObjectSpec),
    /// `v.record(keys, values)`; keys are strings in this model.
    Record(Box<Validator>),
    /// `v.union(...)`
    Union(Vec<Validator>),
    /// `v.any()`
    Any,
}

/// The fields of a `v.object`, in declaration order (an error names the first that fails),
/// and in name order, the order of `Fields`, for the fast check to walk both at once.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectSpec {
    fields: Vec<(String, Validator)>,
    /// Positions in `fields`, by name.
    by_name: Vec<usize>,
}

impl ObjectSpec {
    pub fn new(fields: Vec<(String, Validator)>) -> ObjectSpec {
        let mut by_name: Vec<usize> = (0..fields.len()).collect();
        by_name.sort_by(|&a, &b| fields[a].0.cmp(&fields[b].0));
        ObjectSpec { fields, by_name }
    }
}

impl std::ops::Deref for ObjectSpec {
    type Target = [(String, Validator)];

    fn deref(&self) -> &Self::Target {
        &self.fields
    }
}

impl FromIterator<(String, Validator)> for ObjectSpec {
    fn from_iter<I: IntoIterator<Item = (String, Validator)>>(iter: I) -> ObjectSpec {
        ObjectSpec::new(iter.into_iter().collect())
    }
}

/// Why a value does not match a validator, with the path of the offending field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted path from the document root, such as `lineItems[0].quantity`.
    pub path: String,
    /// What the validator expected and what it found.
    pub reason: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

impl std::error::Error for ValidationError {}

/// Splits `table:seq`, the encoding of ids in this model, into its table name and sequence.
pub fn parse_id(s: &str) -> Option<(&str, u32)> {
    // One pass over the bytes: the table name (ASCII letters, digits, `_`), a colon, then a
    // decimal sequence number without leading zeros that fits a u32.
    let bytes = s.as_bytes();
    let colon = bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))?;
    if colon == 0 || bytes[colon] != b':' {
        return None;
    }
    Some((&s[..colon], parse_seq(&bytes[colon + 1..])?))
}

/// The sequence number of an id: decimal digits without leading zeros, fitting a u32.
pub fn parse_seq(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits[0] == b'0' && digits.len() > 1 {
        return None;
    }
    let mut seq: u32 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        seq = seq.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
    }
    Some(seq)
}

impl Validator {
    pub fn optional(inner: Validator) -> Validator {
        Validator::Optional(Box::new(inner))
    }

    pub fn array(inner: Validator) -> Validator {
        Validator::Array(Box::new(inner))
    }

    pub fn id(table: &str) -> Validator {
        Validator::Id(table.to_string())
    }

    pub fn literal(s: &str) -> Validator {
        Validator::Literal(Value::from(s))
    }

    /// A union of string literals, the usual shape of a status field.
    pub fn literals(options: &[&str]) -> Validator {
        Validator::Union(options.iter().map(|s| Validator::literal(s)).collect())
    }

    pub fn object(fields: Vec<(&str, Validator)>) -> Validator {
        Validator::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// Whether a value matches, without building an error: the fast path of every check.
    pub fn accepts(&self, value: &Value) -> bool {
        match (self, value) {
            (Validator::Any, _) => true,
            (Validator::String, Value::String(_))
            | (Validator::Number, Value::Float64(_))
            | (Validator::Int64, Value::Int64(_))
            | (Validator::Boolean, Value::Bool(_))
            | (Validator::Null, Value::Null)
            | (Validator::Bytes, Value::Bytes(_)) => true,
            (Validator::Id(table), Value::String(s)) => {
                matches!(parse_id(s), Some((t, _)) if t == table)
            }
            (Validator::Literal(lit), v) => lit == v,
            (Validator::Optional(inner), v) => inner.accepts(v),
            (Validator::Array(inner), Value::Array(items)) => {
                items.iter().all(|i| inner.accepts(i))
            }
            (Validator::Object(spec), Value::Object(fields)) => object_accepts(spec, fields),
            (Validator::Record(inner), Value::Object(fields)) => {
                fields.values().all(|v| inner.accepts(v))
            }
            // A status field's union of string literals: each option compared in place.
            (Validator::Union(options), Value::String(s)) => options.iter().any(|o| match o {
                Validator::Literal(Value::String(l)) => l == s,
                o => o.accepts(value),
            }),
            (Validator::Union(options), v) => options.iter().any(|o| o.accepts(v)),
            _ => false,
        }
    }

    /// Validates the user fields of a document (system fields excluded) as a strict object.
    pub fn validate_fields(&self, fields: &Fields) -> Result<(), ValidationError> {
        if let Validator::Object(spec) = self
            && object_accepts(spec, fields)
        {
            return Ok(());
        }
        match self {
            Validator::Object(spec) => validate_object(spec, fields, ""),
            Validator::Any => Ok(()),
            other => Err(ValidationError {
                path: String::new(),
                reason: format!("a document must be an object, validator is {other}"),
            }),
        }
    }

    /// Validates one value; `path` names it in the error.
    pub fn validate(&self, value: &Value, path: &str) -> Result<(), ValidationError> {
        if self.accepts(value) {
            Ok(())
        } else {
            self.explain(value, path)
        }
    }

    /// The slow path of `validate`: finds the offending field and says why.
    fn explain(&self, value: &Value, path: &str) -> Result<(), ValidationError> {
        let fail = |reason: String| {
            Err(ValidationError {
                path: path.to_string(),
                reason,
            })
        };
        match (self, value) {
            (Validator::Any, _) => Ok(()),
            (Validator::String, Value::String(_))
            | (Validator::Number, Value::Float64(_))
            | (Validator::Int64, Value::Int64(_))
            | (Validator::Boolean, Value::Bool(_))
            | (Validator::Null, Value::Null)
            | (Validator::Bytes, Value::Bytes(_)) => Ok(()),
            (Validator::Id(table), Value::String(s)) => match parse_id(s) {
                Some((t, _)) if t == table => Ok(()),
                Some((t, _)) => fail(format!(
                    "expected an id of table {table}, found an id of {t}"
                )),
                None => fail(format!("expected an id of table {table}, found {value}")),
            },
            (Validator::Literal(lit), v) if lit == v => Ok(()),
            (Validator::Optional(inner), v) => inner.validate(v, path),
            (Validator::Array(inner), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    inner.validate(item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (Validator::Object(spec), Value::Object(fields)) => validate_object(spec, fields, path),
            (Validator::Record(inner), Value::Object(fields)) => {
                for (k, v) in fields {
                    inner.validate(v, &join(path, k))?;
                }
                Ok(())
            }
            (Validator::Union(options), v) => {
                if options.iter().any(|o| o.accepts(v)) {
                    Ok(())
                } else {
                    fail(format!("expected {self}, found {}", describe(v)))
                }
            }
            (_, v) => fail(format!("expected {self}, found {}", describe(v))),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Object(_) | Value::Array(_) => v.type_name().to_string(),
        _ => format!("{} {v}", v.type_name()),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Both lists are in name order: one walk finds every declared field and every extra one.
fn object_accepts(spec: &ObjectSpec, fields: &Fields) -> bool {
    let mut present = fields.iter().peekable();
    for &i in &spec.by_name {
        let (name, validator) = &spec.fields[i];
        match present.peek() {
            Some((k, v)) if k.as_str() == name => {
                if !validator.accepts(v) {
                    return false;
                }
                present.next();
            }
            // A field before this name that no earlier name matched is not declared.
            Some((k, _)) if k.as_str() < name.as_str() => return false,
            _ if matches!(validator, Validator::Optional(_)) => {}
            _ => return false,
        }
    }
    present.next().is_none()
}

fn validate_object(
    spec: &[(String, Validator)],
    fields: &Fields,
    path: &str,
) -> Result<(), ValidationError> {
    for (name, validator) in spec {
        match fields.get(name.as_str()) {
            Some(v) => validator.validate(v, &join(path, name))?,
            None if matches!(validator, Validator::Optional(_)) => {}
            None => {
                return Err(ValidationError {
                    path: join(path, name),
                    reason: "required field is missing".to_string(),
                });
            }
        }
    }
    if let Some(extra) = fields.keys().find(|k| !spec.iter().any(|(n, _)| n == *k)) {
        return Err(ValidationError {
            path: join(path, extra),
            reason: "extra field not in the validator".to_string(),
        });
    }
    Ok(())
}

impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::String => write!(f, "v.string()"),
            Validator::Number => write!(f, "v.number()"),
            Validator::Int64 => write!(f, "v.int64()"),
            Validator::Boolean => write!(f, "v.boolean()"),
            Validator::Null => write!(f, "v.null()"),
            Validator::Bytes => write!(f, "v.bytes()"),
            Validator::Id(t) => write!(f, "v.id({t:?})"),
            Validator::Literal(v) => write!(f, "v.literal({v})"),
            Validator::Optional(i) => write!(f, "v.optional({i})"),
            Validator::Array(i) => write!(f, "v.array({i})"),
            Validator::Object(_) => write!(f, "v.object({{..}})"),
            Validator::Record(i) => write!(f, "v.record(v.string(), {i})"),
            Validator::Union(options) => {
                write!(f, "v.union(")?;
                for (i, o) in options.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{o}")?;
                }
                write!(f, ")")
            }
            Validator::Any => write!(f, "v.any()"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::object;

    fn spec() -> Validator {
        Validator::object(vec![
            ("amount", Validator::Number),
            ("count", Validator::Int64),
            ("eventId", Validator::id("events")),
            ("note", Validator::optional(Validator::String)),
            ("status", Validator::literals(&["paid", "pending"])),
            ("tags", Validator::array(Validator::String)),
            ("meta", Validator::Record(Box::new(Validator::Any))),
        ])
    }

    proptest::proptest! {
        /// The fast check (one walk in name order) and the explaining check (declaration
        /// order) agree on every object: declared fields present or missing, right or
        /// wrong, optional or not, and extra fields before, between and after the
        /// declared names.
        #[test]
        fn the_fast_object_check_agrees_with_the_explaining_one(
            present in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "amount", "count", "eventId", "note", "status", "tags", "meta",
                        "aaa", "d", "zzz", "notes", "",
                    ]),
                    0u8..6,
                ),
                0..10,
            ),
            complete in proptest::bool::ANY,
        ) {
            let mut fields: Fields = if complete { good() } else { Fields::new() };
            for (name, v) in present {
                let value = match v {
                    0 => Value::Float64(1.0),
                    1 => Value::Int64(1),
                    2 => Value::from("paid"),
                    3 => Value::from("events:1"),
                    4 => Value::Array(vec![Value::from("x")]),
                    _ => object([("k", Value::Null)]),
                };
                fields.insert(name.into(), value);
            }
            let Validator::Object(o) = spec() else { unreachable!() };
            proptest::prop_assert_eq!(
                object_accepts(&o, &fields),
                validate_object(&o, &fields, "").is_ok()
            );
        }
    }

    fn good() -> Fields {
        match object([
            ("amount", Value::Float64(1.5)),
            ("count", Value::Int64(2)),
            ("eventId", Value::from("events:3")),
            ("status", Value::from("paid")),
            ("tags", Value::Array(vec![Value::from("a")])),
            ("meta", object([("x", Value::Null)])),
        ]) {
            Value::Object(f) => f,
            _ => unreachable!(),
        }
    }

    #[test]
    fn accepts_a_matching_document() {
        assert_eq!(spec().validate_fields(&good()), Ok(()));
    }

    #[test]
    fn rejects_each_kind_of_mismatch_with_its_path() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("amount", Value::Int64(1), "amount"),
            ("count", Value::Float64(2.0), "count"),
            ("eventId", Value::from("objects:3"), "eventId"),
            ("eventId", Value::from("evt_3"), "eventId"),
            ("status", Value::from("refunded"), "status"),
            ("tags", Value::Array(vec![Value::Null]), "tags[0]"),
            ("extra", Value::Null, "extra"),
        ];
        for (field, value, path) in cases {
            let mut doc = good();
            doc.insert(field.into(), value);
            let err = spec().validate_fields(&doc).unwrap_err();
            assert_eq!(err.path, path, "{err}");
            // The fast path agrees with the explaining one.
            assert!(!spec().accepts(&Value::Object(doc)));
        }
        assert!(spec().accepts(&Value::Object(good())));
        let mut doc = good();
        doc.remove("amount");
        assert_eq!(spec().validate_fields(&doc).unwrap_err().path, "amount");
        let mut doc = good();
        doc.remove("note");
        assert_eq!(spec().validate_fields(&doc), Ok(()));
    }

    proptest::proptest! {
        /// An id that parses is spelled exactly as the id it parses to is written
        /// (`world::Ctx::id_string`), so a parsed string can stand for its id in lookups.
        #[test]
        fn a_parsed_id_is_spelled_canonically(
            table in proptest::sample::select(vec!["objects", "id_map", "e1", "", "é", "a b"]),
            colon in proptest::sample::select(vec![":", "", "::"]),
            digits in "0?[0-9]{0,11}[+x]?",
        ) {
            let s = format!("{table}{colon}{digits}");
            if let Some((table, seq)) = parse_id(&s) {
                proptest::prop_assert_eq!(format!("{table}:{seq}"), s);
            }
        }
    }

    #[test]
    fn parse_id_rejects_malformed_ids() {
        assert_eq!(parse_id("objects:12"), Some(("objects", 12)));
        assert_eq!(parse_id("id_map:0"), Some(("id_map", 0)));
        assert_eq!(parse_id("events:4294967295"), Some(("events", u32::MAX)));
        for bad in [
            "objects",
            "objects:",
            ":1",
            "objects:x",
            "obj ects:1",
            "objects:01",
            "objects:+1",
            "objects:1:2",
            "objects:4294967296",
            "évents:1",
        ] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }
}
