//! The migration plan as data: for each entity kind, its phases
//! `legacy -> double_write -> backfill -> read_typed -> typed_only`, the guard on each
//! transition, the rollbacks it allows, and the order across kinds. Parsed from TOML.

use crate::schema::Kind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The built-in default plan, `plans/seed.toml`.
pub const SEED_PLAN: &str = include_str!("../plans/seed.toml");

/// A kind's phase. Each phase says which side is written and which side is read.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reads and writes use `objects` only.
    Legacy,
    /// Every write path writes `objects` and mirrors the typed row in the same mutation.
    DoubleWrite,
    /// As `double_write`, and the backfill copies the existing documents batch by batch.
    Backfill,
    /// Both sides still written; reads use the typed table.
    ReadTyped,
    /// Reads and writes use the typed table; `objects` is no longer written for this kind
    /// (except quarantined documents, which still live there).
    TypedOnly,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Legacy,
        Phase::DoubleWrite,
        Phase::Backfill,
        Phase::ReadTyped,
        Phase::TypedOnly,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Legacy => "legacy",
            Phase::DoubleWrite => "double_write",
            Phase::Backfill => "backfill",
            Phase::ReadTyped => "read_typed",
            Phase::TypedOnly => "typed_only",
        }
    }

    pub fn next(self) -> Option<Phase> {
        Phase::ALL.get(self as usize + 1).copied()
    }

    pub fn previous(self) -> Option<Phase> {
        (self as usize).checked_sub(1).map(|i| Phase::ALL[i])
    }

    pub fn writes_legacy(self) -> bool {
        self < Phase::TypedOnly
    }

    pub fn writes_typed(self) -> bool {
        self >= Phase::DoubleWrite
    }

    pub fn reads_typed(self) -> bool {
        self >= Phase::ReadTyped
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One condition of a transition guard, evaluated by the phase controller.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Every kind in `depends_on` has finished its backfill (its typed ids exist for all
    /// rows, so this kind's references can be remapped).
    DependenciesBackfilled,
    /// This kind's backfill has processed every page.
    BackfillDone,
    /// A full keyed diff of `objects` against the typed table finds no difference: every
    /// legacy document has an equal typed row or is quarantined, and no typed row is orphaned.
    DiffClean,
    /// No kind in `depends_on` has a quarantined document: a typed row can only reference
    /// typed rows, so once this kind writes typed rows only, a reference to a quarantined
    /// dependency could not be written.
    DependenciesClean,
    /// Every kind that depends on this one is already `typed_only`, so no legacy document
    /// will again need this kind's legacy ids.
    DependentsTypedOnly,
}

/// What the read path does with quarantined documents once reads are typed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReads {
    /// Reads of a quarantined document (by id or in a list) are served from `objects`, so a
    /// reader still sees it; the report lists it for a data fix. The seed plan's choice.
    ServeFromLegacy,
    /// Typed reads ignore quarantined documents: they silently disappear. Unsafe.
    Hide,
}

/// Where a write path writes the typed row relative to its legacy write.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoubleWrite {
    /// In the same mutation as the legacy write: both commit or neither does.
    SameMutation,
    /// In a separate mutation that the action runs as its next step, legacy first. An action
    /// that crashes in between leaves a legacy document without its typed row. Only action
    /// paths (`checkout`, `webhook`, `refund`) can do this.
    SeparateMutation,
    /// Typed first: an update's typed row is written (from the document as the update will
    /// leave it) in one mutation and the legacy document in the action's next step, so an
    /// action that crashes in between leaves a typed row ahead of its legacy document, and
    /// typed readers see a write the legacy side has not made. A create cannot go typed first
    /// (its typed row carries the legacy id), so it writes its typed row in the next step,
    /// as `separate_mutation` does. Action paths only.
    SeparateTypedFirst,
    /// The write path does not write the typed side; only the backfill does.
    None,
}

/// How a write path mirrors an update of an existing legacy document.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateMirroring {
    /// Upsert by legacy id: insert the typed row if it is missing, replace it otherwise.
    Upsert,
    /// Patch the typed row if it exists; a missing row is left for the backfill.
    Patch,
    /// Replace the typed row, which must exist: the mutation fails if it does not.
    Replace,
    /// The typed row is not updated.
    None,
}

/// How a delete is mirrored.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteMirroring {
    /// The typed row (and any quarantine entry) is deleted with the legacy document.
    Both,
    /// Only the legacy document is deleted.
    LegacyOnly,
}

/// How a backfill batch writes a typed row.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillWrite {
    /// Look the row up by legacy id and insert or update it, in the batch's mutation.
    Upsert,
    /// Check which documents lack a typed row in one transaction, insert rows for them in
    /// the next: a double write in between leaves two rows.
    CheckThenInsert,
    /// Insert without looking: a document the double write already copied gets a second row.
    BlindInsert,
}

/// What a backfill batch does when the typed row it is about to write already exists.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillConflict {
    /// Write the batch's copy over the row.
    Overwrite,
    /// Leave the existing row alone.
    SkipExisting,
    /// Write the batch's copy only if its `updatedAt` is later than the row's, compared inside
    /// the writing transaction.
    NewerWins,
}

/// When a backfill batch reads its page relative to writing it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillRead {
    /// Page read and rows written in the same mutation.
    SameMutation,
    /// The page is read in one transaction and written from that copy in the next (as an
    /// action does), so an app write in between can be overwritten by the stale copy.
    SeparateTransaction,
}

/// When backfill batches may run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillStart {
    /// Only in phase `backfill`, after the double write went live in `double_write`.
    WithDoubleWrite,
    /// Already in `legacy` and `double_write`: documents written after the backfill copied
    /// them, before the double write is live, keep stale or missing typed rows.
    BeforeDoubleWrite,
}

/// What the mapping does with a legacy document that cannot map.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvalidDocuments {
    /// Record it in `migrationQuarantine` with its path and reason; reads serve it as
    /// `quarantine_reads` says.
    Quarantine,
    /// Leave it out silently: no typed row and no record.
    Skip,
    /// Throw: the mutation (a backfill batch, or the app write that double-writes it) fails.
    Throw,
}

/// What typed rows hold in their reference fields.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum References {
    /// Legacy ids are remapped to the typed ids of the rows they point to.
    Remap,
    /// References keep their `objects` ids (the typed schema declares them `v.id("objects")`),
    /// so typed reads that join on typed ids find nothing.
    KeepLegacy,
}

/// How a write path learns each kind's phase.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseSource {
    /// Each mutation reads the phase when it runs.
    PerMutation,
    /// An action reads the phases once when it starts and uses them for all its steps, so
    /// a step that runs after a switch writes (and reads) as the old phase says.
    CapturedAtActionStart,
}

/// Which table reads use once a kind is in `read_typed` (`typed_only` always reads typed).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// The typed table.
    Typed,
    /// The typed table, falling back to `objects` for a document that has no typed row.
    TypedWithFallback,
    /// Both: the legacy answer is served, the typed one compared with it and mismatches
    /// counted (`shadow_mismatches` in the report).
    Shadow,
}

/// Where a backfill batch resumes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillCursor {
    /// After the last document read, in `_creationTime` order (`objects.by_type`).
    CreationOrder,
    /// After the last document read in `objects.by_status`, an index over a field the app
    /// updates: a document whose status changes can move behind the cursor.
    StatusIndex,
    /// After the first N documents of the kind in creation order: a delete shifts the rest,
    /// so the document at the page boundary is skipped.
    Offset,
}

/// A read of the app (domain.md §4), by name, for `legacy_reads`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadName {
    TransactionById,
    TransactionsOfOrg,
    TransactionsOfSession,
    TotalsByOrg,
    TicketById,
    TicketsOfEvent,
    TicketsOfTransaction,
    TicketsOfOrgByStatus,
    EventById,
    EventsOfOrg,
}

/// A write path of the app, for per-path strategies.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePath {
    /// The single-mutation paths: event create and edit, generic update and delete,
    /// booking payment, invoicing, ticket lifecycle, data fixes.
    App,
    /// The checkout fulfillment action.
    Checkout,
    /// The Stripe payment webhook (an HTTP action calling a mutation).
    Webhook,
    /// The refund action.
    Refund,
}

impl WritePath {
    pub fn name(self) -> &'static str {
        match self {
            WritePath::App => "app",
            WritePath::Checkout => "checkout",
            WritePath::Webhook => "webhook",
            WritePath::Refund => "refund",
        }
    }
}

/// A write path's own choices, overriding the plan-wide ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathStrategy {
    pub double_write: Option<DoubleWrite>,
    pub update_mirroring: Option<UpdateMirroring>,
}

/// How the plan's code does each part of the migration. The defaults are the seed plan's
/// choices; each other value is one way a team might write it (see docs/plan-format.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Strategy {
    pub double_write: DoubleWrite,
    pub update_mirroring: UpdateMirroring,
    pub delete_mirroring: DeleteMirroring,
    pub backfill_write: BackfillWrite,
    pub backfill_conflict: BackfillConflict,
    pub backfill_read: BackfillRead,
    pub backfill_start: BackfillStart,
    pub invalid_documents: InvalidDocuments,
    pub references: References,
    pub phase_source: PhaseSource,
    pub read_mode: ReadMode,
    pub backfill_cursor: BackfillCursor,
    /// Whether a rollback from `typed_only` first copies the typed rows back to `objects`
    /// (the writes made while only the typed table was written), inserts legacy documents
    /// for entities created typed-only, and deletes the legacy copies of entities deleted
    /// typed-only.
    pub rollback_mirror: bool,
    /// Whether the payment webhook's mutation records each Stripe event id and ignores a
    /// delivery it has already applied (Stripe redelivers, duplicates and reorders). The app
    /// without the migration (the oracle) always does; `false` is a rewritten handler that
    /// lost it.
    pub webhook_dedupe: bool,
    /// Per write path overrides of `double_write` and `update_mirroring`.
    pub paths: std::collections::BTreeMap<WritePath, PathStrategy>,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            double_write: DoubleWrite::SameMutation,
            update_mirroring: UpdateMirroring::Upsert,
            delete_mirroring: DeleteMirroring::Both,
            backfill_write: BackfillWrite::Upsert,
            backfill_conflict: BackfillConflict::Overwrite,
            backfill_read: BackfillRead::SameMutation,
            backfill_start: BackfillStart::WithDoubleWrite,
            invalid_documents: InvalidDocuments::Quarantine,
            references: References::Remap,
            phase_source: PhaseSource::PerMutation,
            read_mode: ReadMode::Typed,
            backfill_cursor: BackfillCursor::CreationOrder,
            rollback_mirror: false,
            webhook_dedupe: true,
            paths: Default::default(),
        }
    }
}

impl Strategy {
    pub fn double_write(&self, path: WritePath) -> DoubleWrite {
        self.paths
            .get(&path)
            .and_then(|p| p.double_write)
            .unwrap_or(self.double_write)
    }

    pub fn update_mirroring(&self, path: WritePath) -> UpdateMirroring {
        self.paths
            .get(&path)
            .and_then(|p| p.update_mirroring)
            .unwrap_or(self.update_mirroring)
    }

    /// Whether a backfill batch reads its page in one transaction and writes it in the next.
    pub fn backfill_two_step(&self) -> bool {
        self.backfill_read == BackfillRead::SeparateTransaction
            || self.backfill_write == BackfillWrite::CheckThenInsert
    }
}

/// One kind's own choices, overriding the plan-wide `[strategy]` (`references` and
/// `webhook_dedupe` are plan-wide only: they are the schema's and the webhook handler's).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindStrategy {
    pub double_write: Option<DoubleWrite>,
    pub update_mirroring: Option<UpdateMirroring>,
    pub delete_mirroring: Option<DeleteMirroring>,
    pub backfill_write: Option<BackfillWrite>,
    pub backfill_conflict: Option<BackfillConflict>,
    pub backfill_read: Option<BackfillRead>,
    pub backfill_start: Option<BackfillStart>,
    pub invalid_documents: Option<InvalidDocuments>,
    pub phase_source: Option<PhaseSource>,
    pub read_mode: Option<ReadMode>,
    pub backfill_cursor: Option<BackfillCursor>,
    pub rollback_mirror: Option<bool>,
    /// Per write path overrides for this kind (over the plan-wide ones).
    #[serde(default)]
    pub paths: std::collections::BTreeMap<WritePath, PathStrategy>,
}

impl KindStrategy {
    /// The plan-wide strategy with this kind's choices applied.
    pub fn apply(&self, base: &Strategy) -> Strategy {
        let mut s = base.clone();
        macro_rules! over {
            ($($f:ident),*) => { $( if let Some(v) = self.$f { s.$f = v; } )* };
        }
        over!(
            double_write,
            update_mirroring,
            delete_mirroring,
            backfill_write,
            backfill_conflict,
            backfill_read,
            backfill_start,
            invalid_documents,
            phase_source,
            read_mode,
            backfill_cursor,
            rollback_mirror
        );
        for (path, p) in &self.paths {
            let entry = s.paths.entry(*path).or_default();
            if p.double_write.is_some() {
                entry.double_write = p.double_write;
            }
            if p.update_mirroring.is_some() {
                entry.update_mirroring = p.update_mirroring;
            }
        }
        s
    }
}

/// The guards on each forward transition, named by the phase entered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guards {
    #[serde(default)]
    pub double_write: Vec<Condition>,
    #[serde(default)]
    pub backfill: Vec<Condition>,
    #[serde(default)]
    pub read_typed: Vec<Condition>,
    #[serde(default)]
    pub typed_only: Vec<Condition>,
}

impl Guards {
    pub fn entering(&self, phase: Phase) -> &[Condition] {
        match phase {
            Phase::Legacy => &[],
            Phase::DoubleWrite => &self.double_write,
            Phase::Backfill => &self.backfill,
            Phase::ReadTyped => &self.read_typed,
            Phase::TypedOnly => &self.typed_only,
        }
    }
}

/// One migrating kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindPlan {
    pub kind: Kind,
    /// Kinds whose typed ids this kind's rows reference; they migrate first.
    #[serde(default)]
    pub depends_on: Vec<Kind>,
    /// Documents per backfill batch (one mutation each).
    pub batch_size: Option<usize>,
    /// This kind's own strategy choices (`[kinds.strategy]`), over the plan-wide ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<KindStrategy>,
}

/// A whole plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Convex's `schemaValidation`: typed tables reject writes that do not match.
    #[serde(default = "yes")]
    pub schema_validation: bool,
    /// Documents per backfill batch, unless a kind sets its own.
    pub batch_size: usize,
    pub quarantine_reads: QuarantineReads,
    pub guards: Guards,
    /// Phases from which the controller may roll back one phase. `read_typed` -> `backfill`
    /// is the safe one (both sides are still written).
    #[serde(default)]
    pub rollback_from: Vec<Phase>,
    /// Reads the team has not ported: they keep their legacy form (reading `objects`) in
    /// every phase. The phase controller does not know about them.
    #[serde(default)]
    pub legacy_reads: Vec<ReadName>,
    /// How the plan's code does each part; the defaults are the seed's choices.
    #[serde(default)]
    pub strategy: Strategy,
    /// The kinds that migrate; a kind not listed stays `legacy`.
    pub kinds: Vec<KindPlan>,
}

fn yes() -> bool {
    true
}

/// A sanity bound on documents per batch: from 8,000 up, a batch that migrates every document
/// it reads (a typed row and an id-map entry each, plus the progress row) exceeds Convex's
/// 16,000 written documents per transaction. It is not a guarantee either way: a batch over
/// it fits if its documents are already synced, and one under it can still exceed a limit
/// (a document leaving the quarantine writes three documents; reads are limited too). A batch
/// that does not fit fails as a Convex mutation would and commits nothing.
pub const BATCH_SIZE_MAX: usize = 7_999;

/// A plan that cannot be used, with the place of the problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The file is not valid TOML or does not have the plan's shape.
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    /// The plan parses but contradicts itself.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        origin: String,
        field: String,
        message: String,
    },
}

impl Plan {
    /// The built-in seed plan.
    pub fn seed() -> Plan {
        Plan::parse(SEED_PLAN, "plans/seed.toml").expect("the built-in seed plan is valid")
    }

    /// Parses and validates a plan; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Plan, PlanError> {
        let plan: Plan = toml::from_str(text).map_err(|e| PlanError::Parse {
            origin: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        plan.validate(origin)?;
        Ok(plan)
    }

    fn validate(&self, origin: &str) -> Result<(), PlanError> {
        let invalid = |field: String, message: String| PlanError::Invalid {
            origin: origin.to_string(),
            field,
            message,
        };
        let check_batch = |field: String, n: usize| {
            if n == 0 || n > BATCH_SIZE_MAX {
                Err(invalid(
                    field,
                    format!("must be between 1 and {BATCH_SIZE_MAX}, found {n}"),
                ))
            } else {
                Ok(())
            }
        };
        check_batch("batch_size".into(), self.batch_size)?;
        for (i, k) in self.kinds.iter().enumerate() {
            let here = format!("kinds[{i}]");
            if self.kinds[..i].iter().any(|o| o.kind == k.kind) {
                return Err(invalid(
                    format!("{here}.kind"),
                    format!("{} is listed twice", k.kind),
                ));
            }
            if let Some(n) = k.batch_size {
                check_batch(format!("{here}.batch_size"), n)?;
            }
            for d in &k.depends_on {
                if *d == k.kind {
                    return Err(invalid(
                        format!("{here}.depends_on"),
                        format!("{} cannot depend on itself", k.kind),
                    ));
                }
                if !self.kinds.iter().any(|o| o.kind == *d) {
                    return Err(invalid(
                        format!("{here}.depends_on"),
                        format!("{d} is not a migrating kind of this plan"),
                    ));
                }
            }
        }
        // Each kind may only depend on kinds listed before it, which rules out cycles and
        // makes the file's order the migration order.
        for (i, k) in self.kinds.iter().enumerate() {
            for d in &k.depends_on {
                if !self.kinds[..i].iter().any(|o| o.kind == *d) {
                    return Err(invalid(
                        format!("kinds[{i}].depends_on"),
                        format!(
                            "{d} must be listed before {} (kinds migrate in file order)",
                            k.kind
                        ),
                    ));
                }
            }
        }
        for (path, p) in &self.strategy.paths {
            if *path == WritePath::App
                && matches!(
                    p.double_write,
                    Some(DoubleWrite::SeparateMutation | DoubleWrite::SeparateTypedFirst)
                )
            {
                return Err(invalid(
                    "strategy.paths.app.double_write".into(),
                    "the app's single-mutation paths have no separate mutation to put the typed write in (only checkout, webhook and refund are actions)".into(),
                ));
            }
        }
        if self.strategy.double_write == DoubleWrite::SeparateMutation
            && self
                .strategy
                .paths
                .get(&WritePath::App)
                .and_then(|p| p.double_write)
                .is_none()
        {
            return Err(invalid(
                "strategy.double_write".into(),
                "separate_mutation applies to action paths only; set it under [strategy.paths.checkout] (or webhook, refund), or override [strategy.paths.app]".into(),
            ));
        }
        for (i, k) in self.kinds.iter().enumerate() {
            let strategy = self.strategy_for(k.kind);
            if matches!(
                strategy.double_write(WritePath::App),
                DoubleWrite::SeparateMutation | DoubleWrite::SeparateTypedFirst
            ) {
                return Err(invalid(
                    format!("kinds[{i}].strategy"),
                    "the app's single-mutation paths have no separate mutation to put the typed write in (only checkout, webhook and refund are actions)".into(),
                ));
            }
        }
        for p in &self.rollback_from {
            if *p == Phase::Legacy {
                return Err(invalid(
                    "rollback_from".into(),
                    "there is no phase before legacy".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn kind(&self, kind: Kind) -> Option<&KindPlan> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// The strategy `kind` follows: the plan-wide one, with the kind's own choices applied.
    pub fn strategy_for(&self, kind: Kind) -> std::borrow::Cow<'_, Strategy> {
        match self.kind(kind).and_then(|k| k.strategy.as_ref()) {
            Some(own) => std::borrow::Cow::Owned(own.apply(&self.strategy)),
            None => std::borrow::Cow::Borrowed(&self.strategy),
        }
    }

    pub fn batch_size(&self, kind: Kind) -> usize {
        self.kind(kind)
            .and_then(|k| k.batch_size)
            .unwrap_or(self.batch_size)
    }

    /// Kinds that list `kind` in `depends_on`.
    pub fn dependents(&self, kind: Kind) -> impl Iterator<Item = Kind> + '_ {
        self.kinds
            .iter()
            .filter(move |k| k.depends_on.contains(&kind))
            .map(|k| k.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_plan_parses() {
        let plan = Plan::seed();
        assert_eq!(
            plan.strategy,
            Strategy::default(),
            "the seed's choices are the defaults"
        );
        assert_eq!(plan.kinds.len(), 3);
        assert_eq!(plan.quarantine_reads, QuarantineReads::ServeFromLegacy);
        assert!(plan.guards.read_typed.contains(&Condition::DiffClean));
    }

    #[test]
    fn bad_plans_name_the_place() {
        let cases = [
            (
                SEED_PLAN.replace("batch_size = 25", "batch_size = 0"),
                "batch_size",
            ),
            (
                SEED_PLAN.replace(
                    "depends_on = [\"events\", \"transactions\"]",
                    "depends_on = [\"tickets\"]",
                ),
                "kinds[2].depends_on",
            ),
            (
                SEED_PLAN.replace("depends_on = [\"events\"]", "depends_on = [\"tickets\"]"),
                "kinds[1].depends_on",
            ),
        ];
        for (text, field) in cases {
            match Plan::parse(&text, "x.toml") {
                Err(PlanError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected an invalid plan at {field}, got {other:?}"),
            }
        }
        let with_paths = |paths: &str| {
            let at = SEED_PLAN.find("[[kinds]]").expect("kinds");
            format!("{}{paths}\n\n{}", &SEED_PLAN[..at], &SEED_PLAN[at..])
        };
        match Plan::parse(
            &with_paths("[strategy.paths.app]\ndouble_write = \"separate_mutation\""),
            "x.toml",
        ) {
            Err(PlanError::Invalid { field, .. }) => {
                assert_eq!(field, "strategy.paths.app.double_write");
            }
            other => panic!("expected an invalid plan, got {other:?}"),
        }
        match Plan::parse(
            &with_paths("[strategy]\ndouble_write = \"separate_mutation\""),
            "x.toml",
        ) {
            Err(PlanError::Invalid { field, .. }) => assert_eq!(field, "strategy.double_write"),
            other => panic!("expected an invalid plan, got {other:?}"),
        }
        let plan = Plan::parse(
            &with_paths("[strategy]\ndouble_write = \"separate_mutation\"\n\n[strategy.paths.app]\ndouble_write = \"same_mutation\""),
            "x.toml",
        )
        .expect("actions separate, app paths in the same mutation");
        assert_eq!(
            plan.strategy.double_write(WritePath::Checkout),
            DoubleWrite::SeparateMutation
        );
        assert_eq!(
            plan.strategy.double_write(WritePath::App),
            DoubleWrite::SameMutation
        );
        let err = Plan::parse(
            &with_paths("[strategy]\nupdate_mirroring = \"sometimes\""),
            "x.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `sometimes`"),
            "{err}"
        );
        let err = Plan::parse("name = 1", "x.toml").unwrap_err();
        assert!(matches!(err, PlanError::Parse { .. }), "{err}");
        let err = Plan::parse(
            &SEED_PLAN.replace("quarantine_reads", "quarantine_read"),
            "x.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("x.toml"), "{err}");
    }
}
