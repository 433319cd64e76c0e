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
