//! Convex's value model (not bare JSON): null, boolean, float64, int64, string, bytes, array,
//! object, with Convex's total order across types and its document-size accounting.

use std::cmp::Ordering;
use std::fmt;

/// A string of the value model. Field names, ids, statuses and most names are short, and a
/// `CompactString` keeps up to 24 bytes inline, so cloning documents does not allocate for
/// them (the simulator clones documents on every write).
pub type Str = compact_str::CompactString;

/// The fields of an object or document, ordered by name so that iteration is deterministic.
///
/// A sorted vector with the part of `BTreeMap`'s interface the simulator uses. Documents have
/// a few dozen fields at most, and the simulator builds, clones, compares and drops them on
/// every step: one allocation per object instead of one per tree node. Each entry carries
/// its name's first eight bytes as a big-endian number (`Entry::prefix`), which orders names
/// as the names do, so a lookup compares numbers and compares strings only on a tie.
/// Equality, order and hashing are those of the `BTreeMap` it replaced (the same sequence of
/// pairs), so digests and state hashes did not change.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fields(Vec<Entry>);

/// One field of `Fields` (opaque; the iterators yield names and values). `prefix` is a
/// function of `key`, so deriving equality and order over `(prefix, key, value)` gives the
/// order of `(key, value)`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    prefix: u64,
    key: Str,
    value: Value,
}

/// A name's first eight bytes, zero-padded, as a big-endian number: when two names' prefixes
/// differ, they order the names (a name that ends first has a zero where the other has a
/// byte, and sorts first).
#[inline(always)]
fn prefix(name: &str) -> u64 {
    let b = name.as_bytes();
    let n = b.len();
    if let Some(head) = b.first_chunk::<8>() {
        return u64::from_be_bytes(*head);
    }
    // Shorter: two loads that overlap in the middle, each shifted to its place (the bytes
    // they share are the same, so or-ing them is exact).
    let (hi, lo) = if n >= 4 {
        let hi = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])) << 32;
        let lo = u64::from(u32::from_be_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]));
        (hi, lo << (8 * (8 - n)))
    } else if n >= 2 {
        let hi = u64::from(u16::from_be_bytes([b[0], b[1]])) << 48;
        let lo = u64::from(u16::from_be_bytes([b[n - 2], b[n - 1]]));
        (hi, lo << (8 * (8 - n)))
    } else {
        (b.first().map_or(0, |&c| u64::from(c) << 56), 0)
    };
    hi | lo
}

/// A name with its prefix computed once, for a name looked up over and over (a schema's
/// field names: `Fields::position_of`).
#[derive(Clone, Copy, Debug)]
pub struct Name {
    prefix: u64,
    pub name: &'static str,
}

impl Name {
    pub fn new(name: &'static str) -> Name {
        Name {
            prefix: prefix(name),
            name,
        }
    }
}

impl Entry {
    fn new(key: Str, value: Value) -> Entry {
        Entry {
            prefix: prefix(&key),
            key,
            value,
        }
    }

    fn cmp_name(&self, prefix: u64, name: &str) -> Ordering {
        self.prefix.cmp(&prefix).then_with(|| {
            // Equal prefixes: the first eight bytes agree (a name shorter than eight is padded
            // with zeros, so it is a prefix of the other), and only the rest can differ.
            let (a, b) = (self.key.as_bytes(), name.as_bytes());
            if a.len() <= 8 && b.len() <= 8 {
                a.len().cmp(&b.len())
            } else {
                a[a.len().min(8)..].cmp(&b[b.len().min(8)..])
            }
        })
    }
}

/// The most fields `Fields::find_at` scans in order.
const SCAN_MAX: usize = 16;

impl Fields {
    pub const fn new() -> Fields {
        Fields(Vec::new())
    }

    pub fn with_capacity(n: usize) -> Fields {
        Fields(Vec::with_capacity(n))
    }

    /// The fields of `pairs` in any order; as `BTreeMap`, a later pair replaces an earlier
    /// one with the same name. Sorting once beats inserting one by one out of order.
    pub fn from_pairs(pairs: Vec<(Str, Value)>) -> Fields {
        let mut entries: Vec<Entry> = pairs.into_iter().map(|(k, v)| Entry::new(k, v)).collect();
        let in_order = |a: &Entry, b: &Entry| a.cmp_name(b.prefix, &b.key) == Ordering::Less;
        if !entries.is_sorted_by(in_order) {
            // Reversed, a stable sort puts the last of equal names first, which dedup keeps.
            entries.reverse();
            entries.sort_by(|a, b| a.cmp_name(b.prefix, &b.key));
            entries.dedup_by(|later, kept| later.key == kept.key);
        }
        Fields(entries)
    }

    /// A clone with `key` set to `value`: `insert` on a clone, built in order in one pass
    /// instead of cloned and then shifted to make room.
    pub fn clone_inserting(&self, key: Str, value: Value) -> Fields {
        let (before, after) = match self.find(&key) {
            Ok(i) => (i, i + 1),
            Err(i) => (i, i),
        };
        let mut entries = Vec::with_capacity(self.0.len() + 1);
        entries.extend(self.0[..before].iter().cloned());
        entries.push(Entry::new(key, value));
        entries.extend(self.0[after..].iter().cloned());
        Fields(entries)
    }

    /// Room for exactly `extra` more fields: a derivation adds its computed fields and is
    /// then kept for the version's life, so it must not carry a doubled vector.
    pub fn reserve(&mut self, extra: usize) {
        self.0.reserve_exact(extra);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where `key` is (`Ok`) or would go (`Err`). Inlined, so that the prefix of a literal
    /// name is a constant.
    #[inline(always)]
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.find_at(prefix(key), key)
    }

    /// `find` with the key's prefix. Small objects are scanned in order, which predicts
    /// better than a binary search; in a larger one, a binary search on the prefixes alone
    /// finds the first field whose prefix is not below the key's, and names are compared
    /// from there.
    fn find_at(&self, p: u64, key: &str) -> Result<usize, usize> {
        if self.0.len() > SCAN_MAX {
            let start = self.0.partition_point(|e| e.prefix < p);
            return self.scan_from(start, p, key);
        }
        self.scan_from(0, p, key)
    }

    /// `find_at` by scanning forward from `start`, which no field before it may pass.
    #[inline(always)]
    fn scan_from(&self, start: usize, p: u64, key: &str) -> Result<usize, usize> {
        for (i, e) in self.0[start..].iter().enumerate() {
            if e.prefix < p {
                continue;
            }
            match e.cmp_name(p, key) {
                Ordering::Less => {}
                Ordering::Equal => return Ok(start + i),
                Ordering::Greater => return Err(start + i),
            }
        }
        Err(self.0.len())
    }

    #[inline]
    pub fn get<Q: AsRef<str> + ?Sized>(&self, key: &Q) -> Option<&Value> {
        let i = self.find(key.as_ref()).ok()?;
        Some(&self.0[i].value)
    }

    /// The position of `key` in iteration order (as `IndexMap::get_index_of`).
    #[inline]
    pub fn get_index_of<Q: AsRef<str> + ?Sized>(&self, key: &Q) -> Option<usize> {
        self.find(key.as_ref()).ok()
    }

    /// Where `name` is (`Ok`) or would go (`Err`), as `get_index_of`, searching forward from
    /// `start` when every field before `start` sorts before it, and from the beginning
    /// otherwise. A caller that looks up names in increasing order passes the position its
    /// last lookup returned and walks each object once instead of once per name; `Name`
    /// carries the name's prefix, computed once.
    #[inline]
    pub fn position_of(&self, start: usize, name: &Name) -> Result<usize, usize> {
        let (p, key) = (name.prefix, name.name);
        let start = start.min(self.0.len());
        if start > 0 && self.0[start - 1].cmp_name(p, key) != Ordering::Less {
            return self.find_at(p, key);
        }
        self.scan_from(start, p, key)
    }

    /// The value of `name` by `position_of` from `*at`, moving `*at` past where it looked:
    /// names looked up in increasing order walk the object once.
    #[inline]
    pub fn get_walking(&self, at: &mut usize, name: &Name) -> Option<&Value> {
        let found = self.position_of(*at, name);
        *at = found.map_or_else(|i| i, |i| i + 1);
        found.ok().map(|i| &self.0[i].value)
    }

    /// The fields at the positions `keep` selects, in order, cloned (no spare capacity).
    pub fn clone_where(&self, mut keep: impl FnMut(usize) -> bool) -> Fields {
        let n = (0..self.0.len()).filter(|&i| keep(i)).count();
        let mut entries = Vec::with_capacity(n);
        entries.extend(
            self.0
                .iter()
                .enumerate()
                .filter(|&(i, _)| keep(i))
                .map(|(_, e)| e.clone()),
        );
        Fields(entries)
    }

    /// The field at a position in iteration order (as `IndexMap::get_index`).
    pub fn get_index(&self, i: usize) -> Option<(&Str, &Value)> {
        self.0.get(i).map(|e| (&e.key, &e.value))
    }

    #[inline]
    pub fn get_mut<Q: AsRef<str> + ?Sized>(&mut self, key: &Q) -> Option<&mut Value> {
        let i = self.find(key.as_ref()).ok()?;
        Some(&mut self.0[i].value)
    }

    #[inline]
    pub fn contains_key<Q: AsRef<str> + ?Sized>(&self, key: &Q) -> bool {
        self.find(key.as_ref()).is_ok()
    }

    /// Sets a field, returning the value it replaces.
    pub fn insert(&mut self, key: Str, value: Value) -> Option<Value> {
        let entry = Entry::new(key, value);
        // Fields are mostly built in name order: appending needs no search.
        if self
            .0
            .last()
            .is_none_or(|last| last.cmp_name(entry.prefix, &entry.key) == Ordering::Less)
        {
            self.0.push(entry);
            return None;
        }
        match self.find(&entry.key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].value, entry.value)),
            Err(i) => {
                self.0.insert(i, entry);
                None
            }
        }
    }

    pub fn remove<Q: AsRef<str> + ?Sized>(&mut self, key: &Q) -> Option<Value> {
        let i = self.find(key.as_ref()).ok()?;
        Some(self.0.remove(i).value)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Str, &Value)> + ExactSizeIterator {
        self.0.iter().map(|e| (&e.key, &e.value))
    }

    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&Str, &mut Value)> + ExactSizeIterator {
        self.0.iter_mut().map(|e| (&e.key, &mut e.value))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Str> + ExactSizeIterator {
        self.0.iter().map(|e| &e.key)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.0.iter().map(|e| &e.value)
    }

    pub fn values_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = &mut Value> + ExactSizeIterator {
        self.0.iter_mut().map(|e| &mut e.value)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Str, &mut Value) -> bool) {
        self.0.retain_mut(|e| keep(&e.key, &mut e.value));
    }
}

impl std::hash::Hash for Fields {
    /// As `BTreeMap` hashes: the length, then each name and value.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for e in &self.0 {
            e.key.hash(state);
            e.value.hash(state);
        }
    }
}

impl std::ops::Index<&str> for Fields {
    type Output = Value;
    /// Panics when the field is missing, as `BTreeMap`'s indexing does.
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or_else(|| panic!("no field {key:?}"))
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Extend<(Str, Value)> for Fields {
    fn extend<I: IntoIterator<Item = (Str, Value)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl FromIterator<(Str, Value)> for Fields {
    /// As `BTreeMap`: a later pair replaces an earlier one with the same name.
    fn from_iter<I: IntoIterator<Item = (Str, Value)>>(iter: I) -> Fields {
        Fields::from_pairs(iter.into_iter().collect())
    }
}

impl<const N: usize> From<[(Str, Value); N]> for Fields {
    fn from(pairs: [(Str, Value); N]) -> Fields {
        pairs.into_iter().collect()
    }
}

impl IntoIterator for Fields {
    type Item = (Str, Value);
    type IntoIter = std::iter::Map<std::vec::IntoIter<Entry>, fn(Entry) -> (Str, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|e| (e.key, e.value))
    }
}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a Str, &'a Value);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, Entry>, fn(&'a Entry) -> (&'a Str, &'a Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|e| (&e.key, &e.value))
    }
}

impl<'a> IntoIterator for &'a mut Fields {
    type Item = (&'a Str, &'a mut Value);
    type IntoIter = std::iter::Map<
        std::slice::IterMut<'a, Entry>,
        fn(&'a mut Entry) -> (&'a Str, &'a mut Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter_mut().map(|e| (&e.key, &mut e.value))
    }
}

/// One Convex value. `Int64` and `Float64` are different types, as `v.int64()` and
/// `v.number()` are.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Int64(i64),
    Float64(f64),
    Bool(bool),
    String(Str),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Object(Fields),
}

impl Value {
    /// Convex orders values of different types as
    /// null < int64 < float64 < boolean < string < bytes < array < object.
    fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Int64(_) => 1,
            Value::Float64(_) => 2,
            Value::Bool(_) => 3,
            Value::String(_) => 4,
            Value::Bytes(_) => 5,
            Value::Array(_) => 6,
            Value::Object(_) => 7,
        }
    }

    /// The name of the value's type, as error messages and traces print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Int64(_) => "int64",
            Value::Float64(_) => "number",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Convex's size accounting for the per-document and per-transaction byte limits.
    pub fn size(&self) -> usize {
        match self {
            Value::Null | Value::Bool(_) => 1,
            Value::Int64(_) | Value::Float64(_) => 9,
            Value::String(s) => s.len() + 2,
            Value::Bytes(b) => b.len() + 2,
            Value::Array(items) => 2 + items.iter().map(Value::size).sum::<usize>(),
            Value::Object(fields) => fields_size(fields),
        }
    }

    /// Nesting depth: a scalar is 0, an array or object one more than its deepest child.
    pub fn depth(&self) -> usize {
        match self {
            Value::Array(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Object(fields) => 1 + fields.values().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// The longest array anywhere inside the value.
    pub fn array_len_max(&self) -> usize {
        match self {
            Value::Array(items) => items
                .iter()
                .map(Value::array_len_max)
                .max()
                .unwrap_or(0)
                .max(items.len()),
            Value::Object(fields) => fields.values().map(Value::array_len_max).max().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Fields> {
        match self {
            Value::Object(fields) => Some(fields),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The JSON form used in traces and reports: int64 is `{"$integer": "n"}` and bytes are
    /// `{"$bytes": [..]}` so that the two numeric types stay distinguishable.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int64(i) => serde_json::json!({ "$integer": i.to_string() }),
            Value::Float64(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Value::String(s) => J::String(s.to_string()),
            Value::Bytes(b) => serde_json::json!({ "$bytes": b }),
            Value::Array(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Object(fields) => J::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Size, nesting depth and longest array of a value, measured in one pass.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Measure {
    pub size: usize,
    pub depth: usize,
    pub array_len_max: usize,
}

impl Value {
    /// `size`, `depth` and `array_len_max` together, in one traversal.
    pub fn measure(&self) -> Measure {
        match self {
            Value::Array(items) => {
                let mut m = Measure {
                    size: 2,
                    depth: 1,
                    array_len_max: items.len(),
                };
                for item in items {
                    let c = item.measure();
                    m.size += c.size;
                    m.depth = m.depth.max(c.depth + 1);
                    m.array_len_max = m.array_len_max.max(c.array_len_max);
                }
                m
            }
            Value::Object(fields) => {
                let mut m = measure_fields(fields);
                m.depth += 1;
                m
            }
            other => Measure {
                size: other.size(),
                depth: 0,
                array_len_max: 0,
            },
        }
    }
}

/// The measure of an object's fields (a document's depth counts from its fields).
pub fn measure_fields(fields: &Fields) -> Measure {
    let mut m = Measure {
        size: 2,
        depth: 0,
        array_len_max: 0,
    };
    for (k, v) in fields {
        let c = v.measure();
        m.size += k.len() + 1 + c.size;
        m.depth = m.depth.max(c.depth);
        m.array_len_max = m.array_len_max.max(c.array_len_max);
    }
    m
}

/// Size of an object's fields, as Convex counts it.
pub fn fields_size(fields: &Fields) -> usize {
    2 + fields
        .iter()
        .map(|(k, v)| k.len() + 1 + v.size())
        .sum::<usize>()
}

impl PartialEq for Value {
    /// Agrees with `Ord` (floats are equal when `total_cmp` says so, that is when their bits
    /// are), without ordering: strings and lists compare lengths first.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Int64(a), Value::Int64(b)) => a == b,
            (Value::Float64(a), Value::Float64(b)) => a.to_bits() == b.to_bits(),
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::String(a), Value::String(b)) => bytes_eq(a.as_bytes(), b.as_bytes()),
            (Value::Bytes(a), Value::Bytes(b)) => bytes_eq(a, b),
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

/// Byte equality that compares short strings (ids, statuses, names: most are under 17
/// bytes) with two overlapping word loads instead of a call to `memcmp`.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        return a.first_chunk::<8>() == b.first_chunk::<8>()
            && a.last_chunk::<8>() == b.last_chunk::<8>();
    }
    if (4..8).contains(&n) {
        return a.first_chunk::<4>() == b.first_chunk::<4>()
            && a.last_chunk::<4>() == b.last_chunk::<4>();
    }
    a == b
}

impl std::hash::Hash for Value {
    /// Consistent with `Eq`: floats compare by `total_cmp`, so they hash by their bits.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.type_rank().hash(state);
        match self {
            Value::Null => {}
            Value::Int64(i) => i.hash(state),
            Value::Float64(f) => f.to_bits().hash(state),
            Value::Bool(b) => b.hash(state),
            Value::String(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Array(items) => items.hash(state),
            Value::Object(fields) => fields.hash(state),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Int64(a), Value::Int64(b)) => a.cmp(b),
            (Value::Float64(a), Value::Float64(b)) => a.total_cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Bytes(a), Value::Bytes(b)) => a.cmp(b),
            (Value::Array(a), Value::Array(b)) => a.cmp(b),
            (Value::Object(a), Value::Object(b)) => a.cmp(b),
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

impl fmt::Display for Value {
    /// A compact, JavaScript-like rendering for traces: int64 carries an `n` suffix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Int64(i) => write!(f, "{i}n"),
            Value::Float64(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Bytes(b) => write!(f, "bytes({})", b.len()),
            Value::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            Value::Object(fields) => {
                write!(f, "{{")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s.into())
    }
}

impl From<f64> for Value {
    fn from(x: f64) -> Self {
        Value::Float64(x)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

/// Builds an object value from `(name, value)` pairs.
pub fn object<I, K>(pairs: I) -> Value
where
    I: IntoIterator<Item = (K, Value)>,
    K: Into<Str>,
{
    Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Names that share long prefixes, differ past eight bytes, contain zero bytes or are
    /// empty: the cases where comparing prefixes as numbers could go wrong.
    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "",
            "a",
            "ab",
            "a\0",
            "a\0b",
            "status",
            "subtype",
            "customProperties",
            "customPropertiez",
            "customProp",
            "eventId",
            "eventIds",
            "z",
            "\u{e9}t\u{e9}",
        ])
        .prop_map(String::from)
    }

    use crate::store::hash_of;

    /// Up to a few hundred distinct names, most sharing their first eight bytes with others:
    /// enough for objects larger than `SCAN_MAX`, where a lookup searches the prefixes.
    fn many_names() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["", "a", "customer", "customerEmail", "eventId", "z"]),
            prop::collection::vec(prop::sample::select(vec!['\0', 'a', 'b', 'c']), 0..4),
        )
            .prop_map(|(head, tail)| format!("{head}{}", tail.into_iter().collect::<String>()))
    }

    proptest! {
        /// `Fields` behaves as the `BTreeMap<Str, Value>` it replaced: the same lookups,
        /// the same order of iteration, the same equality, order and hash.
        #[test]
        fn fields_behave_as_a_btree_map(
            ops in prop::collection::vec((name(), 0i64..4, any::<bool>()), 0..40),
            other in prop::collection::vec((name(), 0i64..4), 0..12),
        ) {
            let mut fields = Fields::new();
            let mut map: BTreeMap<Str, Value> = BTreeMap::new();
            for (k, v, remove) in &ops {
                if *remove {
                    prop_assert_eq!(fields.remove(k.as_str()), map.remove(k.as_str()));
                } else {
                    let (k, v) = (Str::from(k.as_str()), Value::Int64(*v));
                    prop_assert_eq!(fields.insert(k.clone(), v.clone()), map.insert(k, v));
                }
            }
            for (k, _, _) in &ops {
                prop_assert_eq!(fields.get(k.as_str()), map.get(k.as_str()));
            }
            prop_assert!(fields.iter().eq(map.iter()));
            let pairs: Vec<(Str, Value)> = other
                .iter()
                .map(|(k, v)| (Str::from(k.as_str()), Value::Int64(*v)))
                .collect();
            let built = Fields::from_pairs(pairs.clone());
            let built_map: BTreeMap<Str, Value> = pairs.into_iter().collect();
            prop_assert!(built.iter().eq(built_map.iter()));
            prop_assert_eq!(fields == built, map == built_map);
            prop_assert_eq!(fields.cmp(&built), map.cmp(&built_map));
            prop_assert_eq!(hash_of(&fields), hash_of(&map));
        }

        /// `clone_inserting` is `insert` on a clone, for a name that is there or not.
        #[test]
        fn clone_inserting_is_insert_on_a_clone(
            names in prop::collection::vec(name(), 0..14),
            key in name(),
        ) {
            let fields: Fields = names
                .iter()
                .enumerate()
                .map(|(i, n)| (Str::from(n.as_str()), Value::Int64(i as i64)))
                .collect();
            let mut inserted = fields.clone();
            inserted.insert(Str::from(key.as_str()), Value::Null);
            let built = fields.clone_inserting(Str::from(key.as_str()), Value::Null);
            prop_assert!(built.iter().eq(inserted.iter()));
        }

        /// Short-string equality is byte equality.
        #[test]
        fn bytes_eq_is_equality(
            a in prop::collection::vec(0u8..3, 0..20),
            b in prop::collection::vec(0u8..3, 0..20),
            flip in any::<usize>(),
        ) {
            prop_assert_eq!(bytes_eq(&a, &b), a == b);
            prop_assert!(bytes_eq(&a, &a.clone()));
            // The same bytes but one.
            if !a.is_empty() {
                let mut c = a.clone();
                c[flip % a.len()] ^= 1;
                prop_assert!(!bytes_eq(&a, &c));
            }
        }

        /// A name's prefix is its first eight bytes, zero-padded, read big-endian.
        #[test]
        fn a_prefix_is_the_padded_first_eight_bytes(name in prop::collection::vec(any::<u8>(), 0..12)) {
            let name = String::from_utf8_lossy(&name).into_owned();
            let mut padded = [0u8; 8];
            let n = name.len().min(8);
            padded[..n].copy_from_slice(&name.as_bytes()[..n]);
            prop_assert_eq!(prefix(&name), u64::from_be_bytes(padded));
        }

        /// In an object of any size, a lookup finds a name where the sorted map has it, and
        /// an absent name where it would go.
        #[test]
        fn a_lookup_finds_the_place_of_a_name_in_any_size_of_object(
            names in prop::collection::btree_set(many_names(), 0..80),
            keys in prop::collection::vec(many_names(), 1..20),
        ) {
            let fields = Fields::from_pairs(
                names.iter().map(|k| (Str::from(k.as_str()), Value::Null)).collect(),
            );
            let sorted: Vec<&String> = names.iter().collect();
            for key in keys.iter().chain(&names) {
                let expected = sorted.binary_search_by(|n| n.as_str().cmp(key.as_str()));
                prop_assert_eq!(fields.find(key), expected, "{:?}", key);
            }
        }

        /// Comparing names by their prefixes, then by the rest, is comparing them as
        /// strings, for names that share long runs, hold zero bytes or end early.
        #[test]
        fn names_compare_as_strings(
            a in "[ab\\x00]{0,30}",
            b in "[ab\\x00]{0,30}",
            cut in 0usize..30,
        ) {
            // Half the time, `b` begins as `a` does.
            let b = if cut % 2 == 0 { format!("{}{b}", &a[..a.len().min(cut)]) } else { b };
            let entry = Entry::new(Str::from(a.as_str()), Value::Null);
            prop_assert_eq!(entry.cmp_name(prefix(&b), &b), a.as_str().cmp(b.as_str()));
        }

        /// A lookup from any starting position finds what a lookup from the beginning does.
        #[test]
        fn a_lookup_from_any_position_is_a_lookup(
            names in prop::collection::vec(name(), 0..14),
            key in name(),
            start in 0usize..16,
        ) {
            // Each field's value is its name, so a lookup that lands on another field shows.
            let fields = Fields::from_pairs(
                names.iter().map(|k| (Str::from(k.as_str()), Value::from(k.as_str()))).collect(),
            );
            let name = Name::new(Box::leak(key.clone().into_boxed_str()));
            prop_assert_eq!(fields.position_of(start, &name), fields.find(&key));
            let mut at = start;
            prop_assert_eq!(fields.get_walking(&mut at, &name), fields.get(&key));
        }

        /// `clone_where` keeps the fields at the positions selected, in order, with no room
        /// to spare.
        #[test]
        fn a_filtered_clone_keeps_the_selected_fields(
            names in prop::collection::btree_set(name(), 0..14),
            keep in prop::collection::vec(any::<bool>(), 14),
        ) {
            let fields = Fields::from_pairs(
                names.iter().map(|k| (Str::from(k.as_str()), Value::from(k.as_str()))).collect(),
            );
            let kept = fields.clone_where(|i| keep[i]);
            let expected: Vec<(&Str, &Value)> =
                fields.iter().enumerate().filter(|&(i, _)| keep[i]).map(|(_, kv)| kv).collect();
            prop_assert_eq!(kept.iter().collect::<Vec<_>>(), expected);
            prop_assert_eq!(kept.0.capacity(), kept.len());
        }
    }

    #[test]
    fn int64_and_float64_are_distinct_and_ordered_by_type() {
        assert_ne!(Value::Int64(1), Value::Float64(1.0));
        assert!(Value::Null < Value::Int64(i64::MAX));
        assert!(Value::Int64(i64::MAX) < Value::Float64(f64::MIN));
        assert!(Value::Float64(f64::MAX) < Value::Bool(false));
        assert!(Value::Bool(true) < Value::String(Str::default()));
        assert!(Value::String("z".into()) < Value::Bytes(vec![]));
        assert!(Value::Bytes(vec![255]) < Value::Array(vec![]));
        assert!(Value::Array(vec![Value::Null]) < Value::Object(Fields::new()));
    }

    #[test]
    fn measure_agrees_with_the_separate_measurements() {
        let v = object([
            (
                "a",
                Value::Array(vec![Value::Int64(1), object([("b", Value::from("x"))])]),
            ),
            ("c", Value::Null),
        ]);
        let m = v.measure();
        assert_eq!(
            (m.size, m.depth, m.array_len_max),
            (v.size(), v.depth(), v.array_len_max())
        );
    }

    #[test]
    fn size_depth_and_arrays_are_counted() {
        let v = object([("a", Value::Array(vec![Value::Int64(1), Value::Null]))]);
        assert_eq!(v.size(), 2 + 1 + 1 + (2 + 9 + 1));
        assert_eq!(v.depth(), 2);
        assert_eq!(v.array_len_max(), 2);
    }
}
