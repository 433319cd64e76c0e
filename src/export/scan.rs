//! `cutover scan`: streams the `objects` table of an export (of the app and of each
//! component) through the plan's mapping, one document at a time, and counts and lists what
//! would not migrate. Memory holds one line, one document, the `objects` ids (8 bytes each,
//! for the reference check), and, per kind, the sizes of
//! the `batch_size` largest documents.

use super::archive::{Archive, Line, Namespace};
use super::encoding::Encoding;
use super::ids::ConvexId;
use super::{ExportError, Finding, FindingKind};
use crate::domain::{derive, kind_of};
use crate::plan::Plan;
use crate::schema::Kind;
use crate::store::Limits;
use crate::value::{Fields, Str, Value, measure_fields};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;

/// The God table.
pub const OBJECTS: &str = "objects";

/// A table entry's name inside a namespace.
pub fn entry_name(ns: &Namespace, table: &str, file: &str) -> String {
    format!("{}{table}/{file}", ns.prefix)
}

/// The encoding of a table, from its `generated_schema.jsonl`. `None` (with a finding) when
/// it names an encoding this crate does not know.
pub fn table_encoding(
    archive: &mut Archive,
    ns: &Namespace,
    table: &str,
    findings: &mut Vec<Finding>,
) -> Result<Option<Encoding>, ExportError> {
    let name = entry_name(ns, table, "generated_schema.jsonl");
    if !archive.has(&name) {
        findings.push(Finding::entry(
            FindingKind::Encoding,
            name,
            "missing; read as the current (uniform) encoding".into(),
        ));
        return Ok(Some(Encoding::Uniform));
    }
    let mut lines = archive.lines(&name)?;
    let mut buf = Vec::new();
    let result = match lines.next_line(&mut buf) {
        Ok(Some(Line::Read)) => Encoding::from_schema_line(&buf).map_err(|e| e.to_string()),
        Ok(Some(Line::TooLong(n))) => Err(format!("first line of {n} bytes is too long")),
        Ok(None) => Err("empty".into()),
        Err(e) => Err(format!("unreadable: {e}")),
    };
    match result {
        Ok(enc) => Ok(Some(enc)),
        Err(reason) => {
            findings.push(Finding::line(
                FindingKind::Encoding,
                &name,
                1,
                format!("{reason}; the table is skipped"),
            ));
            Ok(None)
        }
    }
}

/// One document read from a table entry, without `_id` and `_creationTime`.
pub struct Doc {
    pub line: u64,
    pub id: ConvexId,
    pub id_text: Str,
    pub creation_time: f64,
    pub fields: Fields,
}

/// Calls `f` with every document of a table entry, in line order. Lines that are not JSON
/// documents and documents without a valid `_id` of this table are findings. An entry that
/// becomes unreadable part way is a finding, and the documents before stay read.
pub fn for_each_document(
    archive: &mut Archive,
    entry: &str,
    encoding: &Encoding,
    table_number: u32,
    findings: &mut dyn FnMut(Finding),
    mut f: impl FnMut(Doc, &mut dyn FnMut(Finding)),
) -> Result<EntryStats, ExportError> {
    let mut lines = archive.lines(entry)?;
    let mut buf = Vec::with_capacity(64 << 10);
    let mut stats = EntryStats::default();
    loop {
        let line = match lines.next_line(&mut buf) {
            Ok(None) => break,
            Ok(Some(l)) => l,
            Err(e) => {
                findings(Finding::line(
                    FindingKind::Entry,
                    entry,
                    lines.line_no + 1,
                    format!("unreadable from here on: {e}"),
                ));
                stats.truncated = true;
                break;
            }
        };
        stats.lines += 1;
        let no = lines.line_no;
        if let Line::TooLong(n) = line {
            findings(Finding::line(
                FindingKind::BadLine,
                entry,
                no,
                format!(
                    "a line of {n} bytes, longer than {} (no Convex document is that large); skipped",
                    super::archive::LINE_BYTES_MAX
                ),
            ));
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut fields = match encoding.decode(&buf) {
            Ok(Value::Object(fields)) => fields,
            Ok(other) => {
                findings(Finding::line(
                    FindingKind::BadLine,
                    entry,
                    no,
                    format!("a {} where a document was expected", other.type_name()),
                ));
                continue;
            }
            Err(e) => {
                findings(Finding::line(
                    FindingKind::BadLine,
                    entry,
                    no,
                    format!("not JSON: {e}"),
                ));
                continue;
            }
        };
        let id_value = fields.remove("_id");
        let id_text = match id_value {
            Some(Value::String(s)) => s,
            other => {
                findings(Finding::line(
                    FindingKind::BadId,
                    entry,
                    no,
                    format!(
                        "_id: expected an id string, found {}",
                        other.as_ref().map_or("nothing", Value::type_name)
                    ),
                ));
                continue;
            }
        };
        let bad_id = |reason: String| Finding {
            kind: FindingKind::BadId,
            entry: entry.to_string(),
            line: Some(no),
            id: Some(id_text.to_string()),
            path: Some("_id".into()),
            reason,
        };
        let id = match ConvexId::decode(&id_text) {
            Ok(id) => id,
            Err(e) => {
                findings(bad_id(format!("not a Convex id: {e}")));
                continue;
            }
        };
        if id.table != table_number {
            findings(bad_id(format!(
                "an id of table number {}, in table number {table_number}",
                id.table
            )));
            continue;
        }
        let creation_time = match fields.remove("_creationTime") {
            Some(Value::Float64(x)) => x,
            Some(Value::Int64(i)) => i as f64,
            _ => 0.0,
        };
        stats.documents += 1;
        f(
            Doc {
                line: no,
                id,
                id_text,
                creation_time,
                fields,
            },
            &mut *findings,
        );
    }
    stats.bytes = lines.bytes;
    Ok(stats)
}

/// What reading one entry saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryStats {
    pub lines: u64,
    pub documents: u64,
    /// Inflated bytes read.
    pub bytes: u64,
    /// Whether the entry became unreadable before its end.
    pub truncated: bool,
}

/// The reference index's key of an id: its 16-byte internal id folded to 8 bytes, which
/// halves the index (two ids of one export share a key with a probability of about
/// n² / 2⁶⁵, under 10⁻⁶ for ten million documents; a shared key can only hide one
/// unresolved reference, never invent one).
fn id_key(id: &ConvexId) -> u64 {
    let (a, b) = id.internal.split_at(8);
    let a = u64::from_le_bytes(a.try_into().expect("8 bytes"));
    let b = u64::from_le_bytes(b.try_into().expect("8 bytes"));
    a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29)
}

/// Keys per block of the id index: 8 MiB. Fixed blocks instead of one growing vector: a
/// vector that doubles holds up to twice what it needs, and briefly three times while it
/// moves (measured: 114 MB instead of 67 MB of peak memory at 6 million documents).
const ID_BLOCK_KEYS: usize = 1 << 20;
/// A sealed block is found into by the top `ID_FENCE_BITS` bits of a key first.
const ID_FENCE_BITS: u32 = 12;

/// The keys (`id_key`) of a table's documents, in sorted blocks of `ID_BLOCK_KEYS`. Keys are
/// folded ids, evenly spread, so each block also keeps where each prefix of the top
/// `ID_FENCE_BITS` bits starts: a lookup searches about 256 neighbouring keys per block
/// instead of a million.
#[derive(Default)]
struct IdIndex {
    blocks: Vec<Vec<u64>>,
    /// Per block: the index of the first key of each prefix, and the block's length last.
    fences: Vec<Vec<u32>>,
}

impl IdIndex {
    fn push(&mut self, key: u64) {
        assert!(self.fences.is_empty(), "no key is added after sealing");
        match self.blocks.last_mut() {
            Some(b) if b.len() < ID_BLOCK_KEYS => b.push(key),
            _ => {
                let mut b = Vec::with_capacity(ID_BLOCK_KEYS);
                b.push(key);
                self.blocks.push(b);
            }
        }
    }

    /// Sorts each block and computes its fences.
    fn seal(&mut self) {
        if let Some(b) = self.blocks.last_mut() {
            b.shrink_to_fit();
        }
        for b in &mut self.blocks {
            b.sort_unstable();
            let mut fence = Vec::with_capacity((1 << ID_FENCE_BITS) + 1);
            let mut at = 0usize;
            for prefix in 0..1u64 << ID_FENCE_BITS {
                while at < b.len() && b[at] >> (64 - ID_FENCE_BITS) < prefix {
                    at += 1;
                }
                fence.push(at as u32);
            }
            fence.push(b.len() as u32);
            self.fences.push(fence);
        }
    }

    fn contains(&self, key: u64) -> bool {
        assert_eq!(self.fences.len(), self.blocks.len(), "the index is sealed");
        let p = (key >> (64 - ID_FENCE_BITS)) as usize;
        self.blocks.iter().zip(&self.fences).any(|(b, f)| {
            b[f[p] as usize..f[p + 1] as usize]
                .binary_search(&key)
                .is_ok()
        })
    }
}

/// The keys (`id_key`) of every document of a table (the reference check's index). Only
/// `_id` is parsed.
fn collect_ids(
    archive: &mut Archive,
    entry: &str,
    table_number: u32,
) -> Result<IdIndex, ExportError> {
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow, rename = "_id")]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    let mut lines = archive.lines(entry)?;
    let mut buf = Vec::with_capacity(64 << 10);
    let mut ids = IdIndex::default();
    while let Ok(Some(line)) = lines.next_line(&mut buf) {
        if line != Line::Read {
            continue;
        }
        // Fast path: a line that opens with `_id` (as exports write it) names its id in its
        // first bytes, at the top level; other lines are parsed, skipping the other fields.
        let first = buf
            .strip_prefix(b"{\"_id\":\"")
            .and_then(|rest| rest.get(..memchr::memchr(b'"', rest)?))
            .and_then(|id| std::str::from_utf8(id).ok())
            .map(std::borrow::Cow::Borrowed);
        let id = match first {
            Some(id) => Some(id),
            None => serde_json::from_slice::<IdOnly>(&buf)
                .ok()
                .and_then(|i| i.id),
        };
        if let Some(id) = id
            && let Ok(id) = ConvexId::decode(&id)
            && id.table == table_number
        {
            ids.push(id_key(&id));
        }
    }
    ids.seal();
    Ok(ids)
}

/// The legacy field paths that hold references to other `objects` documents, per kind.
fn reference_paths(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Events => &[],
        Kind::Tickets => &["eventId", "transactionId", "productId", "checkoutSessionId"],
        Kind::Transactions => &["eventId", "productId", "checkoutSessionId", "ticketId"],
    }
}

/// The legacy path of a reference: a `customProperties` field, or a field of a line item.
pub fn reference_path(item: Option<usize>, name: &str) -> String {
    match item {
        None => format!("customProperties.{name}"),
        Some(i) => format!("customProperties.lineItems[{i}].{name}"),
    }
}

/// Calls `f` with every reference of a legacy document: its line item (for a reference
/// inside `lineItems`), its field name and its value. (The path is built only for the few
/// that need it, by `reference_path`.)
pub fn for_each_reference(
    kind: Kind,
    fields: &Fields,
    mut f: impl FnMut(Option<usize>, &'static str, &str),
) {
    let Some(Value::Object(cp)) = fields.get("customProperties") else {
        return;
    };
    for name in reference_paths(kind) {
        if let Some(Value::String(s)) = cp.get(*name) {
            f(None, name, s);
        }
    }
    if kind == Kind::Transactions
        && let Some(Value::Array(items)) = cp.get("lineItems")
    {
        for (i, item) in items.iter().enumerate() {
            if let Value::Object(item) = item {
                for name in ["eventId", "productId"] {
                    if let Some(Value::String(s)) = item.get(name) {
                        f(Some(i), name, s);
                    }
                }
            }
        }
    }
}

/// Rewrites every string that is a Convex id of a known table with `to(table name, id)`
/// (the simulator's `table:seq` form). Strings that are not ids stay as they are, so a
/// malformed reference still fails the mapping at its path.
pub fn rewrite_ids(v: &mut Value, ns: &Namespace, to: &mut impl FnMut(&str, &ConvexId) -> Str) {
    match v {
        Value::String(s) => {
            if ConvexId::looks_like(s)
                && let Ok(id) = ConvexId::decode(s)
                && let Some(table) = ns.tables.get(&id.table)
            {
                *s = to(table, &id);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| rewrite_ids(i, ns, to)),
        Value::Object(fields) => fields.values_mut().for_each(|i| rewrite_ids(i, ns, to)),
        _ => {}
    }
}

/// Per-kind figures of a scan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindScan {
    pub kind: String,
    pub documents: u64,
    /// Documents whose strict mapping succeeds.
    pub clean: u64,
    pub unmappable: u64,
    /// References (of mappable or unmappable documents) to documents not in the export.
    pub unresolved_references: u64,
    pub batch_size: usize,
    /// Backfill batches the batch size implies: documents / batch size, rounded up.
    pub batches: u64,
    /// The largest batch: its documents, the documents it writes (a typed row and an id-map
    /// entry per document, and the progress row), and upper bounds of the bytes it reads and
    /// writes (the `batch_size` largest legacy documents and typed rows together).
    pub batch_documents_max: u64,
    pub batch_writes_max: u64,
    pub batch_read_bytes_max: u64,
    pub batch_write_bytes_max: u64,
    /// The Convex per-transaction limits the largest batch can exceed, by name.
    pub batch_over_limits: Vec<String>,
}

/// A scanned table.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableScan {
    pub entry: String,
    pub encoding: String,
    #[serde(flatten)]
    pub stats: EntryStats,
}

/// What `cutover scan` found.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub export: String,
    pub plan: String,
    pub tables: Vec<TableScan>,
    /// Legacy documents read.
    pub documents: u64,
    /// Documents per `type / subtype / shape` (shape: v1, v2 or booking for transactions).
    pub shapes: BTreeMap<String, u64>,
    pub kinds: Vec<KindScan>,
    /// Every finding, in the order found (`scan`); empty from `scan_with`, which hands each
    /// one to its caller instead. Written by `report::write_json` after the other fields.
    #[serde(skip)]
    pub findings: Vec<Finding>,
    /// Findings per kind of finding.
    pub finding_counts: BTreeMap<String, u64>,
}

impl ScanReport {
    /// Whether every document maps, every reference resolves and every entry was readable.
    pub fn is_clean(&self) -> bool {
        self.finding_counts.is_empty()
    }
}

/// The shape of a legacy document: type, subtype and shape (v1, v2 or booking for a
/// transaction).
fn shape_of(fields: &Fields) -> (&str, &str, &'static str) {
    let ty = fields
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("(no type)");
    let subtype = fields.get("subtype").and_then(Value::as_str).unwrap_or("-");
    let shape = match (
        ty,
        fields.get("customProperties").and_then(Value::as_object),
    ) {
        ("transaction", Some(cp)) if cp.contains_key("lineItems") => "v2",
        ("transaction", Some(cp)) if cp.contains_key("bookingId") => "booking",
        ("transaction", _) => "v1",
        ("ticket", _) if subtype == "support" => "support ticket",
        _ => "-",
    };
    (ty, subtype, shape)
}

/// Documents per shape. Exports have a few dozen shapes at most, so a short list searched
/// in order costs less per document than a map keyed by a freshly built label.
#[derive(Default)]
struct ShapeCounts(Vec<(Str, Str, &'static str, u64)>);

impl ShapeCounts {
    fn add(&mut self, (ty, subtype, shape): (&str, &str, &'static str)) {
        match self
            .0
            .iter_mut()
            .find(|(t, s, h, _)| t == ty && s == subtype && *h == shape)
        {
            Some(entry) => entry.3 += 1,
            None => self.0.push((ty.into(), subtype.into(), shape, 1)),
        }
    }

    fn labels(self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (t, s, h, n) in self.0 {
            *out.entry(format!("{t} / {s} / {h}")).or_default() += n;
        }
        out
    }
}

/// The sizes of the `cap` largest documents.
struct Largest {
    cap: usize,
    heap: BinaryHeap<Reverse<u64>>,
}

impl Largest {
    fn new(cap: usize) -> Largest {
        Largest {
            cap,
            heap: BinaryHeap::with_capacity(cap + 1),
        }
    }
    fn push(&mut self, size: u64) {
        if self.heap.len() < self.cap {
            self.heap.push(Reverse(size));
        } else if self.heap.peek().is_some_and(|Reverse(min)| *min < size) {
            self.heap.pop();
            self.heap.push(Reverse(size));
        }
    }
    fn sum(&self) -> u64 {
        self.heap.iter().map(|Reverse(s)| s).sum()
    }
}

/// Scans the export at `path` with `plan`'s mapping and batch sizes, keeping every finding
/// in the report (for exports whose findings fit in memory; `cutover scan` uses
/// `scan_with`).
pub fn scan(path: &Path, plan: &Plan) -> Result<ScanReport, ExportError> {
    let mut findings = Vec::new();
    let mut report = scan_with(path, plan, &mut |f| findings.push(f))?;
    report.findings = findings;
    Ok(report)
}

/// Scans the export at `path` with `plan`'s mapping and batch sizes, handing each finding to
/// `sink` as it is found (so that memory does not grow with them).
pub fn scan_with(
    path: &Path,
    plan: &Plan,
    sink: &mut dyn FnMut(Finding),
) -> Result<ScanReport, ExportError> {
    let mut findings = Vec::new();
    let mut archive = Archive::open(path, &mut findings)?;
    let mut report = ScanReport {
        export: archive.path.clone(),
        plan: plan.name.clone(),
        ..ScanReport::default()
    };
    let limits = Limits::default();
    let mut kinds: Vec<KindScan> = Kind::ALL
        .iter()
        .map(|k| KindScan {
            kind: k.table().to_string(),
            batch_size: plan.batch_size(*k),
            ..KindScan::default()
        })
        .collect();
    let mut read_sizes: Vec<Largest> = Kind::ALL
        .iter()
        .map(|k| Largest::new(plan.batch_size(*k)))
        .collect();
    let mut write_sizes: Vec<Largest> = Kind::ALL
        .iter()
        .map(|k| Largest::new(plan.batch_size(*k)))
        .collect();
    let mut shapes = ShapeCounts::default();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    // Findings about tables, for the message if no table can be read.
    let mut table_findings: Vec<String> = Vec::new();
    let mut keep = |f: Finding| {
        *counts.entry(f.kind.name().to_string()).or_default() += 1;
        sink(f);
    };
    for f in findings.drain(..) {
        keep(f);
    }
    let namespaces = archive.namespaces.clone();
    let mut scanned = 0;
    for ns in &namespaces {
        let Some(number) = ns.number_of(OBJECTS) else {
            continue;
        };
        let entry = entry_name(ns, OBJECTS, "documents.jsonl");
        if !archive.has(&entry) {
            let f = Finding::entry(
                FindingKind::Entry,
                entry,
                "listed in _tables but missing".into(),
            );
            table_findings.push(f.to_string());
            keep(f);
            continue;
        }
        let encoding = table_encoding(&mut archive, ns, OBJECTS, &mut findings)?;
        for f in findings.drain(..) {
            table_findings.push(f.to_string());
            keep(f);
        }
        let Some(encoding) = encoding else { continue };
        scanned += 1;
        let ids = collect_ids(&mut archive, &entry, number)?;
        let stats = for_each_document(
            &mut archive,
            &entry,
            &encoding,
            number,
            &mut keep,
            |mut doc, local| {
                report.documents += 1;
                shapes.add(shape_of(&doc.fields));
                let at = |kind: FindingKind, path: Option<String>, reason: String| Finding {
                    kind,
                    entry: entry.clone(),
                    line: Some(doc.line),
                    id: Some(doc.id_text.to_string()),
                    path,
                    reason,
                };
                let m = measure_fields(&doc.fields);
                for (over, what) in [
                    (
                        m.size > limits.document_bytes_max,
                        format!(
                            "{} bytes, over Convex's {} per document",
                            m.size, limits.document_bytes_max
                        ),
                    ),
                    (
                        m.depth > limits.depth_max,
                        format!(
                            "nested {} deep, over Convex's {}",
                            m.depth, limits.depth_max
                        ),
                    ),
                    (
                        m.array_len_max > limits.array_len_max,
                        format!(
                            "an array of {} elements, over Convex's {}",
                            m.array_len_max, limits.array_len_max
                        ),
                    ),
                ] {
                    if over {
                        local(at(FindingKind::Limit, None, what));
                    }
                }
                let Some(kind) = kind_of(&doc.fields) else {
                    return;
                };
                let k = &mut kinds[kind.index()];
                k.documents += 1;
                read_sizes[kind.index()].push(m.size as u64);
                for_each_reference(kind, &doc.fields, |item, name, s| {
                    if let Ok(target) = ConvexId::decode(s)
                        && target.table == number
                        && !ids.contains(id_key(&target))
                    {
                        k.unresolved_references += 1;
                        local(at(
                            FindingKind::UnresolvedReference,
                            Some(reference_path(item, name)),
                            format!("{s} is not in {OBJECTS} (deleted, or never there)"),
                        ));
                    }
                });
                let mut v = Value::Object(std::mem::take(&mut doc.fields));
                // Only the id's form matters to the mapping; the reference check is above.
                rewrite_ids(&mut v, ns, &mut |table, _| {
                    compact_str::format_compact!("{table}:1")
                });
                let Value::Object(fields) = v else {
                    unreachable!("an object stays an object")
                };
                match derive(kind, &fields, true) {
                    Ok(row) => {
                        k.clean += 1;
                        write_sizes[kind.index()].push(measure_fields(&row).size as u64);
                    }
                    Err(e) => {
                        k.unmappable += 1;
                        local(at(FindingKind::Unmappable, Some(e.path), e.reason));
                    }
                }
            },
        )?;
        report.tables.push(TableScan {
            entry,
            encoding: match encoding {
                Encoding::Uniform => "uniform".into(),
                Encoding::Legacy(_) => "legacy".into(),
            },
            stats,
        });
    }
    if scanned == 0 {
        let why = table_findings;
        return Err(ExportError::Unusable {
            path: archive.path.clone(),
            reason: if why.is_empty() {
                format!("no readable {OBJECTS} table")
            } else {
                format!("no readable {OBJECTS} table: {}", why.join("; "))
            },
        });
    }
    for (i, k) in kinds.iter_mut().enumerate() {
        let batch = k.batch_size as u64;
        k.batches = k.documents.div_ceil(batch);
        k.batch_documents_max = k.documents.min(batch);
        k.batch_writes_max = if k.documents == 0 {
            0
        } else {
            2 * k.batch_documents_max + 1
        };
        k.batch_read_bytes_max = read_sizes[i].sum();
        k.batch_write_bytes_max = write_sizes[i].sum();
        for (over, name) in [
            (
                k.batch_documents_max > limits.documents_scanned_max as u64,
                "documents_scanned",
            ),
            (
                k.batch_read_bytes_max > limits.bytes_read_max as u64,
                "bytes_read",
            ),
            (
                k.batch_writes_max > limits.documents_written_max as u64,
                "documents_written",
            ),
            (
                k.batch_write_bytes_max > limits.bytes_written_max as u64,
                "bytes_written",
            ),
        ] {
            if over {
                k.batch_over_limits.push(name.to_string());
            }
        }
    }
    report.kinds = kinds;
    report.shapes = shapes.labels();
    report.finding_counts = counts;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_index_finds_keys_in_every_block() {
        let mut ids = IdIndex::default();
        let n = 2 * ID_BLOCK_KEYS as u64 + 5;
        // Odd keys only, in an order that is not sorted.
        for i in 0..n {
            ids.push((i * 7_919 % n) * 2 + 1);
        }
        ids.seal();
        assert_eq!(ids.blocks.len(), 3);
        // Keys at both ends of the key space, in the first and last fences.
        let mut edges = IdIndex::default();
        edges.push(u64::MAX);
        edges.push(0);
        edges.seal();
        assert!(edges.contains(0) && edges.contains(u64::MAX) && !edges.contains(1));
        for k in [1, 3, 2 * (n - 1) + 1, 2 * ID_BLOCK_KEYS as u64 + 1] {
            assert!(ids.contains(k), "{k}");
        }
        for k in [0, 2, 2 * n, 2 * n + 1] {
            assert!(!ids.contains(k), "{k}");
        }
    }
}
