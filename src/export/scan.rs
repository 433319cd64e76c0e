//! `cutover scan`: streams the `objects` table of an export (of the app and of each
//! component) through the plan's mapping, one document at a time, and counts and lists what
//! would not migrate. Memory holds one line, one document, the run of `objects` ids being
//! filled and a batch of references (full runs of ids go to a temporary file: the reference
//! check), and, per kind, the sizes of the `batch_size` largest documents.

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
use std::collections::BTreeMap;
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

/// Keys per sorted run of the id index: 8 MiB. The run being filled is in memory; every full
/// run is sorted and written to a temporary file, so memory does not grow with the table.
const ID_BLOCK_KEYS: usize = 1 << 20;

/// References checked together against the id index: each batch is sorted by key and
/// merge-joined with every run in one sequential read.
const REF_BATCH: usize = 1 << 16;

/// The keys (`id_key`) of a table's documents, as sorted runs of at most `ID_BLOCK_KEYS`:
/// the last one in memory, the full ones in an anonymous temporary file (deleted when the
/// index is dropped).
#[derive(Default)]
struct IdIndex {
    /// The run being filled (sorted by `seal`).
    open: Vec<u64>,
    /// The full runs, one after the other, as little-endian keys.
    file: Option<std::fs::File>,
    /// Each full run: its first key's position in the file, in keys, and its length.
    runs: Vec<(u64, usize)>,
    sealed: bool,
}

impl IdIndex {
    fn push(&mut self, key: u64) -> std::io::Result<()> {
        assert!(!self.sealed, "no key is added after sealing");
        self.open.push(key);
        if self.open.len() >= ID_BLOCK_KEYS {
            self.spill()?;
        }
        Ok(())
    }

    /// Sorts the open run and appends it to the file.
    fn spill(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        self.open.sort_unstable();
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile()?),
        };
        let start = file.seek(std::io::SeekFrom::End(0))? / 8;
        let mut w = std::io::BufWriter::with_capacity(1 << 16, &*file);
        for k in &self.open {
            w.write_all(&k.to_le_bytes())?;
        }
        w.flush()?;
        self.runs.push((start, self.open.len()));
        self.open.clear();
        Ok(())
    }

    /// Sorts the open run; after this, only lookups.
    fn seal(&mut self) {
        self.open.sort_unstable();
        self.sealed = true;
    }

    /// Sets `found[i]` for each key of `keys` (sorted ascending) that is in the index.
    fn find_sorted(&self, keys: &[u64], found: &mut [bool]) -> std::io::Result<()> {
        use std::io::{Read, Seek};
        assert!(self.sealed, "the index is sealed");
        join(self.open.iter().copied(), keys, found);
        if let Some(file) = &self.file {
            let mut handle = file.try_clone()?;
            for &(start, len) in &self.runs {
                handle.seek(std::io::SeekFrom::Start(start * 8))?;
                let mut r =
                    std::io::BufReader::with_capacity(1 << 16, (&handle).take(len as u64 * 8));
                let mut err = None;
                let run = std::iter::from_fn(|| {
                    let mut b = [0u8; 8];
                    match r.read_exact(&mut b) {
                        Ok(()) => Some(u64::from_le_bytes(b)),
                        Err(e) => {
                            err = Some(e);
                            None
                        }
                    }
                });
                join(run, keys, found);
                if let Some(e) = err
                    && e.kind() != std::io::ErrorKind::UnexpectedEof
                {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Whether one key is in the index (tests).
    #[cfg(test)]
    fn contains(&self, key: u64) -> bool {
        let mut found = [false];
        self.find_sorted(&[key], &mut found)
            .expect("reads its own file");
        found[0]
    }
}

/// Merge-joins a sorted run with sorted `keys`, setting `found` for the keys in the run.
fn join(run: impl Iterator<Item = u64>, keys: &[u64], found: &mut [bool]) {
    let mut i = 0;
    for r in run {
        while i < keys.len() && keys[i] < r {
            i += 1;
        }
        if i == keys.len() {
            return;
        }
        let mut j = i;
        while j < keys.len() && keys[j] == r {
            found[j] = true;
            j += 1;
        }
    }
}

/// A reference waiting for its batch's check: everything its finding needs, without
/// allocating.
#[derive(Clone, Copy)]
struct PendingRef {
    key: u64,
    kind: usize,
    line: u64,
    doc: ConvexId,
    target: ConvexId,
    item: Option<usize>,
    name: &'static str,
}

/// Checks a batch of references against the index and reports the unresolved ones, in the
/// order they were found (document order).
fn resolve_refs(
    ids: &IdIndex,
    pending: &mut Vec<PendingRef>,
    entry: &str,
    kinds: &mut [KindScan],
    out: &mut dyn FnMut(Finding),
) -> std::io::Result<()> {
    let mut order: Vec<usize> = (0..pending.len()).collect();
    order.sort_unstable_by_key(|&i| pending[i].key);
    let keys: Vec<u64> = order.iter().map(|&i| pending[i].key).collect();
    let mut found_sorted = vec![false; keys.len()];
    ids.find_sorted(&keys, &mut found_sorted)?;
    let mut found = vec![false; pending.len()];
    for (rank, &i) in order.iter().enumerate() {
        found[i] = found_sorted[rank];
    }
    for (p, found) in pending.drain(..).zip(found) {
        if found {
            continue;
        }
        kinds[p.kind].unresolved_references += 1;
        out(Finding {
            kind: FindingKind::UnresolvedReference,
            entry: entry.to_string(),
            line: Some(p.line),
            id: Some(p.doc.encode()),
            path: Some(reference_path(p.item, p.name)),
            reason: format!(
                "{} is not in {OBJECTS} (deleted, or never there)",
                p.target.encode()
            ),
        });
    }
    Ok(())
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
            ids.push(id_key(&id)).map_err(|source| ExportError::Io {
                path: "a temporary file of the id index".into(),
                source,
            })?;
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

/// A document of a migrating kind, for the exact sizes of the backfill batches: a batch is
/// the next `batch_size` documents of its kind in its table, in creation order
/// (`_creationTime`, then `_id`), as the backfill's cursor pages. The derived order is that
/// order (fields in this order).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BatchDoc {
    /// The namespace (the app, or a component) whose `objects` table holds it.
    ns: u32,
    kind: u8,
    /// `_creationTime`, as bits that sort like the number.
    creation: u64,
    id: [u8; crate::export::ids::INTERNAL_ID_LEN],
    /// Bytes the batch reads for it, and bytes of the typed row it writes (0 if it does not
    /// map).
    read: u64,
    written: u64,
}

/// Bytes of an encoded `BatchDoc`.
const BATCH_DOC_BYTES: usize = 4 + 1 + 8 + crate::export::ids::INTERNAL_ID_LEN + 8 + 8;

impl extsort::Sortable for BatchDoc {
    fn encode<W: std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        let mut b = [0u8; BATCH_DOC_BYTES];
        b[..4].copy_from_slice(&self.ns.to_le_bytes());
        b[4] = self.kind;
        b[5..13].copy_from_slice(&self.creation.to_le_bytes());
        b[13..29].copy_from_slice(&self.id);
        b[29..37].copy_from_slice(&self.read.to_le_bytes());
        b[37..45].copy_from_slice(&self.written.to_le_bytes());
        w.write_all(&b)
    }

    fn decode<R: std::io::Read>(r: &mut R) -> std::io::Result<BatchDoc> {
        let mut b = [0u8; BATCH_DOC_BYTES];
        r.read_exact(&mut b)?;
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(BatchDoc {
            ns: u32::from_le_bytes(b[..4].try_into().expect("4 bytes")),
            kind: b[4],
            creation: u64_at(5),
            id: b[13..29].try_into().expect("16 bytes"),
            read: u64_at(29),
            written: u64_at(37),
        })
    }
}

/// The bits of a float, mapped so that unsigned order is numeric order.
fn ordered_bits(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

/// The backfill's batches, exactly, from every `BatchDoc` in sorted order: each table's
/// documents of a kind in creation order, cut every `batch_size` documents. Sets each kind's
/// number of batches and the largest documents, read bytes and written bytes of any batch.
fn batch_figures(
    sorted: impl Iterator<Item = std::io::Result<BatchDoc>>,
    kinds: &mut [KindScan],
) -> std::io::Result<()> {
    /// The batch being filled: its table and kind, documents, read and written bytes.
    type Open = ((u32, u8), u64, u64, u64);
    let close = |kinds: &mut [KindScan], (key, docs, read, written): Open| {
        let k = &mut kinds[usize::from(key.1)];
        k.batches += 1;
        k.batch_documents_max = k.batch_documents_max.max(docs);
        k.batch_read_bytes_max = k.batch_read_bytes_max.max(read);
        k.batch_write_bytes_max = k.batch_write_bytes_max.max(written);
    };
    let mut batch: Option<Open> = None;
    for d in sorted {
        let d = d?;
        let key = (d.ns, d.kind);
        let size = kinds[usize::from(d.kind)].batch_size as u64;
        match &mut batch {
            Some((k, docs, read, written)) if *k == key && *docs < size => {
                *docs += 1;
                *read += d.read;
                *written += d.written;
            }
            open => {
                if let Some(full) = open.take() {
                    close(kinds, full);
                }
                *open = Some((key, 1, d.read, d.written));
            }
        }
    }
    if let Some(last) = batch {
        close(kinds, last);
    }
    Ok(())
}

/// Documents a batch-size sort keeps in memory before it writes a sorted segment to disk.
const BATCH_SORT_SEGMENT: usize = 1 << 17;

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
    let mut batch_docs = extsort::ExternalSorter::new()
        .with_segment_size(BATCH_SORT_SEGMENT)
        .pushed::<BatchDoc>();
    let mut batch_error: Option<std::io::Error> = None;
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
    for (ns_index, ns) in namespaces.iter().enumerate() {
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
        let mut pending: Vec<PendingRef> = Vec::with_capacity(REF_BATCH);
        let mut io_error: Option<std::io::Error> = None;
        let stats = for_each_document(
            &mut archive,
            &entry,
            &encoding,
            number,
            &mut keep,
            |mut doc, local| {
                if pending.len() >= REF_BATCH
                    && io_error.is_none()
                    && let Err(e) = resolve_refs(&ids, &mut pending, &entry, &mut kinds, local)
                {
                    io_error = Some(e);
                }
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
                // Checked in batches (`resolve_refs`): the ids are on disk, not in memory.
                for_each_reference(kind, &doc.fields, |item, name, s| {
                    if let Ok(target) = ConvexId::decode(s)
                        && target.table == number
                    {
                        pending.push(PendingRef {
                            key: id_key(&target),
                            kind: kind.index(),
                            line: doc.line,
                            doc: doc.id,
                            target,
                            item,
                            name,
                        });
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
                let written = match derive(kind, &fields, true) {
                    Ok(row) => {
                        k.clean += 1;
                        measure_fields(&row).size as u64
                    }
                    Err(e) => {
                        k.unmappable += 1;
                        local(at(FindingKind::Unmappable, Some(e.path), e.reason));
                        0
                    }
                };
                let batch_doc = BatchDoc {
                    ns: ns_index as u32,
                    kind: kind.index() as u8,
                    creation: ordered_bits(doc.creation_time),
                    id: doc.id.internal,
                    read: m.size as u64,
                    written,
                };
                if batch_error.is_none()
                    && let Err(e) = batch_docs.push(batch_doc)
                {
                    batch_error = Some(e);
                }
            },
        )?;
        let checked = match io_error {
            Some(e) => Err(e),
            None => resolve_refs(&ids, &mut pending, &entry, &mut kinds, &mut keep),
        };
        checked.map_err(|source| ExportError::Io {
            path: "a temporary file of the id index".into(),
            source,
        })?;
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
    let sort_error = |source| ExportError::Io {
        path: "a temporary file of the batch sizes".into(),
        source,
    };
    if let Some(e) = batch_error {
        return Err(sort_error(e));
    }
    batch_figures(batch_docs.done().map_err(sort_error)?, &mut kinds).map_err(sort_error)?;
    for k in kinds.iter_mut() {
        k.batch_writes_max = if k.documents == 0 {
            0
        } else {
            2 * k.batch_documents_max + 1
        };
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
    fn the_id_index_finds_keys_in_every_run_in_memory_and_on_disk() {
        let mut ids = IdIndex::default();
        let n = 2 * ID_BLOCK_KEYS as u64 + 5;
        // Odd keys only, in an order that is not sorted.
        for i in 0..n {
            ids.push((i * 7_919 % n) * 2 + 1).unwrap();
        }
        ids.seal();
        // Two full runs on disk, five keys in memory.
        assert_eq!((ids.runs.len(), ids.open.len()), (2, 5));
        // Keys at both ends of the key space, in the first and last fences.
        let mut edges = IdIndex::default();
        edges.push(u64::MAX).unwrap();
        edges.push(0).unwrap();
        edges.seal();
        assert!(edges.contains(0) && edges.contains(u64::MAX) && !edges.contains(1));
        for k in [1, 3, 2 * (n - 1) + 1, 2 * ID_BLOCK_KEYS as u64 + 1] {
            assert!(ids.contains(k), "{k}");
        }
        for k in [0, 2, 2 * n, 2 * n + 1] {
            assert!(!ids.contains(k), "{k}");
        }
        // A batch with repeated keys, present and absent, in one pass.
        let keys = [0, 1, 1, 3, 4, 2 * (n - 1) + 1, 2 * n + 1];
        let mut found = [false; 7];
        ids.find_sorted(&keys, &mut found).unwrap();
        assert_eq!(found, [false, true, true, true, false, true, false]);
    }

    #[test]
    fn batches_are_cut_in_creation_order_per_table_and_kind_whatever_the_line_order() {
        let doc = |ns: u32, kind: Kind, creation: f64, id: u8, read: u64| BatchDoc {
            ns,
            kind: kind.index() as u8,
            creation: ordered_bits(creation),
            id: [id; crate::export::ids::INTERNAL_ID_LEN],
            read,
            written: read / 2,
        };
        let (e, t) = (Kind::Events, Kind::Transactions);
        // In line order. Events of the app, in creation order: 10 (two documents at the same
        // time, ordered by id), 1, 1, 10; the two largest are not in one batch of two.
        let docs = [
            doc(0, e, 4.0, 1, 10),
            doc(0, t, 1.0, 9, 7),
            doc(0, e, 2.0, 2, 1),
            doc(0, e, 1.0, 4, 1),
            doc(0, e, 1.0, 3, 10),
            // A component's events batch on their own.
            doc(1, e, 0.5, 5, 5),
            doc(1, e, 0.7, 6, 5),
        ];
        for segment in [2, 1 << 10] {
            let mut sorter = extsort::ExternalSorter::new()
                .with_segment_size(segment)
                .pushed::<BatchDoc>();
            for d in docs.iter().map(|d| BatchDoc { ..*d }) {
                sorter.push(d).unwrap();
            }
            let mut kinds: Vec<KindScan> = Kind::ALL
                .iter()
                .map(|_| KindScan {
                    batch_size: 2,
                    ..KindScan::default()
                })
                .collect();
            batch_figures(sorter.done().unwrap(), &mut kinds).unwrap();
            let events = &kinds[e.index()];
            // App: [10, 1], [1, 10] (the two largest together would be 20); component:
            // [5, 5].
            assert_eq!(events.batches, 3, "segment {segment}");
            assert_eq!(events.batch_documents_max, 2);
            assert_eq!(events.batch_read_bytes_max, 11);
            assert_eq!(events.batch_write_bytes_max, 5);
            let txns = &kinds[t.index()];
            assert_eq!((txns.batches, txns.batch_read_bytes_max), (1, 7));
        }
    }

    #[test]
    fn unresolved_references_are_reported_in_document_order_with_their_kind() {
        let id = |n: u8| ConvexId {
            table: 10_001,
            internal: [n; crate::export::ids::INTERNAL_ID_LEN],
        };
        let mut ids = IdIndex::default();
        for n in [2, 4] {
            ids.push(id_key(&id(n))).unwrap();
        }
        ids.seal();
        let pending_ref = |line: u64, kind: Kind, target: u8| PendingRef {
            key: id_key(&id(target)),
            kind: kind.index(),
            line,
            doc: id(100 + line as u8),
            target: id(target),
            item: None,
            name: "eventId",
        };
        // Absent targets 9 and 1 (out of key order), a present one between them.
        let mut pending = vec![
            pending_ref(7, Kind::Tickets, 9),
            pending_ref(8, Kind::Tickets, 2),
            pending_ref(9, Kind::Transactions, 1),
        ];
        let mut kinds = vec![KindScan::default(); 3];
        let mut out = Vec::new();
        resolve_refs(
            &ids,
            &mut pending,
            "objects/documents.jsonl",
            &mut kinds,
            &mut |f| out.push(f),
        )
        .unwrap();
        assert!(pending.is_empty());
        let lines: Vec<Option<u64>> = out.iter().map(|f| f.line).collect();
        assert_eq!(lines, [Some(7), Some(9)]);
        assert_eq!(
            out[0].reason,
            format!(
                "{} is not in objects (deleted, or never there)",
                id(9).encode()
            )
        );
        assert_eq!(out[0].path.as_deref(), Some("customProperties.eventId"));
        assert_eq!(kinds[Kind::Tickets.index()].unresolved_references, 1);
        assert_eq!(kinds[Kind::Transactions.index()].unresolved_references, 1);
    }
}
