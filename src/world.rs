//! One world of the simulation: a store with the app's schema, each kind's phase, and the
//! client's handles on entities. The write paths, the read paths, the backfill and the phase
//! controller all live here, parameterized by phase; the oracle is a world whose kinds stay
//! `legacy` forever.

use crate::data::Dataset;
use crate::domain::{MapError, derive, derived, for_each_reference, kind_of, kind_of_doc};
use crate::plan::{
    BackfillConflict, BackfillCursor, BackfillRead, BackfillStart, BackfillWrite, Condition,
    DeleteMirroring, DoubleWrite, InvalidDocuments, Phase, Plan, QuarantineReads, ReadMode,
    References, UpdateMirroring, WritePath,
};
use crate::schema::{Kind, Tables, new_store};
use crate::store::{
    DeriveKey, Doc, DocId, HashedSet, IndexKey, Limits, Prefix, Store, Tx, TxError, Write,
};
use crate::value::{Fields, Str, Value};
use rustc_hash::FxHashMap as HashMap;
use smallvec::SmallVec;
use std::collections::BTreeSet;
use std::sync::Arc;

/// A client-side entity number, the same in every world: the n-th entity the workload
/// created. Reads are compared in key space because the worlds' ids differ once a kind
/// stops writing `objects`.
pub type Key = u32;

/// Bugs that tests plant in the write paths, the backfill or the mapping, to show that each
/// invariant catches the bug it guards against. All off in real runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
///
/// Deviations a team could write into its plan are plan strategies instead (see
/// `plan::Strategy` and `plans/unsafe/`); these are bugs no plan would choose.
pub struct PlantedBugs {
    /// The backfill advances its cursor past the last document of each page without
    /// copying it.
    pub backfill_skips_last: bool,
    /// Ticket `eventId`s are remapped to an id that no `events` row has.
    pub bogus_event_remap: bool,
    /// Schema validation is off and tickets are written with an int64 `ticketNumber`.
    pub invalid_ticket_number: bool,
    /// The refund's last mutation upserts the typed row from the copy the action read
    /// first, even when the document was deleted in between.
    pub refund_upserts_stale_copy: bool,
    /// In `typed_only`, updates still go to `objects` only.
    pub typed_only_writes_legacy: bool,
    /// A typed-only update whose reference has no typed row fails instead of moving the
    /// entity back to objects, quarantined (the seed plan's first known counterexample).
    pub typed_only_rejects_unresolved_references: bool,
    /// Typed list reads drop their first row.
    pub typed_list_drops_first: bool,
    /// `Sim::idle` calls every backfill batch idle, so exhaustive exploration never takes
    /// one (what `Scenario::check_idle` must catch).
    pub idle_backfill: bool,
}

/// A value in a write: a plain value, or a reference to another entity by key (each world
/// writes its own id for it: the legacy id or the typed id, as the phase says).
#[derive(Clone, Debug, PartialEq)]
pub enum Arg {
    Plain(Value),
    Ref(Key),
}

/// One field change of an update: `None` removes the field.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub field: &'static str,
    pub value: Option<Arg>,
}

/// Top-level `objects` fields that app writes change directly (the rest are in
/// `customProperties`).
const TOP_FIELDS: [&str; 2] = ["name", "status"];

/// A legacy document's fields with `args` applied (`legacy_args`) at `now_ms`.
fn updated_fields(fields: &Fields, args: &[(&'static str, Option<Value>)], now_ms: f64) -> Fields {
    let mut fields = fields.clone();
    // Taken out in place and put back below: removing and inserting it again would shift
    // the fields after it twice.
    let mut cp = match fields.get_mut("customProperties") {
        Some(Value::Object(cp)) => std::mem::take(cp),
        _ => Fields::new(),
    };
    for (field, value) in args {
        let target = if TOP_FIELDS.contains(field) {
            &mut fields
        } else {
            &mut cp
        };
        match value {
            Some(v) => target.insert((*field).into(), v.clone()),
            None => target.remove(field),
        };
    }
    // The generic update path replaces customProperties wholesale.
    fields.insert("customProperties".into(), Value::Object(cp));
    fields.insert("updatedAt".into(), Value::Float64(now_ms));
    fields
}

/// Which half of a typed-first double write (`double_write = "separate_typed_first"`) a
/// mutation does.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Half {
    /// The whole write (every other placement).
    Whole,
    /// The typed row only, computed from the update; the legacy write is stashed.
    TypedFirst,
    /// The stashed legacy write.
    LegacyAfter,
}

/// A legacy write computed by a typed-first typed half.
#[derive(Clone, Debug, PartialEq)]
pub struct Stashed {
    pub kind: Kind,
    pub legacy: DocId,
    pub fields: Fields,
    pub relink: Option<DocId>,
}

/// Which form a read takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// As the kind's phase and the plan's `read_mode` say.
    Phase,
    /// The legacy form whatever the phase (the plan's `legacy_reads`).
    Legacy,
    /// The typed form once the phase reads typed, even where `read_mode = "shadow"` serves
    /// the legacy one (the compared half of a shadow read).
    Typed,
}

/// What one sync of a typed row from its legacy document did.
#[derive(Clone, Debug, PartialEq)]
pub enum Synced {
    Migrated,
    Quarantined(MapError),
    /// It cannot map and the plan skips such documents silently.
    Skipped(MapError),
    /// The typed row existed and the backfill's conflict policy left it alone.
    Kept,
    Removed,
}

/// One page of a backfill: its documents, the cursor after it, and whether it is the last.
struct BackfillPage {
    docs: Vec<Arc<Doc>>,
    cursor: Option<Value>,
    done: bool,
}

/// What one batch did to its documents.
#[derive(Default)]
struct BatchCounts {
    migrated: usize,
    quarantined: usize,
    /// Documents of another kind (support tickets), invalid documents the plan skips, and
    /// rows the conflict policy kept.
    skipped: usize,
}

impl BatchCounts {
    fn add(&mut self, s: &Synced) {
        match s {
            Synced::Migrated => self.migrated += 1,
            Synced::Quarantined(_) => self.quarantined += 1,
            Synced::Skipped(_) | Synced::Kept => self.skipped += 1,
            Synced::Removed => {}
        }
    }
}

/// A backfill page read in one transaction, waiting to be written in the next
/// (`backfill_read = "separate_transaction"` or `backfill_write = "check_then_insert"`).
#[derive(Clone, Debug)]
pub struct PendingPage {
    /// The documents as read, and whether each had a typed row then.
    pub docs: Vec<(Arc<Doc>, bool)>,
    /// Where the cursor moves when the page is written (as the progress row holds it).
    pub cursor: Option<Value>,
    pub done: bool,
    pub processed: usize,
}

/// The migration's progress on one kind, as persisted in `migrationProgress`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Progress {
    pub cursor: Option<Value>,
    pub processed: f64,
    pub migrated: f64,
    pub quarantined: f64,
    pub skipped: f64,
    pub batches: f64,
    pub done: bool,
}

/// What a backfill step did.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackfillOutcome {
    NotRunning(Phase),
    AlreadyDone,
    /// The first transaction of a two-step batch: the page was read and is held in memory.
    PageRead {
        read: usize,
    },
    Batch {
        read: usize,
        migrated: usize,
        quarantined: usize,
        skipped: usize,
        done: bool,
    },
}

/// What the phase controller did with a request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Switch {
    Moved {
        from: Phase,
        to: Phase,
    },
    Refused {
        from: Phase,
        to: Phase,
        reason: String,
    },
    NoFurther(Phase),
}

/// A world: its store and everything else (`Ctx`), split so that a mutation can read the
/// context while it holds the store.
#[derive(Clone)]
pub struct World {
    pub store: Store,
    pub ctx: Ctx,
}

/// Everything of a world but its store: the phase of each kind, the plan, and the client's
/// handle on each entity.
#[derive(Clone)]
pub struct Ctx {
    pub t: Tables,
    /// The store's table names by number, shared by forks and by the oracle (a view kept in a
    /// version's memo was parsed with them; see `SharedView`).
    names: Arc<[&'static str]>,
    /// Each table's id prefix (`objects:`), which `id_string` completes. Shared by forks.
    id_prefixes: Arc<[Str]>,
    pub plan: Arc<Plan>,
    pub bugs: PlantedBugs,
    migrating: bool,
    phases: [Phase; 3],
    handles: Vec<Option<DocId>>,
    /// The wrapping sum of `handle_hash` over `handles`, kept by `register`: what the state
    /// hash takes instead of the whole list.
    handles_sum: u64,
    /// The inverse of `handles`, with the keys of typed rows too. Shared by forks until one
    /// learns a new key.
    id_keys: Arc<HashMap<DocId, Key>>,
    /// The `diff_clean` guard's incremental diff: per kind, the legacy documents whose typed
    /// side does not match them (see `World::absorb`).
    /// Shared by forks of the world until a diff changes it.
    unclean: [Arc<HashedSet<DocId>>; 3],
    /// Legacy documents whose mapping failed on a reference to a document that has no typed
    /// row yet, by that document: diffed again when it gets one.
    waiting: std::collections::BTreeMap<DocId, BTreeSet<(Kind, DocId)>>,
    /// Strict mappings computed since the last `absorb`, by document version: the diff and the
    /// checker map the same documents against the same store after a step. A fork starts
    /// without them.
    mapped: Unshared<HashMap<DocId, (Arc<Doc>, Mapped)>>,
    /// The typed rows the write path wrote in this step from the mapping of a legacy
    /// version, by legacy id (`absorb` moves them to `stored`).
    written: Unshared<std::cell::RefCell<HashMap<DocId, WrittenRow>>>,
    /// The rows written in the last step (`written`): the diff and the checker take such a
    /// row as the mapping of its version while it holds (`World::row_is_mapping`) instead of
    /// mapping the version again and comparing.
    stored: Unshared<HashMap<DocId, WrittenRow>>,
    /// Per kind, whether `unclean` must be rebuilt by a full diff before it is trusted.
    unclean_stale: [bool; 3],
    /// Where the operator's quarantine retry resumes, per kind (the job's own memory, not
    /// app state).
    retry_cursor: [Option<IndexKey>; 3],
    /// The write path whose mutation runs now (set by the caller; the strategies of
    /// `plan::Strategy` can differ per path).
    path: std::cell::Cell<WritePath>,
    /// Which half of a typed-first double write runs now.
    half: std::cell::Cell<Half>,
    /// Legacy writes a typed-first typed half computed, waiting for the legacy half.
    stash: std::cell::RefCell<Vec<Stashed>>,
    /// The time `now_ms` returns instead of the clock's, while set.
    now_override: std::cell::Cell<Option<f64>>,
    /// An injected fault: the migration's typed writes fail validation (see
    /// `write_typed_row`).
    reject_typed: std::cell::Cell<bool>,
    /// Phases an action captured when it started, seen by its mutations instead of the
    /// controller's (see `phase`).
    captured: std::cell::Cell<[Option<Phase>; 3]>,
    /// Whether the read running now keeps its legacy form whatever the phase (the plan's
    /// `legacy_reads`), or its typed form (the typed half of a shadow read).
    route: std::cell::Cell<Route>,
    /// Legacy documents written by the current mutation whose typed write the plan puts in
    /// a separate mutation; the action runs it as its next step (`take_deferred`).
    deferred: std::cell::RefCell<Vec<(Kind, DocId)>>,
    /// Per kind and runner, a backfill page read and not yet written (the driver's memory:
    /// a crash loses it).
    /// Shared by forks of the world (a held page is never changed, only taken).
    pending_page: [[Option<Arc<PendingPage>>; BACKFILL_RUNNERS]; 3],
    /// What `World::peek_typed_rows` and `World::peek_quarantined` found at one store
    /// version.
    peeked: Peeked,
    /// Memoized views (see `view`); looked up by id, never iterated. Shared by forks until
    /// one memoizes a view.
    views: std::cell::RefCell<Arc<ViewMemo>>,
    org_ids: Vec<DocId>,
    now: u64,
}

/// A view kept in its document version's memo (`domain::view_slot`), with what it was
/// computed from besides the version: the kind it was read as, the table names its ids were
/// parsed with, and every id whose key it looked up, with the key found. The oracle reads
/// the versions it shares with the migrated world, and a fork its original's: each takes
/// the view when it agrees on all of them (`Ctx::agrees_with`), which is the view it would
/// compute, so both worlds' answers are then one value and compare without a walk.
pub struct SharedView {
    kind: Kind,
    names: Arc<[&'static str]>,
    keys: SmallVec<[(DocId, Option<Key>); 4]>,
    view: View,
}

/// Memoized views by document, with the version each was computed from.
type ViewMemo = HashMap<DocId, (Arc<Doc>, View)>;

/// The hash of one client handle, summed into `Ctx::handles_sum`.
fn handle_hash(key: Key, id: DocId) -> u64 {
    crate::store::hash_of(&(key, id))
}

/// A value a fork does not inherit: a copy of a world starts with an empty one. For what a
/// step computes and uses within itself (`Ctx::mapped`), and a memo of one store version
/// (`Peeked`).
#[derive(Default)]
struct Unshared<T: Default>(T);

impl<T: Default> Clone for Unshared<T> {
    fn clone(&self) -> Self {
        Unshared::default()
    }
}

impl<T: Default> std::ops::Deref for Unshared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Default> std::ops::DerefMut for Unshared<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// The documents found by legacy id (a kind's typed rows, or with no kind the quarantine
/// entry), memoized for one store version: an entry is current while the store's
/// `version` has not moved, and the memo empties when it does. A fork starts empty. Looked
/// up by key, never iterated.
#[derive(Clone, Default)]
struct Peeked(Unshared<std::cell::RefCell<(u64, HashMap<PeekKey, Found>)>>);

/// A lookup by legacy id: of a kind's typed rows, or (no kind) of the quarantine entry.
type PeekKey = (Option<Kind>, DocId);

/// Documents found by a lookup, shared with its memo.
type Found = Arc<[Arc<Doc>]>;

impl Peeked {
    fn get(&self, version: u64, key: PeekKey, find: impl FnOnce() -> Found) -> Found {
        let mut memo = self.0.borrow_mut();
        if memo.0 != version {
            memo.0 = version;
            memo.1.clear();
        }
        memo.1.entry(key).or_insert_with(find).clone()
    }
}

/// What a reader sees of one document; shared, as views are memoized. Its content hash is
/// computed once, when first asked for: the trace digest hashes every answer a step reads,
/// and a memoized view is read again and again.
#[derive(Clone)]
pub struct View(Arc<ViewData>);

struct ViewData {
    value: Value,
    hash: std::sync::OnceLock<u64>,
    /// The first view found equal to this one by comparing their values, kept so that
    /// comparing the two again needs no walk. The checker compares each read's answer in the two worlds,
    /// where a typed row's view and its legacy document's are two values, every time the
    /// read runs. The weak reference keeps that view's allocation, so no other view can take
    /// its address.
    equal: std::sync::OnceLock<std::sync::Weak<ViewData>>,
}

impl View {
    pub fn new(value: Value) -> View {
        View(Arc::new(ViewData {
            value,
            hash: std::sync::OnceLock::new(),
            equal: std::sync::OnceLock::new(),
        }))
    }

    /// The value's hash (`store::state_hasher`), computed once.
    fn content_hash(&self) -> u64 {
        *self
            .0
            .hash
            .get_or_init(|| crate::store::hash_of(&self.0.value))
    }

    /// Whether `other` is the view this one was found equal to.
    fn known_equal(&self, other: &View) -> bool {
        self.0
            .equal
            .get()
            .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&other.0)))
    }
}

impl std::ops::Deref for View {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0.value
    }
}

/// Equality is the values' (a shared view, or one found equal before, is equal without
/// looking).
impl PartialEq for View {
    fn eq(&self, other: &View) -> bool {
        if Arc::ptr_eq(&self.0, &other.0) || self.known_equal(other) || other.known_equal(self) {
            return true;
        }
        let equal = self.0.value == other.0.value;
        if equal {
            let _ = self.0.equal.set(Arc::downgrade(&other.0));
        }
        equal
    }
}

impl Eq for View {}

/// Hashes the value's hash: equal views hash equally.
impl std::hash::Hash for View {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.content_hash());
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0.value, f)
    }
}

impl std::fmt::Display for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0.value, f)
    }
}

/// The references a mapping remapped: the kind each points to, the legacy id, and the typed
/// id found for it.
pub type Remapped = SmallVec<[(Kind, Str, Str); 2]>;

/// A typed row the write path wrote from the mapping of a legacy version: `row`'s fields
/// are what mapping `legacy` gave, with `remapped` found for its references.
#[derive(Clone)]
struct WrittenRow {
    kind: Kind,
    legacy: Arc<Doc>,
    row: Arc<Doc>,
    remapped: Remapped,
}

/// A legacy document version's mapping to its typed row (`World::map_doc_now`); shared, as
/// it is memoized.
pub type Mapped = Arc<Result<Fields, MapError>>;

/// A query that gathers documents for a list read, in one world.
pub type Gather<'a> = dyn FnMut(&Ctx, &mut Tx<'_>) -> Result<Vec<Arc<Doc>>, TxError> + 'a;

/// Backfill runners that can run at once (a second one is a fault: two drivers started).
pub const BACKFILL_RUNNERS: usize = 2;

/// Limit on memoized views per world.
pub const VIEWS_MAX: usize = 16_384;

/// Ticks (microseconds) per simulated step; `_creationTime` counts in these.
pub const TICKS_PER_STEP: u64 = 1_000;

impl World {
    /// A world loaded with `data`. Object `i` of the dataset gets key `i`. The oracle is
    /// `migrating = false`: every kind stays legacy whatever the plan says.
    pub fn new(plan: Arc<Plan>, data: &Dataset, migrating: bool, bugs: PlantedBugs) -> World {
        World::with_limits(plan, data, migrating, bugs, Limits::default())
    }

    /// As `new`, with other per-transaction limits than Convex's (for tests of the limits;
    /// the dataset itself is loaded one document per mutation).
    pub fn with_limits(
        plan: Arc<Plan>,
        data: &Dataset,
        migrating: bool,
        bugs: PlantedBugs,
        limits: Limits,
    ) -> World {
        let mut store = new_store(limits, plan.strategy.references);
        if bugs.invalid_ticket_number || !plan.schema_validation {
            store.set_validation(false);
        }
        let t = Tables::resolve(&store);
        let names: Arc<[&'static str]> = (0..).map_while(|i| store.try_table_name(i)).collect();
        let id_prefixes = names.iter().map(|n| Str::from(format!("{n}:"))).collect();
        let mut world = World {
            ctx: Ctx {
                t,
                names,
                id_prefixes,
                plan,
                bugs,
                migrating,
                phases: [Phase::Legacy; 3],
                handles: Vec::with_capacity(data.objects.len()),
                handles_sum: 0,
                id_keys: Arc::new(HashMap::with_capacity_and_hasher(
                    data.objects.len() * 2,
                    Default::default(),
                )),
                peeked: Peeked::default(),
                views: Default::default(),
                path: std::cell::Cell::new(WritePath::App),
                route: std::cell::Cell::new(Route::Phase),
                captured: std::cell::Cell::new([None; 3]),
                reject_typed: std::cell::Cell::new(false),
                half: std::cell::Cell::new(Half::Whole),
                stash: Default::default(),
                now_override: std::cell::Cell::new(None),
                deferred: Default::default(),
                pending_page: Default::default(),
                retry_cursor: Default::default(),
                unclean: Default::default(),
                waiting: Default::default(),
                unclean_stale: [false; 3],
                mapped: Unshared::default(),
                written: Unshared::default(),
                stored: Unshared::default(),
                org_ids: Vec::new(),
                now: 0,
            },
            store,
        };
        let (orgs, objects, links) = (world.t.organizations, world.t.objects, world.t.links);
        for name in &data.organizations {
            let mut f = Fields::new();
            f.insert("name".into(), Value::from(name.as_str()));
            let id = world
                .store
                .mutate(0, |tx| tx.insert(orgs, f))
                .expect("organizations are valid");
            world.ctx.org_ids.push(id);
        }
        for (i, obj) in data.objects.iter().enumerate() {
            let at = (i as u64 + 1) * TICKS_PER_STEP;
            let id = world
                .store
                .mutate(at, |tx| tx.insert(objects, obj.fields.clone()))
                .expect("objects is loose");
            debug_assert_eq!(
                id.seq as usize,
                i + 1,
                "dataset references assume seq = index + 1"
            );
            world.ctx.register(i as Key, id);
        }
        let base = (data.objects.len() as u64 + 1) * TICKS_PER_STEP;
        for link in &data.links {
            let f = link_fields(
                &world
                    .store
                    .id_string(world.handles[link.from].expect("loaded")),
                &world
                    .store
                    .id_string(world.handles[link.to].expect("loaded")),
                link.link_type,
            );
            world
                .store
                .mutate(base, |tx| tx.insert(links, f))
                .expect("objectLinks is loose");
        }
        let progress = world.t.progress;
        for kind in Kind::ALL {
            let f = progress_fields(kind, &Progress::default());
            world
                .store
                .mutate(base, |tx| tx.insert(progress, f))
                .expect("progress rows are valid");
        }
        world.store.take_log();
        world.ctx.now = base + TICKS_PER_STEP;
        // Nothing is migrated yet: every legacy document of a migrating kind differs from its
        // (missing) typed side.
        if migrating {
            for (i, obj) in data.objects.iter().enumerate() {
                if let Some(kind) = kind_of(&obj.fields) {
                    let id = world.handles[i].expect("loaded");
                    Arc::make_mut(&mut world.ctx.unclean[kind.index()]).insert(id);
                }
            }
        }
        world
    }

    /// This world, just loaded, as the app without the migration (the oracle): the same
    /// documents, the same versions. A version is shared by both stores until one of them
    /// writes it, so what readers memoize of it (`domain::derived`) is computed once for
    /// both worlds. Tables and indexes are copied now (`Store::unshare`): both worlds
    /// write `objects` and `objectLinks` from the first steps.
    pub fn without_migration(&self) -> World {
        let mut oracle = self.clone();
        oracle.store.unshare();
        // Both worlds learn keys in every step: each takes its own map now rather than
        // copying it at its first new key, inside a step.
        Arc::make_mut(&mut oracle.ctx.id_keys);
        oracle.ctx.migrating = false;
        oracle.ctx.bugs = PlantedBugs::default();
        oracle.ctx.unclean = Default::default();
        oracle.store.set_validation(oracle.plan.schema_validation);
        oracle
    }

    /// Drains the writes committed since the last call, learning the keys of typed rows that
    /// the backfill or a double write created (through their `legacyId`).
    ///
    /// It also keeps the `diff_clean` guard's incremental diff: every legacy document whose
    /// document, typed row or quarantine entry was written is diffed again. A document's
    /// mapping also depends on whether the documents it references have typed rows; when a
    /// typed row of a kind appears, the quarantined documents of the kinds that reference it
    /// are diffed again (a document whose reference did not resolve is quarantined), and when
    /// one disappears while its legacy document lives on, the dependents are rebuilt by a full
    /// diff. Callers must absorb after every step, as `Sim` does.
    pub fn absorb(&mut self) -> Vec<Write> {
        let log = self.store.take_log();
        self.ctx.mapped.clear();
        *self.ctx.stored = std::mem::take(self.ctx.written.get_mut());
        if self.migrating {
            self.update_unclean(&log);
        }
        for w in &log {
            if let (None, Some(after)) = (&w.before, &w.after)
                && self.t.typed_kind(w.id.table).is_some()
                && !self.id_keys.contains_key(&w.id)
                && let Some(key) = self.legacy_of(after).and_then(|l| self.key_of(l))
            {
                Arc::make_mut(&mut self.ctx.id_keys).insert(w.id, key);
            }
        }
        log
    }

    fn update_unclean(&mut self, log: &[Write]) {
        let mut recheck = self.touched_legacy(log);
        for w in log {
            let Some(kind) = self.t.typed_kind(w.id.table) else {
                continue;
            };
            match (&w.before, &w.after) {
                (None, Some(after)) => {
                    // Documents whose mapping waited for this one may map now.
                    if let Some(l) = self.legacy_of(after)
                        && let Some(waiting) = self.ctx.waiting.remove(&l)
                    {
                        recheck.extend(waiting);
                    }
                }
                // A document that loses its typed row to the quarantine changes how every
                // reference to it maps; there is no reverse index of those, so the dependents
                // are rebuilt by a full diff (rare: app writes keep documents mappable).
                (Some(before), None)
                    if self
                        .legacy_of(before)
                        .is_some_and(|l| self.peek_quarantined(l)) =>
                {
                    let plan = self.plan.clone();
                    for dependent in plan.dependents(kind) {
                        self.ctx.unclean_stale[dependent.index()] = true;
                    }
                }
                _ => {}
            }
        }
        for (kind, l) in recheck {
            // In typed_only legacy documents are retired copies and the guard is not consulted
            // again unless a plan rolls back; the diff is rebuilt then.
            let phase = self.phase(kind);
            if phase == Phase::TypedOnly {
                self.ctx.unclean_stale[kind.index()] = true;
                continue;
            }
            if self.ctx.unclean_stale[kind.index()] {
                continue;
            }
            let unclean = if phase == Phase::Legacy && self.nothing_migrated(kind) {
                // With no typed row and no quarantine entry of the kind, a document differs
                // exactly when it exists.
                self.store
                    .peek(l)
                    .is_some_and(|d| kind_of_doc(d) == Some(kind))
            } else {
                self.diff_one(kind, l).is_some()
            };
            // Copied only when it changes.
            let set = &mut self.ctx.unclean[kind.index()];
            if set.contains(&l) == unclean {
                continue;
            }
            if unclean {
                Arc::make_mut(set).insert(l);
            } else {
                Arc::make_mut(set).remove(&l);
            }
        }
    }

    /// Whether a kind has neither typed rows nor quarantine entries.
    fn nothing_migrated(&self, kind: Kind) -> bool {
        let prefix = [Value::from(kind.table())];
        self.store.is_empty(self.t.typed[kind.index()])
            && self
                .store
                .peek_range(self.t.quarantine_by_kind, &prefix)
                .next()
                .is_none()
    }

    /// The legacy documents of a kind whose typed side does not match, as the incremental
    /// diff has them.
    pub fn unclean(&self, kind: Kind) -> &BTreeSet<DocId> {
        &self.ctx.unclean[kind.index()]
    }

    /// Runs one mutation that began `skew` ticks ago: all of its writes commit or none do.
    pub fn mutate<T>(
        &mut self,
        skew: u64,
        f: impl FnOnce(&Ctx, &mut Tx<'_>) -> Result<T, TxError>,
    ) -> Result<T, TxError> {
        let begin = self.ctx.begin(skew);
        let World { store, ctx } = self;
        store.mutate(begin, |tx| f(ctx, tx))
    }

    /// The persisted progress of a kind's backfill.
    pub fn progress(&self, kind: Kind) -> Progress {
        parse_progress(&self.progress_row(kind).fields)
    }

    /// Whether the kind's persisted progress says its backfill has read every page (the
    /// `done` flag alone, read on every step by the coverage check).
    pub fn progress_done(&self, kind: Kind) -> bool {
        matches!(self.progress_row(kind).get("done"), Some(Value::Bool(true)))
    }

    fn progress_row(&self, kind: Kind) -> Arc<Doc> {
        let prefix = [Value::from(kind.table())];
        self.store
            .peek_range(self.t.progress_by_kind, &prefix)
            .next()
            .cloned()
            .expect("progress rows exist from the start")
    }

    /// Whether backfill batches of `kind` run now (its phase, as `backfill_start` says).
    pub fn backfill_runs(&self, kind: Kind) -> bool {
        let phase = self.phase(kind);
        let runs = match self.plan.strategy_for(kind).backfill_start {
            BackfillStart::WithDoubleWrite => phase == Phase::Backfill,
            BackfillStart::BeforeDoubleWrite => phase <= Phase::Backfill,
        };
        self.migrating && self.plan.kind(kind).is_some() && runs
    }

    /// Whether a built-in backfill batch of `kind` (`backfill_batch_by`) would certainly
    /// change nothing: the kind's batches do not run now, or a one-mutation batch finds its
    /// persisted progress done. Mirrors that function's early returns, for `Sim::idle`.
    pub fn backfill_idle(&self, kind: Kind) -> bool {
        !self.backfill_runs(kind)
            || (!self.plan.strategy_for(kind).backfill_two_step() && self.progress_done(kind))
    }

    /// One backfill batch of `kind`. With the seed's strategy it is one mutation that reads
    /// the page after the persisted cursor, syncs each document's typed row by legacy id, and
    /// advances the cursor. With a two-step strategy (`Strategy::backfill_two_step`), one call
    /// reads the page and holds it, the next writes it and advances the cursor.
    pub fn backfill_batch(&mut self, kind: Kind) -> Result<BackfillOutcome, TxError> {
        self.backfill_batch_by(kind, 0)
    }

    /// One backfill batch of `kind` by runner `runner` (`0..BACKFILL_RUNNERS`). Runners share
    /// the persisted progress; each holds its own page between the two steps of a two-step
    /// batch. Single-mutation batches of two runners serialize, as Convex's optimistic
    /// concurrency makes them.
    pub fn backfill_batch_by(
        &mut self,
        kind: Kind,
        runner: usize,
    ) -> Result<BackfillOutcome, TxError> {
        let runner = runner.min(BACKFILL_RUNNERS - 1);
        let phase = self.phase(kind);
        let plan = self.plan.clone();
        let strategy = plan.strategy_for(kind);
        if !self.backfill_runs(kind) {
            return Ok(BackfillOutcome::NotRunning(phase));
        }
        let batch = self.plan.batch_size(kind);
        if strategy.backfill_two_step() {
            return match self.ctx.pending_page[kind.index()][runner].take() {
                None => self.backfill_read_page(kind, batch, runner),
                Some(page) => self.backfill_write_page(kind, Arc::unwrap_or_clone(page)),
            };
        }
        self.mutate(0, |w, tx| {
            let pdoc = w.progress_doc(tx, kind)?;
            let mut p = parse_progress(&pdoc.fields);
            if p.done {
                return Ok(BackfillOutcome::AlreadyDone);
            }
            let page = w.backfill_page(tx, kind, &p, batch)?;
            let n = page.docs.len();
            let mut counts = BatchCounts::default();
            for (i, doc) in page.docs.iter().enumerate() {
                if kind_of_doc(doc) != Some(kind) {
                    counts.skipped += 1;
                    continue;
                }
                if w.bugs.backfill_skips_last && i + 1 == n && n > 1 {
                    continue;
                }
                let blind = strategy.backfill_write == BackfillWrite::BlindInsert;
                let (typed, quarantined) = if blind {
                    (None, None)
                } else {
                    (
                        w.typed_of_legacy(tx, kind, doc.id)?,
                        w.quarantine_entry(tx, doc.id)?,
                    )
                };
                let synced = w.write_typed(
                    tx,
                    kind,
                    doc,
                    typed,
                    quarantined,
                    strategy.backfill_conflict,
                )?;
                counts.add(&synced);
            }
            w.finish_batch(tx, kind, &pdoc, &mut p, n, &counts, page.cursor, page.done)
        })
    }

    /// The first transaction of a two-step batch: reads the page (and, for
    /// `check_then_insert`, whether each document has a typed row) and holds it.
    fn backfill_read_page(
        &mut self,
        kind: Kind,
        batch: usize,
        runner: usize,
    ) -> Result<BackfillOutcome, TxError> {
        let read = self.mutate(0, |w, tx| {
            let pdoc = w.progress_doc(tx, kind)?;
            let p = parse_progress(&pdoc.fields);
            if p.done {
                return Ok(None);
            }
            let page = w.backfill_page(tx, kind, &p, batch)?;
            let mut docs = Vec::with_capacity(page.docs.len());
            for doc in &page.docs {
                let has_row = w.typed_of_legacy(tx, kind, doc.id)?.is_some();
                docs.push((doc.clone(), has_row));
            }
            Ok(Some(PendingPage {
                processed: docs.len(),
                docs,
                cursor: page.cursor,
                done: page.done,
            }))
        })?;
        match read {
            None => Ok(BackfillOutcome::AlreadyDone),
            Some(page) => {
                let n = page.processed;
                self.ctx.pending_page[kind.index()][runner] = Some(Arc::new(page));
                Ok(BackfillOutcome::PageRead { read: n })
            }
        }
    }

    /// The second transaction of a two-step batch: writes the held page and advances the
    /// cursor. With `separate_transaction` reads, rows are written from the copies read
    /// earlier, even for documents changed or deleted since.
    fn backfill_write_page(
        &mut self,
        kind: Kind,
        page: PendingPage,
    ) -> Result<BackfillOutcome, TxError> {
        self.mutate(0, |w, tx| {
            // The runner writes the page it holds, whatever another runner did meanwhile.
            let pdoc = w.progress_doc(tx, kind)?;
            let mut p = parse_progress(&pdoc.fields);
            let strategy = w.plan.strategy_for(kind);
            let mut counts = BatchCounts::default();
            for (copy, had_row) in &page.docs {
                if kind_of_doc(copy) != Some(kind) {
                    counts.skipped += 1;
                    continue;
                }
                let doc = match strategy.backfill_read {
                    BackfillRead::SeparateTransaction => copy.clone(),
                    BackfillRead::SameMutation => match tx.get(copy.id)? {
                        Some(d) => d,
                        None => continue,
                    },
                };
                let (typed, quarantined) = match strategy.backfill_write {
                    // It checked in the first transaction and inserts blindly now.
                    BackfillWrite::CheckThenInsert if *had_row => continue,
                    BackfillWrite::CheckThenInsert | BackfillWrite::BlindInsert => (None, None),
                    BackfillWrite::Upsert => (
                        w.typed_of_legacy(tx, kind, doc.id)?,
                        w.quarantine_entry(tx, doc.id)?,
                    ),
                };
                let synced = w.write_typed(
                    tx,
                    kind,
                    &doc,
                    typed,
                    quarantined,
                    strategy.backfill_conflict,
                )?;
                counts.add(&synced);
            }
            w.finish_batch(
                tx,
                kind,
                &pdoc,
                &mut p,
                page.processed,
                &counts,
                page.cursor.clone(),
                page.done,
            )
        })
    }

    /// The backfill driver crashed: what it held in memory is lost; the persisted cursor
    /// is not.
    pub fn backfill_crash(&mut self, kind: Kind) {
        self.ctx.pending_page[kind.index()] = Default::default();
    }

    /// Keeps, from now on, what `hash_state` hashes up to date as it changes, so that
    /// hashing costs the number of tables and sets (`Store::track_contents`,
    /// `HashedSet::track`). The hash is the same with or without it.
    pub fn track_state(&mut self) {
        self.store.track_contents();
        for set in self.ctx.unclean.iter_mut() {
            Arc::make_mut(set).track();
        }
    }

    /// Feeds the world's state to `h`: the store, each kind's phase, the client's handles
    /// and the migration's own memory (the incremental diff, quarantine-retry cursors, held
    /// backfill pages). Not the clock, memos or per-call settings.
    pub fn hash_state(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        self.store.hash_contents(h);
        let c = &self.ctx;
        c.phases.hash(h);
        (c.handles.len(), c.handles_sum).hash(h);
        c.unclean.hash(h);
        c.unclean_stale.hash(h);
        c.waiting.hash(h);
        c.retry_cursor.hash(h);
        for kind in &c.pending_page {
            for page in kind {
                match page {
                    None => 0u8.hash(h),
                    Some(p) => {
                        1u8.hash(h);
                        for (d, had) in &p.docs {
                            d.content_hash().hash(h);
                            had.hash(h);
                        }
                        p.cursor.hash(h);
                        p.done.hash(h);
                    }
                }
            }
        }
    }

    /// Whether `doc` (a legacy document of `kind`, just inserted) sorts before the kind's
    /// persisted backfill cursor in phase `backfill`: its `_creationTime` (the transaction's
    /// begin time) lies before a document the backfill has already passed, so the backfill
    /// will never read it.
    pub fn behind_backfill_cursor(&self, kind: Kind, doc: &Doc) -> bool {
        if !self.migrating
            || self.phase(kind) != Phase::Backfill
            || self.plan.strategy_for(kind).backfill_cursor != BackfillCursor::CreationOrder
        {
            return false;
        }
        let p = self.progress(kind);
        p.cursor
            .as_ref()
            .and_then(|c| self.decode_cursor(c))
            .is_some_and(|c| (doc.creation_time, doc.id) < (c.creation_time, c.id))
    }

    /// Whether any document of `kind` is quarantined.
    pub fn quarantined_any(&self, kind: Kind) -> bool {
        self.store
            .peek_range(self.t.quarantine_by_kind, &[Value::from(kind.table())])
            .next()
            .is_some()
    }

    /// Each quarantined document of `kind` as `legacy id: path: reason`, in the quarantine's
    /// order, outside any transaction (for tests and reports).
    pub fn peek_quarantine(&self, kind: Kind) -> Vec<String> {
        self.store
            .peek_range(self.t.quarantine_by_kind, &[Value::from(kind.table())])
            .map(|q| {
                let field = |name: &str| q.get(name).and_then(Value::as_str).unwrap_or_default();
                format!(
                    "{}: {}: {}",
                    field("legacyId"),
                    field("path"),
                    field("reason")
                )
            })
            .collect()
    }

    /// The documents of the backfill page of `kind` read and waiting to be written.
    pub fn pending_page_ids(&self, kind: Kind, runner: usize) -> Vec<DocId> {
        self.ctx.pending_page[kind.index()][runner.min(BACKFILL_RUNNERS - 1)]
            .as_ref()
            .map_or_else(Vec::new, |p| p.docs.iter().map(|(d, _)| d.id).collect())
    }

    /// Whether `retry_quarantine(kind)` would certainly change nothing: no typed writes run
    /// for the kind now. Mirrors that function's early return, for `Sim::idle`.
    pub fn retry_idle(&self, kind: Kind) -> bool {
        !self.migrating || !self.phase(kind).writes_typed()
    }

    /// Re-syncs up to one batch of quarantined documents of `kind` (after a data fix or once
    /// a referenced row exists). Returns how many left the quarantine.
    pub fn retry_quarantine(&mut self, kind: Kind) -> Result<usize, TxError> {
        if !self.migrating || !self.phase(kind).writes_typed() {
            return Ok(0);
        }
        let batch = self.plan.batch_size(kind);
        let cursor = self.ctx.retry_cursor[kind.index()].take();
        let (released, next) = self.mutate(0, |w, tx| {
            let page = tx.page(
                w.t.quarantine_by_kind,
                &[Value::from(kind.table())],
                cursor.as_ref(),
                batch,
            )?;
            let mut released = 0;
            for q in &page.docs {
                let Some(l) = w.legacy_of(q) else {
                    continue;
                };
                if !matches!(w.sync(tx, kind, l)?, Synced::Quarantined(_)) {
                    released += 1;
                }
            }
            // The retry walks the whole quarantine, a page per run, then starts over.
            Ok((released, if page.done { None } else { page.cursor }))
        })?;
        self.ctx.retry_cursor[kind.index()] = next;
        Ok(released)
    }

    // ----- Phase controller ------------------------------------------------------------

    /// Whether `advance(kind)` (`forward`) or `rollback(kind)` would certainly refuse
    /// without changing anything: there is no phase that way, the kind does not migrate,
    /// the plan allows no rollback from its phase, or a guard condition that only reads
    /// fails before any condition that could change the world is evaluated (the diff's).
    /// Mirrors those functions' refusals, for `Sim::idle`.
    pub fn switch_idle(&self, kind: Kind, forward: bool) -> bool {
        let from = self.phase(kind);
        if forward {
            let Some(to) = from.next() else {
                return true;
            };
            if !self.migrating || self.plan.kind(kind).is_none() {
                return true;
            }
            for c in self.plan.guards.entering(to) {
                match self.condition_read(kind, *c) {
                    Some(Ok(())) => {}
                    Some(Err(_)) => return true,
                    None => return false,
                }
            }
            // Every guard holds: it moves.
            false
        } else {
            from.previous().is_none() || !self.migrating || !self.plan.rollback_from.contains(&from)
        }
    }

    /// Moves `kind` one phase forward if the plan's guard allows it.
    pub fn advance(&mut self, kind: Kind) -> Switch {
        let from = self.phase(kind);
        let Some(to) = from.next() else {
            return Switch::NoFurther(from);
        };
        if !self.migrating || self.plan.kind(kind).is_none() {
            return Switch::Refused {
                from,
                to,
                reason: format!("{kind} does not migrate in this plan"),
            };
        }
        for c in self.plan.guards.entering(to).to_vec() {
            if let Err(reason) = self.condition(kind, c) {
                return Switch::Refused { from, to, reason };
            }
        }
        self.ctx.phases[kind.index()] = to;
        Switch::Moved { from, to }
    }

    /// Moves `kind` one phase back if the plan allows rollback from its phase.
    pub fn rollback(&mut self, kind: Kind) -> Switch {
        let from = self.phase(kind);
        let Some(to) = from.previous() else {
            return Switch::NoFurther(from);
        };
        if !self.migrating || !self.plan.rollback_from.contains(&from) {
            return Switch::Refused {
                from,
                to,
                reason: format!("the plan allows no rollback from {from}"),
            };
        }
        if from == Phase::TypedOnly && self.plan.strategy_for(kind).rollback_mirror {
            match self.mutate(0, |w, tx| w.mirror_back(tx, kind)) {
                Ok(created) => {
                    for (legacy, typed) in created {
                        if let Some(key) = self.key_of(typed) {
                            Arc::make_mut(&mut self.ctx.id_keys).insert(legacy, key);
                        }
                    }
                }
                Err(e) => {
                    return Switch::Refused {
                        from,
                        to,
                        reason: format!("copying the typed-only writes back failed: {e}"),
                    };
                }
            }
        }
        self.ctx.phases[kind.index()] = to;
        Switch::Moved { from, to }
    }

    fn backfill_done(&self, kind: Kind) -> bool {
        self.phase(kind) >= Phase::Backfill && self.progress_done(kind)
    }

    /// Evaluates one guard condition; `Err` says why it does not hold.
    fn condition(&mut self, kind: Kind, c: Condition) -> Result<(), String> {
        match c {
            Condition::DiffClean => match self.diff(kind) {
                None => Ok(()),
                Some(d) => Err(format!("diff not clean: {d}")),
            },
            _ => self
                .condition_read(kind, c)
                .expect("all but the diff only read"),
        }
    }

    /// A guard condition that only reads the world, evaluated; `None` for the one that
    /// may change it (`DiffClean`: the diff rebuilds and keeps its sets of unclean
    /// documents).
    fn condition_read(&self, kind: Kind, c: Condition) -> Option<Result<(), String>> {
        let plan = self.plan.kind(kind).expect("checked by the caller");
        Some(match c {
            Condition::DependenciesBackfilled => {
                for d in &plan.depends_on {
                    if !self.backfill_done(*d) {
                        return Some(Err(format!("{d} has not finished its backfill")));
                    }
                }
                Ok(())
            }
            Condition::BackfillDone => {
                if self.backfill_done(kind) {
                    Ok(())
                } else {
                    Err(format!("{kind} backfill is not done"))
                }
            }
            Condition::DiffClean => return None,
            Condition::DependenciesClean => {
                for d in &plan.depends_on {
                    let prefix = [Value::from(d.table())];
                    if let Some(q) = self
                        .store
                        .peek_range(self.t.quarantine_by_kind, &prefix)
                        .next()
                    {
                        return Some(Err(format!(
                            "{d} has quarantined documents (first: {}) that typed rows could not reference",
                            q.get("legacyId").map_or(String::new(), |v| v.to_string())
                        )));
                    }
                }
                Ok(())
            }
            Condition::DependentsTypedOnly => {
                for d in self.plan.dependents(kind) {
                    if self.phase(d) != Phase::TypedOnly {
                        return Some(Err(format!(
                            "{d} still writes legacy rows that reference {kind}"
                        )));
                    }
                }
                Ok(())
            }
        })
    }

    /// The strict mapping of a document against the store as it is now (a read-only
    /// transaction), for the diff and the checker.
    pub fn map_now(&mut self, kind: Kind, doc: &Doc) -> Result<Fields, MapError> {
        self.mutate(0, |c, tx| c.map_doc(tx, kind, doc, None))
            .unwrap_or_else(|e| {
                Err(MapError {
                    blocked_by: None,
                    path: String::new(),
                    reason: e.to_string(),
                })
            })
    }

    /// The typed rows whose `legacyId` is `l`, outside any transaction (for the checker and
    /// the diff; more than one is a bug the checker reports).
    /// Memoized while the store is unchanged: the diff and the checker ask the same after a
    /// step.
    pub fn peek_typed_rows(&self, kind: Kind, l: DocId) -> Arc<[Arc<Doc>]> {
        self.ctx
            .peeked
            .get(self.store.version(), (Some(kind), l), || {
                self.store
                    .peek_range_by(self.t.typed_by_legacy[kind.index()], &self.id_prefix(l))
                    .cloned()
                    .collect()
            })
    }

    /// Whether `l` has a quarantine entry, outside any transaction (memoized as
    /// `peek_typed_rows`).
    pub fn peek_quarantined(&self, l: DocId) -> bool {
        let entry = self.ctx.peeked.get(self.store.version(), (None, l), || {
            self.store
                .peek_range_by(self.t.quarantine_by_legacy, &self.id_prefix(l))
                .take(1)
                .cloned()
                .collect()
        });
        !entry.is_empty()
    }

    /// `map_now` of a stored legacy document, memoized until the next `absorb`.
    pub fn map_doc_now(&mut self, kind: Kind, doc: &Arc<Doc>) -> Mapped {
        if let Some((cached, mapped)) = self.ctx.mapped.get(&doc.id)
            && Arc::ptr_eq(cached, doc)
        {
            return mapped.clone();
        }
        let mapped = Arc::new(self.map_now(kind, doc));
        self.ctx
            .mapped
            .insert(doc.id, (doc.clone(), mapped.clone()));
        mapped
    }

    /// Whether `row` is known to hold the mapping of `doc` as `kind` without mapping it: the
    /// write path wrote it in the last step from the mapping of this very version, and every
    /// reference that mapping remapped still remaps to the same typed id. The mapping of a
    /// version depends on nothing else, so it would map to `row`'s fields now.
    pub fn row_is_mapping(&mut self, kind: Kind, doc: &Arc<Doc>, row: &Arc<Doc>) -> bool {
        let Some(w) = self.ctx.stored.get(&doc.id) else {
            return false;
        };
        if w.kind != kind || !Arc::ptr_eq(&w.legacy, doc) || !Arc::ptr_eq(&w.row, row) {
            return false;
        }
        let remapped = w.remapped.clone();
        self.mutate(0, |c, tx| {
            for (target, legacy, typed) in &remapped {
                if c.remap(tx, *target, legacy)?.as_ref() != Some(typed) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .unwrap_or(false)
    }

    /// The rows written in the last step (`Ctx::stored`): kind, legacy id, and how many
    /// references the mapping remapped, by legacy id.
    #[cfg(test)]
    pub(crate) fn stored_rows(&self) -> Vec<(Kind, DocId, usize)> {
        let mut rows: Vec<_> = self
            .ctx
            .stored
            .values()
            .map(|w| (w.kind, w.legacy.id, w.remapped.len()))
            .collect();
        rows.sort_by_key(|r| r.1);
        rows
    }

    /// A copy of the world that keeps the rows written in the last step (a fork starts
    /// without them).
    #[cfg(test)]
    pub(crate) fn fork_keeping_rows(&self) -> World {
        let mut fork = self.clone();
        *fork.ctx.stored = (*self.ctx.stored).clone();
        fork
    }

    /// Makes the kept row of `legacy` remember another typed id for its first remapped
    /// reference, as if that reference remapped differently now.
    #[cfg(test)]
    pub(crate) fn misremember_remap(&mut self, legacy: DocId) {
        let w = self.ctx.stored.get_mut(&legacy).expect("a kept row");
        w.remapped[0].2 = "events:999999".into();
    }

    /// How one legacy document differs from its typed side, if it does: it must have exactly
    /// one equal typed row and no quarantine entry if it maps, a quarantine entry (and at
    /// most the typed row it had) if it does not, and neither once it is deleted.
    pub fn diff_one(&mut self, kind: Kind, l: DocId) -> Option<String> {
        let id = self.id_string(l);
        let typed = self.peek_typed_rows(kind, l);
        let quarantined = self.peek_quarantined(l);
        let Some(doc) = self.store.peek(l).cloned() else {
            return match (typed.first(), quarantined) {
                (None, false) => None,
                (Some(t), _) => Some(format!(
                    "{} is orphaned: its legacy document {id} is gone",
                    self.id_string(t.id)
                )),
                (None, true) => Some(format!("{id} is gone but still quarantined")),
            };
        };
        if kind_of_doc(&doc) != Some(kind) {
            return None;
        }
        if let ([t], false) = (&typed[..], quarantined)
            && self.row_is_mapping(kind, &doc, t)
        {
            return None;
        }
        let mapped = self.map_doc_now(kind, &doc);
        if let Err(MapError {
            blocked_by: Some(b),
            ..
        }) = mapped.as_ref()
            && let Some(b) = self.parse_id(b)
        {
            self.ctx.waiting.entry(b).or_default().insert((kind, l));
        }
        let difference = match (mapped.as_ref(), &typed[..], quarantined) {
            (Ok(f), [t], false) if t.fields == *f => return None,
            (Err(_), [] | [_], true) => return None,
            (_, rows, _) if rows.len() > 1 => format!("has {} typed rows", rows.len()),
            (Ok(_), [], false) => "has no typed row".to_string(),
            (Ok(_), _, false) => "differs from its typed row".to_string(),
            (Ok(_), _, true) => "maps but is quarantined".to_string(),
            (Err(e), _, _) => format!("cannot map ({e}) but is not quarantined"),
        };
        Some(format!("{id} {difference}"))
    }

    /// The full keyed diff of a kind: every legacy document of the kind, and the legacy id
    /// of every typed row and quarantine entry of the kind, diffed from scratch. The incremental diff must always equal it
    /// (a test checks this); the guard uses it only to rebuild.
    pub fn diff_full(&mut self, kind: Kind) -> BTreeSet<DocId> {
        let ty = Value::from(kind.legacy_type());
        let mut ids: BTreeSet<DocId> = self
            .store
            .peek_range(self.t.objects_by_type, std::slice::from_ref(&ty))
            .filter(|d| kind_of_doc(d) == Some(kind))
            .map(|d| d.id)
            .collect();
        let prefix = [Value::from(kind.table())];
        let quarantined = self.store.peek_range(self.t.quarantine_by_kind, &prefix);
        for row in self
            .store
            .scan(self.t.typed[kind.index()])
            .chain(quarantined)
        {
            if let Some(l) = self.legacy_of(row) {
                ids.insert(l);
            }
        }
        ids.into_iter()
            .filter(|l| self.diff_one(kind, *l).is_some())
            .collect()
    }

    /// The first difference of the keyed diff of a kind, or `None` when it is clean, from the
    /// incremental diff (rebuilt by a full diff first if it is stale).
    pub fn diff(&mut self, kind: Kind) -> Option<String> {
        if std::mem::take(&mut self.ctx.unclean_stale[kind.index()]) {
            let unclean = self.diff_full(kind);
            let rebuilt = self.ctx.unclean[kind.index()].renewed(unclean);
            self.ctx.unclean[kind.index()] = Arc::new(rebuilt);
        }
        let first = self.ctx.unclean[kind.index()].first().copied()?;
        Some(
            self.diff_one(kind, first)
                .unwrap_or_else(|| format!("{} is out of step", self.id_string(first))),
        )
    }
}

impl std::ops::Deref for World {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl Ctx {
    /// The kind's phase as the code running now sees it: the controller's, or the phases an
    /// action captured when it started (`phase_source = "captured_at_action_start"`).
    pub fn phase(&self, kind: Kind) -> Phase {
        self.captured.get()[kind.index()].unwrap_or(self.phases[kind.index()])
    }

    /// Makes the mutations that run next see, for each kind given, that phase (an action's
    /// captured one) instead of the controller's; `[None; 3]` restores the controller's.
    pub fn set_captured_phases(&self, phases: [Option<Phase>; 3]) {
        self.captured.set(phases);
    }

    pub fn phases(&self) -> [Phase; 3] {
        self.phases
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    pub fn set_now(&mut self, now: u64) {
        assert!(now >= self.now, "the clock never goes back");
        self.now = now;
    }

    /// Puts the clock back to a reading taken before a step that wrote nothing
    /// (`Sim::read_in_place`); every other step moves it forward with `set_now`.
    pub fn restore_now(&mut self, now: u64) {
        self.now = now;
    }

    pub fn org_id(&self, org: usize) -> DocId {
        self.org_ids[org % self.org_ids.len()]
    }

    /// The id the client holds for an entity, if this world created it.
    pub fn handle(&self, key: Key) -> Option<DocId> {
        self.handles.get(key as usize).copied().flatten()
    }

    /// The key of an id this world has given an entity (legacy or typed).
    pub fn key_of(&self, id: DocId) -> Option<Key> {
        self.id_keys.get(&id).copied()
    }

    /// Records that entity `key` is `id` in this world.
    pub fn register(&mut self, key: Key, id: DocId) {
        let k = key as usize;
        if self.handles.len() <= k {
            self.handles.resize(k + 1, None);
        }
        if let Some(old) = self.handles[k].replace(id) {
            self.handles_sum = self.handles_sum.wrapping_sub(handle_hash(key, old));
        }
        self.handles_sum = self.handles_sum.wrapping_add(handle_hash(key, id));
        Arc::make_mut(&mut self.id_keys).insert(id, key);
    }

    fn begin(&self, skew: u64) -> u64 {
        self.now.saturating_sub(skew)
    }

    /// The legacy document a typed row or quarantine entry is about (`legacyId`).
    pub fn legacy_of(&self, d: &Doc) -> Option<DocId> {
        d.get("legacyId")
            .and_then(Value::as_str)
            .and_then(|s| self.parse_id(s))
    }

    /// The legacy documents of migrating kinds that a batch of writes touched: written
    /// directly, or through their typed row or quarantine entry.
    pub fn touched_legacy(&self, log: &[Write]) -> BTreeSet<(Kind, DocId)> {
        let mut touched = BTreeSet::new();
        for w in log {
            for d in [&w.before, &w.after].into_iter().flatten() {
                if w.id.table == self.t.objects {
                    if let Some(kind) = kind_of_doc(d) {
                        touched.insert((kind, w.id));
                    }
                } else if let Some(kind) = self.t.typed_kind(w.id.table) {
                    if let Some(l) = self.legacy_of(d) {
                        touched.insert((kind, l));
                    }
                } else if w.id.table == self.t.quarantine
                    && let (Some(kind), Some(l)) = (
                        d.get("kind").and_then(Value::as_str).and_then(Kind::parse),
                        self.legacy_of(d),
                    )
                {
                    touched.insert((kind, l));
                }
            }
        }
        touched
    }

    /// The string form of an id, as stored in documents (`table:seq`).
    pub fn id_string(&self, id: DocId) -> Str {
        let mut s = self.id_prefixes[usize::from(id.table)].clone();
        s.push_str(itoa::Buffer::new().format(id.seq));
        s
    }

    /// The index prefix of one value, `id`'s string (`id_string`), encoded without building
    /// the string: the lookups by legacy id take it.
    pub fn id_prefix(&self, id: DocId) -> Prefix {
        Prefix::string(&[
            self.id_prefixes[usize::from(id.table)].as_bytes(),
            itoa::Buffer::new().format(id.seq).as_bytes(),
        ])
    }

    /// Parses an id string of any table of this world's store.
    ///
    /// The same as `validator::parse_id` followed by a search of the table names, which is
    /// what a test checks, without the scan of the name's characters: a string that starts
    /// with a table's name and a colon has a well-formed name.
    pub fn parse_id(&self, s: &str) -> Option<DocId> {
        let b = s.as_bytes();
        let table = self
            .names
            .iter()
            .position(|n| b.get(n.len()) == Some(&b':') && b.starts_with(n.as_bytes()))?;
        let seq = crate::validator::parse_seq(&b[self.names[table].len() + 1..])?;
        Some(DocId {
            table: table as u16,
            seq,
        })
    }

    /// Whether `kind` is written to its typed table in this world.
    fn typed_writes(&self, kind: Kind) -> bool {
        self.migrating && self.phase(kind).writes_typed()
    }

    // ----- Mapping and sync -----------------------------------------------------------

    /// The typed row of a legacy document, by `by_legacy`.
    pub fn typed_of_legacy(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        legacy: DocId,
    ) -> Result<Option<Arc<Doc>>, TxError> {
        tx.first_by(
            self.t.typed_by_legacy[kind.index()],
            &self.id_prefix(legacy),
        )
    }

    /// The quarantine entry of a legacy document.
    pub fn quarantine_entry(
        &self,
        tx: &mut Tx<'_>,
        legacy: DocId,
    ) -> Result<Option<Arc<Doc>>, TxError> {
        tx.first_by(self.t.quarantine_by_legacy, &self.id_prefix(legacy))
    }

    /// The typed id a reference should hold: an `objects` id is looked up by legacy id, a
    /// typed id of the right table is kept if its row exists.
    fn remap(&self, tx: &mut Tx<'_>, target: Kind, s: &str) -> Result<Option<Str>, TxError> {
        if self.plan.strategy.references == References::KeepLegacy {
            return Ok(Some(s.into()));
        }
        if self.bugs.bogus_event_remap && target == Kind::Events {
            return Ok(Some("events:999999".into()));
        }
        let Some(id) = self.parse_id(s) else {
            return Ok(None);
        };
        if id.table == self.t.objects {
            // `s` parsed, so it is the id's own spelling (`id_string`): the lookups by legacy
            // id take it as it is.
            let key = Prefix::string(&[s.as_bytes()]);
            if let Some(d) = tx.first_by(self.t.typed_by_legacy[target.index()], &key)? {
                return Ok(Some(self.id_string(d.id)));
            }
            // A quarantined document has no typed id to point at.
            if tx.first_by(self.t.quarantine_by_legacy, &key)?.is_some() {
                return Ok(None);
            }
            // A reference to a deleted entity keeps pointing at the typed id it had, as the
            // legacy document keeps pointing at the deleted legacy id (and so does one to an
            // entity deleted on the typed side once its kind is typed-only). An entity that
            // never had a typed row has no entry.
            Ok(tx
                .first_by(self.t.id_map_by_legacy, &key)?
                .and_then(|m| m.get("typedId").and_then(Value::as_str).map(Str::from))
                .filter(|t| {
                    self.parse_id(t)
                        .is_some_and(|t| t.table == self.t.typed[target.index()])
                }))
        } else if id.table == self.t.typed[target.index()] {
            // Already a typed id: kept as it is, dangling or not, like a legacy reference.
            Ok(Some(s.into()))
        } else {
            Ok(None)
        }
    }

    /// Maps legacy-shaped fields to a typed row: strict derivation, then references
    /// remapped to typed ids, then `legacyId`. The outer error is a failed transaction, the
    /// inner one a document that cannot map.
    pub fn map(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        fields: &Fields,
        legacy: Option<DocId>,
    ) -> Result<Result<Fields, MapError>, TxError> {
        self.map_derived(tx, kind, derive(kind, fields, true), legacy, None)
    }

    /// `map` of a document version with its own id as `legacyId`, from the version's
    /// memoized derivation (`domain::derived`). `remapped` gets every reference the mapping
    /// remapped, with the typed id it found.
    pub fn map_doc(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        doc: &Doc,
        remapped: Option<&mut Remapped>,
    ) -> Result<Result<Fields, MapError>, TxError> {
        // `legacyId` goes in with the copy (it is not a reference, so remapping leaves it
        // alone): the mapping `map_derived` would give with `Some(doc.id)`.
        let derived = match derived(kind, doc, true) {
            Ok(f) => {
                Ok(f.clone_inserting("legacyId".into(), Value::String(self.id_string(doc.id))))
            }
            Err(e) => Err(e.clone()),
        };
        self.map_derived(tx, kind, derived, None, remapped)
    }

    fn map_derived(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        derived: Result<Fields, MapError>,
        legacy: Option<DocId>,
        mut remapped: Option<&mut Remapped>,
    ) -> Result<Result<Fields, MapError>, TxError> {
        let mut out = match derived {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        // A v1 transaction's single line item is made of top-level customProperties fields.
        let v1 = out.get("shape").and_then(Value::as_str) == Some("v1");
        let mut failure = None;
        for_each_reference(kind, &mut out, |path, target, value| {
            let Some(target) = target else {
                return Ok(());
            };
            let s = value.as_str().unwrap_or_default();
            match self.remap(tx, target, s)? {
                Some(typed) => {
                    if let Some(r) = remapped.as_deref_mut() {
                        r.push((target, s.into(), typed.clone()));
                    }
                    *value = Value::String(typed);
                }
                None if failure.is_none() => {
                    let blocked_by = self
                        .parse_id(s)
                        .filter(|id| id.table == self.t.objects)
                        .map(|_| s.to_string());
                    failure = Some(MapError {
                        blocked_by,
                        path: match path.item {
                            Some(0) if v1 => format!("customProperties.{}", path.name),
                            _ => format!("customProperties.{path}"),
                        },
                        reason: format!(
                            "{s} has no row in {target} (quarantined or not migrated yet)"
                        ),
                    });
                }
                None => {}
            }
            Ok::<(), TxError>(())
        })?;
        if let Some(e) = failure {
            return Ok(Err(e));
        }
        if let Some(l) = legacy {
            out.insert("legacyId".into(), Value::String(self.id_string(l)));
        }
        if self.bugs.invalid_ticket_number
            && kind == Kind::Tickets
            && let Some(Value::Float64(n)) = out.get("ticketNumber")
        {
            let n = *n as i64;
            out.insert("ticketNumber".into(), Value::Int64(n));
        }
        Ok(Ok(out))
    }

    /// The next backfill page of `kind` after the persisted progress `p`, as the plan's
    /// `backfill_cursor` pages: the documents (of any kind, for the status index), the cursor
    /// to persist (encoded as the progress row holds it) and whether this is the last page.
    fn backfill_page(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        p: &Progress,
        batch: usize,
    ) -> Result<BackfillPage, TxError> {
        let ty = [Value::from(kind.legacy_type())];
        let (index, prefix): (_, &[Value]) = match self.plan.strategy_for(kind).backfill_cursor {
            BackfillCursor::Offset => {
                // Skips the first `offset` documents of the kind in creation order, reading
                // them again on every batch, as offset pagination does.
                let offset = p.cursor.as_ref().and_then(Value::as_f64).unwrap_or(0.0) as usize;
                let all = tx.range(self.t.objects_by_type, &ty)?;
                let docs: Vec<Arc<Doc>> = all.iter().skip(offset).take(batch).cloned().collect();
                let next = offset + docs.len();
                return Ok(BackfillPage {
                    cursor: Some(Value::Float64(next as f64)),
                    done: next >= all.len(),
                    docs,
                });
            }
            BackfillCursor::CreationOrder => (self.t.objects_by_type, &ty),
            BackfillCursor::StatusIndex => (self.t.objects_by_status, &[]),
        };
        let cursor = p.cursor.as_ref().and_then(|c| self.decode_cursor(c));
        let page = tx.page(index, prefix, cursor.as_ref(), batch)?;
        Ok(BackfillPage {
            docs: page.docs,
            cursor: page.cursor.map(|c| self.encode_cursor(&c)),
            done: page.done,
        })
    }

    /// Writes the progress row at the end of a batch.
    #[allow(clippy::too_many_arguments)]
    fn finish_batch(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        pdoc: &Doc,
        p: &mut Progress,
        processed: usize,
        counts: &BatchCounts,
        cursor: Option<Value>,
        done: bool,
    ) -> Result<BackfillOutcome, TxError> {
        p.processed += processed as f64;
        p.migrated += counts.migrated as f64;
        p.quarantined += counts.quarantined as f64;
        p.skipped += counts.skipped as f64;
        p.batches += 1.0;
        p.done = done;
        if cursor.is_some() {
            p.cursor = cursor;
        }
        tx.replace(pdoc.id, progress_fields(kind, p))?;
        Ok(BackfillOutcome::Batch {
            read: processed,
            migrated: counts.migrated,
            quarantined: counts.quarantined,
            skipped: counts.skipped,
            done,
        })
    }

    /// Brings the typed row of one legacy document in line with it, inside the caller's
    /// mutation: upsert by legacy id if it maps, quarantine it (and drop any typed row) if it
    /// does not (or skip or throw, as the plan's `invalid_documents` says), drop both if the
    /// document is gone.
    pub fn sync(&self, tx: &mut Tx<'_>, kind: Kind, legacy: DocId) -> Result<Synced, TxError> {
        let doc = tx.get(legacy)?;
        let typed = self.typed_of_legacy(tx, kind, legacy)?;
        let quarantined = self.quarantine_entry(tx, legacy)?;
        let Some(doc) = doc else {
            if let Some(t) = typed {
                tx.delete(t.id)?;
            }
            if let Some(q) = quarantined {
                tx.delete(q.id)?;
            }
            return Ok(Synced::Removed);
        };
        self.write_typed(
            tx,
            kind,
            &doc,
            typed,
            quarantined,
            BackfillConflict::Overwrite,
        )
    }

    /// Writes the typed side of `doc` (as given: the document now, or a copy read earlier),
    /// given the typed row and quarantine entry the caller found (`None` when it did not
    /// look). `conflict` says what to do when the row exists and differs.
    fn write_typed(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        doc: &Arc<Doc>,
        typed: Option<Arc<Doc>>,
        quarantined: Option<Arc<Doc>>,
        conflict: BackfillConflict,
    ) -> Result<Synced, TxError> {
        let legacy = doc.id;
        let mut remapped = Remapped::new();
        let mapped: Result<std::convert::Infallible, MapError> =
            match self.map_doc(tx, kind, doc, Some(&mut remapped))? {
                Ok(fields) => {
                    match self.write_typed_row(tx, kind, legacy, fields, typed.as_ref(), conflict) {
                        Ok((Synced::Migrated, row)) => {
                            if let Some(row) = row.and_then(|id| tx.store().peek(id)) {
                                self.written.borrow_mut().insert(
                                    legacy,
                                    WrittenRow {
                                        kind,
                                        legacy: doc.clone(),
                                        row: row.clone(),
                                        remapped,
                                    },
                                );
                            }
                            if let Some(q) = quarantined {
                                tx.delete(q.id)?;
                            }
                            return Ok(Synced::Migrated);
                        }
                        Ok((other, _)) => return Ok(other),
                        // The typed table's validator rejected the row: the document is treated as
                        // one that cannot map (the write path catches the error).
                        Err(TxError::Validation { table, error }) => Err(MapError {
                            path: error.path,
                            reason: format!("{table} rejects the typed row: {}", error.reason),
                            blocked_by: None,
                        }),
                        Err(e) => return Err(e),
                    }
                }
                Err(error) => Err(error),
            };
        match mapped {
            Ok(never) => match never {},
            Err(error) => {
                let policy = self.plan.strategy_for(kind).invalid_documents;
                if policy == InvalidDocuments::Throw {
                    return Err(TxError::Threw(format!(
                        "{} cannot map: {error}",
                        self.id_string(legacy)
                    )));
                }
                if policy == InvalidDocuments::Skip {
                    if let Some(t) = typed {
                        tx.delete(t.id)?;
                    }
                    if let Some(q) = quarantined {
                        tx.delete(q.id)?;
                    }
                    return Ok(Synced::Skipped(error));
                }
                // A quarantined document keeps the typed row it had, if any (its last good
                // copy): reads serve the document from objects while it is quarantined, and
                // the row keeps its id, so the typed rows that reference it stay valid and a
                // write that makes it mappable again updates the same row.
                let mut q = Fields::with_capacity(6);
                q.insert("legacyId".into(), Value::String(self.id_string(legacy)));
                q.insert("kind".into(), Value::from(kind.table()));
                q.insert("path".into(), Value::from(error.path.as_str()));
                q.insert("reason".into(), Value::from(error.reason.as_str()));
                if let Some(b) = &error.blocked_by {
                    q.insert("blockedBy".into(), Value::from(b.as_str()));
                }
                if let Some(org) = doc.get("organizationId") {
                    q.insert("organizationId".into(), org.clone());
                }
                match quarantined {
                    Some(old) if old.fields == q => {}
                    Some(old) => tx.replace(old.id, q)?,
                    None => {
                        tx.insert(self.t.quarantine, q)?;
                    }
                }
                Ok(Synced::Quarantined(error))
            }
        }
    }

    /// Copies `kind`'s typed rows back to `objects` before a rollback from `typed_only`
    /// (`rollback_mirror`): each row's legacy document gets the row's fields (references
    /// turned back into legacy ids), a row created typed-only gets a new legacy document (and
    /// its `legacyId`), and the legacy copy of an entity deleted typed-only is deleted.
    /// Quarantined documents are left alone: `objects` is where they live. Returns the
    /// legacy documents created, with their typed rows.
    fn mirror_back(&self, tx: &mut Tx<'_>, kind: Kind) -> Result<Vec<(DocId, DocId)>, TxError> {
        let mut created = Vec::new();
        for row in tx.range(self.t.typed_by_legacy[kind.index()], &[])? {
            if let Some(l) = self.legacy_of(&row)
                && self.quarantine_entry(tx, l)?.is_some()
            {
                continue;
            }
            if let Some((l, true)) = self.copy_back(tx, kind, &row)? {
                created.push((l, row.id));
            }
        }
        // Legacy copies of entities deleted while the kind was typed-only.
        let ty = [Value::from(kind.legacy_type())];
        for doc in tx.range(self.t.objects_by_type, &ty)? {
            if kind_of_doc(&doc) == Some(kind)
                && self.typed_of_legacy(tx, kind, doc.id)?.is_none()
                && self.quarantine_entry(tx, doc.id)?.is_none()
            {
                tx.delete(doc.id)?;
            }
        }
        Ok(created)
    }

    /// Copies one typed row back to `objects`: its legacy document gets the row's fields
    /// (references turned back into legacy ids), and a row created typed-only gets a new
    /// legacy document (and its `legacyId`, and an id map entry). Returns the legacy document
    /// and whether it was created; `None` when the legacy document is gone (it has nothing
    /// to copy back to).
    fn copy_back(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        row: &Doc,
    ) -> Result<Option<(DocId, bool)>, TxError> {
        let mut fields = row.fields.clone();
        let legacy = fields
            .remove("legacyId")
            .and_then(|v| v.as_str().and_then(|s| self.parse_id(s)));
        for_each_reference(kind, &mut fields, |_, target, v| {
            if let Some(target) = target
                && let Some(id) = v.as_str().and_then(|s| self.parse_id(s))
                && id.table == self.t.typed[target.index()]
                && let Some(l) = tx.get(id)?.and_then(|r| self.legacy_of(&r))
            {
                *v = Value::String(self.id_string(l));
            }
            Ok::<(), TxError>(())
        })?;
        let back = crate::domain::reverse(kind, &fields);
        match legacy {
            Some(l) => {
                let Some(doc) = tx.get(l)? else {
                    return Ok(None);
                };
                let merged = keep_dropped_fields(kind, &doc.fields, back);
                if merged != doc.fields {
                    tx.replace(l, merged)?;
                }
                Ok(Some((l, false)))
            }
            None => {
                let l = tx.insert(self.t.objects, back)?;
                let mut with_legacy = row.fields.clone();
                with_legacy.insert("legacyId".into(), Value::String(self.id_string(l)));
                tx.replace(row.id, with_legacy)?;
                let mut m = Fields::new();
                m.insert("legacyId".into(), Value::String(self.id_string(l)));
                m.insert("typedId".into(), Value::String(self.id_string(row.id)));
                tx.insert(self.t.id_map, m)?;
                Ok(Some((l, true)))
            }
        }
    }

    /// Inserts or replaces the typed row of `legacy` (`typed`: the row found, if the caller
    /// looked), as the conflict policy says.
    fn write_typed_row(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        legacy: DocId,
        fields: Fields,
        typed: Option<&Arc<Doc>>,
        conflict: BackfillConflict,
    ) -> Result<(Synced, Option<DocId>), TxError> {
        if let Some(t) = typed
            && t.fields == fields
        {
            return Ok((Synced::Migrated, Some(t.id)));
        }
        if self.reject_typed.get() {
            return Err(TxError::Validation {
                table: kind.table(),
                error: crate::validator::ValidationError {
                    path: String::new(),
                    reason: "the validator rejects this write (an injected fault)".into(),
                },
            });
        }
        let row = match typed {
            Some(t) => {
                let newer = updated_at(&fields) > updated_at(&t.fields);
                match conflict {
                    BackfillConflict::Overwrite => tx.replace(t.id, fields)?,
                    BackfillConflict::NewerWins if newer => tx.replace(t.id, fields)?,
                    BackfillConflict::SkipExisting | BackfillConflict::NewerWins => {
                        return Ok((Synced::Kept, None));
                    }
                }
                t.id
            }
            None => {
                let typed = tx.insert(self.t.typed[kind.index()], fields)?;
                let mut m = Fields::with_capacity(2);
                m.insert("legacyId".into(), Value::String(self.id_string(legacy)));
                m.insert("typedId".into(), Value::String(self.id_string(typed)));
                tx.insert(self.t.id_map, m)?;
                typed
            }
        };
        Ok((Synced::Migrated, Some(row)))
    }

    /// Makes the migration's typed writes (double writes, backfill) fail validation until
    /// turned off again (an injected fault).
    pub fn set_reject_typed(&self, on: bool) {
        self.reject_typed.set(on);
    }

    /// Sets the write path whose mutations run next (see `plan::Strategy::paths`).
    pub fn set_path(&self, path: WritePath) {
        self.path.set(path);
    }

    /// Takes the legacy documents whose typed write the current path defers to a separate
    /// mutation (`double_write = "separate_mutation"`).
    pub fn take_deferred(&self) -> Vec<(Kind, DocId)> {
        std::mem::take(&mut *self.deferred.borrow_mut())
    }

    /// The typed half of a write path's double write of `legacy`, as the plan places it. An
    /// update mirrors as the path's `update_mirroring` says; a create or delete always syncs.
    fn mirror(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        legacy: DocId,
        update: bool,
    ) -> Result<(), TxError> {
        if !self.typed_writes(kind) {
            return Ok(());
        }
        let path = self.path.get();
        let strategy = self.plan.strategy_for(kind);
        match strategy.double_write(path) {
            DoubleWrite::None => Ok(()),
            // A typed-first create cannot write its typed row first (the row carries the
            // legacy id), so it, like a legacy-first one, writes it in the next step.
            DoubleWrite::SeparateMutation | DoubleWrite::SeparateTypedFirst => {
                self.deferred.borrow_mut().push((kind, legacy));
                Ok(())
            }
            DoubleWrite::SameMutation => {
                let how = if update {
                    strategy.update_mirroring(path)
                } else {
                    UpdateMirroring::Upsert
                };
                self.mirror_now(tx, kind, legacy, how)
            }
        }
    }

    /// Writes the typed half of a double write now, in the caller's mutation (also the
    /// separate mutation of a deferred one), if the kind's phase writes typed rows.
    pub fn mirror_now(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        legacy: DocId,
        how: UpdateMirroring,
    ) -> Result<(), TxError> {
        if !self.typed_writes(kind) {
            return Ok(());
        }
        match how {
            UpdateMirroring::Upsert => self.sync(tx, kind, legacy).map(drop),
            UpdateMirroring::None => Ok(()),
            UpdateMirroring::Patch | UpdateMirroring::Replace => {
                if self.typed_of_legacy(tx, kind, legacy)?.is_some() {
                    self.sync(tx, kind, legacy).map(drop)
                } else if how == UpdateMirroring::Replace {
                    Err(TxError::Threw(format!(
                        "replace: {} has no typed row",
                        self.id_string(legacy)
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    // ----- Write paths ------------------------------------------------------------------

    /// The string this world writes for a reference to entity `key`: what the client holds.
    fn ref_string(&self, key: Key) -> Value {
        match self.handle(key) {
            Some(id) => Value::String(self.id_string(id)),
            None => Value::Null,
        }
    }

    /// Turns an `Arg` into the value this world writes in legacy form.
    pub fn legacy_arg(&self, arg: &Arg) -> Value {
        match arg {
            Arg::Plain(v) => v.clone(),
            Arg::Ref(k) => self.ref_string(*k),
        }
    }

    /// Creates an entity of a migrating kind from legacy-shaped fields (references are this
    /// world's ids), as the kind's phase says. Returns the id the client will hold.
    pub fn create(&self, tx: &mut Tx<'_>, kind: Kind, fields: Fields) -> Result<DocId, TxError> {
        if self.migrating
            && self.phase(kind) == Phase::TypedOnly
            && let Ok(typed) = self.map(tx, kind, &fields, None)?
        {
            return tx.insert(self.t.typed[kind.index()], typed);
        }
        // A document that cannot be typed lives on in objects, quarantined, like the
        // backfill's quarantined documents.
        let id = tx.insert(self.t.objects, fields)?;
        self.mirror(tx, kind, id, false)?;
        Ok(id)
    }

    /// Creates an object that never migrates (product, checkout session, support ticket).
    pub fn create_object(&self, tx: &mut Tx<'_>, fields: Fields) -> Result<DocId, TxError> {
        tx.insert(self.t.objects, fields)
    }

    /// Adds an `objectLinks` edge when either end lives in `objects`.
    pub fn link(
        &self,
        tx: &mut Tx<'_>,
        from: DocId,
        to: DocId,
        link_type: &str,
    ) -> Result<(), TxError> {
        // A legacy document keeps its links even to an entity that only has a typed row
        // (a quarantined ticket moved to a typed-only event): the legacy read path follows
        // links from whatever id the client holds.
        if from.table == self.t.objects || to.table == self.t.objects {
            let f = link_fields(&self.id_string(from), &self.id_string(to), link_type);
            tx.insert(self.t.links, f)?;
        }
        Ok(())
    }

    /// Removes the `link_type` edges from `from`.
    pub fn unlink_from(
        &self,
        tx: &mut Tx<'_>,
        from: DocId,
        link_type: &str,
    ) -> Result<(), TxError> {
        let prefix = [Value::String(self.id_string(from)), Value::from(link_type)];
        for l in tx.range(self.t.links_by_from, &prefix)? {
            tx.delete(l.id)?;
        }
        Ok(())
    }

    /// Applies changes to the legacy document in one mutation (the legacy write), keeping
    /// the ticket's `admits_to` link in step with its `eventId`.
    fn update_legacy(&self, tx: &mut Tx<'_>, id: DocId, changes: &[Change]) -> Result<(), TxError> {
        if tx.get(id)?.is_none() {
            return Err(TxError::NotFound(self.id_string(id).into()));
        }
        let (args, relink) = self.legacy_args(changes);
        let now = self.now_ms();
        let key = DeriveKey {
            changes: args,
            at: now.to_bits(),
        };
        tx.replace_derived(id, key, |doc, key| {
            updated_fields(&doc.fields, &key.changes, now)
        })?;
        self.relink(tx, id, relink)
    }

    /// Writes an updated legacy document and keeps its ticket's `admits_to` link in step.
    fn write_legacy(
        &self,
        tx: &mut Tx<'_>,
        id: DocId,
        fields: Fields,
        relink: Option<DocId>,
    ) -> Result<(), TxError> {
        tx.replace(id, fields)?;
        self.relink(tx, id, relink)
    }

    /// Moves the ticket `id`'s `admits_to` link to `event`, if it moves.
    fn relink(&self, tx: &mut Tx<'_>, id: DocId, event: Option<DocId>) -> Result<(), TxError> {
        if let Some(event) = event {
            self.unlink_from(tx, id, "admits_to")?;
            self.link(tx, id, event, "admits_to")?;
        }
        Ok(())
    }

    /// The values `changes` give the legacy document's fields (references as this world's
    /// ids), and the event its ticket moves to, if any.
    fn legacy_args(
        &self,
        changes: &[Change],
    ) -> (Vec<(&'static str, Option<Value>)>, Option<DocId>) {
        let mut relink = None;
        let args = changes
            .iter()
            .map(|c| {
                let value = c.value.as_ref().map(|a| self.legacy_arg(a));
                if c.field == "eventId"
                    && let Some(Value::String(s)) = &value
                    && let Some(event) = self.parse_id(s)
                {
                    relink = Some(event);
                }
                (c.field, value)
            })
            .collect();
        (args, relink)
    }

    /// The legacy document `id` with `changes` applied (not written), and the event its
    /// ticket moves to, if any.
    fn updated_legacy(
        &self,
        tx: &mut Tx<'_>,
        id: DocId,
        changes: &[Change],
    ) -> Result<(Fields, Option<DocId>), TxError> {
        let Some(doc) = tx.get(id)? else {
            return Err(TxError::NotFound(self.id_string(id).into()));
        };
        let (args, relink) = self.legacy_args(changes);
        Ok((updated_fields(&doc.fields, &args, self.now_ms()), relink))
    }

    /// Applies changes to a typed row directly (the `typed_only` write); `values` are the
    /// changes' values as the row holds them (`typed_value`).
    fn update_typed(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        row: &Doc,
        changes: &[Change],
        values: Vec<Option<Value>>,
    ) -> Result<(), TxError> {
        let mut fields = row.fields.clone();
        for (c, value) in changes.iter().zip(values) {
            if crate::schema::is_typed_field(kind, c.field) {
                match value {
                    Some(v) => fields.insert(c.field.into(), v),
                    None => fields.remove(c.field),
                };
            } else {
                let mut meta = match fields.remove("metadata") {
                    Some(Value::Object(m)) => m,
                    _ => Fields::new(),
                };
                match value {
                    Some(v) => meta.insert(c.field.into(), v),
                    None => meta.remove(c.field),
                };
                if !meta.is_empty() {
                    fields.insert("metadata".into(), Value::Object(meta));
                }
            }
        }
        fields.insert("updatedAt".into(), Value::Float64(self.now_ms()));
        tx.replace(row.id, fields)
    }

    /// The kind a reference field of `kind` points at, if it is a reference to a migrating
    /// kind.
    fn reference_target(&self, kind: Kind, field: &str) -> Option<Kind> {
        crate::domain::reference_fields(kind)
            .iter()
            .find(|(n, _)| *n == field)
            .and_then(|(_, t)| *t)
    }

    /// The value a change writes to a typed row: a reference is remapped to the typed id of
    /// its target. `Err` holds a referenced id that has no typed row.
    fn typed_value(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        c: &Change,
    ) -> Result<Result<Option<Value>, String>, TxError> {
        Ok(Ok(match &c.value {
            None => None,
            Some(Arg::Plain(v)) => Some(v.clone()),
            Some(Arg::Ref(k)) => {
                let s = self.ref_string(*k);
                match (self.reference_target(kind, c.field), s.as_str()) {
                    (Some(t), Some(id)) => match self.remap(tx, t, id)? {
                        Some(typed) => Some(Value::String(typed)),
                        None => return Ok(Err(id.to_string())),
                    },
                    _ => Some(s),
                }
            }
        }))
    }

    /// The typed row and the legacy id of an entity, as the client's handle leads to them.
    pub fn locate(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        key: Key,
    ) -> Result<(Option<DocId>, Option<Arc<Doc>>), TxError> {
        let Some(handle) = self.handle(key) else {
            return Ok((None, None));
        };
        if handle.table == self.t.objects {
            let typed = if self.migrating {
                self.typed_of_legacy(tx, kind, handle)?
            } else {
                None
            };
            Ok((Some(handle), typed))
        } else {
            // An entity created typed-only gets a legacy document when a rollback copies it
            // back to objects; its row then carries the legacy id.
            let row = tx.get(handle)?;
            Ok((row.as_ref().and_then(|r| self.legacy_of(r)), row))
        }
    }

    /// The typed id that typed rows referencing entity `key` hold: its typed row's id, or,
    /// if it has none now (quarantined since), the one it had (`migrationIdMap`).
    pub fn typed_id_of(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        key: Key,
    ) -> Result<Option<Value>, TxError> {
        let (legacy, typed) = self.locate(tx, kind, key)?;
        if let Some(t) = typed {
            return Ok(Some(Value::String(self.id_string(t.id))));
        }
        let Some(l) = legacy else { return Ok(None) };
        Ok(tx
            .first_by(self.t.id_map_by_legacy, &self.id_prefix(l))?
            .and_then(|m| m.get("typedId").cloned()))
    }

    /// Updates an entity of a migrating kind, as its phase and the write path's strategy
    /// say.
    pub fn update(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        key: Key,
        changes: &[Change],
    ) -> Result<(), TxError> {
        let (legacy, typed) = self.locate(tx, kind, key)?;
        if self.migrating && self.phase(kind) == Phase::TypedOnly {
            if self.bugs.typed_only_writes_legacy
                && let Some(l) = legacy
                && typed.is_some()
            {
                return self.update_legacy(tx, l, changes);
            }
            // A quarantined document lives in objects (it may keep the typed row it had).
            if let Some(row) = typed
                && !self.quarantined(tx, legacy)?
            {
                let mut values = Vec::with_capacity(changes.len());
                let mut unresolved = None;
                for c in changes {
                    match self.typed_value(tx, kind, c)? {
                        Ok(value) => values.push(value),
                        Err(id) => {
                            unresolved.get_or_insert((c.field, id));
                        }
                    }
                }
                let Some((field, id)) = unresolved else {
                    return self.update_typed(tx, kind, &row, changes, values);
                };
                if self.bugs.typed_only_rejects_unresolved_references {
                    return Err(TxError::Threw(format!(
                        "{field}: {id} has no {} row",
                        self.reference_target(kind, field)
                            .map_or("typed", |t| t.table())
                    )));
                }
                // The change references an entity that has no typed row (it is quarantined,
                // so it lives in objects): the row cannot hold the reference, and the app
                // without the migration accepts the write. The entity moves back to objects,
                // quarantined like a document created typed-only that cannot be typed, and
                // is read from there; the quarantine retry brings it back once the target
                // has a row (regression test `seed_plan_moves_a_ticket_to_an_event_
                // quarantined_after_tickets_went_typed_only`).
                let Some((l, _)) = self.copy_back(tx, kind, &row)? else {
                    return Err(TxError::NotFound(format!("{kind} #{key}")));
                };
                self.update_legacy(tx, l, changes)?;
                return self.sync(tx, kind, l).map(drop);
            }
        }
        let Some(legacy) = self.legacy_writable(tx, kind, legacy)? else {
            return Err(TxError::NotFound(format!("{kind} #{key}")));
        };
        match self.half.get() {
            // The typed half of a typed-first double write: the typed row is written from the
            // document as the update will leave it; the legacy write waits for the next step.
            Half::TypedFirst => {
                let (fields, relink) = self.updated_legacy(tx, legacy, changes)?;
                if self.typed_writes(kind) {
                    let doc = Arc::new(Doc {
                        id: legacy,
                        creation_time: 0,
                        fields: fields.clone(),
                        size: 0,
                        memo: Default::default(),
                    });
                    let typed = self.typed_of_legacy(tx, kind, legacy)?;
                    let quarantined = self.quarantine_entry(tx, legacy)?;
                    self.write_typed(
                        tx,
                        kind,
                        &doc,
                        typed,
                        quarantined,
                        BackfillConflict::Overwrite,
                    )?;
                }
                self.stash.borrow_mut().push(Stashed {
                    kind,
                    legacy,
                    fields,
                    relink,
                });
                Ok(())
            }
            // The legacy half: the document as the typed half computed it.
            Half::LegacyAfter => {
                let stashed = {
                    let mut stash = self.stash.borrow_mut();
                    let i = stash.iter().position(|s| s.legacy == legacy);
                    i.map(|i| stash.remove(i))
                };
                // No stash: the typed half wrote nothing (a duplicate the handler ignored),
                // and neither does this half.
                match stashed {
                    Some(s) => self.write_legacy(tx, legacy, s.fields, s.relink),
                    None => Ok(()),
                }
            }
            Half::Whole => {
                self.update_legacy(tx, legacy, changes)?;
                self.mirror(tx, kind, legacy, true)
            }
        }
    }

    /// Which half of a typed-first double write the mutation running now does.
    pub fn half(&self) -> Half {
        self.half.get()
    }

    /// Which half of a typed-first double write the mutations that run next do.
    pub fn set_half(&self, half: Half) {
        self.half.set(half);
    }

    /// Takes the legacy writes a typed-first typed half computed (for the action to hand
    /// back to its next step with `put_stash`).
    pub fn take_stash(&self) -> Vec<Stashed> {
        std::mem::take(&mut *self.stash.borrow_mut())
    }

    pub fn put_stash(&self, stash: Vec<Stashed>) {
        *self.stash.borrow_mut() = stash;
    }

    /// Makes `now_ms` return `ms` (an action that computes a write's time once, in its
    /// first half), or the clock's time again (`None`).
    pub fn set_now_ms(&self, ms: Option<f64>) {
        self.now_override.set(ms);
    }

    /// Whether the legacy document `legacy` (if any) is quarantined.
    fn quarantined(&self, tx: &mut Tx<'_>, legacy: Option<DocId>) -> Result<bool, TxError> {
        match legacy {
            Some(l) => Ok(self.quarantine_entry(tx, l)?.is_some()),
            None => Ok(false),
        }
    }

    /// The legacy document a write may touch. Once a kind is `typed_only`, `objects` holds
    /// only retired copies, except quarantined documents, which still live there: writing a
    /// retired copy would resurrect what the typed side deleted (regression test
    /// `typed_only_delete_then_in_flight_webhook_does_not_resurrect_the_transaction`).
    fn legacy_writable(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        legacy: Option<DocId>,
    ) -> Result<Option<DocId>, TxError> {
        let Some(l) = legacy else { return Ok(None) };
        if !self.migrating || self.phase(kind) != Phase::TypedOnly {
            return Ok(Some(l));
        }
        Ok(self.quarantine_entry(tx, l)?.map(|_| l))
    }

    /// Hard-deletes an entity of a migrating kind; links and references to it stay behind.
    pub fn delete(&self, tx: &mut Tx<'_>, kind: Kind, key: Key) -> Result<(), TxError> {
        let (legacy, typed) = self.locate(tx, kind, key)?;
        if self.migrating
            && self.phase(kind) == Phase::TypedOnly
            && let Some(row) = typed
            && !self.quarantined(tx, legacy)?
        {
            return tx.delete(row.id);
        }
        let Some(legacy) = self.legacy_writable(tx, kind, legacy)? else {
            return Err(TxError::NotFound(format!("{kind} #{key}")));
        };
        tx.delete(legacy)?;
        if self.plan.strategy_for(kind).delete_mirroring == DeleteMirroring::Both {
            self.mirror(tx, kind, legacy, false)?;
        }
        Ok(())
    }

    pub fn now_ms(&self) -> f64 {
        self.now_override
            .get()
            .unwrap_or(1_767_225_600_000.0 + (self.now / TICKS_PER_STEP) as f64 * 1_000.0)
    }

    // ----- Reads --------------------------------------------------------------------------

    /// The view a reader sees of a document: the typed shape, references as `#key`,
    /// `legacyId` dropped, and `_key`.
    ///
    /// Views are memoized per document version (a stored version is an immutable `Arc`).
    pub fn view(&self, kind: Kind, doc: &Arc<Doc>) -> View {
        if let Some((cached, view)) = self.views.borrow().get(&doc.id)
            && Arc::ptr_eq(cached, doc)
        {
            return view.clone();
        }
        let slot = crate::domain::view_slot(doc);
        let view = match slot.get() {
            Some(shared) if self.agrees_with(shared, kind) => shared.view.clone(),
            _ => {
                let mut keys = SmallVec::new();
                let (view, complete) = self.view_uncached(kind, doc, &mut keys);
                let view = View::new(view);
                if !complete {
                    return view;
                }
                // The first world to compute a version's view keeps it there; another world
                // that knows other keys computes its own each time its memo misses.
                if slot.get().is_none() {
                    let _ = slot.set(Box::new(SharedView {
                        kind,
                        names: self.names.clone(),
                        keys,
                        view: view.clone(),
                    }));
                }
                view
            }
        };
        let mut views = self.views.borrow_mut();
        // A bounded memo: dropping it all when full is deterministic and keeps memory flat on
        // large tables (it holds the document versions it was computed from).
        if views.len() >= VIEWS_MAX {
            match Arc::get_mut(&mut views) {
                Some(mine) => mine.clear(),
                None => *views = Arc::default(),
            }
        }
        Arc::make_mut(&mut views).insert(doc.id, (doc.clone(), view.clone()));
        view
    }

    /// Whether this world computes `shared`'s view of its version as `kind`: it parses ids
    /// with the same table names and knows the same key (or none) for every id the view
    /// looked up. A view depends on nothing else but the version.
    fn agrees_with(&self, shared: &SharedView, kind: Kind) -> bool {
        shared.kind == kind
            && (Arc::ptr_eq(&shared.names, &self.names) || shared.names == self.names)
            && shared.keys.iter().all(|&(id, key)| self.key_of(id) == key)
    }

    /// The view, and whether every reference and the key resolved (only then can it be
    /// memoized: keys are learned over time but never change). `keys` gets every id whose
    /// key it looked up, with the key found.
    fn view_uncached(
        &self,
        kind: Kind,
        doc: &Doc,
        keys: &mut SmallVec<[(DocId, Option<Key>); 4]>,
    ) -> (Value, bool) {
        let mut key_of = |id: DocId| {
            let key = self.key_of(id);
            keys.push((id, key));
            key
        };
        // `_key` goes in with the copy (it is not a reference, so the walk below leaves it
        // alone).
        let key_value = |key: Option<Key>| key.map_or(Value::Null, |k| Value::Int64(i64::from(k)));
        let (mut fields, key) = if doc.id.table == self.t.objects {
            let key = key_of(doc.id);
            // The strict derivation is the lenient one where it succeeds, and the write path
            // and the diff will want it for the same version: the view derives strictly
            // first, and leniently only a document that cannot map.
            let derivation = match derived(kind, doc, true) {
                Ok(f) => Ok(f),
                Err(_) => derived(kind, doc, false).as_ref(),
            };
            let f = match derivation {
                Ok(f) => f.clone_inserting("_key".into(), key_value(key)),
                Err(_) => Fields::from([("_key".into(), key_value(key))]),
            };
            (f, key)
        } else {
            let legacy = doc
                .fields
                .get("legacyId")
                .and_then(|v| v.as_str().and_then(|s| self.parse_id(s)));
            let key = legacy.and_then(&mut key_of).or_else(|| key_of(doc.id));
            let mut f = doc.fields.clone_inserting("_key".into(), key_value(key));
            f.remove("legacyId");
            (f, key)
        };
        let mut complete = key.is_some();
        let _ = for_each_reference(kind, &mut fields, |_, _, v| {
            if let Some(id) = v.as_str().and_then(|s| self.parse_id(s)) {
                match key_of(id) {
                    Some(k) => {
                        let mut key = Str::from("#");
                        key.push_str(itoa::Buffer::new().format(k));
                        *v = Value::String(key);
                    }
                    None => complete = false,
                }
            }
            Ok::<(), ()>(())
        });
        (Value::Object(fields), complete)
    }

    /// Whether reads of `kind` use the typed table now.
    fn reads_typed(&self, kind: Kind) -> bool {
        if !self.migrating {
            return false;
        }
        let phase = self.phase(kind);
        match self.route.get() {
            Route::Legacy => false,
            Route::Typed => phase.reads_typed(),
            Route::Phase => {
                phase.reads_typed()
                    && !(phase == Phase::ReadTyped
                        && self.plan.strategy_for(kind).read_mode == ReadMode::Shadow)
            }
        }
    }

    /// Whether a typed read of `kind` falls back to `objects` for a document that has no
    /// typed row (`read_mode = "typed_with_fallback"`, while `objects` is still written).
    fn falls_back(&self, kind: Kind) -> bool {
        self.plan.strategy_for(kind).read_mode == ReadMode::TypedWithFallback
            && self.phase(kind) == Phase::ReadTyped
    }

    /// Routes the reads that run next (`Route::Phase` again once done).
    pub fn set_route(&self, route: Route) {
        self.route.set(route);
    }

    /// Reads one entity by the client's handle through the kind's read path.
    pub fn read_one(&self, tx: &mut Tx<'_>, kind: Kind, key: Key) -> Result<Option<View>, TxError> {
        let reads_typed = self.reads_typed(kind);
        let (legacy, typed) = self.locate(tx, kind, key)?;
        if !reads_typed {
            let Some(legacy) = legacy else {
                return Ok(None);
            };
            return Ok(tx
                .get(legacy)?
                .filter(|d| kind_of_doc(d) == Some(kind))
                .map(|d| self.view(kind, &d)));
        }
        // A quarantined document is read from objects (or hidden), even if it keeps the
        // typed row it had.
        if let Some(l) = legacy
            && self.quarantine_entry(tx, l)?.is_some()
        {
            return Ok(match self.plan.quarantine_reads {
                QuarantineReads::ServeFromLegacy => tx.get(l)?.map(|d| self.view(kind, &d)),
                QuarantineReads::Hide => None,
            });
        }
        if let Some(row) = typed {
            return Ok(Some(self.view(kind, &row)));
        }
        match legacy {
            Some(l) if self.falls_back(kind) => Ok(tx
                .get(l)?
                .filter(|d| kind_of_doc(d) == Some(kind))
                .map(|d| self.view(kind, &d))),
            _ => Ok(None),
        }
    }

    /// The quarantined documents of `kind` (of organization `org`, if given).
    fn quarantined_ids(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        org: Option<&Value>,
    ) -> Result<BTreeSet<DocId>, TxError> {
        let entries = match org {
            Some(org) => tx.range(
                self.t.quarantine_by_kind_org,
                &[Value::from(kind.table()), org.clone()],
            )?,
            None => tx.range(self.t.quarantine_by_kind, &[Value::from(kind.table())])?,
        };
        Ok(entries.iter().filter_map(|q| self.legacy_of(q)).collect())
    }

    /// A list read: `legacy` gathers the legacy documents, `typed` the typed rows; once
    /// reads are typed, quarantined legacy documents are merged in (if the plan serves
    /// them; `org` narrows the check for quarantined documents to one organization's). The
    /// result is sorted by key, as readers compare lists as sets.
    pub fn read_list(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        org: Option<&Value>,
        legacy: &mut Gather<'_>,
        typed: &mut Gather<'_>,
    ) -> Result<Vec<View>, TxError> {
        let mut views: Vec<View>;
        if self.reads_typed(kind) {
            let rows = typed(self, tx)?;
            views = Vec::with_capacity(rows.len());
            let fallback = self.falls_back(kind);
            // Quarantined documents are read from objects (or hidden), even those that keep
            // the typed row they had; with a fallback, so is every document without a row.
            let quarantined = self.quarantined_ids(tx, kind, org)?;
            if fallback || !quarantined.is_empty() {
                for d in legacy(self, tx)? {
                    if kind_of_doc(&d) != Some(kind) {
                        continue;
                    }
                    if quarantined.contains(&d.id) {
                        if self.plan.quarantine_reads == QuarantineReads::ServeFromLegacy {
                            views.push(self.view(kind, &d));
                        }
                    } else if fallback && self.typed_of_legacy(tx, kind, d.id)?.is_none() {
                        views.push(self.view(kind, &d));
                    }
                }
            }
            // A typed row kept by a quarantined document is stale: it may even match a query
            // its document no longer does.
            let skip = usize::from(self.bugs.typed_list_drops_first);
            for d in rows.iter().skip(skip) {
                let stale = !quarantined.is_empty()
                    && self.legacy_of(d).is_some_and(|l| quarantined.contains(&l));
                if !stale {
                    views.push(self.view(kind, d));
                }
            }
        } else {
            let docs = legacy(self, tx)?;
            views = Vec::with_capacity(docs.len());
            for d in docs {
                if kind_of_doc(&d) == Some(kind) {
                    views.push(self.view(kind, &d));
                }
            }
        }
        views.sort_by_cached_key(|v| view_key(v).cloned());
        Ok(views)
    }

    // ----- Backfill -----------------------------------------------------------------------

    /// The kind's persisted backfill progress, read in the caller's transaction (for a
    /// team's own backfill, `extension::BackfillExt`).
    pub fn backfill_progress(&self, tx: &mut Tx<'_>, kind: Kind) -> Result<Progress, TxError> {
        Ok(parse_progress(&self.progress_doc(tx, kind)?.fields))
    }

    /// Persists the kind's backfill progress in the caller's transaction. The phase
    /// controller's `backfill_done` guard reads `done`.
    pub fn save_backfill_progress(
        &self,
        tx: &mut Tx<'_>,
        kind: Kind,
        progress: &Progress,
    ) -> Result<(), TxError> {
        let pdoc = self.progress_doc(tx, kind)?;
        tx.replace(pdoc.id, progress_fields(kind, progress))
    }

    /// Encodes an index key as a progress cursor (`Progress::cursor`).
    pub fn cursor_value(&self, key: &IndexKey) -> Value {
        self.encode_cursor(key)
    }

    /// Decodes a progress cursor back into an index key.
    pub fn cursor_key(&self, cursor: &Value) -> Option<IndexKey> {
        self.decode_cursor(cursor)
    }

    fn progress_doc(&self, tx: &mut Tx<'_>, kind: Kind) -> Result<Arc<Doc>, TxError> {
        tx.first(self.t.progress_by_kind, &[Value::from(kind.table())])?
            .ok_or_else(|| TxError::Threw(format!("no migrationProgress row for {kind}")))
    }

    fn encode_cursor(&self, c: &IndexKey) -> Value {
        let mut parts: Vec<Value> = c
            .values()
            .into_iter()
            .map(|v| v.unwrap_or(Value::Null))
            .collect();
        parts.push(Value::Int64(c.creation_time as i64));
        parts.push(Value::String(self.id_string(c.id)));
        Value::Array(parts)
    }

    fn decode_cursor(&self, v: &Value) -> Option<IndexKey> {
        let parts = v.as_array()?;
        let (id, rest) = parts.split_last()?;
        let (ts, values) = rest.split_last()?;
        let Value::Int64(ts) = ts else { return None };
        Some(IndexKey::new(
            values.iter().map(Some),
            *ts as u64,
            self.parse_id(id.as_str()?)?,
        ))
    }
}

/// The sort key of a view in a list: its `_key`.
fn view_key(v: &Value) -> Option<&Value> {
    v.as_object().and_then(|f| f.get("_key"))
}

/// The legacy fields `back` (a typed row reversed), keeping the `customProperties` fields of
/// the document `old` that the typed shape drops (a v1 transaction's `ticketId`): neither
/// typed fields nor `metadata` in its mapping.
fn keep_dropped_fields(kind: Kind, old: &Fields, mut back: Fields) -> Fields {
    let Ok(view) = derive(kind, old, false) else {
        return back;
    };
    let meta = view.get("metadata").and_then(Value::as_object);
    if let (Some(Value::Object(old_cp)), Some(Value::Object(new_cp))) = (
        old.get("customProperties"),
        back.get_mut("customProperties"),
    ) {
        for (k, v) in old_cp {
            let carried = view.contains_key(k) || meta.is_some_and(|m| m.contains_key(k));
            if !carried && !new_cp.contains_key(k) {
                new_cp.insert(k.clone(), v.clone());
            }
        }
    }
    back
}

/// A row's `updatedAt`, for the `newer_wins` conflict policy.
fn updated_at(f: &Fields) -> f64 {
    f.get("updatedAt")
        .and_then(Value::as_f64)
        .unwrap_or(f64::MIN)
}

fn link_fields(from: &str, to: &str, link_type: &str) -> Fields {
    let mut f = Fields::new();
    f.insert("fromObjectId".into(), Value::from(from));
    f.insert("toObjectId".into(), Value::from(to));
    f.insert("linkType".into(), Value::from(link_type));
    f
}

fn progress_fields(kind: Kind, p: &Progress) -> Fields {
    let mut f = Fields::new();
    f.insert("kind".into(), Value::from(kind.table()));
    if let Some(c) = &p.cursor {
        f.insert("cursor".into(), c.clone());
    }
    f.insert("processed".into(), Value::Float64(p.processed));
    f.insert("migrated".into(), Value::Float64(p.migrated));
    f.insert("quarantined".into(), Value::Float64(p.quarantined));
    f.insert("skipped".into(), Value::Float64(p.skipped));
    f.insert("batches".into(), Value::Float64(p.batches));
    f.insert("done".into(), Value::Bool(p.done));
    f
}

fn parse_progress(f: &Fields) -> Progress {
    let n = |k: &str| f.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    Progress {
        cursor: f.get("cursor").cloned(),
        processed: n("processed"),
        migrated: n("migrated"),
        quarantined: n("quarantined"),
        skipped: n("skipped"),
        batches: n("batches"),
        done: matches!(f.get("done"), Some(Value::Bool(true))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        let data = crate::data::generate(
            7,
            &crate::data::GenOptions {
                documents: 12,
                dirty_percent: 0,
            },
        );
        World::new(
            Arc::new(crate::plan::Plan::seed()),
            &data,
            true,
            PlantedBugs::default(),
        )
    }

    fn state_hash(w: &World) -> u64 {
        use std::hash::Hasher;
        let mut h = crate::store::state_hasher();
        w.hash_state(&mut h);
        h.finish()
    }

    /// The oracle takes its own key map when it is built, so that neither world copies the
    /// other's at its first new key, inside a step.
    #[test]
    fn an_oracle_owns_its_key_map() {
        let migrated = world();
        let oracle = migrated.without_migration();
        assert_eq!(Arc::strong_count(&migrated.ctx.id_keys), 1);
        assert_eq!(Arc::strong_count(&oracle.ctx.id_keys), 1);
        assert_eq!(migrated.ctx.id_keys, oracle.ctx.id_keys);
        assert!(!migrated.ctx.id_keys.is_empty());
    }

    /// The running sum of the handles in the state hash is the sum of the handles there
    /// are: a handle given again replaces the one before it.
    #[test]
    fn a_replaced_handle_leaves_the_state_hash() {
        let base = world();
        let (a, b) = (base.handle(0).unwrap(), base.handle(1).unwrap());
        let mut replaced = base.clone();
        replaced.ctx.register(0, b);
        replaced.ctx.register(0, a);
        assert_eq!(state_hash(&replaced), state_hash(&base));
        let mut other = base.clone();
        other.ctx.register(0, b);
        assert_ne!(state_hash(&other), state_hash(&base));
        let mut longer = base.clone();
        longer.ctx.register(base.ctx.handles.len() as Key, a);
        assert_ne!(state_hash(&longer), state_hash(&base));
    }

    /// A fork shares its original's memoized views until it memoizes one of its own, which
    /// the original does not see.
    #[test]
    fn a_fork_shares_the_view_memo_until_it_adds_to_it() {
        let w = world();
        let doc = |w: &World, key: Key| w.store.peek(w.handle(key).unwrap()).unwrap().clone();
        let kind = |d: &Arc<Doc>| kind_of_doc(d).unwrap_or(Kind::Events);
        let first = doc(&w, 0);
        w.view(kind(&first), &first);
        assert_eq!(w.views.borrow().len(), 1);
        let fork = w.clone();
        assert!(Arc::ptr_eq(&w.views.borrow(), &fork.views.borrow()));
        let second = doc(&fork, 1);
        fork.view(kind(&second), &second);
        assert_eq!(fork.views.borrow().len(), 2);
        assert_eq!(w.views.borrow().len(), 1);
    }

    /// A copy of a world starts without the mappings its original computed in its last
    /// step (they are only used within a step, after `absorb` empties them).
    #[test]
    fn a_fork_does_not_copy_the_steps_mappings() {
        let mut w = world();
        let doc = w.store.peek(w.handle(0).unwrap()).unwrap().clone();
        let kind = kind_of_doc(&doc).unwrap_or(Kind::Events);
        w.map_doc_now(kind, &doc);
        assert_eq!(w.ctx.mapped.len(), 1);
        assert!(w.clone().ctx.mapped.is_empty());
    }

    /// A version's view is kept in the version's memo and taken by every world that knows
    /// the same keys for the ids it looked up (the oracle reads the versions it shares with
    /// the migrated world), so both worlds answer with one value. A world that knows another
    /// key for a referenced document computes its own view, which shows that key.
    #[test]
    fn a_kept_view_is_taken_only_by_a_world_that_knows_its_keys() {
        let migrated = world();
        let oracle = migrated.without_migration();
        let mut other = migrated.without_migration();
        // A document whose view holds a reference (`#key`), and the key it holds.
        let (doc, kind, key) = (0..12)
            .filter_map(|k| migrated.store.peek(migrated.handle(k)?).cloned())
            .find_map(|doc| {
                let kind = kind_of_doc(&doc)?;
                let view = migrated.view(kind, &doc);
                let key = view
                    .as_object()?
                    .iter()
                    .find_map(|(_, v)| v.as_str()?.strip_prefix('#')?.parse::<Key>().ok())?;
                Some((doc, kind, key))
            })
            .expect("a generated document references another");
        let mine = migrated.view(kind, &doc);
        let oracles = oracle.view(kind, &doc);
        assert!(
            Arc::ptr_eq(&mine.0, &oracles.0),
            "the oracle takes the kept view"
        );
        // Another world knows the referenced document under another key.
        let referenced = migrated.handle(key).unwrap();
        other.ctx.register(9_999, referenced);
        let others = other.view(kind, &doc);
        assert!(!Arc::ptr_eq(&mine.0, &others.0));
        assert_ne!(mine, others);
        let (fresh, complete) = other.view_uncached(kind, &doc, &mut SmallVec::new());
        assert!(complete);
        assert_eq!(*others, fresh);
        assert!(fresh.to_string().contains("#9999"), "{fresh}");
    }

    /// A view of a legacy document is its lenient derivation: the strict one where that
    /// succeeds (the two are then equal, and the write path will want the strict one), and
    /// the lenient one of a document that cannot map, which still shows its fields.
    #[test]
    fn a_view_shows_a_document_that_cannot_map() {
        let data = crate::data::generate(
            3,
            &crate::data::GenOptions {
                documents: 60,
                dirty_percent: 50,
            },
        );
        let w = World::new(
            Arc::new(crate::plan::Plan::seed()),
            &data,
            true,
            PlantedBugs::default(),
        );
        let (mut dirty, mut clean) = (0, 0);
        for key in 0..60 {
            let Some(doc) = w.handle(key).and_then(|id| w.store.peek(id)).cloned() else {
                continue;
            };
            let Some(kind) = kind_of_doc(&doc) else {
                continue;
            };
            let lenient = derive(kind, &doc.fields, false).expect("a lenient derivation");
            let view = w.view(kind, &doc);
            let names: Vec<&str> = view
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            let expected: Vec<&str> = lenient
                .keys()
                .map(|k| k.as_str())
                .chain(["_key"])
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(names, expected, "{}", w.id_string(doc.id));
            match derive(kind, &doc.fields, true) {
                Ok(_) => clean += 1,
                Err(_) => dirty += 1,
            }
        }
        assert!(dirty > 3 && clean > 3, "{dirty} {clean}");
    }

    /// Two views found equal once are equal again without a walk, and a view is never taken
    /// for the one it was found equal to after that one is dropped: the weak reference keeps
    /// its address from being reused by another view.
    #[test]
    fn a_view_found_equal_stays_equal_to_that_view_only() {
        let value = |s: &str| crate::value::object([("a", Value::from(s))]);
        let a = View::new(value("x"));
        let b = View::new(value("x"));
        assert_eq!(a, b);
        assert!(a.known_equal(&b));
        assert_eq!(a, b);
        drop(b);
        // Views of another value, allocated where `b` was if its address were free.
        for i in 0..64 {
            let c = View::new(value(&format!("y{i}")));
            assert!(!a.known_equal(&c));
            assert_ne!(a, c);
        }
    }

    proptest::proptest! {
        /// `Ctx::parse_id` is `validator::parse_id` followed by a search of the table names,
        /// for ids of every table, names that one table's name begins, and malformed
        /// sequence numbers.
        #[test]
        fn an_id_parses_as_the_validator_splits_it(
            name in proptest::sample::select(vec![
                "organizations", "objects", "objectLinks", "events", "transactions", "tickets",
                "webhookEvents", "migrationProgress", "migrationIdMap", "migrationQuarantine",
                "object", "objectsLinks", "ticket", "migration", "", "Objects",
            ]),
            colon in proptest::sample::select(vec![":", "", "::", ";", ":0", ":+"]),
            seq in "[0-9a]{0,12}",
        ) {
            let w = world();
            let s = format!("{name}{colon}{seq}");
            let expected = crate::validator::parse_id(&s).and_then(|(table, seq)| {
                let table = w.ctx.names.iter().position(|n| *n == table)?;
                Some(DocId { table: table as u16, seq })
            });
            proptest::prop_assert_eq!(w.ctx.parse_id(&s), expected, "{}", s);
        }

        /// An id's lookup prefix is the encoding of its string, for every table: the lookups
        /// by legacy id find what a lookup by the string would.
        #[test]
        fn an_id_prefix_is_its_string_encoded(table in 0u16..10, seq in proptest::prop_oneof![
            0u32..20, proptest::strategy::Just(u32::MAX), proptest::num::u32::ANY,
        ]) {
            let w = world();
            let id = DocId { table, seq };
            proptest::prop_assert_eq!(
                w.ctx.id_prefix(id),
                Prefix::of(&[Value::String(w.ctx.id_string(id))])
            );
        }
    }

    /// A view hashes as its value does, so equal views hash equally whether or not they are
    /// shared.
    #[test]
    fn equal_views_hash_equally() {
        let hash = |v: &View| crate::store::hash_of(v);
        let value = crate::value::object([("a", Value::from("x"))]);
        let (a, b) = (View::new(value.clone()), View::new(value));
        let c = View::new(crate::value::object([("a", Value::from("y"))]));
        assert_eq!(a, b);
        assert_eq!(hash(&a), hash(&b));
        assert_ne!(a, c);
        assert_ne!(hash(&a), hash(&c));
    }
}
