//! The simulation: the workload's steps as plain data, the harness that applies each step to
//! the migrated world and to the oracle (the same app with no migration), and the invariants
//! checked after every step. `Sim::step` is the one function that changes the worlds.

use crate::anomaly::{Anomaly, Event, Explained, History, Touch};
use crate::data::{self, Dataset, GenOptions, TxShape};
use crate::domain::{for_each_reference_in, kind_of, kind_of_doc};
use crate::extension::Extensions;
use crate::plan::{
    BackfillCursor, DoubleWrite, InvalidDocuments, Phase, PhaseSource, Plan, ReadMode, ReadName,
    UpdateMirroring, WritePath,
};
use crate::schema::{Kind, PAYMENT_STATUSES, TICKET_STATUSES, typed_validator_of};
use crate::store::{Doc, DocId, HashedSet, TxError, Write};
use crate::value::{Fields, Value};
use crate::world::{
    Arg, BackfillOutcome, Change, Half, Key, PlantedBugs, Route, Stashed, Switch, TICKS_PER_STEP,
    View, World,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A choice among existing entities, taken modulo their number when the step runs, so that
/// removing earlier steps (shrinking) never makes a later step invalid.
pub type Sel = u16;

/// The lane an action runs in (think: the client or worker that runs it). Steps of actions
/// name their lane, not a position among the actions in flight, so that removing another
/// lane's action while shrinking never makes a step advance a different action.
pub type Lane = u8;

/// One read of domain.md §4, each with a legacy and a typed form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Read {
    TransactionById { txn: Sel },
    TransactionsOfOrg { org: Sel, status: Option<u8> },
    TransactionsOfSession { session: Sel },
    TotalsByOrg { org: Sel },
    TicketById { ticket: Sel },
    TicketsOfEvent { event: Sel },
    TicketsOfTransaction { txn: Sel },
    TicketsOfOrgByStatus { org: Sel, status: u8 },
    EventById { event: Sel },
    EventsOfOrg { org: Sel },
}

impl Read {
    pub fn name(&self) -> ReadName {
        match self {
            Read::TransactionById { .. } => ReadName::TransactionById,
            Read::TransactionsOfOrg { .. } => ReadName::TransactionsOfOrg,
            Read::TransactionsOfSession { .. } => ReadName::TransactionsOfSession,
            Read::TotalsByOrg { .. } => ReadName::TotalsByOrg,
            Read::TicketById { .. } => ReadName::TicketById,
            Read::TicketsOfEvent { .. } => ReadName::TicketsOfEvent,
            Read::TicketsOfTransaction { .. } => ReadName::TicketsOfTransaction,
            Read::TicketsOfOrgByStatus { .. } => ReadName::TicketsOfOrgByStatus,
            Read::EventById { .. } => ReadName::EventById,
            Read::EventsOfOrg { .. } => ReadName::EventsOfOrg,
        }
    }
}

/// A ticket lifecycle change.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketChange {
    Redeem,
    Cancel,
    Transfer { seed: u16 },
    Move { event: Sel },
}

/// One operation of the workload. App mutations are one atomic step; actions (checkout,
/// payment webhook, refund) start here and advance one transaction per `ActionStep`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Does nothing (what a shrunk step becomes).
    Noop,
    CreateEvent {
        org: Sel,
        seed: u16,
    },
    EditEvent {
        event: Sel,
        seed: u16,
    },
    /// The generic object update: replaces `customProperties` with one field changed.
    GenericUpdate {
        kind: Kind,
        target: Sel,
        seed: u16,
    },
    /// The generic hard delete; links and references stay behind.
    Delete {
        kind: Kind,
        target: Sel,
    },
    BookingPayment {
        org: Sel,
        seed: u16,
    },
    InvoiceTransition {
        txn: Sel,
    },
    Ticket {
        ticket: Sel,
        change: TicketChange,
    },
    /// An operator's data fix of a dirty legacy document (sets the broken field right).
    Repair {
        kind: Kind,
        target: Sel,
    },
    Checkout {
        lane: Lane,
        event: Sel,
        product: Sel,
        quantity: u8,
        v1: bool,
        seed: u16,
    },
    PaymentWebhook {
        lane: Lane,
        txn: Sel,
        status: u8,
    },
    /// Stripe delivers an earlier payment event again (a duplicate, possibly out of order).
    WebhookRedeliver {
        lane: Lane,
        delivery: Sel,
    },
    Refund {
        lane: Lane,
        txn: Sel,
        partial: bool,
    },
    /// Runs the next transaction of the oldest action in flight in the lane.
    ActionStep {
        lane: Lane,
    },
    /// Crashes the oldest action in flight in the lane; its earlier steps stay committed.
    ActionCrash {
        lane: Lane,
    },
    Backfill {
        kind: Kind,
        /// Which backfill runner (0; 1 is a second driver running at once, a fault).
        #[serde(default, skip_serializing_if = "is_zero")]
        runner: u8,
    },
    /// The backfill driver crashes and restarts from its persisted cursor.
    BackfillCrash {
        kind: Kind,
    },
    RetryQuarantine {
        kind: Kind,
    },
    Advance {
        kind: Kind,
    },
    Rollback {
        kind: Kind,
    },
    Read {
        read: Read,
    },
    /// One of the run's own write paths (`SimOptions::extensions`), on an entity of its
    /// kind.
    CustomWrite {
        index: u8,
        target: Sel,
        seed: u16,
    },
    /// One of the run's own reads, on an entity of its kind.
    CustomRead {
        index: u8,
        target: Sel,
    },
}

/// One step: an operation and how far its transaction's begin time lies behind the clock
/// (`_creationTime` skew, in milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub op: Op,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skew: u8,
    /// A fault injected into the step's transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

/// A fault injected into one step.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The step's transaction keeps conflicting and fails once its retries are exhausted,
    /// committing nothing (in both worlds for the app's own transactions, in the migrated
    /// world for the migration's).
    RetriesExhausted,
    /// The typed table's validator rejects the migration's typed writes in this step (its
    /// double writes and backfill rows; not the app's own writes in `typed_only`).
    TypedWriteRejected,
}

fn is_zero(x: &u8) -> bool {
    *x == 0
}

impl Op {
    /// Whether the operation runs a transaction (an injected retry exhaustion can fail it).
    fn is_transaction(&self) -> bool {
        !matches!(
            self,
            Op::Noop
                | Op::Advance { .. }
                | Op::Rollback { .. }
                | Op::ActionCrash { .. }
                | Op::BackfillCrash { .. }
                | Op::Checkout { .. }
                | Op::PaymentWebhook { .. }
                | Op::WebhookRedeliver { .. }
                | Op::Refund { .. }
        )
    }
}

/// The invariants checked after every step.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invariant {
    /// Every read returns what the oracle (no migration) returns.
    ReadEquivalence,
    /// A write the oracle acknowledges is acknowledged and visible in the migrated app, also
    /// across phase switches and rollbacks.
    AcknowledgedWriteKept,
    /// At most one typed row per legacy id.
    UniqueTypedRow,
    /// No typed row survives its deleted legacy document.
    NoOrphanTypedRow,
    /// A deleted entity never comes back.
    DeletedStaysDeleted,
    /// Once a kind's backfill is done, every legacy document has a typed row or is
    /// quarantined with its reason.
    Coverage,
    /// A typed row equals the mapping of its legacy document while both sides are written.
    FieldAgreement,
    /// Every reference in a typed row resolves exactly when the oracle's does.
    ReferentialIntegrity,
    /// Every typed row validates against its table.
    TypedRowValid,
}

impl Invariant {
    pub const ALL: [Invariant; 9] = [
        Invariant::ReadEquivalence,
        Invariant::AcknowledgedWriteKept,
        Invariant::UniqueTypedRow,
        Invariant::NoOrphanTypedRow,
        Invariant::DeletedStaysDeleted,
        Invariant::Coverage,
        Invariant::FieldAgreement,
        Invariant::ReferentialIntegrity,
        Invariant::TypedRowValid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Invariant::ReadEquivalence => "read_equivalence",
            Invariant::AcknowledgedWriteKept => "acknowledged_write_kept",
            Invariant::UniqueTypedRow => "unique_typed_row",
            Invariant::NoOrphanTypedRow => "no_orphan_typed_row",
            Invariant::DeletedStaysDeleted => "deleted_stays_deleted",
            Invariant::Coverage => "coverage",
            Invariant::FieldAgreement => "field_agreement",
            Invariant::ReferentialIntegrity => "referential_integrity",
            Invariant::TypedRowValid => "typed_row_valid",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A violated invariant: a value that is reported, never a panic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The step (0-based) after which the invariant was found broken.
    pub step: usize,
    pub invariant: Invariant,
    pub message: String,
    pub expected: Option<String>,
    pub seen: Option<String>,
    /// The migration anomaly and a sentence citing the steps involved; present when the run
    /// recorded its trace (as the replay of a counterexample does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explained: Option<Explained>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} broken at step {}: {}",
            self.invariant, self.step, self.message
        )?;
        if let Some(e) = &self.expected {
            write!(f, "\n  expected (oracle): {e}")?;
        }
        if let Some(s) = &self.seen {
            write!(f, "\n  seen (migrated):   {s}")?;
        }
        if let Some(x) = &self.explained {
            write!(f, "\n  anomaly {}: {}", x.anomaly, x.explanation)?;
        }
        Ok(())
    }
}

/// Options of a run besides the plan and the steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimOptions {
    pub data: GenOptions,
    /// The largest `_creationTime` skew a step may carry, in steps (larger ones are cut to
    /// it).
    pub skew_max_ms: u8,
    #[serde(skip)]
    pub bugs: PlantedBugs,
    /// The team's own write paths and reads (`extension`), run beside the built-in ones.
    #[serde(skip)]
    pub extensions: Extensions,
    /// Every case starts from this dataset instead of one generated from its seed.
    #[serde(skip)]
    pub dataset: Option<data::Fixed>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            data: GenOptions::default(),
            skew_max_ms: 30,
            bugs: PlantedBugs::default(),
            extensions: Extensions::default(),
            dataset: None,
        }
    }
}

/// What one step did, as printed in a trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceLine {
    pub step: usize,
    /// Who acted: `app`, `checkout#3`, `webhook#5`, `refund#2`, `backfill`, `controller`,
    /// `reader`.
    pub actor: String,
    /// What it did and what it read or wrote.
    pub action: String,
}

impl fmt::Display for TraceLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>4}  {:<12} {}", self.step, self.actor, self.action)
    }
}

/// The action programs, one transaction (or external call) per step.
#[derive(Clone, Debug, PartialEq, Hash)]
enum ActionKind {
    Checkout {
        event: Key,
        product: Key,
        session: Key,
        tickets: Vec<Key>,
        txn: Key,
        v1: bool,
        seed: u16,
    },
    Webhook {
        txn: Key,
        status: &'static str,
        /// The Stripe event id of the delivery (a redelivery repeats it).
        event: u32,
    },
    Refund {
        txn: Key,
        partial: bool,
    },
}

impl ActionKind {
    fn path(&self) -> WritePath {
        match self {
            ActionKind::Checkout { .. } => WritePath::Checkout,
            ActionKind::Webhook { .. } => WritePath::Webhook,
            ActionKind::Refund { .. } => WritePath::Refund,
        }
    }

    /// The action's program: one transaction (or external call) per stage. A stage that
    /// writes an entity of a kind whose double write (`placement(kind)`) is a separate
    /// mutation is followed by the mutation that writes its typed side, or, typed first, an
    /// update is preceded by it.
    fn program(&self, placement: impl Fn(Kind) -> DoubleWrite) -> Vec<Stage> {
        let base: Vec<Stage> = match self {
            ActionKind::Checkout { tickets, .. } => {
                let q = tickets.len();
                std::iter::once(Stage::CreateSession)
                    .chain((0..q).map(Stage::InsertTicket))
                    .chain([Stage::InsertTransaction, Stage::MarkPaid])
                    .chain((0..q).flat_map(|i| [Stage::ReadTicket(i), Stage::LinkTicket(i)]))
                    .collect()
            }
            ActionKind::Webhook { .. } => vec![Stage::Deliver, Stage::ApplyStatus],
            ActionKind::Refund { .. } => {
                vec![Stage::ReadForRefund, Stage::CallStripe, Stage::RecordRefund]
            }
        };
        let mut program = Vec::with_capacity(base.len() * 2);
        for st in base {
            match self.writes(st).map(|(kind, _)| placement(kind)) {
                Some(DoubleWrite::SeparateTypedFirst) if st.updates() => {
                    program.extend([Stage::TypedFirst, st]);
                }
                Some(DoubleWrite::SeparateMutation | DoubleWrite::SeparateTypedFirst) => {
                    program.extend([st, Stage::Mirror]);
                }
                _ => program.push(st),
            }
        }
        program
    }

    /// The entity a stage writes, if any (links aside).
    fn writes(&self, stage: Stage) -> Option<(Kind, Key)> {
        match (self, stage) {
            (
                ActionKind::Checkout { tickets, .. },
                Stage::InsertTicket(i) | Stage::LinkTicket(i),
            ) => Some((Kind::Tickets, tickets[i])),
            (ActionKind::Checkout { txn, .. }, Stage::InsertTransaction | Stage::MarkPaid)
            | (ActionKind::Webhook { txn, .. }, Stage::ApplyStatus)
            | (ActionKind::Refund { txn, .. }, Stage::RecordRefund) => {
                Some((Kind::Transactions, *txn))
            }
            _ => None,
        }
    }
}

/// One transaction (or external call) of an action's program.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Stage {
    CreateSession,
    InsertTicket(usize),
    InsertTransaction,
    MarkPaid,
    ReadTicket(usize),
    LinkTicket(usize),
    /// Stripe's delivery reaches the HTTP action.
    Deliver,
    ApplyStatus,
    ReadForRefund,
    CallStripe,
    RecordRefund,
    /// The typed half of the previous stage's double write, as its own mutation.
    Mirror,
    /// The typed half of the next stage's update, written before it (typed first).
    TypedFirst,
}

impl Stage {
    fn writes_entity(self) -> bool {
        matches!(
            self,
            Stage::InsertTicket(_)
                | Stage::InsertTransaction
                | Stage::MarkPaid
                | Stage::LinkTicket(_)
                | Stage::ApplyStatus
                | Stage::RecordRefund
                | Stage::TypedFirst
        )
    }

    /// Whether the stage updates an existing entity (rather than creating one).
    fn updates(self) -> bool {
        matches!(
            self,
            Stage::MarkPaid | Stage::LinkTicket(_) | Stage::ApplyStatus | Stage::RecordRefund
        )
    }
}

/// An action in flight: its program, its program counter, and per world whether it has
/// failed and what it read.
#[derive(Clone, Debug)]
struct InFlight {
    number: usize,
    lane: Lane,
    kind: ActionKind,
    program: Vec<Stage>,
    pc: usize,
    failed: [bool; 2],
    /// The migrated world's legacy writes of the previous stage whose typed write is the
    /// next (`Stage::Mirror`) stage.
    deferred: Vec<(Kind, DocId)>,
    /// The migrated world's phases when the action started (used by its steps if the plan
    /// captures them then).
    phases: [Phase; 3],
    /// The legacy writes a typed-first stage computed, for the next stage to write.
    stash: Vec<Stashed>,
    /// The time a typed-first write was computed at: both its halves (and the oracle's
    /// write) use it.
    write_now: Option<f64>,
    /// What an earlier step read: the reader's view and, for the planted stale-copy bug, the
    /// raw document.
    captured: [Option<(View, Option<Arc<Doc>>)>; 2],
}

impl InFlight {
    fn len(&self) -> usize {
        self.program.len()
    }

    /// The entity that stage `pc` writes (a mirror stage writes its previous stage's).
    fn writes(&self, pc: usize) -> Option<(Kind, Key)> {
        match self.program[pc] {
            Stage::Mirror => self.writes(pc - 1),
            Stage::TypedFirst => self.writes(pc + 1),
            stage => self.kind.writes(stage),
        }
    }

    fn name(&self) -> String {
        let what = match self.kind {
            ActionKind::Checkout { .. } => "checkout",
            ActionKind::Webhook { .. } => "webhook",
            ActionKind::Refund { .. } => "refund",
        };
        format!("{what}#{}", self.number)
    }
}

/// The entities each world knows by key, shared by both worlds.
///
/// The lists are shared by forks of a simulation (exhaustive exploration forks one for every
/// step it tries) until one of them changes: a fork copies only the list it changes.
#[derive(Clone, Debug, Default)]
struct KeyBook {
    next: Key,
    kinds: [Arc<Vec<Key>>; 3],
    products: Arc<Vec<Key>>,
    sessions: Arc<Vec<Key>>,
    /// Dirty documents of the dataset not fixed yet.
    dirty: [Arc<Vec<Dirty>>; 3],
}

/// A dirty document of the dataset: its key, the broken field and the clean value.
type Dirty = (Key, &'static str, Option<Arg>);

impl KeyBook {
    fn alloc(&mut self) -> Key {
        let k = self.next;
        self.next += 1;
        k
    }
}

fn pick_ext<T: ?Sized>(list: &[std::sync::Arc<T>], index: usize) -> Option<std::sync::Arc<T>> {
    (!list.is_empty()).then(|| list[index % list.len()].clone())
}

fn pick<T: Copy>(list: &[T], sel: Sel) -> Option<T> {
    if list.is_empty() {
        None
    } else {
        Some(list[usize::from(sel) % list.len()])
    }
}

/// Limit on steps of one run (a bound on everything, TigerBeetle style).
pub const STEPS_MAX: usize = 100_000;
/// Limit on actions in flight at once; a start beyond it is a no-op.
pub const ACTIONS_IN_FLIGHT_MAX: usize = 8;

/// A rare situation that matters for a cutover, counted every time a run reaches it, so that
/// a safe verdict says which races it actually exercised ("sometimes" assertions).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// An app or action write to a legacy document whose typed row the backfill had just
    /// copied (the first write after the copy).
    WriteAfterBackfillCopy,
    /// An action crashed after one of its writes and before another.
    CrashBetweenActionWrites,
    /// A phase switch (or rollback) while an action that had already run a step was in
    /// flight.
    SwitchWithActionInFlight,
    /// A legacy document inserted behind the backfill cursor (its `_creationTime`, taken at
    /// the transaction's begin, sorts before the persisted cursor).
    InsertBehindBackfillCursor,
    /// A payment event delivered (and handled) a second time.
    DuplicateWebhook,
    /// A rollback.
    Rollback,
    /// The backfill driver crashed in the middle of a kind's backfill.
    BackfillCrashMidway,
    /// Reads switched to the typed table while the kind had quarantined documents.
    ReadSwitchWithQuarantine,
}

impl Probe {
    pub const ALL: [Probe; 8] = [
        Probe::WriteAfterBackfillCopy,
        Probe::CrashBetweenActionWrites,
        Probe::SwitchWithActionInFlight,
        Probe::InsertBehindBackfillCursor,
        Probe::DuplicateWebhook,
        Probe::Rollback,
        Probe::BackfillCrashMidway,
        Probe::ReadSwitchWithQuarantine,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Probe::WriteAfterBackfillCopy => "write_after_backfill_copy",
            Probe::CrashBetweenActionWrites => "crash_between_action_writes",
            Probe::SwitchWithActionInFlight => "switch_with_action_in_flight",
            Probe::InsertBehindBackfillCursor => "insert_behind_backfill_cursor",
            Probe::DuplicateWebhook => "duplicate_webhook",
            Probe::Rollback => "rollback",
            Probe::BackfillCrashMidway => "backfill_crash_midway",
            Probe::ReadSwitchWithQuarantine => "read_switch_with_quarantine",
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts of what a run reached, for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub steps: usize,
    /// The furthest phase each kind reached (events, transactions, tickets).
    pub phase_max: [Option<Phase>; 3],
    pub switches: usize,
    pub rollbacks: usize,
    pub batches: usize,
    pub reads: usize,
    pub writes_failed: usize,
    pub quarantined_max: usize,
    /// How often each probe was reached.
    pub probes: BTreeMap<Probe, usize>,
    /// Shadow reads (`read_mode = "shadow"`) whose typed answer differed from the legacy
    /// one served.
    pub shadow_mismatches: usize,
}

impl Stats {
    fn hit(&mut self, probe: Probe) {
        *self.probes.entry(probe).or_default() += 1;
    }
}

/// The two worlds, the shared key book, the actions in flight and the checker's state.
#[derive(Clone)]
pub struct Sim {
    pub migrated: World,
    pub oracle: World,
    book: KeyBook,
    actions: Vec<InFlight>,
    actions_started: usize,
    /// Every payment webhook delivery so far: transaction, status, Stripe event id.
    deliveries: Vec<(Key, &'static str, u32)>,
    /// Keys deleted in the oracle.
    deleted: HashedSet<Key>,
    /// Keys written since each kind's last phase switch, re-read at the next switch.
    written_since_switch: [Arc<HashedSet<Key>>; 3],
    /// Legacy documents of each kind with neither a typed row nor a quarantine entry.
    pending: [Arc<HashedSet<DocId>>; 3],
    step_no: usize,
    skew_max: u64,
    hasher: foldhash::quality::FoldHasher<'static>,
    pub stats: Stats,
    verbose: bool,
    pub trace: Vec<TraceLine>,
    /// What the run did, for explaining a failure; kept only when verbose.
    history: History,
    /// The run's own write paths and reads.
    extensions: Extensions,
    /// Legacy documents whose typed row the backfill wrote and no app write has touched
    /// since (for the `write_after_backfill_copy` probe; looked up, never iterated).
    copied: rustc_hash::FxHashSet<DocId>,
    /// Payment events handled so far (for the `duplicate_webhook` probe).
    handled_events: HashedSet<u32>,
    /// Whether the current step is a backfill batch.
    step_is_backfill: bool,
    /// Legacy documents whose typed write a crashed action deferred and will never run,
    /// checked after the crash step.
    abandoned: Vec<(Kind, DocId)>,
    /// The step's write that one world accepted and the other rejected, explained (verbose
    /// only).
    step_rejected: Option<Explained>,
    /// Who acted in the current step (verbose only).
    actor: String,
    /// The payment event the current step applied, if any.
    step_event: Option<u32>,
}

const WORLDS: [usize; 2] = [0, 1];
const MIGRATED: usize = 0;
const ORACLE: usize = 1;

impl Sim {
    /// A simulation of `plan` over a dataset generated from `seed` (or over the options'
    /// fixed dataset, which ignores the seed).
    pub fn new(plan: Arc<Plan>, options: &SimOptions, seed: u64) -> Sim {
        if let Some(fixed) = &options.dataset {
            return Sim::from_dataset(plan, options, &fixed.0);
        }
        let data = data::generate(seed, &options.data);
        Sim::from_dataset(plan, options, &data)
    }

    /// A simulation over a given dataset.
    pub fn from_dataset(plan: Arc<Plan>, options: &SimOptions, data: &Dataset) -> Sim {
        let migrated = World::new(plan, data, true, options.bugs.clone());
        let oracle = migrated.without_migration();
        let mut book = KeyBook {
            next: data.objects.len() as Key,
            ..KeyBook::default()
        };
        let mut pending: [BTreeSet<DocId>; 3] = Default::default();
        for (i, obj) in data.objects.iter().enumerate() {
            let key = i as Key;
            match kind_of(&obj.fields) {
                Some(kind) => {
                    Arc::make_mut(&mut book.kinds[kind.index()]).push(key);
                    pending[kind.index()].insert(migrated.handle(key).expect("loaded"));
                    if let Some((_, path, clean)) = &obj.dirt {
                        let field = path.trim_start_matches("customProperties.");
                        let field = crate::schema::kind_fields(kind)
                            .iter()
                            .map(|s| s.name)
                            .chain(["totalPriceInCents", "totalInCents"])
                            .find(|n| *n == field)
                            .unwrap_or("totalPriceInCents");
                        let value = clean
                            .get("customProperties")
                            .and_then(Value::as_object)
                            .and_then(|cp| cp.get(field))
                            .map(|v| match v.as_str().and_then(crate::validator::parse_id) {
                                // A reference is fixed to the entity, not to a raw id.
                                Some(("objects", seq)) => Arg::Ref(seq - 1),
                                _ => Arg::Plain(v.clone()),
                            });
                        Arc::make_mut(&mut book.dirty[kind.index()]).push((key, field, value));
                    }
                }
                None => match obj.fields.get("type").and_then(Value::as_str) {
                    Some("product") => Arc::make_mut(&mut book.products).push(key),
                    Some("checkout_session") => Arc::make_mut(&mut book.sessions).push(key),
                    _ => {}
                },
            }
        }
        Sim {
            migrated,
            oracle,
            book,
            actions: Vec::new(),
            actions_started: 0,
            deliveries: Vec::new(),
            deleted: HashedSet::default(),
            written_since_switch: Default::default(),
            pending: pending.map(|p| Arc::new(p.into_iter().collect())),
            step_no: 0,
            skew_max: u64::from(options.skew_max_ms),
            hasher: crate::store::state_hasher(),
            stats: Stats::default(),
            verbose: false,
            trace: Vec::new(),
            history: History::default(),
            extensions: options.extensions.clone(),
            abandoned: Vec::new(),
            step_rejected: None,
            copied: Default::default(),
            handled_events: HashedSet::default(),
            step_is_backfill: false,
            actor: String::new(),
            step_event: None,
        }
    }

    /// Every table of both worlds, each kind's phase and the backfill progress, as text
    /// (for `cutover replay --step K`).
    pub fn describe_state(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        for (name, world) in [("migrated", &self.migrated), ("oracle", &self.oracle)] {
            let _ = writeln!(out, "== {name} world");
            for kind in Kind::ALL {
                let p = world.progress(kind);
                let _ = writeln!(
                    out,
                    "{kind}: {}; backfill processed {}, migrated {}, quarantined {}, done {}",
                    world.phase(kind),
                    p.processed,
                    p.migrated,
                    p.quarantined,
                    p.done
                );
            }
            for table in (0..).map_while(|t| world.store.try_table_name(t).map(|n| (t, n))) {
                let (t, name) = table;
                let docs: Vec<_> = world.store.scan(t).collect();
                let _ = writeln!(out, "-- {name} ({} documents)", docs.len());
                for d in docs {
                    let _ = writeln!(
                        out,
                        "{}: {}",
                        world.store.id_string(d.id),
                        Value::Object(d.fields.clone())
                    );
                }
            }
        }
        out
    }

    /// Makes `state_hash` cost the number of tables rather than the number of documents
    /// (`Store::track_contents`), and keeps the sums of the checker's sets
    /// (`HashedSet::track`), for a simulation whose states will all be hashed; forks keep
    /// it. The hash is the same with or without it.
    pub fn track_state(&mut self) {
        self.migrated.track_state();
        self.oracle.track_state();
        for set in self.written_since_switch.iter_mut() {
            Arc::make_mut(set).track();
        }
        for set in self.pending.iter_mut() {
            Arc::make_mut(set).track();
        }
        self.deleted.track();
        self.handled_events.track();
    }

    /// Makes both worlds' stores, and every fork of them, store one version for equal
    /// contents (`store::Versions`), so that what readers compute from a version is computed
    /// once per content for the whole exploration rather than once per write.
    pub fn share_versions(&mut self) {
        let versions = Arc::new(crate::store::Versions::default());
        self.migrated.store.share_versions(versions.clone());
        self.oracle.store.share_versions(versions);
    }

    /// A hash of everything that decides what the run does next: both worlds, the key
    /// book, the actions in flight, the payment deliveries and the checker's state (not the
    /// clock, the trace, the digest or the counters). Two runs with equal hashes at the same
    /// depth behave alike from there on (up to hash collisions), which is what exhaustive
    /// exploration deduplicates on.
    pub fn state_hash(&self) -> u64 {
        let mut h = crate::store::state_hasher();
        self.migrated.hash_state(&mut h);
        self.oracle.hash_state(&mut h);
        let b = &self.book;
        (b.next, &b.kinds, &b.products, &b.sessions).hash(&mut h);
        // Data fixes only ever remove entries, and an entry's value is the dataset's: the
        // key and field say which entries are left.
        for (key, field, _) in b.dirty.iter().flat_map(|d| d.iter()) {
            (key, field).hash(&mut h);
        }
        for a in &self.actions {
            (
                a.lane,
                &a.kind,
                a.pc,
                a.failed,
                &a.deferred,
                a.phases,
                a.write_now.map(f64::to_bits),
            )
                .hash(&mut h);
            for s in &a.stash {
                (s.kind, s.legacy, &s.fields, s.relink).hash(&mut h);
            }
            for c in &a.captured {
                match c {
                    None => 0u8.hash(&mut h),
                    Some((view, doc)) => {
                        (view, doc.as_ref().map(|d| d.content_hash())).hash(&mut h)
                    }
                }
            }
        }
        (&self.deliveries, &self.handled_events, &self.deleted).hash(&mut h);
        (&self.written_since_switch, &self.pending).hash(&mut h);
        h.finish()
    }

    /// Takes a step that only reads (`Op::Read`, no fault) on this simulation itself, then
    /// puts back what every step advances (the clock, the step number, the digest and the
    /// counters), so that it is again the state it was: exhaustive exploration takes every
    /// read from a state without copying the state. A read writes nothing in either world,
    /// and the caller checks that the state hash did not move. `None` (nothing done) for any
    /// other step, or when the trace is on.
    pub fn read_in_place(&mut self, step: &Step) -> Option<Result<(), Failure>> {
        if !matches!(step.op, Op::Read { .. }) || step.fault.is_some() || self.verbose {
            return None;
        }
        let clocks = (self.migrated.now(), self.oracle.now());
        let (hasher, stats, step_no) = (self.hasher.clone(), self.stats.clone(), self.step_no);
        let result = self.step(step);
        self.migrated.ctx.restore_now(clocks.0);
        self.oracle.ctx.restore_now(clocks.1);
        (self.hasher, self.stats, self.step_no) = (hasher, stats, step_no);
        Some(result)
    }

    /// Whether `step` certainly leaves this state as it is and passes its checks, so that
    /// exhaustive exploration counts it without taking it on a copy of the state. It says so
    /// only where the step returns before it writes or decides anything: an action step or
    /// crash with no action in its lane, a backfill batch that does not run or finds its
    /// progress done (`World::backfill_idle`), a quarantine retry while no typed writes run
    /// (`World::retry_idle`), and a phase switch refused before it reaches a guard that could
    /// change the world, the diff's (`World::switch_idle`: no phase that way, a kind that does
    /// not migrate, no rollback from its phase, or a guard that only reads fails). Anything
    /// else, a step with a fault, and every step of a traced run, is `false`: the step is
    /// taken. Such a step still advances the clock and the digest, which the state hash
    /// leaves out. `Scenario::check_idle` takes every step this skips anyway and checks that
    /// it passed and left the state's hash alone.
    pub fn idle(&self, step: &Step) -> bool {
        if step.fault.is_some() || self.verbose {
            return false;
        }
        let world = &self.migrated;
        match &step.op {
            Op::Noop => true,
            Op::ActionStep { lane } | Op::ActionCrash { lane } => {
                !self.actions.iter().any(|a| a.lane == *lane)
            }
            Op::Backfill { kind, .. } if self.extensions.backfill(*kind).is_some() => {
                !world.backfill_runs(*kind)
            }
            Op::Backfill { kind, .. } => world.bugs.idle_backfill || world.backfill_idle(*kind),
            Op::RetryQuarantine { kind } => world.retry_idle(*kind),
            Op::Advance { kind } => world.switch_idle(*kind, true),
            Op::Rollback { kind } => world.switch_idle(*kind, false),
            _ => false,
        }
    }

    /// Actions started and neither finished nor crashed.
    pub fn actions_in_flight(&self) -> usize {
        self.actions.len()
    }

    /// Records a human-readable trace line per step (for counterexamples and replays).
    pub fn set_verbose(&mut self, on: bool) {
        self.verbose = on;
    }

    /// The digest of everything the run has done so far: equal digests, equal runs.
    pub fn digest(&self) -> u64 {
        self.hasher.finish()
    }

    fn world(&mut self, w: usize) -> &mut World {
        if w == MIGRATED {
            &mut self.migrated
        } else {
            &mut self.oracle
        }
    }

    fn note(&mut self, actor: impl Into<String>, action: impl FnOnce() -> String) {
        if self.verbose {
            let actor = actor.into();
            if self.actor.is_empty() && !actor.is_empty() {
                self.actor = actor.clone();
            }
            self.trace.push(TraceLine {
                step: self.step_no,
                actor,
                action: action(),
            });
        }
    }

    /// Attaches the migration anomaly to a failure when the run keeps its history.
    fn explain(&mut self, mut f: Failure, how: impl FnOnce(&mut Sim) -> Explained) -> Failure {
        if self.verbose {
            f.explained = Some(how(self));
        }
        f
    }

    /// Runs every step and checks after each; the first failure ends the run.
    pub fn run(&mut self, steps: &[Step]) -> Result<(), Failure> {
        assert!(steps.len() <= STEPS_MAX, "runs are bounded by STEPS_MAX");
        for step in steps {
            self.step(step)?;
        }
        Ok(())
    }

    /// Applies one step to both worlds and checks every invariant.
    pub fn step(&mut self, step: &Step) -> Result<(), Failure> {
        let now = self.migrated.now() + TICKS_PER_STEP;
        self.migrated.ctx.set_now(now);
        self.oracle.ctx.set_now(now);
        let skew = u64::from(step.skew).min(self.skew_max) * TICKS_PER_STEP;
        step.hash(&mut self.hasher);
        self.actor.clear();
        self.step_event = None;
        self.step_rejected = None;
        self.step_is_backfill = matches!(step.op, Op::Backfill { .. });
        match step.fault {
            Some(Fault::RetriesExhausted) if step.op.is_transaction() => {
                self.migrated.store.fail_next_mutation(true);
                self.oracle.store.fail_next_mutation(true);
            }
            Some(Fault::TypedWriteRejected) => self.migrated.ctx.set_reject_typed(true),
            _ => {}
        }
        let applied = self.apply(&step.op, skew);
        // A fault no transaction of this step took is withdrawn (a mirror stage runs in the
        // migrated world only; a step can find nothing to do).
        self.migrated.store.fail_next_mutation(false);
        self.oracle.store.fail_next_mutation(false);
        self.migrated.ctx.set_reject_typed(false);
        // The structural invariants name the more specific anomaly, so they are reported
        // before a disagreement the step itself observed (a failed write or read).
        let result = self.check_after_step().and(applied);
        self.stats.steps += 1;
        for k in Kind::ALL {
            let p = self.migrated.phase(k);
            let slot = &mut self.stats.phase_max[k.index()];
            if slot.is_none_or(|m| p > m) {
                *slot = Some(p);
            }
        }
        self.step_no += 1;
        result
    }

    fn fail(
        &self,
        invariant: Invariant,
        message: String,
        expected: Option<String>,
        seen: Option<String>,
    ) -> Failure {
        Failure {
            step: self.step_no,
            invariant,
            message,
            expected,
            seen,
            explained: None,
        }
    }

    fn apply(&mut self, op: &Op, skew: u64) -> Result<(), Failure> {
        match op {
            Op::Noop => Ok(()),
            Op::Read { read } => self.read(read),
            Op::Backfill { kind, .. }
                if self.extensions.backfill(*kind).is_some()
                    && self.migrated.backfill_runs(*kind) =>
            {
                let ext = self.extensions.backfill(*kind).expect("checked");
                let outcome = self.migrated.mutate(0, |c, tx| ext.batch(c, tx));
                self.stats.batches += 1;
                if self.verbose && self.migrated.progress_done(*kind) {
                    self.history
                        .backfill_done
                        .entry(*kind)
                        .or_insert(self.step_no);
                }
                2u8.hash(&mut self.hasher);
                outcome.as_ref().ok().hash(&mut self.hasher);
                self.note("backfill", || match &outcome {
                    Ok(what) => format!("{kind} batch ({}): {what}", ext.name()),
                    Err(e) => format!("{kind} batch ({}) failed: {e}", ext.name()),
                });
                Ok(())
            }
            Op::Backfill { kind, runner } => {
                let runner = usize::from(*runner);
                let outcome = self.migrated.backfill_batch_by(*kind, runner);
                let actor = if runner == 0 {
                    "backfill".to_string()
                } else {
                    format!("backfill#{}", runner + 1)
                };
                if let Ok(BackfillOutcome::Batch { .. }) = &outcome {
                    self.stats.batches += 1;
                }
                if self.verbose {
                    match &outcome {
                        Ok(BackfillOutcome::PageRead { .. }) => {
                            for id in self.migrated.pending_page_ids(*kind, runner) {
                                self.history.record(
                                    id,
                                    self.step_no,
                                    &actor,
                                    Touch::ReadByBackfill,
                                );
                            }
                        }
                        Ok(BackfillOutcome::Batch { done: true, .. }) => {
                            self.history
                                .backfill_done
                                .entry(*kind)
                                .or_insert(self.step_no);
                        }
                        _ => {}
                    }
                }
                0u8.hash(&mut self.hasher);
                outcome.as_ref().ok().hash(&mut self.hasher);
                self.note(actor, || {
                    format!("{kind} batch: {}", describe_backfill(&outcome))
                });
                Ok(())
            }
            Op::BackfillCrash { kind } => {
                // The driver keeps only a page read and not yet written in memory: each batch
                // reads its cursor from migrationProgress, so a restart resumes exactly there.
                self.migrated.backfill_crash(*kind);
                let p = self.migrated.progress(*kind);
                if p.cursor.is_some() && !p.done {
                    self.stats.hit(Probe::BackfillCrashMidway);
                }
                self.note("backfill", || {
                    format!(
                        "{kind} driver crashed; resumes from persisted cursor after {} documents",
                        p.processed
                    )
                });
                Ok(())
            }
            Op::RetryQuarantine { kind } => {
                let r = self.migrated.retry_quarantine(*kind);
                self.note("backfill", || match r {
                    Ok(n) => format!("{kind} quarantine retry: {n} documents left the quarantine"),
                    Err(e) => format!("{kind} quarantine retry failed: {e}"),
                });
                Ok(())
            }
            Op::Advance { kind } | Op::Rollback { kind } => {
                let switch = if matches!(op, Op::Advance { .. }) {
                    self.migrated.advance(*kind)
                } else {
                    self.migrated.rollback(*kind)
                };
                switch.hash(&mut self.hasher);
                self.note("controller", || {
                    format!("{kind}: {}", describe_switch(&switch))
                });
                if let Switch::Moved { from, to } = switch {
                    if self.actions.iter().any(|a| a.pc > 0) {
                        self.stats.hit(Probe::SwitchWithActionInFlight);
                    }
                    if to < from {
                        self.stats.hit(Probe::Rollback);
                    }
                    if to == Phase::ReadTyped && from < to && self.migrated.quarantined_any(*kind) {
                        self.stats.hit(Probe::ReadSwitchWithQuarantine);
                    }
                    self.stats.switches += 1;
                    self.history.switches.push((self.step_no, *kind, from, to));
                    if to < from {
                        self.stats.rollbacks += 1;
                    }
                    return self.recheck_written(*kind, &format!("{kind} moved {from} -> {to}"));
                }
                Ok(())
            }
            Op::ActionStep { lane } => self.action_step(*lane, skew),
            Op::ActionCrash { lane } => {
                let Some(i) = self.actions.iter().position(|a| a.lane == *lane) else {
                    return Ok(());
                };
                let a = self.actions.remove(i);
                self.abandoned.extend(a.deferred.iter().copied());
                self.abandoned
                    .extend(a.stash.iter().map(|s| (s.kind, s.legacy)));
                if a.program[..a.pc].iter().any(|s| s.writes_entity())
                    && a.program[a.pc..].iter().any(|s| s.writes_entity())
                {
                    self.stats.hit(Probe::CrashBetweenActionWrites);
                }
                if self.verbose {
                    self.history.crashes.insert(a.name(), self.step_no);
                }
                self.note(a.name(), || {
                    format!(
                        "crashed after {} of {} steps; earlier steps stay committed",
                        a.pc,
                        a.len()
                    )
                });
                Ok(())
            }
            Op::Checkout {
                lane,
                event,
                product,
                quantity,
                v1,
                seed,
            } => {
                let (Some(event), Some(product)) = (
                    pick(&self.book.kinds[Kind::Events.index()], *event),
                    pick(&self.book.products, *product),
                ) else {
                    return Ok(());
                };
                let quantity = (*quantity).clamp(1, 3);
                let session = self.book.alloc();
                let tickets = (0..quantity).map(|_| self.book.alloc()).collect();
                let txn = self.book.alloc();
                self.start(
                    *lane,
                    ActionKind::Checkout {
                        event,
                        product,
                        session,
                        tickets,
                        txn,
                        v1: *v1,
                        seed: *seed,
                    },
                )
            }
            Op::PaymentWebhook { lane, txn, status } => {
                let Some(txn) = pick(&self.book.kinds[Kind::Transactions.index()], *txn) else {
                    return Ok(());
                };
                let status = PAYMENT_STATUSES[usize::from(*status) % PAYMENT_STATUSES.len()];
                let event = self.deliveries.len() as u32 + 1;
                self.deliveries.push((txn, status, event));
                self.start(*lane, ActionKind::Webhook { txn, status, event })
            }
            Op::WebhookRedeliver { lane, delivery } => {
                // Stripe redelivers an earlier event: a duplicate, and out of order if later
                // events were delivered since.
                let Some((txn, status, event)) = pick(&self.deliveries, *delivery) else {
                    return Ok(());
                };
                self.start(*lane, ActionKind::Webhook { txn, status, event })
            }
            Op::Refund { lane, txn, partial } => {
                let Some(txn) = pick(&self.book.kinds[Kind::Transactions.index()], *txn) else {
                    return Ok(());
                };
                self.start(
                    *lane,
                    ActionKind::Refund {
                        txn,
                        partial: *partial,
                    },
                )
            }
            Op::CustomWrite {
                index,
                target,
                seed,
            } => self.custom_write(usize::from(*index), *target, *seed, skew),
            Op::CustomRead { index, target } => self.custom_read(usize::from(*index), *target),
            _ => self.app_mutation(op, skew),
        }
    }

    /// One of the run's own write paths, as one mutation in each world.
    fn custom_write(
        &mut self,
        index: usize,
        target: Sel,
        seed: u16,
        skew: u64,
    ) -> Result<(), Failure> {
        let Some(ext) = pick_ext(&self.extensions.writes, index) else {
            return Ok(());
        };
        let kind = ext.kind();
        let Some(key) = pick(&self.book.kinds[kind.index()], target) else {
            return Ok(());
        };
        let outcomes = self.both(skew, |c, tx| ext.write(c, tx, key, seed));
        let description = format!("{} on {kind} #{key} (seed {seed})", ext.name());
        self.written(kind, key);
        self.note("app", || {
            format!("{description}: {}", describe_outcomes(&outcomes))
        });
        self.compare_outcomes(&outcomes, &description)
    }

    /// One of the run's own reads, in both worlds.
    fn custom_read(&mut self, index: usize, target: Sel) -> Result<(), Failure> {
        let Some(ext) = pick_ext(&self.extensions.reads, index) else {
            return Ok(());
        };
        let kind = ext.kind();
        let Some(key) = pick(&self.book.kinds[kind.index()], target) else {
            return Ok(());
        };
        self.stats.reads += 1;
        let m = self.migrated.mutate(0, |c, tx| ext.read(c, tx, key));
        let o = self.oracle.mutate(0, |c, tx| ext.read(c, tx, key));
        let show = |r: &Result<Value, TxError>| match r {
            Ok(v) => v.to_string(),
            Err(e) => format!("error: {e}"),
        };
        self.note("reader", || format!("{} of {kind} #{key}", ext.name()));
        if m != o {
            let f = self.fail(
                Invariant::ReadEquivalence,
                format!(
                    "{} of {kind} #{key} returned something else than without the migration",
                    ext.name()
                ),
                Some(show(&o)),
                Some(show(&m)),
            );
            return Err(self.explain(f, |sim| Explained {
                anomaly: Anomaly::LostWrite,
                explanation: format!(
                    "the read at step {} ({} of {kind} #{key}) returns #{key} (last written by {}) differently from the app without the migration",
                    sim.step_no,
                    ext.name(),
                    sim.cite_oracle(key)
                ),
            }));
        }
        Ok(())
    }

    fn start(&mut self, lane: Lane, kind: ActionKind) -> Result<(), Failure> {
        if self.actions.len() >= ACTIONS_IN_FLIGHT_MAX {
            return Ok(());
        }
        self.actions_started += 1;
        let plan = self.migrated.plan.clone();
        let path = kind.path();
        let a = InFlight {
            number: self.actions_started,
            lane,
            program: kind.program(|k| plan.strategy_for(k).double_write(path)),
            kind,
            pc: 0,
            failed: [false; 2],
            deferred: Vec::new(),
            phases: self.migrated.phases(),
            stash: Vec::new(),
            write_now: None,
            captured: [None, None],
        };
        if self.verbose {
            self.history
                .actions
                .insert(a.name(), (self.step_no, a.phases));
        }
        self.note(a.name(), || {
            format!(
                "started in lane {} ({} steps): {:?}",
                a.lane,
                a.len(),
                a.kind
            )
        });
        self.actions.push(a);
        Ok(())
    }

    /// One single-mutation write path of the app, applied to both worlds.
    fn app_mutation(&mut self, op: &Op, skew: u64) -> Result<(), Failure> {
        let mut created = None;
        let mut outcomes: [Result<(), TxError>; 2] = [Ok(()), Ok(())];
        let target = |book: &KeyBook, kind: Kind, sel: Sel| pick(&book.kinds[kind.index()], sel);
        let now_ms = self.migrated.now_ms();
        let description;
        match op {
            Op::CreateEvent { org, seed } => {
                let key = self.book.alloc();
                let mut rng = data::rng(u64::from(*seed));
                let cp = data::event_properties(&mut rng);
                let name = format!("{} Summit", cp["location"].as_str().unwrap_or("City"));
                for w in WORLDS {
                    let world = self.world(w);
                    let org_id = world.org_id(usize::from(*org));
                    let fields = data::object_fields(
                        &Value::String(world.id_string(org_id)),
                        "event",
                        None,
                        name.clone(),
                        "draft",
                        cp.clone(),
                        now_ms,
                    );
                    outcomes[w] = world
                        .mutate(skew, |c, tx| c.create(tx, Kind::Events, fields))
                        .map(|id| world.ctx.register(key, id));
                }
                Arc::make_mut(&mut self.book.kinds[Kind::Events.index()]).push(key);
                created = Some((Kind::Events, key));
                description = AppWrite::CreateEvent { key, name };
            }
            Op::EditEvent { event, seed } => {
                let Some(key) = target(&self.book, Kind::Events, *event) else {
                    return Ok(());
                };
                let status =
                    ["published", "in_progress", "completed", "cancelled"][usize::from(*seed) % 4];
                let changes = vec![
                    Change {
                        field: "status",
                        value: Some(Arg::Plain(Value::from(status))),
                    },
                    Change {
                        field: "maxCapacity",
                        value: Some(Arg::Plain(Value::Float64(f64::from(*seed % 500) * 10.0))),
                    },
                ];
                description = AppWrite::EditEvent { key, status };
                outcomes = self.both(skew, |c, tx| c.update(tx, Kind::Events, key, &changes));
                self.written(Kind::Events, key);
            }
            Op::GenericUpdate {
                kind,
                target: sel,
                seed,
            } => {
                let Some(key) = target(&self.book, *kind, *sel) else {
                    return Ok(());
                };
                let mut rng = data::rng(u64::from(*seed));
                let (name, email) = data::person(&mut rng);
                let change = match (kind, seed % 3) {
                    (Kind::Events, 0) => Change {
                        field: "location",
                        value: Some(Arg::Plain(Value::from(name.as_str()))),
                    },
                    (Kind::Events, _) => Change {
                        field: "organizerNote",
                        value: Some(Arg::Plain(Value::from(email.as_str()))),
                    },
                    (Kind::Transactions, 0) => Change {
                        field: "customerName",
                        value: Some(Arg::Plain(Value::from(name.as_str()))),
                    },
                    (Kind::Transactions, 1) => Change {
                        field: "customerPhone",
                        value: None,
                    },
                    (Kind::Transactions, _) => Change {
                        field: "internalNote",
                        value: Some(Arg::Plain(Value::from(email.as_str()))),
                    },
                    (Kind::Tickets, 0) => Change {
                        field: "holderName",
                        value: Some(Arg::Plain(Value::from(name.as_str()))),
                    },
                    (Kind::Tickets, _) => Change {
                        field: "seat",
                        value: Some(Arg::Plain(Value::from(format!("R{}", seed % 40)))),
                    },
                };
                outcomes = self.both(skew, |c, tx| {
                    c.update(tx, *kind, key, std::slice::from_ref(&change))
                });
                self.written(*kind, key);
                description = AppWrite::GenericUpdate {
                    kind: *kind,
                    key,
                    change,
                };
            }
            Op::Delete { kind, target: sel } => {
                let Some(key) = target(&self.book, *kind, *sel) else {
                    return Ok(());
                };
                description = AppWrite::Delete { kind: *kind, key };
                outcomes = self.both(skew, |c, tx| c.delete(tx, *kind, key));
                if outcomes[ORACLE].is_ok() {
                    self.deleted.insert(key);
                }
                self.written(*kind, key);
            }
            Op::BookingPayment { org, seed } => {
                let key = self.book.alloc();
                let mut rng = data::rng(u64::from(*seed) ^ 0xb00c);
                description = AppWrite::BookingPayment { key };
                let unit = data::price(&mut rng);
                for w in WORLDS {
                    let mut rng = rng.clone();
                    let world = self.world(w);
                    let org_id = world.org_id(usize::from(*org));
                    let null = Value::Null;
                    let purchase = data::Purchase {
                        product: &null,
                        product_name: "",
                        event: &null,
                        event_name: "",
                        session: &null,
                        quantity: 1,
                        unit_price: unit,
                    };
                    let cp = data::transaction_properties(
                        &mut rng,
                        TxShape::Booking,
                        &purchase,
                        "paid",
                        true,
                    );
                    let fields = data::object_fields(
                        &Value::String(world.id_string(org_id)),
                        "transaction",
                        Some("booking"),
                        "Booking".into(),
                        "active",
                        cp,
                        now_ms,
                    );
                    outcomes[w] = world
                        .mutate(skew, |c, tx| c.create(tx, Kind::Transactions, fields))
                        .map(|id| world.ctx.register(key, id));
                }
                Arc::make_mut(&mut self.book.kinds[Kind::Transactions.index()]).push(key);
                created = Some((Kind::Transactions, key));
            }
            Op::InvoiceTransition { txn } => {
                let Some(key) = target(&self.book, Kind::Transactions, *txn) else {
                    return Ok(());
                };
                description = AppWrite::InvoiceTransition { key };
                // Reads the current invoicing status in the same mutation, then moves it on.
                outcomes = self.both(skew, |c, tx| {
                    let current = c.read_one(tx, Kind::Transactions, key)?.and_then(|v| {
                        v.as_object()
                            .and_then(|f| f.get("invoicingStatus").cloned())
                    });
                    let next = match current.as_ref().and_then(Value::as_str) {
                        None | Some("pending") => "on_draft_invoice",
                        Some("on_draft_invoice") => "invoiced",
                        Some(_) => return Err(TxError::Threw("already invoiced".into())),
                    };
                    let mut changes = vec![Change {
                        field: "invoicingStatus",
                        value: Some(Arg::Plain(Value::from(next))),
                    }];
                    if next == "invoiced" {
                        changes.push(Change {
                            field: "invoiceId",
                            value: Some(Arg::Plain(Value::String(compact_str::format_compact!(
                                "inv_{key}"
                            )))),
                        });
                    }
                    c.update(tx, Kind::Transactions, key, &changes)
                });
                self.written(Kind::Transactions, key);
            }
            Op::Ticket { ticket, change } => {
                let Some(key) = target(&self.book, Kind::Tickets, *ticket) else {
                    return Ok(());
                };
                let changes = match change {
                    TicketChange::Redeem => vec![
                        Change {
                            field: "status",
                            value: Some(Arg::Plain(Value::from("redeemed"))),
                        },
                        Change {
                            field: "redeemedAt",
                            value: Some(Arg::Plain(Value::Float64(now_ms))),
                        },
                    ],
                    TicketChange::Cancel => vec![Change {
                        field: "status",
                        value: Some(Arg::Plain(Value::from("cancelled"))),
                    }],
                    TicketChange::Transfer { seed } => {
                        let (name, email) = data::person(&mut data::rng(u64::from(*seed)));
                        vec![
                            Change {
                                field: "status",
                                value: Some(Arg::Plain(Value::from("transferred"))),
                            },
                            Change {
                                field: "holderName",
                                value: Some(Arg::Plain(Value::from(name))),
                            },
                            Change {
                                field: "holderEmail",
                                value: Some(Arg::Plain(Value::from(email))),
                            },
                        ]
                    }
                    TicketChange::Move { event } => {
                        let Some(e) = target(&self.book, Kind::Events, *event) else {
                            return Ok(());
                        };
                        vec![Change {
                            field: "eventId",
                            value: Some(Arg::Ref(e)),
                        }]
                    }
                };
                description = AppWrite::Ticket {
                    key,
                    change: change.clone(),
                };
                let moved_to = match change {
                    TicketChange::Move { event } => target(&self.book, Kind::Events, *event),
                    _ => None,
                };
                outcomes = self.both(skew, |c, tx| {
                    // The app checks that the target event exists before moving a ticket.
                    if let Some(e) = moved_to
                        && c.read_one(tx, Kind::Events, e)?.is_none()
                    {
                        return Err(TxError::Threw(format!("event #{e} does not exist")));
                    }
                    c.update(tx, Kind::Tickets, key, &changes)
                });
                self.written(Kind::Tickets, key);
            }
            Op::Repair { kind, target: sel } => {
                // A data fix runs once per document: the operator fixes the legacy document
                // and it migrates from there.
                let dirty = Arc::make_mut(&mut self.book.dirty[kind.index()]);
                if dirty.is_empty() {
                    return Ok(());
                }
                let (key, field, value) = dirty.swap_remove(usize::from(*sel) % dirty.len());
                // A data fix that points a reference at an entity checks that it exists, as
                // the app's own writes do.
                let target = match (
                    &value,
                    crate::domain::reference_fields(*kind)
                        .iter()
                        .find(|(n, _)| *n == field),
                ) {
                    (Some(Arg::Ref(k)), Some((_, Some(t)))) => Some((*t, *k)),
                    _ => None,
                };
                let change = Change { field, value };
                outcomes = self.both(skew, |c, tx| {
                    if let Some((t, k)) = target
                        && c.read_one(tx, t, k)?.is_none()
                    {
                        return Err(TxError::Threw(format!("{t} #{k} does not exist")));
                    }
                    c.update(tx, *kind, key, std::slice::from_ref(&change))
                });
                self.written(*kind, key);
                description = AppWrite::Repair {
                    kind: *kind,
                    key,
                    change,
                };
            }
            _ => unreachable!("app_mutation handles the single-mutation write paths: {op:?}"),
        }
        self.note("app", || {
            format!("{description}: {}", describe_outcomes(&outcomes))
        });
        if let Some((kind, key)) = created {
            self.written(kind, key);
        }
        self.compare_outcomes(&outcomes, &description)
    }

    /// Marks a legacy document as pending (neither a typed row nor a quarantine entry) or
    /// not; the set is copied only when it changes (forks share it).
    fn set_pending(&mut self, kind: Kind, l: DocId, pending: bool) {
        let set = &mut self.pending[kind.index()];
        if set.contains(&l) != pending {
            let set = Arc::make_mut(set);
            if pending {
                set.insert(l);
            } else {
                set.remove(&l);
            }
        }
    }

    fn written(&mut self, kind: Kind, key: Key) {
        let written = &mut self.written_since_switch[kind.index()];
        // Shared with other forks: copied only when it changes.
        if !written.contains(&key) {
            Arc::make_mut(written).insert(key);
        }
    }

    /// Runs the same mutation in both worlds.
    fn both(
        &mut self,
        skew: u64,
        mut f: impl FnMut(&crate::world::Ctx, &mut crate::store::Tx<'_>) -> Result<(), TxError>,
    ) -> [Result<(), TxError>; 2] {
        let m = self.migrated.mutate(skew, &mut f);
        let o = self.oracle.mutate(skew, &mut f);
        [m, o]
    }

    /// A write the oracle acknowledges must be acknowledged by the migrated app too, and
    /// the other way round.
    fn compare_outcomes(
        &mut self,
        outcomes: &[Result<(), TxError>; 2],
        what: &dyn std::fmt::Display,
    ) -> Result<(), Failure> {
        let ok = [outcomes[0].is_ok(), outcomes[1].is_ok()];
        ok.hash(&mut self.hasher);
        if !ok[MIGRATED] {
            self.stats.writes_failed += 1;
        }
        if ok[MIGRATED] != ok[ORACLE] {
            let f = self.fail(
                Invariant::AcknowledgedWriteKept,
                format!("{what}: the oracle and the migrated app disagree on whether the write succeeded"),
                Some(describe_result(&outcomes[ORACLE])),
                Some(describe_result(&outcomes[MIGRATED])),
            );
            let f = self.explain(f, |sim| {
                // A write path that reads through a kind whose reads switched before its
                // backfill finished misses what it looks up.
                if ok[ORACLE]
                    && let Some(k) = Kind::ALL.into_iter().find(|k| {
                        sim.migrated.phase(*k).reads_typed() && !sim.migrated.progress_done(*k)
                    })
                {
                    let since = sim
                        .history
                        .last_switch(k, sim.step_no)
                        .map_or_else(String::new, |(s, ..)| format!(" since step {s}"));
                    return Explained {
                        anomaly: Anomaly::MissingRowAfterReadSwitch,
                        explanation: format!(
                            "at step {} ({}) the migrated app rejected a write ({what}: {}) that the app without the migration accepts: {k} reads its typed table{since}, before its backfill finished, so the write path does not find what it reads",
                            sim.step_no,
                            sim.actor_now(),
                            describe_result(&outcomes[MIGRATED])
                        ),
                    };
                }
                let (verb, other, outcome) = if ok[ORACLE] {
                    ("rejected", "accepts", &outcomes[MIGRATED])
                } else {
                    ("accepted", "rejects", &outcomes[ORACLE])
                };
                Explained {
                    anomaly: Anomaly::RejectedWrite,
                    explanation: format!(
                        "at step {} ({}) the migrated app {verb} a write ({what}) that the app without the migration {other}: {}",
                        sim.step_no,
                        sim.actor_now(),
                        describe_result(outcome)
                    ),
                }
            });
            // The checks after the step run first and may meet the write's effect; they
            // explain it the same way.
            self.step_rejected = f.explained.clone();
            return Err(f);
        }
        Ok(())
    }

    fn action_step(&mut self, lane: Lane, skew: u64) -> Result<(), Failure> {
        let Some(i) = self.actions.iter().position(|a| a.lane == lane) else {
            return Ok(());
        };
        let mut a = self.actions[i].clone();
        let pc = a.pc;
        let mut outcomes: [Result<(), TxError>; 2] = [Ok(()), Ok(())];
        let mut description = String::new();
        let stage = a.program[pc];
        // A typed-first write is computed once, at its first half: both halves, and the app
        // without the migration, write that time.
        let after_typed_first = pc > 0 && a.program[pc - 1] == Stage::TypedFirst;
        let now_ms = match a.write_now {
            Some(t) if after_typed_first => t,
            _ => self.migrated.now_ms(),
        };
        if stage == Stage::TypedFirst {
            a.write_now = Some(now_ms);
        }
        for w in WORLDS {
            if a.failed[w] {
                // An action that failed at an earlier step does not run this one: for the
                // comparison, it fails here too.
                outcomes[w] = Err(TxError::Threw(
                    "the action failed at an earlier step".into(),
                ));
                continue;
            }
            let world = if w == MIGRATED {
                &mut self.migrated
            } else {
                &mut self.oracle
            };
            world.ctx.set_path(a.kind.path());
            if w == MIGRATED {
                let plan = world.plan.clone();
                world.ctx.set_captured_phases(Kind::ALL.map(|k| {
                    (plan.strategy_for(k).phase_source == PhaseSource::CapturedAtActionStart)
                        .then_some(a.phases[k.index()])
                }));
            }
            if after_typed_first {
                world.ctx.set_now_ms(Some(now_ms));
            }
            let r = match stage {
                Stage::Mirror => {
                    description = "write the typed side of the previous step".into();
                    let deferred = std::mem::take(&mut a.deferred);
                    world.mutate(skew, |c, tx| {
                        for (kind, legacy) in &deferred {
                            c.mirror_now(tx, *kind, *legacy, UpdateMirroring::Upsert)?;
                        }
                        Ok(())
                    })
                }
                // The typed half runs the next stage's write with only its typed side; the
                // app without the migration has nothing to do yet.
                Stage::TypedFirst if w == MIGRATED => {
                    let captured = a.captured.clone();
                    world.ctx.set_half(Half::TypedFirst);
                    let r = action_transaction(
                        world,
                        &mut a,
                        w,
                        pc + 1,
                        skew,
                        now_ms,
                        &mut description,
                    );
                    world.ctx.set_half(Half::Whole);
                    a.captured = captured;
                    a.stash = world.ctx.take_stash();
                    description = format!("write the typed side first: {description}");
                    r
                }
                Stage::TypedFirst => Ok(()),
                _ if after_typed_first && w == MIGRATED => {
                    world.ctx.put_stash(std::mem::take(&mut a.stash));
                    world.ctx.set_half(Half::LegacyAfter);
                    let r =
                        action_transaction(world, &mut a, w, pc, skew, now_ms, &mut description);
                    world.ctx.set_half(Half::Whole);
                    world.ctx.take_stash();
                    r
                }
                _ => action_transaction(world, &mut a, w, pc, skew, now_ms, &mut description),
            };
            world.ctx.set_now_ms(None);
            let deferred = world.ctx.take_deferred();
            world.ctx.set_path(WritePath::App);
            world.ctx.set_captured_phases([None; 3]);
            if w == MIGRATED && r.is_ok() {
                a.deferred = deferred;
                if let (ActionKind::Webhook { event, .. }, Stage::ApplyStatus) =
                    (&a.kind, a.program[pc])
                {
                    self.step_event = Some(*event);
                    if !self.handled_events.insert(*event) {
                        self.stats.hit(Probe::DuplicateWebhook);
                    }
                }
            }
            if r.is_err() {
                a.failed[w] = true;
            }
            outcomes[w] = r;
        }
        a.pc += 1;
        let name = a.name();
        self.note(name, || {
            format!(
                "step {}/{}: {description}: {}",
                pc + 1,
                a.len(),
                describe_outcomes(&outcomes)
            )
        });
        if let Some((kind, key)) = a.writes(pc) {
            self.written(kind, key);
        }
        // The key book learns an entity when the step that creates it runs (once per action;
        // if that step failed, reads of the key find nothing in either world).
        if let ActionKind::Checkout {
            session,
            tickets,
            txn,
            ..
        } = &a.kind
        {
            match a.program[pc] {
                Stage::CreateSession => Arc::make_mut(&mut self.book.sessions).push(*session),
                Stage::InsertTicket(i) => {
                    Arc::make_mut(&mut self.book.kinds[Kind::Tickets.index()]).push(tickets[i]);
                }
                Stage::InsertTransaction => {
                    Arc::make_mut(&mut self.book.kinds[Kind::Transactions.index()]).push(*txn);
                }
                _ => {}
            }
        }
        if a.pc >= a.len() {
            self.actions.remove(i);
        } else {
            self.actions[i] = a;
        }
        // The typed half of a typed-first write has no counterpart in the app without the
        // migration: whether the write succeeds is compared at its legacy half.
        if stage == Stage::TypedFirst {
            return Ok(());
        }
        self.compare_outcomes(&outcomes, &description)
    }

    // ----- Reads ------------------------------------------------------------------------

    fn read(&mut self, read: &Read) -> Result<(), Failure> {
        let Some(resolved) = resolve_read(&self.book, read) else {
            return Ok(());
        };
        self.stats.reads += 1;
        let legacy = self.migrated.plan.legacy_reads.contains(&read.name());
        let route = if legacy { Route::Legacy } else { Route::Phase };
        let m = run_read(&mut self.migrated, &resolved, route);
        let o = run_read(&mut self.oracle, &resolved, Route::Phase);
        // A shadow read: the legacy answer is served, the typed one compared with it.
        if !legacy
            && m.is_ok()
            && resolved.kinds().iter().any(|k| {
                self.migrated.phase(*k) == Phase::ReadTyped
                    && self.migrated.plan.strategy_for(*k).read_mode == ReadMode::Shadow
            })
        {
            let shadow = run_read(&mut self.migrated, &resolved, Route::Typed);
            if shadow != m {
                self.stats.shadow_mismatches += 1;
            }
        }
        let describe = |r: &Result<Answer, TxError>| match r {
            Ok(v) => v.to_string(),
            Err(e) => format!("error: {e}"),
        };
        match (&m, &o) {
            (Ok(a), Ok(_)) => {
                crate::store::hash_of(a).hash(&mut self.hasher);
            }
            _ => 1u8.hash(&mut self.hasher),
        }
        self.note("reader", || format!("{resolved} -> {}", summarize(&m)));
        if m != o {
            let f = self.fail(
                Invariant::ReadEquivalence,
                format!("{resolved} returned something else than without the migration"),
                Some(describe(&o)),
                Some(describe(&m)),
            );
            let legacy = self.migrated.plan.legacy_reads.contains(&read.name());
            return Err(self.explain(f, |sim| sim.explain_read(&resolved, legacy, &m, &o)));
        }
        Ok(())
    }

    // ----- Invariants --------------------------------------------------------------------

    /// After a phase switch, every entity written since the kind's last switch must read the
    /// same in both worlds through the new phase's read path.
    fn recheck_written(&mut self, kind: Kind, what: &str) -> Result<(), Failure> {
        let emptied = Arc::new(self.written_since_switch[kind.index()].renewed([]));
        let keys = std::mem::replace(&mut self.written_since_switch[kind.index()], emptied);
        for &key in keys.iter() {
            self.compare_entity(kind, key, what)?;
        }
        Ok(())
    }

    fn compare_entity(&mut self, kind: Kind, key: Key, what: &str) -> Result<(), Failure> {
        let m = self.migrated.mutate(0, |c, tx| c.read_one(tx, kind, key));
        let o = self.oracle.mutate(0, |c, tx| c.read_one(tx, kind, key));
        if m != o {
            let show = |r: &Result<Option<View>, TxError>| match r {
                Ok(Some(v)) => v.to_string(),
                Ok(None) => "not found".to_string(),
                Err(e) => format!("error: {e}"),
            };
            let f = self.fail(
                Invariant::AcknowledgedWriteKept,
                format!("{what}: {kind} #{key} does not read back as the oracle has it"),
                Some(show(&o)),
                Some(show(&m)),
            );
            return Err(self.explain(f, |sim| sim.explain_read_back(kind, key)));
        }
        Ok(())
    }

    /// Checks every invariant on what this step touched (never a full scan).
    fn check_after_step(&mut self) -> Result<(), Failure> {
        let oracle_log = self.oracle.absorb();
        let log = self.migrated.absorb();
        (log.len(), oracle_log.len()).hash(&mut self.hasher);
        // Where both worlds now hold the same legacy version, the oracle takes the migrated
        // world's: it shares what the write path derived from it.
        for w in &oracle_log {
            if w.after.is_some()
                && w.id.table == self.oracle.t.objects
                && let Some(mine) = self.migrated.store.peek(w.id)
            {
                let mine = mine.clone();
                self.oracle.store.adopt(&mine);
            }
        }
        if self.verbose && !log.is_empty() {
            let summary = describe_writes(&self.migrated, &log);
            self.note("", || format!("  wrote {summary}"));
        }
        // Acknowledged writes read back the same in both worlds.
        let mut keys_written: BTreeSet<(Kind, Key)> = BTreeSet::new();
        for w in &oracle_log {
            let doc = w
                .after
                .as_ref()
                .or(w.before.as_ref())
                .expect("a write has a side");
            if let Some(kind) = kind_of_doc(doc)
                && let Some(key) = self.oracle.key_of(w.id)
            {
                keys_written.insert((kind, key));
            }
        }
        if self.verbose {
            self.record_history(&log, &oracle_log);
        }
        self.probe_writes(&log);
        let mut legacy_touched = self.migrated.touched_legacy(&log);
        // A crashed action's deferred typed writes will never run: check those documents now.
        legacy_touched.extend(std::mem::take(&mut self.abandoned));
        let typed_touched: Vec<(Kind, &Write)> = log
            .iter()
            .filter_map(|w| self.migrated.t.typed_kind(w.id.table).map(|k| (k, w)))
            .collect();
        for (kind, w) in &typed_touched {
            self.check_typed_row(*kind, w)?;
        }
        for (kind, l) in &legacy_touched {
            self.check_legacy_doc(*kind, *l)?;
        }
        self.check_coverage()?;
        for (kind, key) in keys_written {
            self.compare_entity(kind, key, "after the write")?;
        }
        Ok(())
    }

    /// The probes a step's writes can reach.
    fn probe_writes(&mut self, log: &[Write]) {
        let world = &self.migrated;
        for w in log {
            if self.step_is_backfill {
                if world.t.typed_kind(w.id.table).is_some()
                    && let Some(l) = w.after.as_ref().and_then(|d| world.legacy_of(d))
                {
                    self.copied.insert(l);
                }
                continue;
            }
            if w.id.table != world.t.objects {
                continue;
            }
            match (&w.before, &w.after) {
                (Some(_), Some(_)) if self.copied.remove(&w.id) => {
                    self.stats.hit(Probe::WriteAfterBackfillCopy);
                }
                (None, Some(doc)) => {
                    if let Some(kind) = kind_of_doc(doc)
                        && world.behind_backfill_cursor(kind, doc)
                    {
                        self.stats.hit(Probe::InsertBehindBackfillCursor);
                    }
                }
                _ => {}
            }
        }
    }

    /// Records what the step wrote, per document (migrated) and per entity (oracle).
    fn record_history(&mut self, log: &[Write], oracle_log: &[Write]) {
        let actor = if self.actor.is_empty() {
            "app".to_string()
        } else {
            self.actor.clone()
        };
        let touch = |w: &Write| match (&w.before, &w.after) {
            (None, _) => Touch::Inserted,
            (_, None) => Touch::Deleted,
            _ => Touch::Updated,
        };
        for w in log {
            self.history.record(w.id, self.step_no, &actor, touch(w));
        }
        for w in oracle_log {
            if let Some(key) = self.oracle.key_of(w.id) {
                self.history.oracle.entry(key).or_default().push(Event {
                    step: self.step_no,
                    actor: actor.clone(),
                    touch: touch(w),
                });
            }
        }
        if let Some(e) = self.step_event {
            self.history
                .deliveries
                .entry(e)
                .or_default()
                .push(self.step_no);
        }
    }

    fn check_typed_row(&mut self, kind: Kind, w: &Write) -> Result<(), Failure> {
        let world = &self.migrated;
        let Some(row) = &w.after else {
            return Ok(());
        };
        let id = || world.id_string(row.id);
        // The table's validator as the plan declares it (`references = "keep_legacy"`
        // declares references `v.id("objects")`). A store that validates its writes checked
        // the row against it when it was written; one that does not (the plan turned
        // `schema_validation` off) is checked here.
        let validator = world
            .store
            .validator(row.id.table)
            .unwrap_or_else(|| typed_validator_of(kind));
        if !world.store.validates(row.id.table)
            && let Err(e) = validator.validate_fields(&row.fields)
        {
            let id = id();
            let f = self.fail(
                Invariant::TypedRowValid,
                format!("{id} does not validate against {kind}: {e}"),
                None,
                Some(Value::Object(row.fields.clone()).to_string()),
            );
            let row_id = row.id;
            return Err(self.explain(f, |sim| Explained {
                anomaly: Anomaly::InvalidTypedRow,
                explanation: format!(
                    "{} wrote {id} in a shape its table rejects ({e}), and nothing stopped it",
                    sim.cite_last(row_id)
                ),
            }));
        }
        if let Some(l) = world.legacy_of(row) {
            let key = world.key_of(l);
            if w.before.is_none() && key.is_some_and(|k| self.deleted.contains(&k)) {
                let (row_id, k) = (row.id, key.unwrap_or_default());
                let id = id();
                let f = self.fail(
                    Invariant::DeletedStaysDeleted,
                    format!(
                        "{id} was inserted for {}, which was deleted earlier (#{})",
                        world.id_string(l),
                        key.unwrap_or_default()
                    ),
                    Some("no row".into()),
                    Some(Value::Object(row.fields.clone()).to_string()),
                );
                return Err(self.explain(f, |sim| sim.explain_resurrection(l, row_id, k)));
            }
            let row_ids: Vec<DocId> = world
                .peek_typed_rows(kind, l)
                .iter()
                .map(|r| r.id)
                .collect();
            let rows = row_ids.len();
            if rows > 1 {
                let id = id();
                let f = self.fail(
                    Invariant::UniqueTypedRow,
                    format!(
                        "{} has {rows} typed rows in {kind} (the latest is {id})",
                        world.id_string(l)
                    ),
                    Some("1".into()),
                    Some(rows.to_string()),
                );
                return Err(self.explain(f, |sim| {
                    let inserts: Vec<String> = row_ids
                        .iter()
                        .map(|r| {
                            let by = sim
                                .history
                                .first(*r, |e| e.touch == Touch::Inserted)
                                .map_or_else(|| "an earlier step".into(), Event::cite);
                            format!("{by} inserted {}", sim.migrated.id_string(*r))
                        })
                        .collect();
                    Explained {
                        anomaly: Anomaly::DuplicateTypedRow,
                        explanation: format!(
                            "{}: each a typed row for {}, because the second writer did not find the first by its legacy id",
                            inserts.join(" and "),
                            sim.migrated.id_string(l)
                        ),
                    }
                }));
            }
        }
        let mut dangling = None;
        let _ = for_each_reference_in(kind, &row.fields, |path, target, v| {
            let Some(target) = target else {
                return Ok::<(), ()>(());
            };
            let s = v.as_str().unwrap_or_default();
            let resolves = world
                .parse_id(s)
                .filter(|id| id.table == world.t.typed[target.index()])
                .and_then(|id| world.store.peek(id))
                .is_some();
            if !resolves && dangling.is_none() {
                // Allowed only where the oracle's reference does not resolve either.
                let oracle_resolves = world
                    .parse_id(s)
                    .and_then(|id| world.key_of(id))
                    .and_then(|k| self.oracle.handle(k))
                    .and_then(|h| self.oracle.store.peek(h))
                    .is_some();
                let known = world.parse_id(s).and_then(|id| world.key_of(id)).is_some();
                if oracle_resolves || !known {
                    dangling = Some(format!("{path} = {s} resolves to no {target} row"));
                }
            }
            Ok(())
        });
        if let Some(d) = dangling {
            let id = id();
            let f = self.fail(
                Invariant::ReferentialIntegrity,
                format!("{id}: {d}, but the reference resolves without the migration"),
                None,
                Some(Value::Object(row.fields.clone()).to_string()),
            );
            let row_id = row.id;
            return Err(self.explain(f, |sim| Explained {
                anomaly: Anomaly::DanglingReference,
                explanation: format!(
                    "{} wrote {id} with {d}, while the same reference resolves in the app without the migration",
                    sim.cite_last(row_id)
                ),
            }));
        }
        Ok(())
    }

    fn check_legacy_doc(&mut self, kind: Kind, l: DocId) -> Result<(), Failure> {
        let world = &self.migrated;
        let typed = world.peek_typed_rows(kind, l);
        let quarantined = world.peek_quarantined(l);
        let doc = world.store.peek(l).cloned();
        let Some(doc) = doc.filter(|d| kind_of_doc(d) == Some(kind)) else {
            if let Some(t) = typed.first() {
                let t_id = t.id;
                let f = self.fail(
                    Invariant::NoOrphanTypedRow,
                    format!(
                        "{} survives its deleted legacy document {}",
                        world.id_string(t.id),
                        world.id_string(l)
                    ),
                    Some("no typed row".into()),
                    Some(Value::Object(t.fields.clone()).to_string()),
                );
                return Err(self.explain(f, |sim| {
                    let deleted = sim.history.last(l, |e| e.touch == Touch::Deleted);
                    let phase = deleted.map(|e| sim.history.phase_at(kind, e.step));
                    Explained {
                        anomaly: Anomaly::OrphanedTypedRow,
                        explanation: format!(
                            "{} deleted {}{}, but its typed row {}, written by {}, was not deleted with it",
                            deleted.map_or_else(|| "a step".into(), Event::cite),
                            sim.migrated.id_string(l),
                            phase.map_or_else(String::new, |p| format!(" while {kind} was {p}")),
                            sim.migrated.id_string(t_id),
                            sim.cite_last(t_id)
                        ),
                    }
                }));
            }
            self.set_pending(kind, l, false);
            return Ok(());
        };
        self.set_pending(kind, l, typed.is_empty() && !quarantined);
        let world = &self.migrated;
        let phase = world.phase(kind);
        let both_written = phase.writes_typed() && phase.writes_legacy();
        // An action that writes its typed side in a separate mutation has not done so yet:
        // the sides may differ until its next stage runs or it crashes (then they are
        // checked; readers in between are checked by every read).
        if self.mirror_pending(l) {
            return Ok(());
        }
        // A quarantined document may keep the typed row it had (its last good copy).
        if both_written
            && !quarantined
            && let Some(t) = typed.first()
            && !self.migrated.row_is_mapping(kind, &doc, t)
        {
            let expected = self.migrated.map_doc_now(kind, &doc);
            let world = &self.migrated;
            match expected.as_ref() {
                Ok(f) if *f == t.fields => {}
                Ok(f) => {
                    let difference = first_difference(f, &t.fields);
                    let fail = self.fail(
                        Invariant::FieldAgreement,
                        format!(
                            "{} differs from the mapping of {}: {difference}",
                            world.id_string(t.id),
                            world.id_string(l),
                        ),
                        Some(Value::Object(f.clone()).to_string()),
                        Some(Value::Object(t.fields.clone()).to_string()),
                    );
                    let t_id = t.id;
                    return Err(self.explain(fail, |sim| sim.explain_disagreement(l, t_id)));
                }
                Err(e) => {
                    let fail = self.fail(
                        Invariant::FieldAgreement,
                        format!(
                            "{} no longer maps ({e}) but {} still holds a copy",
                            world.id_string(l),
                            world.id_string(t.id)
                        ),
                        None,
                        Some(Value::Object(t.fields.clone()).to_string()),
                    );
                    let t_id = t.id;
                    return Err(self.explain(fail, |sim| sim.explain_disagreement(l, t_id)));
                }
            }
        }
        Ok(())
    }

    /// Whether an action in flight still has to write `l`'s typed side.
    fn mirror_pending(&self, l: DocId) -> bool {
        self.actions.iter().any(|a| {
            a.deferred.iter().any(|(_, d)| *d == l) || a.stash.iter().any(|s| s.legacy == l)
        })
    }

    fn check_coverage(&mut self) -> Result<(), Failure> {
        for kind in Kind::ALL {
            let Some(l) = self.pending[kind.index()]
                .iter()
                .find(|l| !self.mirror_pending(**l))
                .copied()
            else {
                continue;
            };
            let world = &self.migrated;
            // Coverage is about the documents objects still owns: once a kind is typed-only,
            // its legacy documents are retired copies.
            let phase = world.phase(kind);
            if phase >= Phase::Backfill && phase.writes_legacy() && world.progress_done(kind) {
                let f = self.fail(
                    Invariant::Coverage,
                    format!("{kind} backfill is done but {} has neither a typed row nor a quarantine entry", world.id_string(l)),
                    Some("a typed row or a quarantine entry".into()),
                    Some("neither".into()),
                );
                return Err(self.explain(f, |sim| sim.explain_uncovered(kind, l)));
            }
        }
        Ok(())
    }

    // ----- Explanations (verbose runs only) ------------------------------------------

    fn actor_now(&self) -> &str {
        if self.actor.is_empty() {
            "app"
        } else {
            &self.actor
        }
    }

    /// "step 5 (checkout#2)" for the last write of a migrated document.
    fn cite_last(&self, id: DocId) -> String {
        self.history
            .last(id, |e| e.touch != Touch::ReadByBackfill)
            .map_or_else(|| "the dataset".into(), Event::cite)
    }

    /// Where an entity's value in the app without the migration comes from.
    fn cite_oracle(&self, key: Key) -> String {
        self.history
            .last_oracle_write(key)
            .map_or_else(|| "the dataset".into(), Event::cite)
    }

    /// A write made by an action that captured the phases when it started, after `kind` had
    /// moved on.
    fn stale_phase(&self, kind: Kind, write: &Event, what: &str) -> Option<Explained> {
        if self.migrated.plan.strategy_for(kind).phase_source != PhaseSource::CapturedAtActionStart
        {
            return None;
        }
        let (started, phases) = self.history.actions.get(&write.actor)?;
        let then = phases[kind.index()];
        let now = self.history.phase_at(kind, write.step);
        if then == now {
            return None;
        }
        let moved = self
            .history
            .last_switch(kind, write.step.saturating_sub(1))
            .map_or_else(String::new, |(s, ..)| format!(" at step {s}"));
        Some(Explained {
            anomaly: Anomaly::StalePhaseWrite,
            explanation: format!(
                "{} wrote {what} as if {kind} were still {then}, the phase it captured when it started at step {started}; {kind} had moved to {now}{moved}",
                write.cite()
            ),
        })
    }

    /// A typed row that disagrees with its legacy document: a stale copy the backfill wrote
    /// over a newer write, or a write that reached one side only.
    fn explain_disagreement(&self, l: DocId, t: DocId) -> Explained {
        let h = &self.history;
        let (ls, ts) = (self.migrated.id_string(l), self.migrated.id_string(t));
        let typed_write = h.last(t, |e| e.touch != Touch::ReadByBackfill);
        if let Some(w) = typed_write.filter(|w| w.actor.starts_with("backfill"))
            && let Some(r) = h.last(l, |e| e.touch == Touch::ReadByBackfill && e.step < w.step)
            && let Some(u) = h.last(l, |e| {
                e.touch != Touch::ReadByBackfill && e.step > r.step && e.step < w.step
            })
        {
            return Explained {
                anomaly: Anomaly::StaleCopyOverwrite,
                explanation: format!(
                    "step {}'s backfill read {ls} before {} wrote it; step {} wrote the stale copy it had read over {ts}",
                    r.step,
                    u.cite(),
                    w.step
                ),
            };
        }
        let legacy_write = h.last(l, |e| e.touch != Touch::ReadByBackfill);
        // Typed first: the typed row was written ahead of its legacy document, and the
        // action crashed before writing that.
        if let Some(w) = typed_write
            && legacy_write.is_none_or(|u| u.step < w.step)
            && let Some(c) = h.crashes.get(&w.actor).filter(|c| **c > w.step)
        {
            return Explained {
                anomaly: Anomaly::DivergentDoubleWrite,
                explanation: format!(
                    "{} wrote {ts} first (typed first), and {} crashed at step {c} before writing {ls}: the typed row is ahead of its legacy document for good",
                    w.cite(),
                    w.actor
                ),
            };
        }
        if let Some(kind) = self.migrated.t.typed_kind(t.table)
            && let Some(x) = legacy_write.and_then(|u| self.stale_phase(kind, u, &ls))
        {
            return x;
        }
        let crash = legacy_write
            .and_then(|u| h.crashes.get(&u.actor).map(|c| (u, *c)))
            .filter(|(u, c)| *c > u.step)
            .map_or_else(String::new, |(u, c)| {
                format!(
                    "; {} crashed at step {c}, before the separate mutation that writes the typed side",
                    u.actor
                )
            });
        Explained {
            anomaly: Anomaly::DivergentDoubleWrite,
            explanation: format!(
                "{} wrote {ls} but not its typed row {ts} (last written by {}){crash}",
                legacy_write.map_or_else(|| "a step".into(), Event::cite),
                typed_write.map_or_else(|| "the dataset".into(), Event::cite)
            ),
        }
    }

    /// A typed row inserted for an entity the oracle deleted.
    fn explain_resurrection(&self, l: DocId, row: DocId, key: Key) -> Explained {
        let h = &self.history;
        let deleted = h
            .oracle
            .get(&key)
            .and_then(|es| es.iter().rev().find(|e| e.touch == Touch::Deleted));
        let inserted = h.first(row, |e| e.touch == Touch::Inserted);
        let copy = h
            .last(l, |e| e.touch == Touch::ReadByBackfill)
            .filter(|r| deleted.is_some_and(|d| r.step < d.step))
            .map_or_else(String::new, |r| {
                format!(", from the copy the backfill read at step {}", r.step)
            });
        Explained {
            anomaly: Anomaly::ResurrectedDelete,
            explanation: format!(
                "{} deleted #{key}; {} inserted the typed row {} for {} again{copy}",
                deleted.map_or_else(|| "an earlier step".into(), Event::cite),
                inserted.map_or_else(|| "a later step".into(), Event::cite),
                self.migrated.id_string(row),
                self.migrated.id_string(l)
            ),
        }
    }

    /// A legacy document with neither a typed row nor a quarantine entry after the backfill.
    fn explain_uncovered(&mut self, kind: Kind, l: DocId) -> Explained {
        let ls = self.migrated.id_string(l);
        let done = self.history.backfill_done.get(&kind).map_or_else(
            || "the backfill finished".into(),
            |s| format!("the backfill finished at step {s}"),
        );
        if let Some(doc) = self.migrated.store.peek(l).cloned()
            && let Err(e) = self.migrated.map_doc_now(kind, &doc).as_ref()
        {
            return Explained {
                anomaly: Anomaly::SilentlyDroppedDocument,
                explanation: format!(
                    "{ls} cannot map ({e}); {done} without a typed row or a quarantine entry for it, so nothing records that it was left out"
                ),
            };
        }
        if self.migrated.plan.strategy_for(kind).invalid_documents == InvalidDocuments::Skip {
            return Explained {
                anomaly: Anomaly::SilentlyDroppedDocument,
                explanation: format!(
                    "{ls}'s typed write was rejected and the plan skips such documents silently; {done} without a typed row or a quarantine entry for it"
                ),
            };
        }
        let h = &self.history;
        // A typed row deleted while the kind was typed-only, then a rollback: the retired
        // legacy copy is live again.
        let typed_deleted = h
            .docs
            .iter()
            .filter(|(id, _)| self.migrated.t.typed_kind(id.table) == Some(kind))
            .filter_map(|(id, es)| {
                let d = es.iter().rev().find(|e| e.touch == Touch::Deleted)?;
                (self.migrated.key_of(*id) == self.migrated.key_of(l)).then_some((*id, d))
            })
            .next();
        if let Some((row, d)) = typed_deleted
            && h.phase_at(kind, d.step) == Phase::TypedOnly
            && let Some((r, from, to)) = h.last_switch(kind, self.step_no)
            && r > d.step
            && to < from
        {
            return Explained {
                anomaly: Anomaly::ResurrectedDelete,
                explanation: format!(
                    "{} deleted {} while {kind} was typed_only, where only the typed row is written; step {r} rolled {kind} back {from} -> {to}, and its retired legacy copy {ls} is live again",
                    d.cite(),
                    self.migrated.id_string(row)
                ),
            };
        }
        let written = h.last(l, |e| e.touch != Touch::ReadByBackfill);
        if let Some(x) = written.and_then(|u| self.stale_phase(kind, u, &ls)) {
            return x;
        }
        if self.migrated.plan.strategy_for(kind).backfill_cursor == BackfillCursor::Offset
            && let Some(done_at) = h.backfill_done.get(&kind)
            && let Some((gone, d)) = h
                .docs
                .iter()
                .filter(|(id, _)| id.table == self.migrated.t.objects && **id < l)
                .find_map(|(id, es)| {
                    es.iter()
                        .find(|e| e.touch == Touch::Deleted && e.step < *done_at)
                        .map(|e| (*id, e))
                })
        {
            return Explained {
                anomaly: Anomaly::MissingTypedRow,
                explanation: format!(
                    "the backfill pages by offset: {} deleted {}, an earlier document, while the backfill was under way, so every later document moved one place back and {ls} was skipped; {done} without it",
                    d.cite(),
                    self.migrated.id_string(gone)
                ),
            };
        }
        let phase = written.map(|e| h.phase_at(kind, e.step));
        Explained {
            anomaly: Anomaly::MissingTypedRow,
            explanation: format!(
                "{} wrote {ls}{} and no typed write followed; {done} without it",
                written.map_or_else(|| "the dataset".into(), Event::cite),
                phase.map_or_else(String::new, |p| format!(" while {kind} was {p}"))
            ),
        }
    }

    /// A payment event for transaction `key` that the migrated handler applied twice, when
    /// the plan's handler does not dedupe.
    fn duplicate_delivery(&self, key: Key) -> Option<Explained> {
        if self.migrated.plan.strategy.webhook_dedupe {
            return None;
        }
        let h = &self.history;
        let (event, first, again) = self
            .deliveries
            .iter()
            .filter(|(txn, _, _)| *txn == key)
            .find_map(|(_, _, e)| {
                let steps = h.deliveries.get(e)?;
                Some((*e, *steps.first()?, *steps.get(1)?))
            })?;
        let newer = h
            .oracle
            .get(&key)
            .and_then(|es| es.iter().rev().find(|w| w.step > first && w.step < again))
            .map_or_else(String::new, |w| format!(" over what {} wrote", w.cite()));
        Some(Explained {
            anomaly: Anomaly::DuplicateDelivery,
            explanation: format!(
                "Stripe redelivered evt_{event}: step {first} applied it and step {again} applied it again{newer}; the handler does not dedupe, while the app without the migration ignores the duplicate"
            ),
        })
    }

    /// An entity whose typed write an action in flight has deferred to its next stage, seen
    /// by a reader in between.
    fn unmirrored(&self, kind: Kind, key: Key) -> Option<Explained> {
        let l = self.migrated.handle(key)?;
        if let Some(a) = self
            .actions
            .iter()
            .find(|a| a.stash.iter().any(|s| s.legacy == l))
        {
            return Some(Explained {
                anomaly: Anomaly::DivergentDoubleWrite,
                explanation: format!(
                    "{} wrote the typed side of {} first (typed first), and its legacy write has not run yet: until it does, and for good if {} crashes first, objects and readers of it miss the write, while typed readers see it",
                    a.name(),
                    self.migrated.id_string(l),
                    a.name()
                ),
            });
        }
        let a = self
            .actions
            .iter()
            .find(|a| a.deferred.iter().any(|(_, d)| *d == l))?;
        let wrote = self.cite_last(l);
        let since = self
            .history
            .last_switch(kind, self.step_no)
            .filter(|(_, _, to)| to.reads_typed())
            .map_or_else(String::new, |(s, ..)| format!(" since step {s}"));
        Some(Explained {
            anomaly: Anomaly::DivergentDoubleWrite,
            explanation: format!(
                "{wrote} wrote {} and acknowledged it, but {} writes the typed side in a separate mutation that has not run yet; {kind} reads its typed table{since}, so readers do not see the write (and a crash now would lose it for them for good)",
                self.migrated.id_string(l),
                a.name()
            ),
        })
    }

    /// An entity that does not read back as the oracle has it.
    fn explain_read_back(&self, kind: Kind, key: Key) -> Explained {
        if let Some(x) = &self.step_rejected {
            return x.clone();
        }
        let now = Event {
            step: self.step_no,
            actor: self.actor_now().to_string(),
            touch: Touch::Updated,
        };
        if let Some(x) = self.stale_phase(kind, &now, &format!("#{key}")) {
            return x;
        }
        let h = &self.history;
        if let Some(x) = self.unmirrored(kind, key) {
            return x;
        }
        if kind == Kind::Transactions
            && let Some(x) = self.duplicate_delivery(key)
        {
            return x;
        }
        if let Some((s, from, to)) = h.last_switch(kind, self.step_no)
            && s == self.step_no
        {
            return Explained {
                anomaly: Anomaly::NonMonotonicRead,
                explanation: format!(
                    "{} wrote #{key}; after step {s} moved {kind} {from} -> {to}, reading it through the new read path returns something else",
                    self.cite_oracle(key)
                ),
            };
        }
        Explained {
            anomaly: Anomaly::LostWrite,
            explanation: format!(
                "step {} ({}) wrote #{key}, but reading it back in the migrated app returns something else than in the app without the migration",
                self.step_no,
                self.actor_now()
            ),
        }
    }

    /// A read that returned something else than the oracle.
    fn explain_read(
        &self,
        read: &Resolved,
        legacy: bool,
        m: &Result<Answer, TxError>,
        o: &Result<Answer, TxError>,
    ) -> Explained {
        let kind = read.kind();
        let h = &self.history;
        let entities = |a: &Result<Answer, TxError>| -> BTreeMap<Key, View> {
            match a {
                Ok(Answer::One(Some(v))) => answer_keys(std::slice::from_ref(v)),
                Ok(Answer::Many(vs)) => answer_keys(vs),
                _ => BTreeMap::new(),
            }
        };
        let (me, oe) = (entities(m), entities(o));
        let missing = oe.keys().find(|k| !me.contains_key(k)).copied();
        let differing = oe
            .iter()
            .find(|(k, v)| me.get(k).is_some_and(|w| w != *v))
            .map(|(k, _)| *k);
        let extra = me.keys().find(|k| !oe.contains_key(k)).copied();
        let subject = missing.or(differing).or(extra);
        if let Some(k) = subject
            && kind == Kind::Transactions
            && let Some(x) = self.duplicate_delivery(k)
        {
            return x;
        }
        if let Some(x) = subject.and_then(|k| self.unmirrored(kind, k)) {
            return x;
        }
        if let Some(k) = subject
            && let Some(w) = h.last_oracle_write(k)
            && let Some(x) = self.stale_phase(kind, w, &format!("#{k}"))
        {
            return x;
        }
        let about = subject.map_or_else(
            || "its answer".to_string(),
            |k| format!("#{k} (last written by {})", self.cite_oracle(k)),
        );
        let step = self.step_no;
        let switch = h.last_switch(kind, step);
        if legacy {
            let since = h
                .switches
                .iter()
                .find(|(_, k, _, to)| *k == kind && *to == Phase::TypedOnly)
                .map_or_else(String::new, |(s, ..)| format!(" since step {s}"));
            return Explained {
                anomaly: Anomaly::StaleLegacyRead,
                explanation: format!(
                    "the read at step {step} ({read}) was never ported and still reads objects, but {kind} writes only its typed rows{since}: it gets {about} wrong"
                ),
            };
        }
        if let Some((r, from, to)) = switch
            && to < from
        {
            return Explained {
                anomaly: Anomaly::NonMonotonicRead,
                explanation: format!(
                    "after step {r} rolled {kind} back {from} -> {to}, the read at step {step} ({read}) no longer sees {about} as it was"
                ),
            };
        }
        // The kinds the read goes through (tickets of an event read the event first).
        let typed_kind = read
            .kinds()
            .into_iter()
            .find(|k| self.migrated.phase(*k).reads_typed());
        if let Some(tk) = typed_kind
            && (missing.is_some() || extra.is_none())
        {
            let since = h
                .last_switch(tk, step)
                .map_or_else(String::new, |(s, ..)| format!(" since step {s}"));
            return Explained {
                anomaly: Anomaly::MissingRowAfterReadSwitch,
                explanation: format!(
                    "{tk} reads its typed table{since}, and the read at step {step} ({read}) misses or misreads {about}: a typed row it needs is missing or out of date"
                ),
            };
        }
        Explained {
            anomaly: Anomaly::LostWrite,
            explanation: format!(
                "the read at step {step} ({read}) returns {about} differently from the app without the migration"
            ),
        }
    }

    /// Legacy documents of `kind` still waiting for the backfill (for reports and tests).
    pub fn pending(&self, kind: Kind) -> usize {
        self.pending[kind.index()].len()
    }
}

/// The entities of a read's answer, by key.
fn answer_keys(views: &[View]) -> BTreeMap<Key, View> {
    views
        .iter()
        .filter_map(|v| {
            let key = v.as_object()?.get("_key")?;
            match key {
                Value::Int64(k) => Some((u32::try_from(*k).ok()?, v.clone())),
                _ => None,
            }
        })
        .collect()
}

fn first_difference(expected: &Fields, seen: &Fields) -> String {
    for (k, v) in expected {
        match seen.get(k) {
            Some(s) if s == v => {}
            Some(s) => return format!("{k}: expected {v}, found {s}"),
            None => return format!("{k}: expected {v}, missing"),
        }
    }
    match seen.keys().find(|k| !expected.contains_key(*k)) {
        Some(k) => format!("{k}: unexpected field"),
        None => "no difference".into(),
    }
}

/// Runs step `pc` of an action in one world: one transaction (or an external call).
fn action_transaction(
    world: &mut World,
    a: &mut InFlight,
    w: usize,
    pc: usize,
    skew: u64,
    now_ms: f64,
    description: &mut String,
) -> Result<(), TxError> {
    match a.kind.clone() {
        ActionKind::Checkout {
            event,
            product,
            session,
            tickets,
            txn,
            v1,
            seed,
        } => {
            let q = tickets.len();
            let stage = a.program[pc];
            // Stage numbers as in the program without mirror stages.
            let n = match stage {
                Stage::InsertTicket(i) => i + 1,
                Stage::InsertTransaction => q + 1,
                _ => 0,
            };
            let mut rng = data::rng(u64::from(seed) << 8 | n as u64);
            if stage == Stage::CreateSession {
                *description = format!("create checkout session #{session} for event #{event}");
                let id = world.mutate(skew, |c, tx| {
                    let ev = c
                        .read_one(tx, Kind::Events, event)?
                        .ok_or_else(|| TxError::Threw(format!("event #{event} does not exist")))?;
                    let org = ev
                        .as_object()
                        .and_then(|f| f.get("organizationId"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    c.create_object(
                        tx,
                        data::object_fields(
                            &org,
                            "checkout_session",
                            None,
                            "Checkout".into(),
                            "open",
                            Fields::new(),
                            now_ms,
                        ),
                    )
                })?;
                world.ctx.register(session, id);
                Ok(())
            } else if let Stage::InsertTicket(i) = stage {
                let pc = i + 1;
                let t = tickets[i];
                *description = format!("insert ticket #{t} ({pc} of {q})");
                let id = world.mutate(skew, |c, tx| {
                    let ev = c
                        .read_one(tx, Kind::Events, event)?
                        .ok_or_else(|| TxError::Threw(format!("event #{event} does not exist")))?;
                    let ev = ev.as_object().cloned().unwrap_or_default();
                    let (er, pr, sr) = (
                        c.legacy_arg(&Arg::Ref(event)),
                        c.legacy_arg(&Arg::Ref(product)),
                        c.legacy_arg(&Arg::Ref(session)),
                    );
                    let purchase = purchase(&er, &pr, &sr, &ev, q);
                    let cp = data::ticket_properties(&mut rng, &purchase, pc as u32);
                    let name = format!(
                        "{} #{pc}",
                        ev.get("name").and_then(Value::as_str).unwrap_or("Ticket")
                    );
                    let org = ev.get("organizationId").cloned().unwrap_or(Value::Null);
                    let id = c.create(
                        tx,
                        Kind::Tickets,
                        data::object_fields(
                            &org,
                            "ticket",
                            Some("general"),
                            name,
                            "issued",
                            cp,
                            now_ms,
                        ),
                    )?;
                    if let Some(e) = c.handle(event) {
                        c.link(tx, id, e, "admits_to")?;
                    }
                    Ok(id)
                })?;
                world.ctx.register(t, id);
                Ok(())
            } else if stage == Stage::InsertTransaction {
                *description = format!(
                    "insert transaction #{txn} ({})",
                    if v1 { "v1" } else { "v2" }
                );
                let id = world.mutate(skew, |c, tx| {
                    let ev = c
                        .read_one(tx, Kind::Events, event)?
                        .and_then(|v| v.as_object().cloned())
                        .ok_or_else(|| TxError::Threw(format!("event #{event} does not exist")))?;
                    let (er, pr, sr) = (
                        c.legacy_arg(&Arg::Ref(event)),
                        c.legacy_arg(&Arg::Ref(product)),
                        c.legacy_arg(&Arg::Ref(session)),
                    );
                    let purchase = purchase(&er, &pr, &sr, &ev, q);
                    let shape = if v1 { TxShape::V1 } else { TxShape::V2 };
                    let mut cp =
                        data::transaction_properties(&mut rng, shape, &purchase, "pending", true);
                    if v1
                        && let Some(Value::String(t)) =
                            tickets.first().map(|t| c.legacy_arg(&Arg::Ref(*t)))
                    {
                        cp.insert("ticketId".into(), Value::String(t));
                    }
                    let org = ev.get("organizationId").cloned().unwrap_or(Value::Null);
                    let name = format!("Order by {}", cp["customerName"].as_str().unwrap_or("?"));
                    c.create(
                        tx,
                        Kind::Transactions,
                        data::object_fields(
                            &org,
                            "transaction",
                            Some("ticket_purchase"),
                            name,
                            "active",
                            cp,
                            now_ms,
                        ),
                    )
                })?;
                world.ctx.register(txn, id);
                Ok(())
            } else if stage == Stage::MarkPaid {
                *description = format!("patch transaction #{txn}: paid");
                let changes = [
                    Change {
                        field: "paymentStatus",
                        value: Some(Arg::Plain(Value::from("paid"))),
                    },
                    Change {
                        field: "paymentIntentId",
                        value: Some(Arg::Plain(Value::String(compact_str::format_compact!(
                            "pi_{seed}_{txn}"
                        )))),
                    },
                    Change {
                        field: "paymentDate",
                        value: Some(Arg::Plain(Value::Float64(now_ms))),
                    },
                ];
                world.mutate(skew, |c, tx| {
                    c.update(tx, Kind::Transactions, txn, &changes)
                })
            } else {
                let (Stage::ReadTicket(i) | Stage::LinkTicket(i)) = stage else {
                    unreachable!("checkout programs have no stage {stage:?}");
                };
                let t = tickets[i];
                if matches!(stage, Stage::ReadTicket(_)) {
                    *description = format!("read ticket #{t} to link it");
                    let found = world.mutate(skew, |c, tx| c.read_one(tx, Kind::Tickets, t))?;
                    a.captured[w] = found.map(|view| (view, None));
                    Ok(())
                } else {
                    *description = format!("link ticket #{t} to transaction #{txn}");
                    if a.captured[w].take().is_none() {
                        return Ok(());
                    }
                    world.mutate(skew, |c, tx| {
                        // The transaction may have been deleted since it was created; the
                        // app links only to a transaction that still exists.
                        if c.read_one(tx, Kind::Transactions, txn)?.is_none() {
                            return Ok(());
                        }
                        c.update(
                            tx,
                            Kind::Tickets,
                            t,
                            &[Change {
                                field: "transactionId",
                                value: Some(Arg::Ref(txn)),
                            }],
                        )?;
                        if let (Some(x), Some(tk)) = (c.handle(txn), c.handle(t)) {
                            c.link(tx, x, tk, "has_ticket")?;
                        }
                        Ok(())
                    })
                }
            }
        }
        ActionKind::Webhook { txn, status, event } => {
            if a.program[pc] == Stage::Deliver {
                *description =
                    format!("Stripe delivers evt_{event}: {status} for transaction #{txn}");
                return Ok(());
            }
            *description =
                format!("apply evt_{event}: payment status {status} to transaction #{txn}");
            let changes = [
                Change {
                    field: "paymentStatus",
                    value: Some(Arg::Plain(Value::from(status))),
                },
                Change {
                    field: "paymentDate",
                    value: Some(Arg::Plain(Value::Float64(now_ms))),
                },
            ];
            // The app without the migration dedupes by event id; the migrated handler does
            // if the plan says so.
            let dedupe = w == ORACLE || world.plan.strategy.webhook_dedupe;
            world.mutate(skew, |c, tx| {
                // The typed half of a typed-first write already recorded the event.
                if dedupe && c.half() != Half::LegacyAfter {
                    let id = Value::String(compact_str::format_compact!("evt_{event}"));
                    if tx
                        .first(c.t.webhook_events_by_id, std::slice::from_ref(&id))?
                        .is_some()
                    {
                        return Ok(());
                    }
                    let mut f = Fields::new();
                    f.insert("eventId".into(), id);
                    tx.insert(c.t.webhook_events, f)?;
                }
                c.update(tx, Kind::Transactions, txn, &changes)
            })
        }
        ActionKind::Refund { txn, partial } => match a.program[pc] {
            Stage::ReadForRefund => {
                *description = format!("read transaction #{txn} for a refund");
                let captured = world.mutate(skew, |c, tx| {
                    let view = c.read_one(tx, Kind::Transactions, txn)?;
                    let (legacy, _) = c.locate(tx, Kind::Transactions, txn)?;
                    let raw = match legacy {
                        Some(l) => tx.get(l)?,
                        None => None,
                    };
                    Ok(view.map(|v| (v, raw)))
                })?;
                a.captured[w] = captured;
                Ok(())
            }
            Stage::CallStripe => {
                *description = format!("call Stripe to refund transaction #{txn}");
                Ok(())
            }
            _ => {
                *description = format!(
                    "record the {}refund of transaction #{txn}",
                    if partial { "partial " } else { "" }
                );
                let Some((view, raw)) = a.captured[w].clone() else {
                    return Err(TxError::Threw(format!("transaction #{txn} not found")));
                };
                let total = view
                    .as_object()
                    .and_then(|f| f.get("totalInCents"))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                let amount = if partial {
                    (total / 2.0).round()
                } else {
                    total
                };
                let changes = [
                    Change {
                        field: "refundId",
                        value: Some(Arg::Plain(Value::String(compact_str::format_compact!(
                            "re_{txn}_{pc}"
                        )))),
                    },
                    Change {
                        field: "refundAmount",
                        value: Some(Arg::Plain(Value::Float64(amount))),
                    },
                    Change {
                        field: "refundDate",
                        value: Some(Arg::Plain(Value::Float64(now_ms))),
                    },
                    Change {
                        field: "refundReason",
                        value: Some(Arg::Plain(Value::from("requested_by_customer"))),
                    },
                    Change {
                        field: "paymentStatus",
                        value: Some(Arg::Plain(Value::from(if partial {
                            "partially_refunded"
                        } else {
                            "refunded"
                        }))),
                    },
                ];
                let stale = world.bugs.refund_upserts_stale_copy;
                world.mutate(skew, |c, tx| {
                    match c.update(tx, Kind::Transactions, txn, &changes) {
                        Err(TxError::NotFound(e)) if stale && raw.is_some() => {
                            // The planted bug: write the typed row from the copy read earlier.
                            let raw = raw.as_ref().expect("checked");
                            match c.map_doc(tx, Kind::Transactions, raw, None)? {
                                Ok(f) => tx
                                    .insert(c.t.typed[Kind::Transactions.index()], f)
                                    .map(|_| ()),
                                Err(_) => Err(TxError::NotFound(e)),
                            }
                        }
                        other => other,
                    }
                })
            }
        },
    }
}

fn purchase<'a>(
    event: &'a Value,
    product: &'a Value,
    session: &'a Value,
    ev: &'a Fields,
    quantity: usize,
) -> data::Purchase<'a> {
    data::Purchase {
        product,
        product_name: "Admission",
        event,
        event_name: ev.get("name").and_then(Value::as_str).unwrap_or("Event"),
        session,
        quantity: quantity as u32,
        unit_price: 2500.0,
    }
}

/// A read with its selections resolved to keys and organizations.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved {
    ById(Kind, Key),
    TicketsOfEvent(Key),
    TicketsOfTransaction(Key),
    TransactionsOfSession(Key),
    OfOrg {
        kind: Kind,
        org: usize,
        status: Option<&'static str>,
    },
    TotalsByOrg(usize),
}

impl Resolved {
    /// The kinds whose read paths the read goes through: the kind it returns, then the kind
    /// it looks up first.
    pub fn kinds(&self) -> Vec<Kind> {
        match self {
            Resolved::TicketsOfEvent(_) => vec![Kind::Tickets, Kind::Events],
            Resolved::TicketsOfTransaction(_) => vec![Kind::Tickets, Kind::Transactions],
            other => vec![other.kind()],
        }
    }

    /// The kind the read returns.
    pub fn kind(&self) -> Kind {
        match self {
            Resolved::ById(kind, _) | Resolved::OfOrg { kind, .. } => *kind,
            Resolved::TicketsOfEvent(_) | Resolved::TicketsOfTransaction(_) => Kind::Tickets,
            Resolved::TransactionsOfSession(_) | Resolved::TotalsByOrg(_) => Kind::Transactions,
        }
    }
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resolved::ById(kind, key) => write!(f, "{kind} #{key} by id"),
            Resolved::TicketsOfEvent(e) => write!(f, "tickets of event #{e}"),
            Resolved::TicketsOfTransaction(x) => write!(f, "tickets of transaction #{x}"),
            Resolved::TransactionsOfSession(s) => {
                write!(f, "transactions of checkout session #{s}")
            }
            Resolved::OfOrg {
                kind,
                org,
                status: Some(s),
            } => write!(f, "{kind} of organization {org} with status {s}"),
            Resolved::OfOrg {
                kind,
                org,
                status: None,
            } => write!(f, "{kind} of organization {org}"),
            Resolved::TotalsByOrg(org) => write!(f, "totals of organization {org}"),
        }
    }
}

fn resolve_read(book: &KeyBook, read: &Read) -> Option<Resolved> {
    let k = |kind: Kind, sel: Sel| pick(&book.kinds[kind.index()], sel);
    Some(match read {
        Read::TransactionById { txn } => {
            Resolved::ById(Kind::Transactions, k(Kind::Transactions, *txn)?)
        }
        Read::TicketById { ticket } => Resolved::ById(Kind::Tickets, k(Kind::Tickets, *ticket)?),
        Read::EventById { event } => Resolved::ById(Kind::Events, k(Kind::Events, *event)?),
        Read::TicketsOfEvent { event } => Resolved::TicketsOfEvent(k(Kind::Events, *event)?),
        Read::TicketsOfTransaction { txn } => {
            Resolved::TicketsOfTransaction(k(Kind::Transactions, *txn)?)
        }
        Read::TransactionsOfSession { session } => {
            Resolved::TransactionsOfSession(pick(&book.sessions, *session)?)
        }
        Read::TransactionsOfOrg { org, status } => Resolved::OfOrg {
            kind: Kind::Transactions,
            org: usize::from(*org),
            status: status.map(|s| PAYMENT_STATUSES[usize::from(s) % PAYMENT_STATUSES.len()]),
        },
        Read::TicketsOfOrgByStatus { org, status } => Resolved::OfOrg {
            kind: Kind::Tickets,
            org: usize::from(*org),
            status: Some(TICKET_STATUSES[usize::from(*status) % TICKET_STATUSES.len()]),
        },
        Read::EventsOfOrg { org } => Resolved::OfOrg {
            kind: Kind::Events,
            org: usize::from(*org),
            status: None,
        },
        Read::TotalsByOrg { org } => Resolved::TotalsByOrg(usize::from(*org)),
    })
}

/// What a read returns: one document (or none), a list, or an aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Answer {
    One(Option<View>),
    Many(Vec<View>),
    Totals(Value),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::One(None) => write!(f, "not found"),
            Answer::One(Some(v)) => write!(f, "{v}"),
            Answer::Many(views) => {
                write!(f, "[")?;
                for (i, v) in views.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
            Answer::Totals(v) => write!(f, "{v}"),
        }
    }
}

/// Runs a read as one query in a world, returning what the reader sees.
/// Runs a read in one world, routed as `route` says.
pub fn run_read(world: &mut World, read: &Resolved, route: Route) -> Result<Answer, TxError> {
    world.ctx.set_route(route);
    let answer = run_read_routed(world, read);
    world.ctx.set_route(Route::Phase);
    answer
}

fn run_read_routed(world: &mut World, read: &Resolved) -> Result<Answer, TxError> {
    world.mutate(0, |c, tx| {
        let list = Answer::Many;
        match read {
            Resolved::ById(kind, key) => Ok(Answer::One(c.read_one(tx, *kind, *key)?)),
            Resolved::TicketsOfEvent(e) => {
                if c.read_one(tx, Kind::Events, *e)?.is_none() {
                    return Ok(list(vec![]));
                }
                let typed_id = c.typed_id_of(tx, Kind::Events, *e)?;
                let views = c.read_list(
                    tx,
                    Kind::Tickets,
                    None,
                    &mut |c, tx| linked(c, tx, c.handle(*e), "admits_to", false),
                    &mut |c, tx| match &typed_id {
                        Some(id) => tx.range(c.t.tickets_by_event, std::slice::from_ref(id)),
                        None => Ok(vec![]),
                    },
                )?;
                Ok(list(views))
            }
            Resolved::TicketsOfTransaction(x) => {
                if c.read_one(tx, Kind::Transactions, *x)?.is_none() {
                    return Ok(list(vec![]));
                }
                let typed_id = c.typed_id_of(tx, Kind::Transactions, *x)?;
                let views = c.read_list(
                    tx,
                    Kind::Tickets,
                    None,
                    &mut |c, tx| linked(c, tx, c.handle(*x), "has_ticket", true),
                    &mut |c, tx| match &typed_id {
                        Some(id) => tx.range(c.t.tickets_by_transaction, std::slice::from_ref(id)),
                        None => Ok(vec![]),
                    },
                )?;
                Ok(list(views))
            }
            Resolved::TransactionsOfSession(s) => {
                let Some(session) = c.handle(*s) else {
                    return Ok(list(vec![]));
                };
                let Some(sdoc) = tx.get(session)? else {
                    return Ok(list(vec![]));
                };
                let org = sdoc.get("organizationId").cloned().unwrap_or(Value::Null);
                let sid = Value::String(c.id_string(session));
                let views = c.read_list(
                    tx,
                    Kind::Transactions,
                    Some(&org),
                    &mut |c, tx| {
                        let docs = tx.range(
                            c.t.objects_by_org_type,
                            &[org.clone(), Value::from("transaction")],
                        )?;
                        Ok(docs
                            .into_iter()
                            .filter(|d| {
                                d.get("customProperties")
                                    .and_then(Value::as_object)
                                    .and_then(|cp| cp.get("checkoutSessionId"))
                                    == Some(&sid)
                            })
                            .collect())
                    },
                    &mut |c, tx| tx.range(c.t.transactions_by_session, std::slice::from_ref(&sid)),
                )?;
                Ok(list(views))
            }
            Resolved::OfOrg { kind, org, status } => {
                let org_id = Value::String(c.id_string(c.org_id(*org)));
                let views = of_org(c, tx, *kind, &org_id, *status)?;
                Ok(list(views))
            }
            Resolved::TotalsByOrg(org) => {
                let org_id = Value::String(c.id_string(c.org_id(*org)));
                let views = of_org(c, tx, Kind::Transactions, &org_id, None)?;
                let (mut paid, mut pending, mut count) = (0.0, 0.0, 0.0);
                for v in &views {
                    let f = v.as_object().expect("views are objects");
                    let total = f.get("totalInCents").and_then(Value::as_f64).unwrap_or(0.0);
                    match f.get("paymentStatus").and_then(Value::as_str) {
                        Some("paid" | "completed") => paid += total,
                        Some("pending" | "awaiting_employer_payment") => pending += total,
                        _ => {}
                    }
                    count += 1.0;
                }
                Ok(Answer::Totals(crate::value::object([
                    ("paidInCents", Value::Float64(paid)),
                    ("pendingInCents", Value::Float64(pending)),
                    ("transactions", Value::Float64(count)),
                ])))
            }
        }
    })
}

fn of_org(
    c: &crate::world::Ctx,
    tx: &mut crate::store::Tx<'_>,
    kind: Kind,
    org_id: &Value,
    status: Option<&'static str>,
) -> Result<Vec<View>, TxError> {
    let views = c.read_list(
        tx,
        kind,
        Some(org_id),
        &mut |c, tx| {
            tx.range(
                c.t.objects_by_org_type,
                &[org_id.clone(), Value::from(kind.legacy_type())],
            )
        },
        &mut |c, tx| match kind {
            Kind::Events => tx.range(c.t.events_by_org, std::slice::from_ref(org_id)),
            Kind::Transactions => tx.range(c.t.transactions_by_org, std::slice::from_ref(org_id)),
            Kind::Tickets => match status {
                Some(s) => tx.range(c.t.tickets_by_org_status, &[org_id.clone(), Value::from(s)]),
                None => Ok(vec![]),
            },
        },
    )?;
    let field = if kind == Kind::Tickets {
        "status"
    } else {
        "paymentStatus"
    };
    Ok(views
        .into_iter()
        .filter(|v| {
            status.is_none_or(|s| v.as_object().and_then(|f| f.get(field)) == Some(&Value::from(s)))
        })
        .collect())
}

/// Legacy documents linked from (`outgoing`) or to a document by `link_type`.
fn linked(
    c: &crate::world::Ctx,
    tx: &mut crate::store::Tx<'_>,
    at: Option<DocId>,
    link_type: &str,
    outgoing: bool,
) -> Result<Vec<Arc<Doc>>, TxError> {
    let Some(at) = at else { return Ok(vec![]) };
    let prefix = [Value::String(c.id_string(at)), Value::from(link_type)];
    let (index, other) = if outgoing {
        (c.t.links_by_from, "toObjectId")
    } else {
        (c.t.links_by_to, "fromObjectId")
    };
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for l in tx.range(index, &prefix)? {
        if let Some(id) = l
            .get(other)
            .and_then(Value::as_str)
            .and_then(|s| c.parse_id(s))
            && seen.insert(id)
            && let Some(d) = tx.get(id)?
        {
            out.push(d);
        }
    }
    Ok(out)
}

fn summarize(r: &Result<Answer, TxError>) -> String {
    match r {
        Ok(Answer::Many(items)) => format!("{} rows", items.len()),
        Ok(v) => {
            let s = v.to_string();
            if s.len() > 80 {
                format!(
                    "{}...",
                    &s[..s.char_indices().nth(77).map_or(s.len(), |(i, _)| i)]
                )
            } else {
                s
            }
        }
        Err(e) => format!("error: {e}"),
    }
}

fn describe_result(r: &Result<(), TxError>) -> String {
    match r {
        Ok(()) => "committed".into(),
        Err(e) => format!("failed: {e}"),
    }
}

/// What a single-mutation app write did, spelled out only when a trace line or a failure
/// needs it.
enum AppWrite {
    CreateEvent {
        key: Key,
        name: String,
    },
    EditEvent {
        key: Key,
        status: &'static str,
    },
    GenericUpdate {
        kind: Kind,
        key: Key,
        change: Change,
    },
    Delete {
        kind: Kind,
        key: Key,
    },
    BookingPayment {
        key: Key,
    },
    InvoiceTransition {
        key: Key,
    },
    Ticket {
        key: Key,
        change: TicketChange,
    },
    Repair {
        kind: Kind,
        key: Key,
        change: Change,
    },
}

impl std::fmt::Display for AppWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppWrite::CreateEvent { key, name } => write!(f, "create event #{key} {name:?}"),
            AppWrite::EditEvent { key, status } => write!(f, "edit event #{key}: status {status}"),
            AppWrite::GenericUpdate { kind, key, change } => write!(
                f,
                "generic update of {kind} #{key}: {} := {:?}",
                change.field, change.value
            ),
            AppWrite::Delete { kind, key } => write!(f, "delete {kind} #{key}"),
            AppWrite::BookingPayment { key } => {
                write!(f, "booking payment creates transaction #{key}")
            }
            AppWrite::InvoiceTransition { key } => {
                write!(f, "invoicing transition of transaction #{key}")
            }
            AppWrite::Ticket { key, change } => write!(f, "ticket #{key}: {change:?}"),
            AppWrite::Repair { kind, key, change } => write!(
                f,
                "data fix of {kind} #{key}: {} := {:?}",
                change.field, change.value
            ),
        }
    }
}

fn describe_outcomes(o: &[Result<(), TxError>; 2]) -> String {
    match (&o[MIGRATED], &o[ORACLE]) {
        (Ok(()), Ok(())) => "committed".into(),
        (Err(a), Err(_)) => format!("failed in both: {a}"),
        (a, b) => format!(
            "migrated {}, oracle {}",
            describe_result(a),
            describe_result(b)
        ),
    }
}

fn describe_switch(s: &Switch) -> String {
    match s {
        Switch::Moved { from, to } => format!("{from} -> {to}"),
        Switch::Refused { from, to, reason } => format!("{from} -> {to} refused: {reason}"),
        Switch::NoFurther(p) => format!("stays {p}"),
    }
}

fn describe_backfill(o: &Result<BackfillOutcome, TxError>) -> String {
    match o {
        Ok(BackfillOutcome::NotRunning(p)) => format!("not running ({p})"),
        Ok(BackfillOutcome::AlreadyDone) => "already done".into(),
        Ok(BackfillOutcome::PageRead { read }) => {
            format!("read a page of {read} (written by the next batch step)")
        }
        Ok(BackfillOutcome::Batch {
            read,
            migrated,
            quarantined,
            skipped,
            done,
        }) => format!(
            "read {read}, migrated {migrated}, quarantined {quarantined}, skipped {skipped}{}",
            if *done { ", done" } else { "" }
        ),
        Err(e) => format!("failed: {e}"),
    }
}

fn describe_writes(world: &World, log: &[Write]) -> String {
    let mut parts: Vec<String> = log
        .iter()
        .take(6)
        .map(|w| {
            let verb = match (&w.before, &w.after) {
                (None, Some(_)) => "+",
                (Some(_), None) => "-",
                _ => "~",
            };
            format!("{verb}{}", world.id_string(w.id))
        })
        .collect();
    if log.len() > 6 {
        parts.push(format!("and {} more", log.len() - 6));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typed row the write path wrote is taken as its legacy version's mapping
    /// (`World::row_is_mapping`, which spares the diff and the field-agreement check a
    /// mapping and a comparison) only when mapping the version now gives exactly its
    /// fields. After every step of runs with every fault at its highest rate, each kept row
    /// taken for the current version and typed row is compared with a fresh mapping. None
    /// is taken for a later version of the legacy document, for a rewritten typed row, or
    /// when one of its references would remap to another typed id.
    #[test]
    fn a_written_row_is_taken_as_the_mapping_only_when_it_is() {
        use proptest::strategy::{Strategy, ValueTree};
        let plan = Arc::new(Plan::seed());
        let strategy = crate::explore::step_in(&crate::explore::Swarm::max_faults());
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let (mut taken, mut with_references) = (0, 0);
        // A fork that keeps the written rows, with `doc` rewritten past the write path to
        // another organization, and the new version.
        let moved = |w: &World, doc: &Arc<Doc>| {
            let mut fork = w.fork_keeping_rows();
            let mut fields = doc.fields.clone();
            fields.insert("organizationId".into(), Value::from("organizations:999"));
            fork.store
                .mutate(0, |tx| tx.replace(doc.id, fields))
                .unwrap();
            let version = fork.store.peek(doc.id).cloned().unwrap();
            (fork, version)
        };
        for seed in 0..3 {
            let mut sim = Sim::new(plan.clone(), &SimOptions::default(), seed);
            for _ in 0..400 {
                let step = strategy.new_tree(&mut runner).unwrap().current();
                sim.step(&step).expect("the seed plan is safe");
                for (kind, legacy, references) in sim.migrated.stored_rows() {
                    let w = &mut sim.migrated;
                    let Some(current) = w.store.peek(legacy).cloned() else {
                        continue;
                    };
                    let rows = w.peek_typed_rows(kind, legacy);
                    let [row] = &rows[..] else {
                        continue;
                    };
                    if !w.row_is_mapping(kind, &current, row) {
                        continue;
                    }
                    taken += 1;
                    assert_eq!(w.map_now(kind, &current), Ok(row.fields.clone()));
                    // A later version of the legacy document.
                    let (mut other, later) = moved(w, &current);
                    assert!(!other.row_is_mapping(kind, &later, row));
                    // The typed row rewritten.
                    let (mut other, rewritten) = moved(w, row);
                    assert!(!other.row_is_mapping(kind, &current, &rewritten));
                    // A reference that would remap to another typed id.
                    if references > 0 {
                        with_references += 1;
                        let mut other = w.fork_keeping_rows();
                        other.misremember_remap(legacy);
                        assert!(!other.row_is_mapping(kind, &current, row));
                    }
                }
            }
        }
        assert!(
            taken > 100 && with_references > 10,
            "{taken} {with_references}"
        );
    }

    /// A read taken in place leaves the simulation as it was: the same state hash, digest,
    /// counters and step number, and the steps after it run as they would have without it
    /// (a clock left moved on would give the next insert another `_creationTime`). Any other
    /// step is refused and changes nothing.
    #[test]
    fn a_read_in_place_leaves_the_simulation_as_it_was() {
        let plan = Arc::new(Plan::seed());
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = crate::explore::step_in(&crate::explore::Swarm::default());
        let mut draw = || {
            use proptest::strategy::{Strategy, ValueTree};
            strategy.new_tree(&mut runner).unwrap().current()
        };
        let step = |op| Step {
            op,
            skew: 0,
            fault: None,
        };
        let mut sim = Sim::new(plan, &SimOptions::default(), 9);
        sim.track_state();
        let mut reads = 0;
        for _ in 0..300 {
            let next = draw();
            if matches!(next.op, Op::Read { .. }) && next.fault.is_none() {
                let mut there = sim.clone();
                let outcome = there
                    .read_in_place(&next)
                    .expect("a read is taken in place");
                assert!(outcome.is_ok());
                assert_eq!(there.state_hash(), sim.state_hash());
                assert_eq!(there.digest(), sim.digest());
                assert_eq!((&there.stats, there.step_no), (&sim.stats, sim.step_no));
                let after = [
                    step(Op::CreateEvent { org: 0, seed: 4 }),
                    next.clone(),
                    step(Op::Backfill {
                        kind: Kind::Events,
                        runner: 0,
                    }),
                ];
                let mut here = sim.clone();
                for s in &after {
                    here.step(s).unwrap();
                    there.step(s).unwrap();
                }
                assert_eq!(there.state_hash(), here.state_hash());
                assert_eq!(there.digest(), here.digest());
                reads += 1;
            } else {
                let mut there = sim.clone();
                assert!(there.read_in_place(&next).is_none());
                assert_eq!(there.digest(), sim.digest());
            }
            sim.step(&next).expect("the seed plan is safe");
        }
        assert!(reads > 30, "{reads} reads");
    }

    /// An app write is spelled out (`AppWrite`) only for the trace and for failures; the
    /// trace reads as it always did: what was written to which entity, then both outcomes.
    #[test]
    fn app_writes_are_described_in_the_trace() {
        let mut sim = Sim::new(Arc::new(Plan::seed()), &SimOptions::default(), 5);
        sim.set_verbose(true);
        let ops = [
            Op::CreateEvent { org: 0, seed: 3 },
            Op::EditEvent { event: 0, seed: 1 },
            Op::GenericUpdate {
                kind: Kind::Transactions,
                target: 0,
                seed: 1,
            },
            Op::InvoiceTransition { txn: 0 },
            Op::Ticket {
                ticket: 0,
                change: TicketChange::Redeem,
            },
            Op::BookingPayment { org: 0, seed: 2 },
            Op::Delete {
                kind: Kind::Events,
                target: 1,
            },
        ];
        let expected = [
            "create event #",
            "edit event #",
            "generic update of transactions #",
            "invoicing transition of transaction #",
            "ticket #",
            "booking payment creates transaction #",
            "delete events #",
        ];
        for op in ops {
            sim.step(&Step {
                op,
                skew: 0,
                fault: None,
            })
            .expect("the seed plan is safe");
        }
        let app: Vec<&str> = sim
            .trace
            .iter()
            .filter(|l| l.actor == "app")
            .map(|l| l.action.as_str())
            .collect();
        assert_eq!(app.len(), expected.len(), "{app:#?}");
        for (line, start) in app.iter().zip(expected) {
            assert!(
                line.starts_with(start),
                "{line:?} should start with {start:?}"
            );
            assert!(line.contains(": "), "{line:?} names no outcome");
        }
        assert!(app[1].contains(": status in_progress:"), "{:?}", app[1]);
        assert!(app[2].contains(": customerPhone := None:"), "{:?}", app[2]);
        assert!(app[4].contains(": Redeem:"), "{:?}", app[4]);
    }
}
