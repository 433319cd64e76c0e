//! Migration anomalies: what a broken invariant means in the migration's terms, and the
//! history a replayed run keeps so that a counterexample can be explained in one sentence
//! that cites its steps ("step 4's backfill read objects:7 before step 5 wrote it; step 6
//! wrote the stale copy over events:3").
//!
//! The history is kept only when a run records its trace (the replay of a counterexample):
//! a classification costs nothing in the search.

use crate::plan::Phase;
use crate::schema::Kind;
use crate::store::DocId;
use crate::world::Key;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A named migration anomaly.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    /// A copy read earlier was written over a newer value.
    StaleCopyOverwrite,
    /// A deleted entity came back.
    ResurrectedDelete,
    /// A typed row outlived its deleted legacy document.
    OrphanedTypedRow,
    /// A write reached one side of the double write and not the other.
    DivergentDoubleWrite,
    /// Two typed rows for one legacy document.
    DuplicateTypedRow,
    /// A legacy document the typed table should hold is missing there.
    MissingTypedRow,
    /// A document that cannot map was left out without a quarantine entry.
    SilentlyDroppedDocument,
    /// A read served from the typed table misses what the app wrote.
    MissingRowAfterReadSwitch,
    /// A read still served from `objects` misses writes that only reached the typed table.
    StaleLegacyRead,
    /// A read returns an older or different value than the app wrote.
    LostWrite,
    /// Reading an entity again after a phase switch returns something else than before.
    NonMonotonicRead,
    /// An action wrote as the phase it captured when it started said, after the kind had
    /// moved on.
    StalePhaseWrite,
    /// A duplicated (or reordered) delivery was applied again.
    DuplicateDelivery,
    /// The migrated app rejects (or accepts) a write the app without the migration accepts
    /// (or rejects).
    RejectedWrite,
    /// A reference in a typed row resolves to nothing.
    DanglingReference,
    /// A typed row does not match its table's validator.
    InvalidTypedRow,
}

impl Anomaly {
    pub fn name(self) -> &'static str {
        match self {
            Anomaly::StaleCopyOverwrite => "stale_copy_overwrite",
            Anomaly::ResurrectedDelete => "resurrected_delete",
            Anomaly::OrphanedTypedRow => "orphaned_typed_row",
            Anomaly::DivergentDoubleWrite => "divergent_double_write",
            Anomaly::DuplicateTypedRow => "duplicate_typed_row",
            Anomaly::MissingTypedRow => "missing_typed_row",
            Anomaly::SilentlyDroppedDocument => "silently_dropped_document",
            Anomaly::MissingRowAfterReadSwitch => "missing_row_after_read_switch",
            Anomaly::StaleLegacyRead => "stale_legacy_read",
            Anomaly::LostWrite => "lost_write",
            Anomaly::NonMonotonicRead => "non_monotonic_read",
            Anomaly::StalePhaseWrite => "stale_phase_write",
            Anomaly::DuplicateDelivery => "duplicate_delivery",
            Anomaly::RejectedWrite => "rejected_write",
            Anomaly::DanglingReference => "dangling_reference",
            Anomaly::InvalidTypedRow => "invalid_typed_row",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a step did to one document of the migrated world.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Touch {
    Inserted,
    Updated,
    Deleted,
    /// A two-step backfill batch read it into the driver's memory.
    ReadByBackfill,
}

/// One entry of a document's or an entity's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub step: usize,
    /// Who acted in that step (`app`, `checkout#3`, `backfill`, ...).
    pub actor: String,
    pub touch: Touch,
}

impl Event {
    /// "step 5 (checkout#2)".
    pub fn cite(&self) -> String {
        format!("step {} ({})", self.step, self.actor)
    }
}

/// What a run did, per document and per entity, kept while it records its trace.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Migrated-world documents (legacy documents and typed rows), by id.
    pub docs: BTreeMap<DocId, Vec<Event>>,
    /// Writes of each entity in the oracle (the app without the migration), by key.
    pub oracle: BTreeMap<Key, Vec<Event>>,
    /// Phase switches: step, kind, from, to.
    pub switches: Vec<(usize, Kind, Phase, Phase)>,
    /// The step at which each kind's backfill finished.
    pub backfill_done: BTreeMap<Kind, usize>,
    /// Payment webhook events applied: event id -> steps.
    pub deliveries: BTreeMap<u32, Vec<usize>>,
    /// Action crashes: actor -> step.
    pub crashes: BTreeMap<String, usize>,
    /// Actions started: actor -> the step and the phases then (what an action that captures
    /// its phases at the start uses).
    pub actions: BTreeMap<String, (usize, [Phase; 3])>,
}

impl History {
    pub fn record(&mut self, id: DocId, step: usize, actor: &str, touch: Touch) {
        self.docs.entry(id).or_default().push(Event {
            step,
            actor: actor.to_string(),
            touch,
        });
    }

    /// The last event of a document that matches `pred`.
    pub fn last(&self, id: DocId, pred: impl Fn(&Event) -> bool) -> Option<&Event> {
        self.docs.get(&id)?.iter().rev().find(|e| pred(e))
    }

    /// The first event of a document that matches `pred`.
    pub fn first(&self, id: DocId, pred: impl Fn(&Event) -> bool) -> Option<&Event> {
        self.docs.get(&id)?.iter().find(|e| pred(e))
    }

    /// The last write of an entity in the oracle.
    pub fn last_oracle_write(&self, key: Key) -> Option<&Event> {
        self.oracle.get(&key)?.last()
    }

    /// The phase `kind` was in during `step` (before any switch in that step).
    pub fn phase_at(&self, kind: Kind, step: usize) -> Phase {
        self.switches
            .iter()
            .rev()
            .find(|(s, k, _, _)| *k == kind && *s < step)
            .map_or(Phase::Legacy, |(_, _, _, to)| *to)
    }

    /// The last switch of `kind` before `step`.
    pub fn last_switch(&self, kind: Kind, step: usize) -> Option<(usize, Phase, Phase)> {
        self.switches
            .iter()
            .rev()
            .find(|(s, k, _, _)| *k == kind && *s <= step)
            .map(|(s, _, from, to)| (*s, *from, *to))
    }
}

/// A broken invariant explained as a migration anomaly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explained {
    pub anomaly: Anomaly,
    /// One sentence citing the steps involved.
    pub explanation: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phase_at_a_step_follows_the_switches_before_it() {
        let mut h = History::default();
        h.switches
            .push((3, Kind::Events, Phase::Legacy, Phase::DoubleWrite));
        h.switches
            .push((5, Kind::Events, Phase::DoubleWrite, Phase::Backfill));
        assert_eq!(h.phase_at(Kind::Events, 3), Phase::Legacy);
        assert_eq!(h.phase_at(Kind::Events, 4), Phase::DoubleWrite);
        assert_eq!(h.phase_at(Kind::Events, 9), Phase::Backfill);
        assert_eq!(h.phase_at(Kind::Tickets, 9), Phase::Legacy);
        assert_eq!(
            h.last_switch(Kind::Events, 5),
            Some((5, Phase::DoubleWrite, Phase::Backfill))
        );
    }
}
