//! The in-memory Convex: tables of documents with `_id` and `_creationTime`, declared indexes,
//! range reads and cursor pagination, validated writes, and atomic mutations with Convex's
//! per-transaction limits. It does no IO and knows nothing about the migration.

use crate::keycode::{self, KeyBytes};
use crate::validator::{ValidationError, Validator, parse_id};
use crate::value::{Fields, Value, measure_fields};
use smallvec::SmallVec;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// The position of a table in its store's schema.
pub type TableNo = u16;

/// A document id, bound to its table: an id of one table is never accepted where another
/// table's id is expected. Its string form is `table:seq`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DocId {
    pub table: TableNo,
    pub seq: u32,
}

/// One word per id (table and sequence number side by side), instead of one per field:
/// state hashes and hash maps hash ids everywhere.
impl std::hash::Hash for DocId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.table) << 32 | u64::from(self.seq));
    }
}

/// A declared index: the listed fields (dotted paths), then `_creationTime`, then `_id`.
#[derive(Clone, Debug)]
pub struct IndexDef {
    pub name: &'static str,
    pub fields: Vec<&'static str>,
    /// Whether the index also keeps its keys by their values, so that a read that gives
    /// every field finds its documents without searching the tree: for indexes whose
    /// values are (nearly) unique and looked up one at a time, such as a legacy id. An
    /// index where many documents share a value (a type, a status) should not be hashed.
    pub hashed: bool,
}

/// A table's declaration: its name, its validator (`None` for a loose table) and its indexes.
#[derive(Clone, Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub validator: Option<Validator>,
    pub indexes: Vec<IndexDef>,
}

/// A stored document. `creation_time` is the inserting transaction's begin time.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    pub id: DocId,
    pub creation_time: u64,
    pub fields: Fields,
    /// Convex's size of the fields, measured once when the version is written.
    pub size: usize,
    /// What readers compute from this version once (see `Memo`).
    pub memo: Memo,
}

/// A slot where a reader keeps what it computed from a document version, such as the
/// domain's derivation of a legacy document (`domain::derived`). A stored version is
/// immutable, so what is kept there never goes stale, and every reader and every fork of a
/// store that shares the version shares it. It is not part of the document: equality
/// ignores it and a cloned document starts with an empty slot. The store never looks
/// inside.
#[derive(Default)]
pub struct Memo {
    slot: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
    /// The store's own: the version's content hash (`Doc::content_hash`).
    hash: std::sync::OnceLock<u64>,
    /// The store's own: the versions `Tx::replace_derived` derived from this one.
    derived: std::sync::OnceLock<Box<std::sync::Mutex<Vec<Derived>>>>,
}

/// How a writer derives the next version of a document from its current one
/// (`Tx::replace_derived`). Equal keys must derive equal fields from one version.
#[derive(Clone, Debug, PartialEq)]
pub struct DeriveKey {
    /// The fields the derivation sets, in order, with their values (`None`: removed).
    pub changes: Vec<(&'static str, Option<Value>)>,
    /// Anything else the derivation depends on, such as the clock.
    pub at: u64,
}

/// A version derived from another and written (`Tx::replace_derived`), with what its
/// content checks depended on: the table's schema (held, so that it is compared by
/// identity), schema validation and the limits.
struct Derived {
    key: DeriveKey,
    def: Arc<TableDef>,
    validation: bool,
    limits: Limits,
    doc: Arc<Doc>,
}

impl Memo {
    /// The value kept in the slot, made by `init` on first use. `T` is the one type its
    /// reader keeps there; `None` if another type was kept first (a caller's bug).
    pub fn get_or_init<T: std::any::Any + Send + Sync>(
        &self,
        init: impl FnOnce() -> T,
    ) -> Option<&T> {
        self.slot.get_or_init(|| Box::new(init())).downcast_ref()
    }
}

impl Clone for Memo {
    fn clone(&self) -> Memo {
        Memo::default()
    }
}

impl PartialEq for Memo {
    fn eq(&self, _: &Memo) -> bool {
        true
    }
}

impl fmt::Debug for Memo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Memo")
    }
}

impl Doc {
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }

    /// The hash of the version's id, creation time and fields, computed once per version
    /// (exhaustive exploration hashes every state, and forks share most versions).
    pub fn content_hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        *self.memo.hash.get_or_init(|| {
            let mut h = state_hasher();
            self.id.hash(&mut h);
            self.creation_time.hash(&mut h);
            self.fields.hash(&mut h);
            h.finish()
        })
    }
}

/// The hasher of exhaustive exploration's state hashes: foldhash's high-quality variant with
/// a fixed seed (fast, well distributed over 64 bits, the same in every process).
pub fn state_hasher() -> foldhash::quality::FoldHasher<'static> {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0x5EED_C0DE).build_hasher()
}

/// One value's hash with `state_hasher`.
#[inline]
pub fn hash_of<T: std::hash::Hash + ?Sized>(x: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = state_hasher();
    x.hash(&mut h);
    h.finish()
}

/// A set that can keep the wrapping sum of its elements' hashes (`state_hasher`) as it
/// changes, so that a state hash takes its length and sum instead of walking it
/// (`Sim::state_hash` hashes several such sets per state). It keeps the sum once `track`
/// is called (exhaustive exploration, which hashes every state; forks keep it), and its
/// hash is the same with or without. Reads go to the set (`Deref`); changes go through
/// `insert` and `remove`.
#[derive(Clone, Debug)]
pub struct HashedSet<T> {
    set: BTreeSet<T>,
    /// The kept sum, if tracked.
    sum: Option<u64>,
}

impl<T> Default for HashedSet<T> {
    fn default() -> Self {
        HashedSet {
            set: BTreeSet::new(),
            sum: None,
        }
    }
}

/// Equal elements: whether a sum is kept does not matter.
impl<T: PartialEq> PartialEq for HashedSet<T> {
    fn eq(&self, other: &Self) -> bool {
        self.set == other.set
    }
}

impl<T: Eq> Eq for HashedSet<T> {}

impl<T: Ord + std::hash::Hash> HashedSet<T> {
    #[cold]
    fn sum_of(set: &BTreeSet<T>) -> u64 {
        set.iter().fold(0, |sum, x| sum.wrapping_add(hash_of(x)))
    }

    /// A set of `items`, tracked if this one is: what replaces this one (a set emptied or
    /// rebuilt) keeps its tracking.
    pub fn renewed(&self, items: impl IntoIterator<Item = T>) -> HashedSet<T> {
        let mut set: HashedSet<T> = items.into_iter().collect();
        if self.tracked() {
            set.track();
        }
        set
    }

    /// Keeps the sum from now on.
    pub fn track(&mut self) {
        self.sum = Some(Self::sum_of(&self.set));
    }

    /// Whether the sum is kept.
    pub fn tracked(&self) -> bool {
        self.sum.is_some()
    }

    /// As `BTreeSet::insert`.
    pub fn insert(&mut self, x: T) -> bool {
        let Some(sum) = self.sum else {
            return self.set.insert(x);
        };
        let hash = hash_of(&x);
        let added = self.set.insert(x);
        if added {
            self.sum = Some(sum.wrapping_add(hash));
        }
        added
    }

    /// As `BTreeSet::remove`.
    pub fn remove(&mut self, x: &T) -> bool {
        let removed = self.set.remove(x);
        if removed && let Some(sum) = self.sum {
            self.sum = Some(sum.wrapping_sub(hash_of(x)));
        }
        removed
    }
}

impl<T> std::ops::Deref for HashedSet<T> {
    type Target = BTreeSet<T>;
    fn deref(&self) -> &BTreeSet<T> {
        &self.set
    }
}

impl<T: Ord + std::hash::Hash> FromIterator<T> for HashedSet<T> {
    /// An untracked set.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        HashedSet {
            set: iter.into_iter().collect(),
            sum: None,
        }
    }
}

/// The length and the sum (computed if it is not kept): equal sets hash equally, whatever
/// order they were built in.
impl<T: Ord + std::hash::Hash> std::hash::Hash for HashedSet<T> {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let sum = match self.sum {
            Some(sum) => sum,
            None => Self::sum_of(&self.set),
        };
        state.write_usize(self.set.len());
        state.write_u64(sum);
    }
}

/// A key in an index: the indexed values (`None` is Convex's `undefined`, which sorts first),
/// then the creation time, then the id. Cursors are index keys.
#[derive(PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexKey {
    /// The values in `keycode`'s order-preserving encoding: an index search compares keys
    /// as bytes, where they sit (inline up to an id and a short string).
    values: KeyBytes,
    pub creation_time: u64,
    pub id: DocId,
}

/// By hand: `SmallVec`'s own `clone` copies byte by byte, and a fork copies an index's keys
/// whenever it changes that index.
impl Clone for IndexKey {
    fn clone(&self) -> IndexKey {
        IndexKey {
            values: KeyBytes::from_slice(&self.values),
            creation_time: self.creation_time,
            id: self.id,
        }
    }
}

impl IndexKey {
    pub fn new<'a>(
        values: impl IntoIterator<Item = Option<&'a Value>>,
        creation_time: u64,
        id: DocId,
    ) -> IndexKey {
        IndexKey {
            values: keycode::encode(values),
            creation_time,
            id,
        }
    }

    /// The indexed values.
    pub fn values(&self) -> Vec<Option<Value>> {
        keycode::decode(&self.values).expect("an index key holds values the store encoded")
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IndexKey")
            .field("values", &self.values())
            .field("creation_time", &self.creation_time)
            .field("id", &self.id)
            .finish()
    }
}

/// A resolved reference to one index of one table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IndexRef {
    pub table: TableNo,
    pub index: u16,
}

/// Convex's per-transaction limits (domain.md §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub documents_scanned_max: usize,
    pub bytes_read_max: usize,
    pub documents_written_max: usize,
    pub bytes_written_max: usize,
    pub document_bytes_max: usize,
    pub depth_max: usize,
    pub array_len_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            documents_scanned_max: 32_000,
            bytes_read_max: 16 << 20,
            documents_written_max: 16_000,
            bytes_written_max: 16 << 20,
            document_bytes_max: 1 << 20,
            depth_max: 16,
            array_len_max: 8_192,
        }
    }
}

/// Why a transaction failed. A failed transaction commits nothing.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TxError {
    /// A write to a typed table did not match the table's validator.
    #[error("{table} rejected the write: {error}")]
    Validation {
        table: &'static str,
        error: ValidationError,
    },
    /// A per-transaction or per-document limit was exceeded.
    #[error("limit exceeded: {0}")]
    Limit(String),
    /// `patch`, `replace` or `delete` of a document that does not exist.
    #[error("document {0} does not exist")]
    NotFound(String),
    /// An id of one table used where another table's id was expected, or not an id at all.
    #[error("{0}")]
    BadId(String),
    /// The function threw (an application-level error).
    #[error("function threw: {0}")]
    Threw(String),
    /// The mutation kept conflicting with concurrent writes and failed once its automatic
    /// retries were exhausted (an injected fault).
    #[error("retries exhausted: the mutation kept conflicting and committed nothing")]
    RetriesExhausted,
}

/// What a transaction consumed, counted against `Limits`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub documents_scanned: usize,
    pub bytes_read: usize,
    pub documents_written: usize,
    pub bytes_written: usize,
}

/// One committed write: the document before and after (`None`: absent).
#[derive(Clone, Debug)]
pub struct Write {
    pub id: DocId,
    pub before: Option<Arc<Doc>>,
    pub after: Option<Arc<Doc>>,
}

#[derive(Clone)]
struct Table {
    /// Shared: forking a store (exhaustive exploration clones it) copies no schema.
    def: Arc<TableDef>,
    /// By sequence number: ids are dense, so a lookup is an array access.
    docs: Vec<Option<Arc<Doc>>>,
    /// The documents in `docs`.
    live: usize,
    /// The wrapping sum of the live documents' content hashes, kept while the store tracks
    /// its contents (`Store::track_contents`).
    content_sum: u64,
    seq_next: u32,
    /// Each index holds its keys; the key ends in the id, which finds the document in
    /// `docs`. An update that leaves a document's indexed fields alone touches no index.
    /// Each is shared between forks of a store until a write changes its keys.
    indexes: Vec<Arc<BTreeSet<IndexKey>>>,
    /// For each hashed index (`IndexDef::hashed`), the same keys by their values: each
    /// value's creation times and ids, in index order. Looked up, never iterated. Shared
    /// like `indexes`.
    points: Vec<Option<Arc<Points>>>,
    indexed: Arc<IndexedPaths>,
}

/// The distinct field paths a table's indexes use, and which of them each index uses: an
/// update compares each indexed field once, however many indexes share it.
#[derive(Debug)]
struct IndexedPaths {
    /// Each distinct path, split at its dots once.
    split: Vec<SmallVec<[&'static str; 2]>>,
    /// Per index, a bit per path in `split`.
    uses: Vec<u64>,
    /// Per index, its fields' positions in `split`, in the index's order.
    fields: Vec<SmallVec<[u8; 4]>>,
}

impl IndexedPaths {
    fn new(def: &TableDef) -> IndexedPaths {
        let mut paths: Vec<&'static str> = Vec::new();
        let fields: Vec<SmallVec<[u8; 4]>> = def
            .indexes
            .iter()
            .map(|index| {
                index
                    .fields
                    .iter()
                    .map(|f| {
                        let i = paths.iter().position(|p| p == f).unwrap_or_else(|| {
                            paths.push(f);
                            paths.len() - 1
                        });
                        i as u8
                    })
                    .collect()
            })
            .collect();
        assert!(
            paths.len() <= 64,
            "{}: more than 64 indexed fields",
            def.name
        );
        let uses = fields
            .iter()
            .map(|at| at.iter().fold(0u64, |mask, &i| mask | 1 << i))
            .collect();
        let split = paths.iter().map(|p| p.split('.').collect()).collect();
        IndexedPaths {
            split,
            uses,
            fields,
        }
    }

    /// The value of each path in `fields`, in order.
    fn values<'a>(&self, fields: &'a Fields) -> SmallVec<[Option<&'a Value>; 8]> {
        self.split.iter().map(|p| get_split(fields, p)).collect()
    }

    /// The key of `doc` in the table's index number `index`, from its `values`.
    fn key(&self, index: usize, values: &[Option<&Value>], doc: &Doc) -> IndexKey {
        IndexKey::new(
            self.fields[index].iter().map(|&i| values[usize::from(i)]),
            doc.creation_time,
            doc.id,
        )
    }

    /// The paths whose values differ between two versions, as bits.
    fn changed(&self, a: &Fields, b: &Fields) -> u64 {
        self.split
            .iter()
            .enumerate()
            .filter(|(_, p)| get_split(a, p) != get_split(b, p))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }
}

/// A hashed index's keys by their encoded values.
type Points = rustc_hash::FxHashMap<KeyBytes, smallvec::SmallVec<[(u64, DocId); 1]>>;

impl Table {
    fn doc(&self, seq: u32) -> Option<&Arc<Doc>> {
        self.docs.get(seq as usize)?.as_ref()
    }

    /// The document an index key points at.
    fn indexed(&self, key: &IndexKey) -> &Arc<Doc> {
        self.doc(key.id.seq)
            .expect("index out of step with its table")
    }
}

/// The database: a fixed schema of tables, a clock, and the log of committed writes that the
/// checker drains after every step.
#[derive(Clone)]
pub struct Store {
    /// Shared between forks of a store (exhaustive exploration clones it) until written:
    /// a write copies only the table it changes.
    tables: Vec<Arc<Table>>,
    limits: Limits,
    log: Vec<Write>,
    /// Writes applied so far (rolled-back ones and their undoing included): a reader that
    /// memoizes what it read knows it is still current while this has not moved.
    version: u64,
    /// Convex's `schemaValidation`; when off, typed tables accept any document.
    validation: bool,
    /// An injected fault: the next mutation fails with `RetriesExhausted`.
    fail_next: bool,
    /// Whether each table keeps `content_sum` (exhaustive exploration hashes every state).
    tracking: bool,
    /// Where every version this store writes is looked up first (`share_versions`).
    versions: Option<Arc<Versions>>,
}

/// The document versions written anywhere in one exhaustive exploration, by content hash.
/// The same few contents are written over and over, in every interleaving that writes
/// them (in the small scenario, 33,000 writes to `objects` to depth 7 hold 47 distinct
/// versions): a store that shares this table stores the version already there when it is
/// equal (`Versions::intern`), with what readers memoized on it (its content hash, its
/// derivations, its view), instead of a new one they would compute all over again.
#[derive(Default)]
pub struct Versions(std::sync::Mutex<rustc_hash::FxHashMap<u64, Arc<Doc>>>);

impl Versions {
    /// The version equal to `doc` (id, creation time, fields) kept here, or `doc`, now kept.
    /// A different version of the same content hash stays apart.
    pub fn intern(&self, doc: Arc<Doc>) -> Arc<Doc> {
        use std::collections::hash_map::Entry;
        let hash = doc.content_hash();
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.entry(hash) {
            Entry::Occupied(kept) if Arc::ptr_eq(kept.get(), &doc) || **kept.get() == *doc => {
                kept.get().clone()
            }
            Entry::Occupied(_) => doc,
            Entry::Vacant(slot) => slot.insert(doc).clone(),
        }
    }

    /// How many distinct versions are kept.
    pub fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads a dotted path (`customProperties.eventId`) out of a document's fields.
pub fn get_path<'a>(fields: &'a Fields, path: &str) -> Option<&'a Value> {
    match path.split_once('.') {
        None => fields.get(path),
        Some((head, rest)) => get_path(fields.get(head)?.as_object()?, rest),
    }
}

/// `get_path` of a path already split at its dots (`IndexedPaths::split`): the store reads
/// the indexed paths of every document it writes.
fn get_split<'a>(fields: &'a Fields, path: &[&str]) -> Option<&'a Value> {
    let (last, heads) = path.split_last()?;
    let mut at = fields;
    for head in heads {
        at = at.get(*head)?.as_object()?;
    }
    at.get(*last)
}

impl Store {
    pub fn new(defs: Vec<TableDef>, limits: Limits) -> Store {
        assert!(defs.len() < usize::from(u16::MAX));
        let tables = defs
            .into_iter()
            .map(|def| {
                Arc::new(Table {
                    indexes: def.indexes.iter().map(|_| Arc::default()).collect(),
                    points: def
                        .indexes
                        .iter()
                        .map(|i| i.hashed.then(Arc::default))
                        .collect(),
                    indexed: Arc::new(IndexedPaths::new(&def)),
                    def: Arc::new(def),
                    docs: Vec::new(),
                    live: 0,
                    content_sum: 0,
                    seq_next: 1,
                })
            })
            .collect();
        Store {
            tables,
            limits,
            log: Vec::new(),
            version: 0,
            validation: true,
            fail_next: false,
            tracking: false,
            versions: None,
        }
    }

    /// Makes the next mutation fail with `TxError::RetriesExhausted`, committing nothing
    /// (`on = false` withdraws a fault no mutation took).
    pub fn fail_next_mutation(&mut self, on: bool) {
        self.fail_next = on;
    }

    /// Turns schema validation on or off, as Convex's `schemaValidation` option does.
    pub fn set_validation(&mut self, on: bool) {
        self.validation = on;
    }

    /// Whether a write to `table` is checked against the table's validator: schema
    /// validation is on and the table declares one.
    pub fn validates(&self, table: TableNo) -> bool {
        self.validation && self.validator(table).is_some()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The validator a table declares (`None` for a loose table), whether or not schema
    /// validation is on.
    pub fn validator(&self, table: TableNo) -> Option<&Validator> {
        self.tables[usize::from(table)].def.validator.as_ref()
    }

    /// The table number of a table name; panics on an unknown name (a bug in the caller).
    pub fn table(&self, name: &str) -> TableNo {
        self.try_table(name)
            .unwrap_or_else(|| panic!("unknown table {name}"))
    }

    pub fn try_table(&self, name: &str) -> Option<TableNo> {
        self.tables
            .iter()
            .position(|t| t.def.name == name)
            .map(|i| i as TableNo)
    }

    pub fn try_table_name(&self, table: TableNo) -> Option<&'static str> {
        self.tables.get(usize::from(table)).map(|t| t.def.name)
    }

    pub fn table_name(&self, table: TableNo) -> &'static str {
        self.tables[usize::from(table)].def.name
    }

    /// Resolves an index by table and name; panics on an unknown index (a bug in the caller).
    pub fn index(&self, table: &str, index: &str) -> IndexRef {
        let t = self.table(table);
        let i = self.tables[usize::from(t)]
            .def
            .indexes
            .iter()
            .position(|d| d.name == index)
            .unwrap_or_else(|| panic!("unknown index {table}.{index}"));
        IndexRef {
            table: t,
            index: i as u16,
        }
    }

    /// The string form of an id, as stored in documents.
    pub fn id_string(&self, id: DocId) -> String {
        format!("{}:{}", self.table_name(id.table), id.seq)
    }

    /// Parses an id string of any table of this store.
    pub fn parse_id(&self, s: &str) -> Option<DocId> {
        let (table, seq) = parse_id(s)?;
        Some(DocId {
            table: self.try_table(table)?,
            seq,
        })
    }

    /// Parses an id that must belong to `table`; anything else is `TxError::BadId`.
    pub fn parse_id_of(&self, s: &str, table: TableNo) -> Result<DocId, TxError> {
        match self.parse_id(s) {
            Some(id) if id.table == table => Ok(id),
            Some(id) => Err(TxError::BadId(format!(
                "expected an id of {}, found {s} of {}",
                self.table_name(table),
                self.table_name(id.table)
            ))),
            None => Err(TxError::BadId(format!(
                "expected an id of {}, found {s:?}",
                self.table_name(table)
            ))),
        }
    }

    /// Reads a document outside any transaction (for the checker and reports).
    pub fn peek(&self, id: DocId) -> Option<&Arc<Doc>> {
        self.tables.get(usize::from(id.table))?.doc(id.seq)
    }

    /// Counts the writes applied to this store (see `version`): equal counts mean nothing
    /// was written in between.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Stores `version` in place of the stored version of its id when the two are the same
    /// document (id, creation time and fields), so that what readers memoized on either is
    /// shared: the simulation's two worlds write equal versions of most documents. Nothing
    /// a reader sees changes: nothing is logged and `version` does not move. Returns
    /// whether it did.
    pub fn adopt(&mut self, version: &Arc<Doc>) -> bool {
        let id = version.id;
        match self.peek(id) {
            Some(mine) if !Arc::ptr_eq(mine, version) && **mine == **version => {}
            _ => return false,
        }
        let table = Arc::make_mut(&mut self.tables[usize::from(id.table)]);
        table.docs[id.seq as usize] = Some(version.clone());
        true
    }

    pub fn len(&self, table: TableNo) -> usize {
        self.tables[usize::from(table)].live
    }

    pub fn is_empty(&self, table: TableNo) -> bool {
        self.len(table) == 0
    }

    /// Every document of a table in id order (for setup, full diffs and reports, never on the
    /// per-step path).
    pub fn scan(&self, table: TableNo) -> impl Iterator<Item = &Arc<Doc>> {
        self.tables[usize::from(table)].docs.iter().flatten()
    }

    /// Copies now every table and index this store still shares with the store it was
    /// cloned from, rather than at each one's first write. For two stores that both write
    /// from their first steps (a world and its oracle): the copies are made while a
    /// simulation is built instead of inside its first steps. Document versions stay
    /// shared.
    pub fn unshare(&mut self) {
        for t in &mut self.tables {
            let t = Arc::make_mut(t);
            for index in &mut t.indexes {
                Arc::make_mut(index);
            }
            for points in t.points.iter_mut().flatten() {
                Arc::make_mut(points);
            }
        }
    }

    /// Keeps, from now on, each table's sum of its documents' content hashes up to date on
    /// every write, so that `hash_contents` costs the number of tables instead of the
    /// number of documents. Forks of the store keep tracking.
    pub fn track_contents(&mut self) {
        self.tracking = true;
        for t in &mut self.tables {
            let sum = content_sum(t);
            Arc::make_mut(t).content_sum = sum;
        }
    }

    /// Looks every version this store and its forks write up in `versions` first, and
    /// stores the equal one found there (see `Versions`); the versions stored now are
    /// kept there. Exhaustive exploration gives its two worlds one table.
    pub fn share_versions(&mut self, versions: Arc<Versions>) {
        for t in &mut self.tables {
            let t = Arc::make_mut(t);
            for doc in t.docs.iter_mut().flatten() {
                *doc = versions.intern(doc.clone());
            }
        }
        self.versions = Some(versions);
    }

    /// Feeds everything that decides what the store does next to `h`: every table's next
    /// sequence number, its number of documents and the sum of their content hashes (id,
    /// creation time, fields), in table order. The same with or without tracking.
    pub fn hash_contents(&self, h: &mut impl std::hash::Hasher) {
        for t in &self.tables {
            let sum = if self.tracking {
                t.content_sum
            } else {
                content_sum(t)
            };
            // One word per table: the sum of 64-bit hashes, offset by the counters spread
            // over the word (two stores whose counters differ would need sums that differ
            // by exactly the difference of those offsets).
            let counters =
                (u64::from(t.seq_next) << 32 | t.live as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            h.write_u64(sum.wrapping_add(counters));
        }
    }

    /// Index entries with the given prefix, in index order, outside any transaction.
    pub fn peek_range<'a>(
        &'a self,
        index: IndexRef,
        prefix: &'a [Value],
    ) -> impl Iterator<Item = &'a Arc<Doc>> + 'a {
        hits(&self.tables[usize::from(index.table)], index, prefix)
    }

    /// `peek_range` of an encoded prefix.
    pub fn peek_range_by<'a>(
        &'a self,
        index: IndexRef,
        prefix: &Prefix,
    ) -> impl Iterator<Item = &'a Arc<Doc>> + use<'a> {
        hits_encoded(&self.tables[usize::from(index.table)], index, prefix)
    }

    /// Takes the writes committed since the last call.
    pub fn take_log(&mut self) -> Vec<Write> {
        std::mem::take(&mut self.log)
    }

    /// Runs `f` as one mutation that began at `begin_time`: all of its writes commit together
    /// if it returns `Ok`, none of them if it returns `Err`.
    pub fn mutate<T>(
        &mut self,
        begin_time: u64,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, TxError>,
    ) -> Result<T, TxError> {
        if std::mem::take(&mut self.fail_next) {
            return Err(TxError::RetriesExhausted);
        }
        let mut tx = Tx {
            store: self,
            begin_time,
            undo: Vec::new(),
            usage: Usage::default(),
        };
        match f(&mut tx) {
            Ok(value) => {
                tx.commit();
                Ok(value)
            }
            Err(error) => {
                tx.rollback();
                Err(error)
            }
        }
    }

    /// Replaces the stored version of `id` (or removes it) and keeps every index in step.
    fn put(&mut self, id: DocId, doc: Option<Arc<Doc>>) -> Option<Arc<Doc>> {
        self.version += 1;
        let doc = match (&self.versions, doc) {
            (Some(versions), Some(doc)) => Some(versions.intern(doc)),
            (_, doc) => doc,
        };
        let table = Arc::make_mut(&mut self.tables[usize::from(id.table)]);
        let slot = id.seq as usize;
        if table.docs.len() <= slot {
            table.docs.resize(slot + 1, None);
        }
        let before = std::mem::replace(&mut table.docs[slot], doc.clone());
        table.live = table.live + usize::from(doc.is_some()) - usize::from(before.is_some());
        if self.tracking {
            let hash = |d: &Option<Arc<Doc>>| d.as_ref().map_or(0, |d| d.content_hash());
            table.content_sum = table
                .content_sum
                .wrapping_sub(hash(&before))
                .wrapping_add(hash(&doc));
        }
        // The indexed fields an update changed (`None`: an insert or a delete, which
        // changes every index).
        let changed = match (&before, &doc) {
            (Some(a), Some(b)) if a.creation_time == b.creation_time => {
                Some(table.indexed.changed(&a.fields, &b.fields))
            }
            _ => None,
        };
        let indexed = &*table.indexed;
        if changed == Some(0) {
            // Most updates do not touch indexed fields: every key stays, and finds the new
            // version in `docs`.
            return before;
        }
        {
            // Each indexed path's value, read once for all the indexes that share it.
            let values_before = before.as_ref().map(|a| indexed.values(&a.fields));
            let values_after = doc.as_ref().map(|b| indexed.values(&b.fields));
            for (i, ((index, points), uses)) in table
                .indexes
                .iter_mut()
                .zip(table.points.iter_mut())
                .zip(&indexed.uses)
                .enumerate()
            {
                if changed.is_some_and(|changed| changed & uses == 0) {
                    continue;
                }
                let index = Arc::make_mut(index);
                let mut points = points.as_mut().map(Arc::make_mut);
                if let (Some(a), Some(values)) = (&before, &values_before) {
                    let key = indexed.key(i, values, a);
                    if let Some(points) = points.as_deref_mut() {
                        let at = (key.creation_time, key.id);
                        let list = points
                            .get_mut(&key.values)
                            .expect("index out of step with its table");
                        list.retain(|p| *p != at);
                        if list.is_empty() {
                            points.remove(&key.values);
                        }
                    }
                    let removed = index.remove(&key);
                    assert!(removed, "index out of step with its table");
                }
                if let (Some(b), Some(values)) = (&doc, &values_after) {
                    let key = indexed.key(i, values, b);
                    if let Some(points) = points {
                        let at = (key.creation_time, key.id);
                        let list = points.entry(KeyBytes::from_slice(&key.values)).or_default();
                        let i = list.partition_point(|p| *p < at);
                        list.insert(i, at);
                    }
                    index.insert(key);
                }
            }
        }
        before
    }
}

/// The wrapping sum of a table's documents' content hashes: a hash of the set of documents
/// that does not depend on the order they were written in.
fn content_sum(t: &Table) -> u64 {
    t.docs
        .iter()
        .flatten()
        .fold(0, |sum, d| sum.wrapping_add(d.content_hash()))
}

/// The documents whose first index values are `prefix`, in index order: from the index's
/// hash when it has one and `prefix` gives every field, else from its tree.
fn hits<'a>(
    table: &'a Table,
    index: IndexRef,
    prefix: &[Value],
) -> impl Iterator<Item = &'a Arc<Doc>> + use<'a> {
    hits_encoded(table, index, &Prefix::of(prefix))
}

/// `hits` of a prefix already encoded.
fn hits_encoded<'a>(
    table: &'a Table,
    index: IndexRef,
    prefix: &Prefix,
) -> impl Iterator<Item = &'a Arc<Doc>> + use<'a> {
    let i = usize::from(index.index);
    let points = table.points[i]
        .as_ref()
        .filter(|_| prefix.fields == table.def.indexes[i].fields.len())
        .map(|points| {
            points
                .get(&prefix.bytes)
                .map_or(&[][..], |list| list.as_slice())
        });
    match points {
        Some(list) => Hits::Points(
            list.iter()
                .map(move |(_, id)| table.doc(id.seq).expect("index out of step with its table")),
        ),
        None => Hits::Tree(
            range_after(&table.indexes[i], KeyBytes::from_slice(&prefix.bytes), None)
                .map(move |k| table.indexed(k)),
        ),
    }
}

/// The first values of an index key, encoded (`keycode`), to look documents up by.
#[derive(Debug, PartialEq, Eq)]
pub struct Prefix {
    bytes: KeyBytes,
    /// How many values.
    fields: usize,
}

impl Prefix {
    pub fn of(values: &[Value]) -> Prefix {
        Prefix {
            bytes: keycode::encode(values.iter().map(Some)),
            fields: values.len(),
        }
    }

    /// One string value made of `pieces` (an id: its table's prefix and its number),
    /// encoded without building the string.
    pub fn string(pieces: &[&[u8]]) -> Prefix {
        Prefix {
            bytes: keycode::encode_string(pieces),
            fields: 1,
        }
    }
}

/// The documents of `hits`: from a hashed index's list, or from the tree (one or the other,
/// without the cost of chaining two iterators on every document).
enum Hits<P, T> {
    Points(P),
    Tree(T),
}

impl<'a, P, T> Iterator for Hits<P, T>
where
    P: Iterator<Item = &'a Arc<Doc>>,
    T: Iterator<Item = &'a Arc<Doc>>,
{
    type Item = &'a Arc<Doc>;

    fn next(&mut self) -> Option<&'a Arc<Doc>> {
        match self {
            Hits::Points(p) => p.next(),
            Hits::Tree(t) => t.next(),
        }
    }
}

fn range_after<'a>(
    index: &'a BTreeSet<IndexKey>,
    prefix: KeyBytes,
    after: Option<&IndexKey>,
) -> impl Iterator<Item = &'a IndexKey> + 'a {
    // The keys whose first values are `prefix` are those whose encoding starts with the
    // prefix's; the lowest of them sorts after the prefix alone at time 0.
    let start = IndexKey {
        values: prefix,
        creation_time: 0,
        id: DocId { table: 0, seq: 0 },
    };
    let lower = match after {
        Some(cursor) => Bound::Excluded(cursor.clone()),
        None => Bound::Included(start.clone()),
    };
    index
        .range((lower, Bound::Unbounded))
        .take_while(move |k| k.values.starts_with(&start.values))
}

/// One running mutation. Writes apply in place with an undo log, so the mutation reads its
/// own writes; `Store::mutate` rolls them back if it fails.
pub struct Tx<'a> {
    store: &'a mut Store,
    begin_time: u64,
    undo: Vec<(DocId, Option<Arc<Doc>>)>,
    usage: Usage,
}

impl Tx<'_> {
    pub fn store(&self) -> &Store {
        self.store
    }

    pub fn begin_time(&self) -> u64 {
        self.begin_time
    }

    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    fn count_read(&mut self, doc: &Doc) -> Result<(), TxError> {
        self.usage.documents_scanned += 1;
        self.usage.bytes_read += doc.size;
        let limits = &self.store.limits;
        if self.usage.documents_scanned > limits.documents_scanned_max {
            return Err(TxError::Limit(format!(
                "more than {} documents scanned",
                limits.documents_scanned_max
            )));
        }
        if self.usage.bytes_read > limits.bytes_read_max {
            return Err(TxError::Limit(format!(
                "more than {} bytes read",
                limits.bytes_read_max
            )));
        }
        Ok(())
    }

    /// `db.get(id)`.
    pub fn get(&mut self, id: DocId) -> Result<Option<Arc<Doc>>, TxError> {
        let doc = self.store.peek(id).cloned();
        if let Some(d) = &doc {
            self.count_read(d)?;
        }
        Ok(doc)
    }

    /// Up to `limit` documents whose index values start with `prefix`, strictly after
    /// `after`, and the cursor of the last one returned with whether the range is exhausted.
    pub fn page(
        &mut self,
        index: IndexRef,
        prefix: &[Value],
        after: Option<&IndexKey>,
        limit: usize,
    ) -> Result<Page, TxError> {
        let table = &self.store.tables[usize::from(index.table)];
        let mut docs = Vec::new();
        let mut cursor = None;
        let mut done = true;
        let prefix = keycode::encode(prefix.iter().map(Some));
        for key in range_after(&table.indexes[usize::from(index.index)], prefix, after) {
            if docs.len() == limit {
                done = false;
                break;
            }
            docs.push(table.indexed(key).clone());
            cursor = Some(key);
        }
        let cursor = cursor.cloned();
        for d in &docs {
            self.count_read(d)?;
        }
        Ok(Page { docs, cursor, done })
    }

    /// Every document whose index values start with `prefix`, in index order (`page`
    /// without a limit, and without a cursor to build).
    pub fn range(&mut self, index: IndexRef, prefix: &[Value]) -> Result<Vec<Arc<Doc>>, TxError> {
        let table = &self.store.tables[usize::from(index.table)];
        let docs: Vec<Arc<Doc>> = hits(table, index, prefix).cloned().collect();
        for d in &docs {
            self.count_read(d)?;
        }
        Ok(docs)
    }

    /// The first document whose index values start with `prefix` (`page` with a limit of
    /// one, without a cursor to build).
    pub fn first(
        &mut self,
        index: IndexRef,
        prefix: &[Value],
    ) -> Result<Option<Arc<Doc>>, TxError> {
        self.first_by(index, &Prefix::of(prefix))
    }

    /// `first` of an encoded prefix (`Prefix::string` looks a document up by an id it holds
    /// without building the id's string).
    pub fn first_by(
        &mut self,
        index: IndexRef,
        prefix: &Prefix,
    ) -> Result<Option<Arc<Doc>>, TxError> {
        let table = &self.store.tables[usize::from(index.table)];
        let doc = hits_encoded(table, index, prefix).next().cloned();
        if let Some(d) = &doc {
            self.count_read(d)?;
        }
        Ok(doc)
    }

    /// Checks one write against the validator and the limits; returns the document's size.
    fn check_write(&mut self, table: TableNo, fields: &Fields) -> Result<usize, TxError> {
        let size = self.check_content(table, fields)?;
        self.count_write(size)?;
        Ok(size)
    }

    /// The checks of a write that depend on the document alone (its fields, the table's
    /// schema, schema validation and the limits): its size if it passes.
    fn check_content(&self, table: TableNo, fields: &Fields) -> Result<usize, TxError> {
        let store = &*self.store;
        let def = &store.tables[usize::from(table)].def;
        if let Some(name) = fields.keys().find(|k| k.starts_with('_')) {
            return Err(TxError::Threw(format!(
                "field {name} is reserved for system fields"
            )));
        }
        let m = measure_fields(fields);
        if m.depth + 1 > store.limits.depth_max {
            return Err(TxError::Limit(format!(
                "{}: nesting deeper than {}",
                def.name, store.limits.depth_max
            )));
        }
        if m.array_len_max > store.limits.array_len_max {
            return Err(TxError::Limit(format!(
                "{}: array longer than {}",
                def.name, store.limits.array_len_max
            )));
        }
        if let Some(validator) = def.validator.as_ref().filter(|_| store.validation) {
            validator
                .validate_fields(fields)
                .map_err(|error| TxError::Validation {
                    table: def.name,
                    error,
                })?;
        }
        let size = m.size;
        if size > store.limits.document_bytes_max {
            return Err(TxError::Limit(format!(
                "document of {size} bytes in {} exceeds {}",
                def.name, store.limits.document_bytes_max
            )));
        }
        Ok(size)
    }

    /// Counts a write of `size` bytes against the transaction's limits.
    fn count_write(&mut self, size: usize) -> Result<(), TxError> {
        let store = &*self.store;
        self.usage.documents_written += 1;
        self.usage.bytes_written += size;
        if self.usage.documents_written > store.limits.documents_written_max {
            return Err(TxError::Limit(format!(
                "more than {} documents written",
                store.limits.documents_written_max
            )));
        }
        if self.usage.bytes_written > store.limits.bytes_written_max {
            return Err(TxError::Limit(format!(
                "more than {} bytes written",
                store.limits.bytes_written_max
            )));
        }
        Ok(())
    }

    fn write(&mut self, id: DocId, doc: Option<Arc<Doc>>) {
        let before = self.store.put(id, doc);
        self.undo.push((id, before));
    }

    /// `db.insert(table, fields)`; `_creationTime` is the transaction's begin time.
    pub fn insert(&mut self, table: TableNo, fields: Fields) -> Result<DocId, TxError> {
        let size = self.check_write(table, &fields)?;
        let t = Arc::make_mut(&mut self.store.tables[usize::from(table)]);
        let id = DocId {
            table,
            seq: t.seq_next,
        };
        t.seq_next += 1;
        let doc = Doc {
            id,
            creation_time: self.begin_time,
            fields,
            size,
            memo: Memo::default(),
        };
        self.write(id, Some(Arc::new(doc)));
        Ok(id)
    }

    /// `db.replace(id, fields)`: the document's user fields become exactly `fields`.
    pub fn replace(&mut self, id: DocId, fields: Fields) -> Result<(), TxError> {
        let Some(old) = self.get(id)? else {
            return Err(TxError::NotFound(self.store.id_string(id)));
        };
        self.replace_of(&old, fields)
    }

    /// Writes `fields` as the next version of `old`, read in this transaction.
    fn replace_of(&mut self, old: &Doc, fields: Fields) -> Result<(), TxError> {
        let id = old.id;
        let size = self.check_write(id.table, &fields)?;
        let doc = Doc {
            id,
            creation_time: old.creation_time,
            fields,
            size,
            memo: Memo::default(),
        };
        self.write(id, Some(Arc::new(doc)));
        Ok(())
    }

    /// `replace` with the fields `derive` makes from the current version and `key`, which
    /// describes the derivation: equal keys must derive equal fields from one version.
    /// While the store shares versions (`share_versions`, as exhaustive exploration does,
    /// where the same write is taken on the same version in many interleavings), a
    /// derivation that passed its content checks is kept with the version it was derived
    /// from, with the schema, validation and limits it passed under; taken again under the
    /// same, it writes the version it derived then without deriving, checking or hashing it
    /// anew, and the write still counts against the transaction's limits. Otherwise it is
    /// `replace`.
    pub fn replace_derived(
        &mut self,
        id: DocId,
        key: DeriveKey,
        derive: impl FnOnce(&Doc, &DeriveKey) -> Fields,
    ) -> Result<(), TxError> {
        let Some(old) = self.get(id)? else {
            return Err(TxError::NotFound(self.store.id_string(id)));
        };
        if self.store.versions.is_none() {
            let fields = derive(&old, &key);
            return self.replace_of(&old, fields);
        }
        let store = &*self.store;
        let def = &store.tables[usize::from(id.table)].def;
        let same = |d: &Derived| {
            d.key == key
                && Arc::ptr_eq(&d.def, def)
                && d.validation == store.validation
                && d.limits == store.limits
        };
        let derived = old.memo.derived.get_or_init(Default::default);
        let lock = || {
            derived
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let kept = lock().iter().find(|d| same(d)).map(|d| d.doc.clone());
        if let Some(doc) = kept {
            self.count_write(doc.size)?;
            self.write(id, Some(doc));
            return Ok(());
        }
        let (def, validation, limits) = (def.clone(), store.validation, store.limits.clone());
        let fields = derive(&old, &key);
        self.replace_of(&old, fields)?;
        let doc = self.store.peek(id).expect("written just now").clone();
        lock().push(Derived {
            key,
            def,
            validation,
            limits,
            doc,
        });
        Ok(())
    }

    /// `db.patch(id, fields)`: shallow merge; a `None` value removes the field.
    pub fn patch(
        &mut self,
        id: DocId,
        changes: impl IntoIterator<Item = (String, Option<Value>)>,
    ) -> Result<(), TxError> {
        let Some(old) = self.get(id)? else {
            return Err(TxError::NotFound(self.store.id_string(id)));
        };
        let mut fields = old.fields.clone();
        for (k, v) in changes {
            match v {
                Some(v) => fields.insert(k.into(), v),
                None => fields.remove(k.as_str()),
            };
        }
        self.replace(id, fields)
    }

    /// `db.delete(id)`.
    pub fn delete(&mut self, id: DocId) -> Result<(), TxError> {
        if self.get(id)?.is_none() {
            return Err(TxError::NotFound(self.store.id_string(id)));
        }
        self.write(id, None);
        Ok(())
    }

    fn commit(self) {
        let Tx {
            store, mut undo, ..
        } = self;
        // Several writes to one document in a mutation are one write to the outside world:
        // its state before the mutation (its first undo entry's) and after, in the order of
        // the documents' first writes.
        let mut firsts: Vec<(DocId, usize)> = undo
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        if firsts.len() > 1 {
            firsts.sort_unstable();
            firsts.dedup_by_key(|(id, _)| *id);
            firsts.sort_unstable_by_key(|&(_, i)| i);
        }
        store.log.reserve(firsts.len());
        for (id, i) in firsts {
            let before = undo[i].1.take();
            let after = store.peek(id).cloned();
            store.log.push(Write { id, before, after });
        }
    }

    fn rollback(self) {
        let Tx { store, undo, .. } = self;
        for (id, before) in undo.into_iter().rev() {
            store.put(id, before);
        }
    }
}

/// One page of an index range.
#[derive(Clone, Debug)]
pub struct Page {
    pub docs: Vec<Arc<Doc>>,
    /// The key of the last document returned; the next page starts strictly after it.
    pub cursor: Option<IndexKey>,
    /// True when no document follows this page.
    pub done: bool,
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}:{}", self.table, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::object;

    /// An id hashes as one word: ids that differ in their table, their sequence number or
    /// both hash differently, including where a table and a sequence number could trade
    /// places.
    #[test]
    fn distinct_ids_hash_differently() {
        let hash = |id: DocId| hash_of(&id);
        let ids = [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (2, 1),
            (1, 2),
            (0, u32::MAX),
            (7, 1 << 16),
        ];
        for (i, &(ta, sa)) in ids.iter().enumerate() {
            for &(tb, sb) in &ids[i + 1..] {
                let (a, b) = (DocId { table: ta, seq: sa }, DocId { table: tb, seq: sb });
                assert_ne!(hash(a), hash(b), "{a:?} and {b:?}");
            }
        }
    }

    fn store() -> Store {
        store_with(Limits::default())
    }

    fn store_with(limits: Limits) -> Store {
        Store::new(
            vec![
                TableDef {
                    name: "loose",
                    validator: None,
                    indexes: vec![IndexDef {
                        name: "by_k",
                        fields: vec!["k"],
                        hashed: false,
                    }],
                },
                TableDef {
                    name: "strict",
                    validator: Some(Validator::object(vec![("n", Validator::Number)])),
                    indexes: vec![],
                },
            ],
            limits,
        )
    }

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(f) => f,
            _ => unreachable!(),
        }
    }

    fn content_hash_of(s: &Store) -> u64 {
        use std::hash::Hasher;
        let mut h = state_hasher();
        s.hash_contents(&mut h);
        h.finish()
    }

    /// Tracked sums must follow every write (inserts, replaces, deletes, a rolled-back
    /// mutation) and give the hash an untracked store computes from scratch.
    #[test]
    fn tracked_content_hash_equals_the_hash_from_scratch() {
        let mut tracked = store();
        tracked.track_contents();
        let t = tracked.table("loose");
        let ids = tracked
            .mutate(0, |tx| {
                (0..4)
                    .map(|i| tx.insert(t, fields(object([("k", Value::from(f64::from(i)))]))))
                    .collect::<Result<Vec<_>, _>>()
            })
            .unwrap();
        let fork = tracked.clone();
        tracked
            .mutate(1, |tx| {
                tx.replace(ids[0], fields(object([("k", Value::from("changed"))])))?;
                tx.delete(ids[1])
            })
            .unwrap();
        let failed: Result<(), TxError> = tracked.mutate(2, |tx| {
            tx.delete(ids[2])?;
            Err(TxError::Threw("rolled back".into()))
        });
        assert!(failed.is_err());
        let mut scratch = tracked.clone();
        scratch.tracking = false;
        assert_eq!(content_hash_of(&tracked), content_hash_of(&scratch));
        // The fork taken before the writes kept its own sums.
        let mut fork_scratch = fork.clone();
        fork_scratch.tracking = false;
        assert_eq!(content_hash_of(&fork), content_hash_of(&fork_scratch));
        assert_ne!(content_hash_of(&fork), content_hash_of(&tracked));
    }

    /// The same documents with a different next id (one was inserted and deleted since) is
    /// a different state: the next insert gets another id.
    #[test]
    fn content_hash_counts_ids_handed_out() {
        let mut s = store();
        s.track_contents();
        let t = s.table("loose");
        s.mutate(0, |tx| tx.insert(t, Fields::new())).unwrap();
        let mut fork = s.clone();
        fork.mutate(1, |tx| {
            let id = tx.insert(t, Fields::new())?;
            tx.delete(id)
        })
        .unwrap();
        assert_eq!(
            fork.tables[usize::from(t)].live,
            s.tables[usize::from(t)].live
        );
        assert_ne!(content_hash_of(&fork), content_hash_of(&s));
    }

    /// `unshare` copies every table, index and hashed index a fork shares, keeps the
    /// document versions shared, and changes nothing a reader sees.
    #[test]
    fn an_unshared_fork_owns_its_tables_and_indexes() {
        let mut s = Store::new(
            vec![TableDef {
                name: "twin",
                validator: None,
                indexes: vec![
                    IndexDef {
                        name: "by_k",
                        fields: vec!["k"],
                        hashed: false,
                    },
                    IndexDef {
                        name: "by_k_hashed",
                        fields: vec!["k"],
                        hashed: true,
                    },
                ],
            }],
            Limits::default(),
        );
        let t = s.table("twin");
        s.mutate(0, |tx| {
            (0..3)
                .map(|i| tx.insert(t, fields(object([("k", Value::from(f64::from(i % 2)))]))))
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
        let mut fork = s.clone();
        fork.unshare();
        for store in [&s, &fork] {
            let table = &store.tables[usize::from(t)];
            assert_eq!(Arc::strong_count(table), 1, "the table is still shared");
            for index in &table.indexes {
                assert_eq!(Arc::strong_count(index), 1, "an index is still shared");
            }
            for points in table.points.iter().flatten() {
                assert_eq!(
                    Arc::strong_count(points),
                    1,
                    "a hashed index is still shared"
                );
            }
        }
        let docs = |s: &Store| s.scan(t).cloned().collect::<Vec<_>>();
        let (a, b) = (docs(&s), docs(&fork));
        assert_eq!(a.len(), 3);
        assert!(
            a.iter().zip(&b).all(|(x, y)| Arc::ptr_eq(x, y)),
            "versions are shared"
        );
        for k in [0.0, 1.0] {
            let key = [Value::from(k)];
            let read = |s: &Store, index: &str| {
                s.peek_range(s.index("twin", index), &key)
                    .map(|d| d.id)
                    .collect::<Vec<_>>()
            };
            assert_eq!(read(&s, "by_k"), read(&fork, "by_k"));
            assert_eq!(read(&s, "by_k_hashed"), read(&fork, "by_k_hashed"));
        }
    }

    proptest::proptest! {
        /// A set's kept sum follows every insert and remove (repeated ones included): after
        /// any sequence it hashes as the same elements collected at once, as the same
        /// changes without a kept sum, and as those tracked afterwards.
        #[test]
        fn a_hashed_set_hashes_as_its_elements(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u32..6), 0..40),
        ) {
            let hash = |s: &HashedSet<u32>| hash_of(s);
            let mut kept = HashedSet::default();
            kept.track();
            let mut untracked = HashedSet::default();
            let mut model = BTreeSet::new();
            for (insert, x) in ops {
                if insert {
                    untracked.insert(x);
                    proptest::prop_assert_eq!(kept.insert(x), model.insert(x));
                } else {
                    untracked.remove(&x);
                    proptest::prop_assert_eq!(kept.remove(&x), model.remove(&x));
                }
            }
            let rebuilt: HashedSet<u32> = model.iter().copied().collect();
            proptest::prop_assert_eq!(&*kept, &model);
            proptest::prop_assert_eq!(hash(&kept), hash(&rebuilt));
            proptest::prop_assert_eq!(hash(&kept), hash(&untracked));
            let mut late = untracked.clone();
            late.track();
            proptest::prop_assert_eq!(hash(&kept), hash(&late));
            // A set renewed with the same elements keeps its tracking, and its hash.
            let renewed = kept.renewed(model.iter().copied());
            proptest::prop_assert!(renewed.tracked() && !untracked.renewed([]).tracked());
            proptest::prop_assert_eq!(hash(&renewed), hash(&kept));
            let empty = HashedSet::default();
            proptest::prop_assert_eq!(model.is_empty(), hash(&kept) == hash(&empty));
        }
    }

    proptest::proptest! {
        /// A hashed index answers an exact read as its tree does: the same documents in the
        /// same order, after any inserts (with skewed begin times), replaces, deletes and
        /// rolled-back mutations, with values shared by several documents or missing.
        #[test]
        fn a_hashed_index_reads_as_its_tree_does(
            ops in proptest::collection::vec((0u8..4, 0usize..8, 0u8..4, 0u64..3), 1..40),
        ) {
            let mut s = Store::new(
                vec![TableDef {
                    name: "twin",
                    validator: None,
                    indexes: vec![
                        IndexDef { name: "by_k", fields: vec!["k"], hashed: false },
                        IndexDef { name: "by_k_hashed", fields: vec!["k"], hashed: true },
                    ],
                }],
                Limits::default(),
            );
            let t = s.table("twin");
            let (tree, hashed) = (s.index("twin", "by_k"), s.index("twin", "by_k_hashed"));
            let k = |v: u8| match v {
                0 => object([("other", Value::Null)]),
                v => object([("k", Value::from(format!("k{v}")))]),
            };
            let mut ids: Vec<DocId> = Vec::new();
            for (n, (op, target, value, skew)) in ops.into_iter().enumerate() {
                let begin = (n as u64 * 10).saturating_sub(skew * 15);
                let target = (!ids.is_empty()).then(|| ids[target % ids.len()]);
                let _ = s.mutate(begin, |tx| match (op, target) {
                    (1, Some(id)) => tx.replace(id, fields(k(value))),
                    (2, Some(id)) => tx.delete(id),
                    (3, Some(id)) => {
                        tx.replace(id, fields(k(value)))?;
                        Err(TxError::Threw("rolled back".into()))
                    }
                    _ => {
                        let id = tx.insert(t, fields(k(value)))?;
                        ids.push(id);
                        Ok(())
                    }
                });
                for v in 1..4u8 {
                    let key = [Value::from(format!("k{v}"))];
                    let from_tree: Vec<DocId> = s.peek_range(tree, &key).map(|d| d.id).collect();
                    let from_hash: Vec<DocId> = s.peek_range(hashed, &key).map(|d| d.id).collect();
                    proptest::prop_assert_eq!(&from_tree, &from_hash);
                    let first = s.mutate(0, |tx| tx.first(hashed, &key)).unwrap().map(|d| d.id);
                    proptest::prop_assert_eq!(first, from_tree.first().copied());
                }
            }
        }
    }

    proptest::proptest! {
        /// Every index reads what a scan of the table finds, in index order, after inserts,
        /// replaces (changing any indexed field, several indexes' or none) and deletes:
        /// indexes that share fields are each kept in step, and one without fields too.
        #[test]
        fn indexes_that_share_fields_stay_in_step(
            ops in proptest::collection::vec((0u8..3, 0usize..8, 0u8..3, 0u8..3, 0u8..3), 1..40),
        ) {
            let defs: [(&str, Vec<&'static str>); 5] = [
                ("by_a", vec!["a"]),
                ("by_a_b", vec!["a", "b"]),
                ("by_b", vec!["b"]),
                ("by_n", vec!["n.x"]),
                ("by_nothing", vec![]),
            ];
            let mut s = Store::new(
                vec![TableDef {
                    name: "shared",
                    validator: None,
                    indexes: defs
                        .iter()
                        .map(|(name, fields)| IndexDef { name, fields: fields.clone(), hashed: false })
                        .collect(),
                }],
                Limits::default(),
            );
            let t = s.table("shared");
            let doc = |a: u8, b: u8, n: u8| {
                object([
                    ("a", Value::Int64(i64::from(a))),
                    ("b", Value::Int64(i64::from(b))),
                    ("n", object([("x", Value::Int64(i64::from(n)))])),
                    ("other", Value::Null),
                ])
            };
            let mut ids: Vec<DocId> = Vec::new();
            for (op, target, a, b, n) in ops {
                let target = (!ids.is_empty()).then(|| ids[target % ids.len()]);
                let _ = s.mutate(0, |tx| match (op, target) {
                    (1, Some(id)) => tx.replace(id, fields(doc(a, b, n))),
                    (2, Some(id)) => tx.delete(id),
                    _ => {
                        ids.push(tx.insert(t, fields(doc(a, b, n)))?);
                        Ok(())
                    }
                });
                for (name, paths) in &defs {
                    let index = s.index("shared", name);
                    let key = |d: &Doc| -> Vec<Option<Value>> {
                        paths.iter().map(|p| get_path(&d.fields, p).cloned()).collect()
                    };
                    let mut expected: Vec<&Arc<Doc>> = s.scan(t).collect();
                    expected.sort_by(|x, y| {
                        (key(x), x.creation_time, x.id).cmp(&(key(y), y.creation_time, y.id))
                    });
                    let expected: Vec<DocId> = expected.iter().map(|d| d.id).collect();
                    let read: Vec<DocId> = s.peek_range(index, &[]).map(|d| d.id).collect();
                    proptest::prop_assert_eq!(read, expected, "{}", name);
                }
            }
        }
    }

    /// `adopt` takes another store's version of a document only when it is the same
    /// document, and then changes nothing a reader sees and logs nothing.
    #[test]
    fn a_store_adopts_only_an_equal_version() {
        let mut mine = store();
        let t = mine.table("loose");
        let id = mine
            .mutate(0, |tx| {
                tx.insert(t, fields(object([("k", Value::from("a"))])))
            })
            .unwrap();
        let mut theirs = mine.clone();
        theirs
            .mutate(1, |tx| {
                tx.replace(id, fields(object([("k", Value::from("b"))])))
            })
            .unwrap();
        mine.take_log();
        let before = mine.peek(id).unwrap().clone();
        // A different version is refused.
        assert!(!mine.adopt(theirs.peek(id).unwrap()));
        assert!(Arc::ptr_eq(mine.peek(id).unwrap(), &before));
        // An equal version written separately is taken.
        theirs
            .mutate(2, |tx| {
                tx.replace(id, fields(object([("k", Value::from("a"))])))
            })
            .unwrap();
        let equal = theirs.peek(id).unwrap().clone();
        assert!(!Arc::ptr_eq(&equal, &before));
        assert!(mine.adopt(&equal));
        assert!(Arc::ptr_eq(mine.peek(id).unwrap(), &equal));
        assert!(mine.take_log().is_empty());
        let by_k = mine.index("loose", "by_k");
        let found = mine
            .mutate(3, |tx| tx.range(by_k, &[Value::from("a")]))
            .unwrap();
        assert_eq!(found.len(), 1);
        assert!(Arc::ptr_eq(&found[0], &equal));
    }

    /// A store that shares versions stores the kept one for an equal write, in the store and
    /// in its log, and a new one for a different write; forks and a second store given the
    /// same table share them too.
    #[test]
    fn equal_writes_store_one_shared_version() {
        let mut a = store();
        let t = a.table("loose");
        let versions = Arc::new(Versions::default());
        let mut b = a.clone();
        a.share_versions(versions.clone());
        b.share_versions(versions.clone());
        let k = |v: &str| fields(object([("k", Value::from(v))]));
        let id = a.mutate(0, |tx| tx.insert(t, k("a"))).unwrap();
        let first = a.peek(id).unwrap().clone();
        // The same insert in the other store: the same id, time and fields.
        assert_eq!(b.mutate(0, |tx| tx.insert(t, k("a"))).unwrap(), id);
        assert!(Arc::ptr_eq(b.peek(id).unwrap(), &first));
        // A fork writes another version, then the first one's content again.
        let mut fork = a.clone();
        fork.take_log();
        fork.mutate(1, |tx| tx.replace(id, k("b"))).unwrap();
        let other = fork.peek(id).unwrap().clone();
        assert!(!Arc::ptr_eq(&other, &first));
        assert_eq!(other.get("k"), Some(&Value::from("b")));
        fork.mutate(2, |tx| tx.replace(id, k("a"))).unwrap();
        assert!(Arc::ptr_eq(fork.peek(id).unwrap(), &first));
        let log = fork.take_log();
        assert!(Arc::ptr_eq(log[1].after.as_ref().unwrap(), &first));
        // Another id with the same fields is another version.
        let id2 = fork.mutate(3, |tx| tx.insert(t, k("a"))).unwrap();
        assert!(!Arc::ptr_eq(fork.peek(id2).unwrap(), &first));
        assert_eq!(versions.len(), 3);
    }

    /// `replace_derived` derives a version once per version, key and checks: taken again
    /// on the same version (a fork's) it writes the version derived then, logs it and counts
    /// it against the limits; another key derives anew; a store whose checks differ (schema
    /// validation on) checks for itself; a store that does not share versions derives every
    /// time.
    #[test]
    fn a_derived_version_is_derived_once_per_version_key_and_checks() {
        let mut a = store();
        let t = a.table("strict");
        let versions = Arc::new(Versions::default());
        // One write per mutation at most, and no schema validation.
        let mut lax = store_with(Limits {
            documents_written_max: 1,
            ..Limits::default()
        });
        lax.set_validation(false);
        // The same limits and validation as `a`, but a table of that number without a
        // validator.
        let mut other = store();
        Arc::make_mut(&mut other.tables[usize::from(t)]).def = Arc::new(TableDef {
            name: "strict",
            validator: None,
            indexes: vec![],
        });
        let mut alone = store();
        for s in [&mut a, &mut lax, &mut other] {
            s.share_versions(versions.clone());
        }
        let n = |v: Value| fields(object([("n", v)]));
        let id = a.mutate(0, |tx| tx.insert(t, n(Value::from(1.0)))).unwrap();
        for s in [&mut lax, &mut other, &mut alone] {
            s.mutate(0, |tx| tx.insert(t, n(Value::from(1.0)))).unwrap();
        }
        assert!(Arc::ptr_eq(a.peek(id).unwrap(), lax.peek(id).unwrap()));
        assert!(Arc::ptr_eq(a.peek(id).unwrap(), other.peek(id).unwrap()));
        let key = |v: &str| DeriveKey {
            changes: vec![("n", Some(Value::from(v)))],
            at: 7,
        };
        let derived = std::cell::Cell::new(0);
        let derive = |v: &'static str| {
            let derived = &derived;
            move |_: &Doc, _: &DeriveKey| {
                derived.set(derived.get() + 1);
                n(Value::from(v))
            }
        };
        // A string where the schema wants a number: rejected, and nothing is kept.
        let mut fork = a.clone();
        let r = fork.mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")));
        assert!(matches!(r, Err(TxError::Validation { .. })), "{r:?}");
        let r = fork.mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")));
        assert!(matches!(r, Err(TxError::Validation { .. })), "{r:?}");
        assert_eq!(derived.get(), 2);
        // Without validation it is written, then written again from what was kept.
        let mut first = lax.clone();
        first.take_log();
        first
            .mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")))
            .unwrap();
        let kept = first.peek(id).unwrap().clone();
        assert_eq!(kept.get("n"), Some(&Value::from("x")));
        let mut again = lax.clone();
        again.take_log();
        again
            .mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")))
            .unwrap();
        assert_eq!(derived.get(), 3);
        assert!(Arc::ptr_eq(again.peek(id).unwrap(), &kept));
        let log = again.take_log();
        assert_eq!(log.len(), 1);
        assert!(Arc::ptr_eq(log[0].after.as_ref().unwrap(), &kept));
        // The kept version's write counts: with another write it is one too many.
        let r = lax.clone().mutate(1, |tx| {
            tx.replace_derived(id, key("x"), derive("x"))?;
            tx.insert(t, n(Value::from(2.0)))
        });
        assert!(matches!(r, Err(TxError::Limit(_))), "{r:?}");
        assert_eq!(derived.get(), 3);
        // A fork of the validating store with validation off, the same schema and limits,
        // keeps the version; the validating store still rejects it.
        let mut open = a.clone();
        open.set_validation(false);
        open.mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")))
            .unwrap();
        assert_eq!(derived.get(), 4);
        let r = a
            .clone()
            .mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")));
        assert!(matches!(r, Err(TxError::Validation { .. })), "{r:?}");
        assert_eq!(derived.get(), 5);
        // So does another schema for the table.
        other
            .mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")))
            .unwrap();
        let r = a
            .clone()
            .mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")));
        assert!(matches!(r, Err(TxError::Validation { .. })), "{r:?}");
        assert_eq!(derived.get(), 7);
        // Another key is another derivation.
        lax.clone()
            .mutate(1, |tx| tx.replace_derived(id, key("y"), derive("y")))
            .unwrap();
        assert_eq!(derived.get(), 8);
        // A store that does not share versions derives every time.
        for _ in 0..2 {
            let r = alone
                .clone()
                .mutate(1, |tx| tx.replace_derived(id, key("x"), derive("x")));
            assert!(matches!(r, Err(TxError::Validation { .. })), "{r:?}");
        }
        assert_eq!(derived.get(), 10);
        // And so do other limits: a long value that `a` writes is too long for a store
        // that allows only short documents.
        let loose = a.table("loose");
        let short = a.mutate(2, |tx| tx.insert(loose, Fields::new())).unwrap();
        let mut tight = a.clone();
        tight.limits.document_bytes_max = 64;
        let long = "x".repeat(100);
        let key = DeriveKey {
            changes: vec![("k", Some(Value::from(long.as_str())))],
            at: 7,
        };
        let derive = |_: &Doc, _: &DeriveKey| {
            derived.set(derived.get() + 1);
            fields(object([("k", Value::from(long.as_str()))]))
        };
        a.clone()
            .mutate(3, |tx| tx.replace_derived(short, key.clone(), derive))
            .unwrap();
        let r = tight.mutate(3, |tx| tx.replace_derived(short, key, derive));
        assert!(matches!(r, Err(TxError::Limit(_))), "{r:?}");
        assert_eq!(derived.get(), 12);
    }

    #[test]
    fn an_injected_retry_exhaustion_fails_the_next_mutation_only() {
        let mut s = store();
        let t = s.table("loose");
        s.fail_next_mutation(true);
        let mut ran = false;
        let r = s.mutate(0, |tx| {
            ran = true;
            tx.insert(t, Fields::new())
        });
        assert_eq!(r, Err(TxError::RetriesExhausted));
        assert!(!ran, "the function never runs");
        assert!(s.mutate(0, |tx| tx.insert(t, Fields::new())).is_ok());
        assert_eq!(s.len(t), 1);
    }

    #[test]
    fn failed_mutation_commits_nothing() {
        let mut s = store();
        let loose = s.table("loose");
        let strict = s.table("strict");
        let r = s.mutate(1, |tx| {
            tx.insert(loose, fields(object([("k", Value::from("a"))])))?;
            tx.insert(strict, fields(object([("n", Value::Int64(1))])))
        });
        assert!(matches!(r, Err(TxError::Validation { .. })));
        assert_eq!(s.len(loose), 0);
        assert_eq!(s.peek_range(s.index("loose", "by_k"), &[]).count(), 0);
        assert!(s.take_log().is_empty());
    }

    #[test]
    fn pages_start_strictly_after_the_cursor_and_skewed_inserts_land_behind_it() {
        let mut s = store();
        let loose = s.table("loose");
        let by_k = s.index("loose", "by_k");
        for t in [10, 20, 30] {
            s.mutate(t, |tx| {
                tx.insert(loose, fields(object([("k", Value::from("a"))])))
            })
            .unwrap();
        }
        let page = s
            .mutate(40, |tx| tx.page(by_k, &[Value::from("a")], None, 2))
            .unwrap();
        assert_eq!(page.docs.len(), 2);
        assert!(!page.done);
        // A transaction that began at 15 commits now: it lands behind the cursor.
        s.mutate(15, |tx| {
            tx.insert(loose, fields(object([("k", Value::from("a"))])))
        })
        .unwrap();
        let next = s
            .mutate(50, |tx| {
                tx.page(by_k, &[Value::from("a")], page.cursor.as_ref(), 10)
            })
            .unwrap();
        assert_eq!(next.docs.len(), 1);
        assert_eq!(next.docs[0].creation_time, 30);
        assert!(next.done);
    }

    #[test]
    fn ids_are_bound_to_their_table() {
        let s = store();
        let strict = s.table("strict");
        assert!(s.parse_id_of("strict:3", strict).is_ok());
        assert!(matches!(
            s.parse_id_of("loose:3", strict),
            Err(TxError::BadId(_))
        ));
        assert!(matches!(
            s.parse_id_of("junk", strict),
            Err(TxError::BadId(_))
        ));
    }

    #[test]
    fn limits_fail_the_mutation() {
        let mut s = Store::new(
            store()
                .tables
                .into_iter()
                .map(|t| (*t.def).clone())
                .collect(),
            Limits {
                documents_written_max: 2,
                ..Limits::default()
            },
        );
        let loose = s.table("loose");
        let r = s.mutate(1, |tx| {
            for _ in 0..3 {
                tx.insert(loose, Fields::new())?;
            }
            Ok(())
        });
        assert!(matches!(r, Err(TxError::Limit(_))));
        assert_eq!(s.len(loose), 0);
    }

    #[test]
    fn log_reports_one_write_per_document_per_mutation() {
        let mut s = store();
        let loose = s.table("loose");
        s.mutate(1, |tx| {
            let id = tx.insert(loose, Fields::new())?;
            tx.patch(id, [("k".to_string(), Some(Value::from("b")))])?;
            Ok(())
        })
        .unwrap();
        let log = s.take_log();
        assert_eq!(log.len(), 1);
        assert!(log[0].before.is_none());
        assert_eq!(
            log[0].after.as_ref().unwrap().get("k"),
            Some(&Value::from("b"))
        );
        let a = log[0].id;
        // Interleaved writes to three documents: one write each, in the order of their first
        // writes, each with its state before the mutation and after it.
        let (b, c) = s
            .mutate(2, |tx| {
                let c = tx.insert(loose, Fields::new())?;
                tx.patch(a, [("k".to_string(), Some(Value::from("c")))])?;
                let b = tx.insert(loose, Fields::new())?;
                tx.patch(a, [("k".to_string(), Some(Value::from("d")))])?;
                tx.delete(b)?;
                tx.patch(c, [("k".to_string(), Some(Value::from("e")))])?;
                Ok((b, c))
            })
            .unwrap();
        let log = s.take_log();
        let k = |d: &Option<Arc<Doc>>| d.as_ref().map(|d| d.get("k").cloned());
        let seen: Vec<_> = log
            .iter()
            .map(|w| (w.id, k(&w.before), k(&w.after)))
            .collect();
        assert_eq!(
            seen,
            [
                (c, None, Some(Some(Value::from("e")))),
                (
                    a,
                    Some(Some(Value::from("b"))),
                    Some(Some(Value::from("d")))
                ),
                (b, None, None),
            ]
        );
    }
}
